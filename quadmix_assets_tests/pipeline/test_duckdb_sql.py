"""On the pipeline's stored run of the bundled corpus (the session's ``demo_run``, no extra pipeline run):
the DuckDB fan-in engine gives exactly the stored numpy results (qbar, r, S, copies), and
``quadmix sql`` answers the example queries of the README and docs/inspecting.md."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quadmix_assets.cli import main
from quadmix_assets.mixing import fanin_duckdb as F
from quadmix_assets.mixing.store import alpha_criteria, load_spec
from quadmix_assets.mixing.fanin import mixture_scores as computed_scores
from quadmix_assets.storage import layout
from quadmix_assets.storage.duck import duck_session


def _table(batches) -> pa.Table:
    return pa.Table.from_batches(list(batches))


def _sql(storage, query: str, *extra: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["sql", query, "--storage", storage.url, *extra])
    assert code == 0, out.getvalue()
    return out.getvalue()


def test_duckdb_fanin_equals_the_stored_numpy_results(demo_run):
    settings = demo_run[0]
    storage = settings.storage()
    card = storage.read_json(layout.normaliser_card())
    shards = card["shards"]
    mixtures = sorted(rel.split("/")[1] for rel in storage.list("mixtures", "/scores.json"))
    assert len(mixtures) >= 4
    with duck_session(storage) as con:
        for key in mixtures:
            spec, configs = load_spec(storage, key)
            seed = f"{spec.content_id}:{configs['preset']['seed']}"  # the content id seeds the copy draws
            criteria = alpha_criteria(configs)  # alpha's columns, as the run recorded them
            got = _table(F.sampling_plan(con, storage, shards, criteria, spec.params, seed,
                                         domain_aware=spec.domain_aware, keep_scores=True, keep=spec.keep))
            scores = computed_scores(storage, key, criteria)  # the numpy reference, as the manifest computes it
            assert got["id"].to_pylist() == scores["id"].to_pylist()
            for col in ("qbar", "r", "expected"):
                assert np.array_equal(got[col].to_numpy(), scores[col].to_numpy()), (key, col)
            manifest = storage.read_parquet(layout.mixture_manifest(key))
            sel = got.filter(pa.compute.greater(got["copies"], 0))
            assert sel["id"].to_pylist() == manifest["id"].to_pylist()
            assert np.array_equal(sel["copies"].to_numpy(), manifest["copies"].to_numpy())


def test_quadmix_sql_answers_the_readme_queries(demo_run, tmp_path):
    storage = demo_run[0].storage()
    # tokens per domain of a mixture (README)
    text = _sql(storage, "SELECT d.domain_name, sum(m.n_tokens * m.copies) AS tokens FROM manifests m "
                "JOIN mixtures x USING (mixture_id) JOIN domains d USING (domain) WHERE x.name = 'random' "
                "GROUP BY 1 ORDER BY 2 DESC", "--out", str(tmp_path / "tokens.parquet"))
    assert "rows written" in text
    got = pq.read_table(tmp_path / "tokens.parquet")
    random_id = next(rel.split("/")[1] for rel in storage.list("mixtures", "/manifest.parquet")
                     if load_spec(storage, rel.split("/")[1])[0].name == "random")
    m = storage.read_parquet(layout.mixture_manifest(random_id))
    names = storage.read_json(layout.model_card("domain_classifier"))["domain_names"]
    ref = np.bincount(m["domain"].to_numpy().astype(np.int64), weights=m["n_tokens"].to_numpy() * m["copies"].to_numpy(),
                      minlength=len(names))
    assert dict(zip(got["domain_name"].to_pylist(), got["tokens"].to_pylist())) == {
        names[i]: int(v) for i, v in enumerate(ref) if v > 0}
    # the 20 highest-scored documents of a domain (docs/inspecting.md)
    top_domain = got["domain_name"][0].as_py()
    text = _sql(storage, "SELECT f.id, f.dclm_score, f.s_dclm, left(d.text, 60) AS text FROM features f JOIN documents d "
                f"USING (shard, row) WHERE f.domain_name = '{top_domain}' ORDER BY f.dclm_score DESC LIMIT 20")
    assert text.strip().endswith("(20 rows)")
    out = tmp_path / "top.csv"
    _sql(storage, f"SELECT id, dclm_score FROM features WHERE domain_name = '{top_domain}' ORDER BY dclm_score DESC, id LIMIT 20",
         "--out", str(out))
    scores = [float(line.split(",")[1]) for line in out.read_text().splitlines()[1:]]
    assert len(scores) == 20 and scores == sorted(scores, reverse=True)
    # duplicates across shards (docs/inspecting.md): none in the bundled shards, so the table is empty but answered
    text = _sql(storage, "SELECT md5(text) AS text_md5, count(*) AS copies, list(DISTINCT shard) AS shards FROM documents "
                "GROUP BY 1 HAVING count(DISTINCT shard) > 1 ORDER BY 2 DESC")
    assert "text_md5" in text and text.strip().endswith("rows)")
    # the scores cards: a row per mixture and domain, the sums the mixture_scores asset recorded
    out = tmp_path / "cards.parquet"
    _sql(storage, "SELECT mixture_id, sum(documents) AS documents, sum(expected_tokens) AS expected FROM mixture_scores "
         "GROUP BY 1 ORDER BY 1", "--out", str(out))
    cards = pq.read_table(out).to_pylist()
    assert [c["mixture_id"] for c in cards] == sorted(rel.split("/")[1] for rel in storage.list("mixtures", "/scores.json"))
    for c in cards:
        card = storage.read_json(layout.mixture_scores_card(c["mixture_id"]))
        assert c["documents"] == card["documents"] and c["expected"] == pytest.approx(card["expected_tokens"], rel=1e-12)
    # proxies and the regressor's training table
    text = _sql(storage, "SELECT count(*) AS n FROM regressor_training r JOIN proxy_results p USING (mixture_id) "
                "WHERE p.repeat = 0 AND p.status = 'ok'")
    n = int(text.splitlines()[2])
    assert n >= 1
    # nothing outside the storage root
    with pytest.raises(AssertionError, match="Permission|disabled"):
        _sql(storage, "SELECT * FROM read_text('/etc/hostname')")


def test_mixture_assets_out_of_core_write_what_they_write_in_memory(demo_run, tmp_path, monkeypatch):
    """Above ``QUADMIX_FANIN_IN_MEMORY_ROWS`` documents the mixture assets compute with DuckDB out of core:
    here the limit is 0, on a copy of the run's storage, and the manifests come out byte for byte as the
    in-memory run wrote them; the cards' counts are equal and their expected tokens to the last bits."""
    import hashlib
    import shutil

    from dagster import AssetCheckSeverity, AssetKey, DagsterInstance

    from quadmix_assets.definitions import build_definitions

    from .conftest import make_settings

    settings = demo_run[0]
    storage = settings.storage()
    copy = tmp_path / "storage"
    shutil.copytree(settings.storage_root, copy)
    other = make_settings(settings.corpus_glob, copy)
    specs = [load_spec(storage, rel.split("/")[1])[0] for rel in storage.list("mixtures", "/scores.json")]
    keys = [s.mixture_id for s in specs if s.origin == "random_draw"][:2]
    keys += [s.mixture_id for s in specs if s.origin == "baseline"][:2]
    keys += [s.mixture_id for s in specs if not s.domain_aware][:1]
    monkeypatch.setenv("QUADMIX_FANIN_IN_MEMORY_ROWS", "0")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("mixtures", sorted(set(keys)))
    job = build_definitions(other).resolve_job_def("mixture_job")
    for key in sorted(set(keys)):
        res = job.execute_in_process(instance=instance, partition_key=key)
        evals = res.get_asset_check_evaluations()
        failed = [(c.check_name, c.metadata) for c in evals if not c.passed and c.severity == AssetCheckSeverity.ERROR]
        assert res.success and len(evals) == 2 and not failed, (key, failed)  # a WARN (a domain without tokens) may be
        md = instance.get_latest_materialization_event(AssetKey("mixture_manifest")).asset_materialization.metadata
        assert md["engine"].value == "duckdb (out of core)"
        sha = [hashlib.sha256(open(root.path(layout.mixture_manifest(key)), "rb").read()).hexdigest()
               for root in (storage, other.storage())]
        assert sha[0] == sha[1], key
        a, b = storage.read_json(layout.mixture_scores_card(key)), other.storage().read_json(layout.mixture_scores_card(key))
        assert (a["documents"], a["tokens"], a["shards"]) == (b["documents"], b["tokens"], b["shards"])
        assert b["expected_tokens"] == pytest.approx(a["expected_tokens"], rel=1e-12)
