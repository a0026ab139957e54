"""The asset graph end to end on real shards: outputs, alignment, provenance, determinism."""

from __future__ import annotations

import numpy as np
from dagster import AssetKey, DagsterInstance

from quadmix_assets.method import QuadMixParams, draw_copies
from quadmix_assets.scoring.criteria import CRITERIA
from quadmix_assets.mixing.fanin import mixture_scores as computed_scores
from quadmix_assets.runner import run_pipeline
from quadmix_assets.storage import layout

from .conftest import make_settings


def test_run_materializes_every_stage(demo_run):
    settings, instance, summary, lines = demo_run
    assert summary.shards_ok == ["shard-00000", "shard-00001"], lines
    assert not summary.shards_failed and not summary.mixtures_failed, lines
    configs = settings.storage().read_json(layout.mixture_configs())["configs"]
    # K=4 drawn configs plus the baselines: random, english-random (langid's keep rule), each criterion alone,
    # the criteria mean (the test preset keeps every criterion in alpha)
    assert len(configs) == 4 + 2 + len(CRITERIA) + 1
    assert [c["name"] for c in configs if c["origin"] == "baseline"] == [
        "random", "english-random", *(f"{c}-only" for c in CRITERIA), "criteria-mean"]
    # ... and the search optimum, registered as one more mixture
    searched = settings.storage().read_json(layout.searched_configs())["configs"]
    assert sorted(summary.mixtures_ok) == sorted(c["mixture_id"] for c in configs + searched)
    for key in ("documents", "domain_labels", *(f"quality_{c}" for c in CRITERIA)):
        mats = instance.fetch_materializations(AssetKey(key), limit=10).records
        assert {m.partition_key for m in mats} == {"shard-00000", "shard-00001"}, key
    assert instance.get_latest_materialization_event(AssetKey("quality_normaliser")) is not None
    partitions = set(instance.get_dynamic_partitions("mixtures"))
    assert {c["mixture_id"] for c in configs} <= partitions


def test_attributes_align_with_documents(demo_run):
    settings, *_ = demo_run
    storage = settings.storage()
    for shard in ("shard-00000", "shard-00001"):
        n = storage.read_parquet(layout.documents(shard), columns=["id"]).num_rows
        assert n > 800
        for attr in ("domain", *(f"quality_{c}" for c in CRITERIA), "quality_ranks"):
            t = storage.read_parquet(layout.attribute(attr, shard))
            assert t.num_rows == n, attr
            assert "text" not in t.column_names, "attribute files must not copy the text"
        ranks = storage.read_parquet(layout.attribute("quality_ranks", shard))
        for col in ranks.column_names:
            v = ranks[col].to_numpy()
            assert np.all((v >= 0) & (v <= 1)) and not np.isnan(v).any()


def test_manifest_is_the_library_draw_and_records_provenance(demo_run):
    settings, *_ = demo_run
    storage = settings.storage()
    doc = storage.read_json(layout.mixture_configs())
    cfg = next(c for c in doc["configs"] if c["origin"] == "random_draw")
    params = QuadMixParams.from_dict(cfg["params"])
    # the key carries the name and the content id; the content id (the config's hash) seeds the draws
    assert params.config_id == cfg["content_id"] and cfg["mixture_id"] == f"{cfg['name']}-{params.config_id[:8]}"
    scores = computed_scores(storage, cfg["mixture_id"], CRITERIA)
    manifest = storage.read_parquet(layout.mixture_manifest(cfg["mixture_id"]))
    assert set(manifest.column_names) >= {"id", "shard", "row", "copies"}
    assert "text" not in manifest.column_names
    copies = draw_copies(scores["expected"].to_numpy(), scores["id_hash"].to_numpy(), f"{cfg['content_id']}:{doc['preset']['seed']}")
    np.testing.assert_array_equal(manifest["copies"].to_numpy(), copies[copies > 0])
    assert manifest["copies"].to_numpy().min() >= 1
    # rows point at the right documents
    docs = storage.read_parquet(layout.documents("shard-00001"), columns=["id"])["id"].to_pylist()
    m = manifest.filter(pq_filter_eq(manifest, "shard", "shard-00001"))
    assert all(docs[r] == i for r, i in zip(m["row"].to_pylist(), m["id"].to_pylist()))
    prov = storage.provenance(layout.mixture_manifest(cfg["mixture_id"]))
    assert prov["params"]["config_id"] == cfg["content_id"] and prov["params"]["mixture_id"] == cfg["mixture_id"]
    assert prov["inputs"]["mixture_scores"]["models"]["normaliser"]
    # the per-document scores are never stored; the card's sums are those of the scores computed again
    assert not storage.list("mixtures", "/scores.parquet")
    card = storage.read_json(layout.mixture_scores_card(cfg["mixture_id"]))
    assert card["shards"] == storage.read_json(layout.normaliser_card())["shards"]
    assert card["documents"] == scores.num_rows and card["tokens"] == int(np.sum(scores["n_tokens"].to_numpy()))
    per_domain = np.bincount(scores["domain"].to_numpy(), weights=scores["expected"].to_numpy() * scores["n_tokens"].to_numpy())
    got = np.array([d["expected_tokens"] for d in card["per_domain"]])[: per_domain.size]
    np.testing.assert_allclose(got, per_domain, rtol=1e-12)
    assert sum(d["documents"] for d in card["per_domain"]) == scores.num_rows
    assert prov["code_version"].startswith("quadmix==")


def pq_filter_eq(table, column, value):
    import pyarrow.compute as pc

    return pc.equal(table[column], value)


def test_baselines_keep_about_the_requested_share(demo_run):
    settings, *_ = demo_run
    storage = settings.storage()
    doc = storage.read_json(layout.mixture_configs())
    keep = doc["preset"]["baseline_keep_fraction"]
    for cfg in doc["configs"]:
        if cfg["origin"] != "baseline":
            continue
        card = storage.read_json(layout.mixture_scores_card(cfg["mixture_id"]))
        share = card["expected_tokens"] / card["tokens"]
        assert abs(share - keep) < 0.05, (cfg["name"], share)


def test_same_inputs_same_bytes(demo_run, tmp_path, two_shard_corpus):
    """A second run into a fresh storage root and instance writes byte-identical outputs, also when it runs
    every partition in its own process (``jobs=1``) where the first ran them in two worker processes."""
    settings, *_ = demo_run
    other = make_settings(str(two_shard_corpus / "*.jsonl.gz"), tmp_path / "storage")
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        summary = run_pipeline(other, instance, log=lambda s: None, jobs=1)
    assert summary.ok
    a, b = settings.storage(), other.storage()
    rels = a.list("", ".parquet")
    assert len(rels) > 20
    for rel in rels:
        assert a.read_bytes(rel) == b.read_bytes(rel), rel
    assert a.read_bytes(layout.model_file("domain_classifier")) == b.read_bytes(layout.model_file("domain_classifier"))
    # the optimisation half: proxy runs, the regressor, the search result, the export, tokenizer and targets
    others = [r for prefix in ("proxies/", "regressor/", "search/", "exports/", "targets/", "models/proxy_tokenizer/")
              for r in a.list(prefix) if not r.endswith(".parquet")] + [layout.searched_configs()]
    assert len(others) > 15
    for rel in others:
        assert a.read_bytes(rel) == b.read_bytes(rel), rel


def test_asset_checks_run_with_every_stage_and_pass(demo_run):
    settings, instance, summary, lines = demo_run
    # per shard: documents + one per attribute (domain + each criterion); normaliser: 2; per mixture: 2
    # (scores cover the corpus, manifest valid) and 1 for its proxy; regressor: 1; export: 1
    n_mixtures = len(summary.mixtures_ok)
    # the mixtures of a stage (configs, each search round, the optimum) are shared between the run's 2 workers,
    # one Dagster run over a range of partitions each; the checks run once per run and record each mixture's
    # own evaluation (test_mixture_checks.py)
    stages = [len(storage_configs(settings))] + rounds_sizes(settings) + [1]
    assert sum(stages) == n_mixtures, (stages, n_mixtures)
    # (+ 1: the criterion cards' check of criteria_evaluation)
    assert summary.checks_run == 2 * (2 + len(CRITERIA)) + 2 + 1 + 2 * n_mixtures + n_mixtures + 2, lines
    errors = [f for f in summary.checks_failed if f.endswith("ERROR")]
    assert not errors, errors


def storage_configs(settings) -> list[dict]:
    return settings.storage().read_json(layout.mixture_configs())["configs"]


def rounds_sizes(settings) -> list[int]:
    """Mixtures per search round after the first (registration order)."""
    from collections import Counter

    from quadmix_assets.mixing.store import all_spec_dicts, round_of

    counts = Counter(round_of(d) for d in all_spec_dicts(settings.storage()) if (round_of(d) or 0) >= 2)
    return [counts[r] for r in sorted(counts)]


def test_mixture_runs_cover_consecutive_partitions_shared_between_workers():
    from quadmix_assets.runner import partition_run_args, plan_runs

    ordered = [f"m{i}" for i in range(10)]
    # every worker gets a run; no run crosses a partition that is not to be done (m4 is current)
    assert plan_runs(ordered, ["m0", "m1", "m2", "m3", "m5", "m6"], size=256, workers=2) == [["m0", "m1", "m2"], ["m3"], ["m5", "m6"]]
    assert plan_runs(ordered, ordered, size=3, workers=2) == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6", "m7", "m8"], ["m9"]]
    assert plan_runs(ordered, ordered, size=256, workers=1) == [ordered]
    assert plan_runs(ordered, [], size=256, workers=2) == []
    assert plan_runs(ordered, ["m1", "unknown"], size=256, workers=1) == [["m1"], ["unknown"]]
    assert partition_run_args(["m3"]) == ("m3", {})
    assert partition_run_args(["m3", "m4", "m5"]) == (None, {"dagster/asset_partition_range_start": "m3",
                                                             "dagster/asset_partition_range_end": "m5"})
