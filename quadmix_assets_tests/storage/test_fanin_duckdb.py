"""The out-of-core (DuckDB) fan-in engine gives exactly the numbers of the numpy method library (random
inputs with many ties, zero-token documents and domains, local and fsspec storage, a small memory limit),
and both engines behind the one fan-in interface (``mixing.fanin.open_fan_in``) write the same manifests and
cards. The equality on the bundled corpus, through the pipeline's stored run, is in
``quadmix_assets_tests/pipeline/test_duckdb_sql.py``."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest

from quadmix_assets.method import ParamSpace, sampling_plan
from quadmix_assets.mixing import fanin_duckdb as F
from quadmix_assets.mixing import features as features_module
from quadmix_assets.mixing.features import document_features
from quadmix_assets.storage import StorageRoot, layout
from quadmix_assets.storage.duck import duck_session

from .fanin_support import CRITERIA, write_random_corpus

N_DOMAINS = 6


def _table(batches) -> pa.Table:
    batches = list(batches)
    return pa.Table.from_batches(batches) if batches else None


def _numpy_plan(storage, shards, params, seed, aware):
    feats = document_features(storage, shards, CRITERIA)
    ranks = np.column_stack([feats[f"s_{c}"].to_numpy() for c in CRITERIA])
    plan = sampling_plan(ranks, feats["domain"].to_numpy().astype(np.int64), feats["n_tokens"].to_numpy(),
                         feats["id_hash"].to_numpy(), params, seed, domain_aware=aware)
    return feats, plan


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    storage = StorageRoot(str(tmp_path_factory.mktemp("fanin") / "storage"))
    shards = write_random_corpus(storage, [2500, 1800, 1, 40], N_DOMAINS, seed=3, zero_token_domain=4)
    return storage, shards


@pytest.mark.parametrize("aware", [True, False])
def test_scores_and_copies_equal_the_numpy_sampling_plan(stored, aware):
    storage, shards = stored
    configs = ParamSpace(N_DOMAINS, len(CRITERIA)).sample(4, seed=11)
    with duck_session(storage, threads=2) as con:
        for i, params in enumerate(configs):
            seed = f"cfg-{i}:7"
            got = _table(F.sampling_plan(con, storage, shards, CRITERIA, params, seed, domain_aware=aware, keep_scores=True))
            feats, ref = _numpy_plan(storage, shards, params, seed, aware)
            assert got.num_rows == feats.num_rows
            assert got["id"].to_pylist() == feats["id"].to_pylist()
            for k in ("qbar", "r", "expected", "copies"):
                assert np.array_equal(got[k].to_numpy(), ref[k]), k
            manifest = _table(F.sampling_plan(con, storage, shards, CRITERIA, params, seed, domain_aware=aware))
            sel = np.flatnonzero(ref["copies"] > 0)
            assert manifest["id"].to_pylist() == feats["id"].take(sel).to_pylist()
            assert np.array_equal(manifest["copies"].to_numpy(), ref["copies"][sel])


def test_zero_tokens_everywhere_uses_counts(tmp_path):
    storage = StorageRoot(str(tmp_path / "storage"))
    shards = write_random_corpus(storage, [300, 200], 1, seed=2, zero_token_domain=0)
    feats = document_features(storage, shards, CRITERIA)
    assert int(feats["n_tokens"].to_numpy().sum()) == 0
    params = ParamSpace(1, len(CRITERIA)).sample(1, seed=1)[0]
    with duck_session(storage) as con:
        got = _table(F.sampling_plan(con, storage, shards, CRITERIA, params, 1, keep_scores=True))
    _, ref = _numpy_plan(storage, shards, params, 1, True)
    assert np.array_equal(got["r"].to_numpy(), ref["r"])
    assert np.array_equal(got["copies"].to_numpy(), ref["copies"])


def test_shards_read_in_chunks_give_the_same_numbers(stored, monkeypatch):
    """The out-of-core engine reads a shard's files side by side a chunk at a time; chunks of 1 and 37 rows
    (many per shard, ending off the batch and tie boundaries) give the numbers of whole shards."""
    storage, shards = stored
    params = ParamSpace(N_DOMAINS, len(CRITERIA)).sample(1, seed=6)[0]
    with duck_session(storage) as con:
        plan = _table(F.sampling_plan(con, storage, shards, CRITERIA, params, 3, keep_scores=True))
    for chunk in (1, 37):
        monkeypatch.setattr(features_module, "SOURCE_ROWS", chunk)
        with duck_session(storage) as con:
            assert _table(F.sampling_plan(con, storage, shards, CRITERIA, params, 3, keep_scores=True)).equals(plan)


def test_files_that_end_at_different_rows_are_refused(tmp_path):
    storage = StorageRoot(str(tmp_path / "s"))
    storage.write_parquet("a.parquet", pa.table({"x": np.arange(10)}), {})
    storage.write_parquet("b.parquet", pa.table({"y": np.arange(12)}), {})
    with pytest.raises(ValueError, match="not aligned row for row"):
        list(features_module.read_chunks(storage, [("a.parquet", ["x"]), ("b.parquet", ["y"])], rows=4))
    assert [lo for lo, _ in features_module.read_chunks(storage, [("a.parquet", ["x"]), ("a.parquet", ["x"])], rows=4)] == [0, 4, 8]


def test_fsspec_storage_gives_the_same_numbers(stored):
    local, shards = stored
    remote = StorageRoot(f"memory://fanin-{uuid.uuid4().hex}/storage")
    for rel in local.list(""):
        remote.write_bytes(rel, local.read_bytes(rel))
    params = ParamSpace(N_DOMAINS, len(CRITERIA)).sample(1, seed=9)[0]
    with duck_session(remote) as con:
        plan = _table(F.sampling_plan(con, remote, shards, CRITERIA, params, 3, keep_scores=True))
    _, ref = _numpy_plan(local, shards, params, 3, True)
    assert np.array_equal(plan["copies"].to_numpy(), ref["copies"])


def test_small_memory_limit_spills_and_stays_exact(tmp_path):
    storage = StorageRoot(str(tmp_path / "storage"))
    shards = write_random_corpus(storage, [60_000, 60_000], N_DOMAINS, seed=8, levels=100_000)
    params = ParamSpace(N_DOMAINS, len(CRITERIA)).sample(1, seed=2)[0]
    with duck_session(storage, memory_limit="24MB", threads=1, temp_dir=str(tmp_path)) as con:
        got = _table(F.sampling_plan(con, storage, shards, CRITERIA, params, 5, keep_scores=True))
    _, ref = _numpy_plan(storage, shards, params, 5, True)
    assert np.array_equal(got["r"].to_numpy(), ref["r"])
    assert np.array_equal(got["copies"].to_numpy(), ref["copies"])


@pytest.mark.parametrize("batch_rows", [1, 37, 1000])
def test_sorted_stream_in_small_batches_gives_the_same_numbers(stored, batch_rows):
    """The running sums carry across batch boundaries, also when a tie group spans many batches (50 score
    levels over 4,341 documents: tie groups of ~90 rows)."""
    storage, shards = stored
    params = ParamSpace(N_DOMAINS, len(CRITERIA)).sample(1, seed=6)[0]
    _, ref = _numpy_plan(storage, shards, params, 2, True)
    with duck_session(storage, threads=2) as con:
        got = _table(F.sampling_plan(con, storage, shards, CRITERIA, params, 2, keep_scores=True, batch_rows=batch_rows))
    for k in ("qbar", "r", "copies"):
        assert np.array_equal(got[k].to_numpy(), ref[k]), k


def test_no_spill_files_are_left_behind(stored, tmp_path):
    storage, shards = stored
    params = ParamSpace(N_DOMAINS, len(CRITERIA)).sample(1, seed=6)[0]
    with duck_session(storage, temp_dir=str(tmp_path)) as con:
        spill = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
        list(F.sampling_plan(con, storage, shards, CRITERIA, params, 2))
        left = [p for p in tmp_path.rglob("*") if p.is_file() and "quadmix-fanin-" in str(p)]
        assert left == [], left
        assert spill.startswith(str(tmp_path))


def test_bad_inputs_are_refused(stored, tmp_path):
    storage, shards = stored
    params = ParamSpace(N_DOMAINS - 2, len(CRITERIA)).sample(1, seed=2)[0]  # fewer domains than the labels use
    with duck_session(storage) as con:
        with pytest.raises(ValueError, match="out of range"):
            list(F.sampling_plan(con, storage, shards, CRITERIA, params, 1))
    bad = StorageRoot(str(tmp_path / "bad"))
    write_random_corpus(bad, [50], N_DOMAINS, seed=1)
    bad.write_parquet(layout.attribute("domain", "shard-000"), pa.table({"domain": pa.array(np.zeros(49, np.int16))}), {})
    with duck_session(bad) as con:
        with pytest.raises(ValueError, match="aligned"):
            list(F.sampling_plan(con, bad, ["shard-000"], CRITERIA, ParamSpace(N_DOMAINS, 3).sample(1, 1)[0], 1))


def test_the_plan_leaves_out_the_cross_shard_duplicate_quarantine_as_numpy_does(tmp_path, monkeypatch):
    """Rows the normaliser quarantined as text duplicates of a kept copy in another shard are in no
    mixture: the DuckDB plan leaves out the same rows as ``document_features`` (also a shard's whole
    chunk, and with chunks that cut the quarantined rows' runs)."""
    storage = StorageRoot(str(tmp_path / "storage"))
    shards = write_random_corpus(storage, [300, 200, 50], 3, seed=11)
    rows = {shards[1]: [0, 5, 6, 7, 199], shards[2]: list(range(0, 37))}
    dup = [{"shard": s, "row": r, "kept_shard": shards[0], "kept_row": 0, "text_sha256": f"{s}:{r}"}
           for s, rs in rows.items() for r in rs]
    storage.write_parquet(layout.cross_shard_duplicates(), pa.Table.from_pylist(dup), {})
    params = ParamSpace(3, len(CRITERIA)).sample(1, seed=2)[0]
    feats, ref = _numpy_plan(storage, shards, params, 7, True)
    assert feats.num_rows == 550 - 5 - 37
    for chunk in (1 << 14, 37, 1):
        monkeypatch.setattr(features_module, "SOURCE_ROWS", chunk)
        with duck_session(storage) as con:
            got = _table(F.sampling_plan(con, storage, shards, CRITERIA, params, 7, keep_scores=True))
        assert list(zip(got["shard"].to_pylist(), got["row"].to_pylist())) == list(zip(feats["shard"].to_pylist(), feats["row"].to_pylist()))
        assert np.array_equal(got["r"].to_numpy(), ref["r"]) and np.array_equal(got["copies"].to_numpy(), ref["copies"])


@pytest.mark.parametrize("domain_aware", [True, False])
def test_both_engines_of_the_fan_in_write_the_same_manifests_and_cards(stored, domain_aware):
    """What the mixture assets compute above ``fanin_in_memory_rows()`` documents (the DuckDB engine) equals
    what they compute in memory (the numpy engine): the same manifest table, the same counts, the expected
    tokens to the last bits; only the in-memory engine hands back the per-document scores."""
    import dataclasses

    from quadmix_assets.method import draw_copies
    from quadmix_assets.mixing import drawn_specs
    from quadmix_assets.mixing.fanin import open_fan_in
    from quadmix_assets.mixing.scores import manifest_table, score_documents, scores_summary

    storage, shards = stored
    spec = drawn_specs(ParamSpace(N_DOMAINS, len(CRITERIA)), 1, seed=8)[0]
    spec = dataclasses.replace(spec, domain_aware=domain_aware)
    scores = score_documents(document_features(storage, shards, CRITERIA), spec, CRITERIA)
    copies = draw_copies(scores["expected"].to_numpy(), scores["id_hash"].to_numpy(), "m:8")
    want = manifest_table(scores, copies)
    card = scores_summary(scores, N_DOMAINS)
    with open_fan_in(storage, shards, CRITERIA, engine="numpy") as fan_in:
        assert fan_in.label == "numpy (in memory)"
        mem = fan_in.select(spec, "m:8")
        assert mem.manifest.equals(want) and mem.scores.equals(scores) and np.array_equal(mem.copies, copies)
        assert fan_in.summary(spec, N_DOMAINS) == card
    with open_fan_in(storage, shards, CRITERIA, engine="duckdb") as fan_in:
        assert fan_in.label == "duckdb (out of core)"
        out = fan_in.select(spec, "m:8")
        summary = fan_in.summary(spec, N_DOMAINS)
    assert want.num_rows > 0 and out.manifest.equals(want) and out.scores is None and out.copies is None
    assert summary["documents"] == card["documents"] and summary["tokens"] == card["tokens"]
    assert summary["expected_tokens"] == pytest.approx(card["expected_tokens"], rel=1e-12)
    for a, b in zip(summary["per_domain"], card["per_domain"]):
        assert (a["domain"], a["documents"], a["tokens"]) == (b["domain"], b["documents"], b["tokens"])
        assert a["expected_tokens"] == pytest.approx(b["expected_tokens"], rel=1e-12, abs=1e-9)


def test_the_fan_in_engine_is_chosen_by_size(stored, monkeypatch):
    """``QUADMIX_FANIN_IN_MEMORY_ROWS``: in memory up to that many documents, out of core above; a named
    engine wins, an unknown one is refused."""
    from quadmix_assets.mixing.fanin import choose_engine, open_fan_in

    storage, shards = stored
    n = document_features(storage, shards, CRITERIA).num_rows
    logged = []
    monkeypatch.setenv("QUADMIX_FANIN_IN_MEMORY_ROWS", str(n))
    assert choose_engine(storage, shards, logged.append) == "numpy" and not logged
    monkeypatch.setenv("QUADMIX_FANIN_IN_MEMORY_ROWS", str(n - 1))
    assert choose_engine(storage, shards, logged.append) == "duckdb"
    assert logged == [f"{n:,} documents > {n - 1:,}: mixtures computed out of core with DuckDB"]
    with open_fan_in(storage, shards, CRITERIA) as fan_in:
        assert fan_in.label == "duckdb (out of core)"
    with open_fan_in(storage, shards, CRITERIA, engine="numpy") as fan_in:
        assert fan_in.label == "numpy (in memory)"
    with pytest.raises(ValueError, match="unknown fan-in engine"):
        with open_fan_in(storage, shards, CRITERIA, engine="spark"):
            pass


def test_a_keep_rule_selects_only_what_the_criterion_keeps_in_both_engines(stored):
    """``english-random`` (the random baseline's parameters, langid score >= 0.65 only): both engines give
    the same manifest, no refused document is selected, and the kept ones are drawn as random draws them."""
    from quadmix_assets.mixing import baseline_specs
    from quadmix_assets.mixing.fanin import open_fan_in

    storage, shards = stored
    specs = {s.name: s for s in baseline_specs(N_DOMAINS, CRITERIA, 0.3, {"langid": ("english", 0.65)})}
    spec, random = specs["english-random"], specs["random"]
    assert spec.keep == (("langid", 0.65),) and spec.params.config_id == random.params.config_id
    with open_fan_in(storage, shards, CRITERIA, engine="numpy") as fan_in:
        mem = fan_in.select(spec, "e:1")
        rnd = fan_in.select(random, "e:1")
        card = fan_in.summary(spec, N_DOMAINS)
    with open_fan_in(storage, shards, CRITERIA, engine="duckdb") as fan_in:
        out = fan_in.select(spec, "e:1")
        summary = fan_in.summary(spec, N_DOMAINS)
    assert out.manifest.equals(mem.manifest) and mem.manifest.num_rows > 0
    assert summary["expected_tokens"] == pytest.approx(card["expected_tokens"], rel=1e-12)
    score = {k: storage.read_parquet(layout.attribute("quality_langid", k))["score"].to_numpy() for k in shards}
    kept = np.array([score[s][r] >= 0.65 for s, r in zip(mem.manifest["shard"].to_pylist(), mem.manifest["row"].to_pylist())])
    assert kept.all()
    ok = np.concatenate([score[k] >= 0.65 for k in shards])
    assert 0.2 < ok.mean() < 0.5  # the fixture's langid scores: some refused, some kept
    # among the kept documents, the same draw as random (same params, same uniforms per document key)
    expected = mem.scores["expected"].to_numpy()
    assert np.all(expected[~ok] == 0) and np.allclose(expected[ok], 0.3)
    assert card["expected_tokens"] < fan_in_total(rnd)


def fan_in_total(selection) -> float:
    return float(np.dot(selection.scores["expected"].to_numpy(), selection.scores["n_tokens"].to_numpy()))
