"""Proxies on every mixture, the regressor, the search and the export, on the shared small real run."""

from __future__ import annotations

import json
import shutil

import numpy as np
from dagster import AssetKey, DagsterInstance

from quadmix_assets.definitions import build_definitions
from quadmix_assets.defs.regressor import training_points
from quadmix_assets.export import read_tokenized
from quadmix_assets.storage import StorageRoot, layout

from .conftest import make_settings


def test_every_mixture_has_a_finite_proxy_run(demo_run):
    settings, instance, summary, lines = demo_run
    storage = settings.storage()
    assert not summary.proxies_failed, lines
    assert sorted(summary.proxies_ok) == sorted(summary.mixtures_ok)
    card = storage.read_json(layout.target_card())
    tok = storage.read_json(layout.model_card("proxy_tokenizer"))
    for key in summary.mixtures_ok:
        run = storage.read_json(layout.proxy_run(key))
        assert run["status"] == "ok"
        assert set(run["target_losses"]) == set(card["sets"])
        assert all(np.isfinite(v) and 0 < v < 20 for v in run["target_losses"].values())
        assert run["target_loss"] == np.mean([run["target_losses"][s] for s in run["objective_sets"]])
        assert len(run["loss_curve"]) == run["proxy_config"]["steps"]
        assert run["tokenizer_version"] == tok["version"] and run["proxy_config"]["vocab_size"] == tok["vocab_size"]
        assert run["targets_version"] == card["version"]
    # the UI: every mixture partition has a proxy_run materialization and its own observation
    mats = instance.fetch_materializations(AssetKey("proxy_run"), limit=100).records
    assert {m.partition_key for m in mats} == set(summary.mixtures_ok)


def test_target_halves_are_disjoint_and_stored(demo_run):
    settings, *_ = demo_run
    t = settings.storage().read_parquet(layout.target_examples())
    halves = t["half"].to_pylist()
    assert set(halves) == {"target", "heldout"}
    keys = list(zip(t["set"].to_pylist(), t["index"].to_pylist()))
    assert len(set(keys)) == len(keys)
    assert 0.4 < halves.count("heldout") / len(halves) < 0.6


def test_regressor_is_text_format_and_reports_its_fit(demo_run):
    settings, instance, summary, _ = demo_run
    storage = settings.storage()
    text = storage.read_bytes(layout.regressor_model()).decode()
    assert text.startswith("tree") and "feature_names=" in text
    report = storage.read_json(layout.regressor_report())
    specs, y, left_out = training_points(storage)
    # fitted on the drawn configs (baselines left out); the optimum's own run joins at the next refit
    assert report["n_train"] + report["n_valid"] == settings.run_preset().n_configs == len(report["mixture_ids"])
    assert left_out["baseline"] == 7 and left_out["failed_proxy_run"] == 0
    assert [s.mixture_id for s in specs] == report["mixture_ids"] + [summary.optimum]
    assert {"spearman", "mae", "cv_spearman", "importance_gain"} <= set(report)
    md = instance.get_latest_materialization_event(AssetKey("mixture_regressor")).asset_materialization.metadata
    assert "data:image/png;base64," in md["predicted_vs_actual"].value
    assert md["regressor_version"].value == report["regressor_version"]


def test_search_registers_the_optimum_with_its_origin(demo_run):
    settings, instance, summary, _ = demo_run
    storage = settings.storage()
    searched = storage.read_json(layout.searched_configs())["configs"]
    assert [d["mixture_id"] for d in searched] == [summary.optimum]
    entry = searched[0]
    assert entry["origin"] == "search"
    assert entry["found_by"]["regressor_version"] == storage.read_json(layout.regressor_report())["regressor_version"]
    assert entry["found_by"]["n"] == settings.run_preset().search_samples and entry["found_by"]["top_k"] == 10
    alpha = np.asarray(entry["params"]["alpha"])
    np.testing.assert_allclose(alpha.sum(1), 1.0)
    assert summary.optimum in instance.get_dynamic_partitions("mixtures")
    assert storage.exists(layout.mixture_manifest(summary.optimum))


def test_export_of_the_optimum_is_complete(demo_run):
    settings, instance, summary, _ = demo_run
    storage = settings.storage()
    folder = layout.export_dir(summary.optimum)
    doc = storage.read_json(f"{folder}/manifest.json")
    manifest = storage.read_parquet(layout.mixture_manifest(summary.optimum))
    assert doc["occurrences"] == int(manifest["copies"].to_numpy().sum())
    assert doc["inputs"]["mixture_manifest"]["sha256"] == storage.file_sha256(layout.mixture_manifest(summary.optimum))
    assert doc["inputs"]["tokenizer"]["version"] == storage.read_json(layout.model_card("proxy_tokenizer"))["version"]
    tokens, index = read_tokenized(storage.path(folder), doc["token_dtype"])
    assert index[-1] == len(tokens) == doc["tokens"]
    text = storage.read_parquet(f"{folder}/{doc['text_parts'][0]}")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(storage.path(layout.tokenizer_file()))
    first = tokens[index[0]:index[1]].tolist()
    assert tok.decode(first[:-1]) == text["text"][0].as_py()


def test_blocking_check_refuses_a_weak_regressor(demo_run, tmp_path):
    """A floor the regressor cannot reach: the check fails and the search is not run or registered."""
    settings, *_ = demo_run
    shutil.copytree(settings.storage_root, tmp_path / "storage")
    strict = make_settings(settings.corpus_glob, tmp_path / "storage", regressor_min_spearman=1.01)
    before = (tmp_path / "storage" / layout.searched_configs()).read_bytes()
    instance = DagsterInstance.ephemeral()
    result = build_definitions(strict).resolve_job_def("search_job").execute_in_process(instance=instance, raise_on_error=False)
    evaluations = result.get_asset_check_evaluations()
    assert [e.check_name for e in evaluations] == ["regressor_fit_quality"] and not evaluations[0].passed
    assert not any(m.asset_key == AssetKey("mixture_search") for m in result.get_asset_materialization_events())
    assert (tmp_path / "storage" / layout.searched_configs()).read_bytes() == before
    assert not instance.get_dynamic_partitions("mixtures")


def test_diverged_proxy_runs_never_reach_the_regressor(demo_run, tmp_path):
    settings, *_ = demo_run
    shutil.copytree(settings.storage_root, tmp_path / "storage")
    storage = StorageRoot(str(tmp_path / "storage"))
    specs, y, _ = training_points(storage)
    victim = specs[0].mixture_id
    run = storage.read_json(layout.proxy_run(victim))
    run.update(status="diverged", target_loss=None)
    storage.write_json(layout.proxy_run(victim), run)
    specs2, y2, left_out = training_points(storage)
    assert victim not in {s.mixture_id for s in specs2} and left_out["failed_proxy_run"] == 1
    assert len(specs2) == len(specs) - 1
