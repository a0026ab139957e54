"""Proxies on every mixture, the regressor, the search and the export, on the shared small real run."""

from __future__ import annotations

import shutil

import numpy as np
from dagster import AssetKey, DagsterInstance

from quadmix_assets.definitions import build_definitions
from quadmix_assets.mixing.store import searched_specs, training_entries
from quadmix_assets.proxy.optimise import best_measured, training_set
from quadmix_assets.proxy.surrogate import Surrogate
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
        assert run["sampler"]["version"] == "windows-v1" and run["sampler"]["documents_read"] > 0
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


def test_noise_ceiling_is_measured_on_a_second_seed(demo_run):
    settings, instance, summary, _ = demo_run
    storage = settings.storage()
    noise = storage.read_json(layout.proxy_noise())
    preset = settings.run_preset()
    assert noise["n"] == len(noise["mixture_ids"]) == min(preset.noise_repeats, preset.n_configs)
    assert noise["seeds"][0] != noise["seeds"][1]
    for key in noise["mixture_ids"]:
        rep = storage.read_json(layout.proxy_repeat(key, 1))
        first = storage.read_json(layout.proxy_run(key))
        assert rep["repeat"] == 1 and rep["init_seed"] != first["init_seed"]
        assert rep["target_loss"] != first["target_loss"]  # another seed: another (noisy) loss
        assert noise["primary"][key] == first["target_loss"] and noise["repeat"][key] == rep["target_loss"]
    assert -1 <= noise["repeat_spearman"] <= 1
    md = instance.get_latest_materialization_event(AssetKey("proxy_noise")).asset_materialization.metadata
    assert md["repeat_spearman"].value == float(f"{noise['repeat_spearman']:.4g}")  # shown to 4 significant digits


def test_rounds_add_configs_the_regressor_learns_from(demo_run):
    settings, instance, summary, _ = demo_run
    storage = settings.storage()
    preset = settings.run_preset()
    rounds = [d for d in searched_specs(storage) if d["origin"] == "round"]
    assert len(rounds) == preset.round_size * (preset.search_rounds - 1)
    assert {d["round"] for d in rounds} == set(range(2, preset.search_rounds + 1))
    assert all(d["mixture_id"] in summary.proxies_ok for d in rounds)
    report = storage.read_json(layout.regressor_report())
    # the regressor learns from every round's configs, never from baselines or the optimum
    assert report["mixture_ids"] == [d["mixture_id"] for d in training_entries(storage)]
    assert summary.optimum not in report["mixture_ids"]
    assert report["points_per_round"] == {"1": preset.n_configs, **{str(r): preset.round_size for r in range(2, preset.search_rounds + 1)}}
    ts = training_set(storage)
    assert [s.mixture_id for s in ts.specs] == report["mixture_ids"]


def test_regressor_is_json_and_chosen_by_repeated_cv(demo_run):
    settings, instance, summary, _ = demo_run
    storage = settings.storage()
    sur = Surrogate.from_json(storage.read_bytes(layout.surrogate_model()).decode())
    report = storage.read_json(layout.regressor_report())
    assert report["chosen"] == f"{sur.model_name}/{sur.feature_set}" and len(report["candidates"]) >= 4
    assert report["candidates"][report["chosen"]]["cv_spearman"] == report["cv_spearman"]
    assert {"cv_spearman", "cv_spearman_sd", "cv_mae", "cv_mae_constant", "noise_ceiling", "gate"} <= set(report)
    md = instance.get_latest_materialization_event(AssetKey("mixture_regressor")).asset_materialization.metadata
    assert md["regressor_version"].value == report["regressor_version"]
    assert "noise_ceiling_repeat_spearman" in md and "candidates" in md


def test_search_registers_the_optimum_with_its_origin(demo_run):
    settings, instance, summary, _ = demo_run
    storage = settings.storage()
    searched = [d for d in searched_specs(storage) if d["origin"] == "search"]
    assert [d["mixture_id"] for d in searched] == [summary.optimum]
    entry = searched[0]
    assert entry["found_by"]["regressor_version"] == storage.read_json(layout.regressor_report())["regressor_version"]
    assert entry["found_by"]["n"] == settings.run_preset().search_samples and entry["found_by"]["top_k"] == 10
    alpha = np.asarray(entry["params"]["alpha"])
    np.testing.assert_allclose(alpha.sum(1), 1.0)
    assert summary.optimum in instance.get_dynamic_partitions("mixtures")
    assert storage.exists(layout.mixture_manifest(summary.optimum))
    # the optimum got its own proxy, and its measured rank among every measured config is reported
    assert summary.optimum in summary.proxies_ok
    assert summary.optimum_rank["of"] == len(storage.read_json(layout.regressor_report())["mixture_ids"]) + 1


def test_a_proxy_trained_again_in_another_grouping_gives_the_same_loss(demo_run, tmp_path):
    """Same inputs, same proxy loss bit for bit: one partition trained alone vs. in the runner's range."""
    settings, instance, summary, _ = demo_run
    shutil.copytree(settings.storage_root, tmp_path / "storage")
    copy = make_settings(settings.corpus_glob, tmp_path / "storage")
    storage = copy.storage()
    key = summary.mixtures_ok[2]
    before = storage.read_json(layout.proxy_run(key))
    inst = DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("mixtures", list(instance.get_dynamic_partitions("mixtures")))
    res = build_definitions(copy).resolve_job_def("proxy_job").execute_in_process(instance=inst, partition_key=key)
    assert res.success
    after = storage.read_json(layout.proxy_run(key))
    assert after["target_losses"] == before["target_losses"] and after["loss_curve"] == before["loss_curve"]


def test_export_of_the_optimum_is_complete(demo_run):
    settings, instance, summary, _ = demo_run
    storage = settings.storage()
    folder = layout.export_dir(summary.optimum)
    doc = storage.read_json(f"{folder}/manifest.json")
    manifest = storage.read_parquet(layout.mixture_manifest(summary.optimum))
    assert doc["occurrences"] == int(manifest["copies"].to_numpy().sum())
    # the export's own partition set holds only the promoted mixture (not every mixture at 0%)
    assert instance.get_dynamic_partitions("exports") == [summary.optimum]
    md = instance.get_latest_materialization_event(AssetKey("mixture_export")).asset_materialization.metadata
    assert summary.optimum in md["lineage"].value and "tokenizer" in md["lineage"].value
    assert doc["inputs"]["mixture_manifest"]["sha256"] == storage.file_sha256(layout.mixture_manifest(summary.optimum))
    assert doc["inputs"]["tokenizer"]["version"] == storage.read_json(layout.model_card("proxy_tokenizer"))["version"]
    tokens, index = read_tokenized(storage.path(folder))
    assert doc["format"] == "megatron-mmidx-v1" and doc["token_dtype"] == "uint16" and tokens.dtype.name == "uint16"
    assert index[-1] == len(tokens) == doc["tokens"]
    text = storage.read_parquet(f"{folder}/{doc['text_parts'][0]}")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(storage.path(layout.tokenizer_file()))
    first = tokens[index[0]:index[1]].tolist()
    assert tok.decode(first[:-1]) == text["text"][0].as_py()


def test_export_with_another_tokenizer_reads_back_in_megatron(demo_run, tmp_path):
    """The export asset with `export_tokenizer` set to a second Hugging Face tokenizer (the bundled MiniLM
    WordPiece): Megatron-Core's IndexedDataset reads tokens.bin + tokens.idx; counts match the manifests."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    settings, instance, summary, _ = demo_run
    shutil.copytree(settings.storage_root, tmp_path / "storage")
    other = make_settings(settings.corpus_glob, tmp_path / "storage", export_tokenizer="bundled:minilm")
    storage = other.storage()
    inst = DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("mixtures", list(instance.get_dynamic_partitions("mixtures")))
    inst.add_dynamic_partitions("exports", [summary.optimum])
    res = build_definitions(other).resolve_job_def("export_job").execute_in_process(instance=inst, partition_key=summary.optimum)
    assert res.success
    assert all(e.passed for e in res.get_asset_check_evaluations())
    folder = layout.export_dir(summary.optimum)
    doc = storage.read_json(f"{folder}/manifest.json")
    assert doc["inputs"]["tokenizer"]["source"] == "bundled:minilm" and doc["vocab_size"] == 30522
    ds = IndexedDataset(storage.path(f"{folder}/{doc['tokens_prefix']}"))
    manifest = storage.read_parquet(layout.mixture_manifest(summary.optimum))
    assert len(ds) == doc["occurrences"] == int(manifest["copies"].to_numpy().sum())
    assert int(ds.sequence_lengths.astype(np.int64).sum()) == doc["tokens"]
    assert all(int(ds[i][-1]) == doc["eos_id"] == 102 for i in range(0, len(ds), max(1, len(ds) // 50)))
    # the default export (proxy tokenizer) differs only in its tokens
    before = settings.storage().read_json(f"{folder}/manifest.json")
    assert before["occurrences"] == doc["occurrences"] and before["text_parts"] == doc["text_parts"]
    assert before["files"]["text/part-00000.parquet"] == doc["files"]["text/part-00000.parquet"]
    assert before["files"]["tokens.idx"] != doc["files"]["tokens.idx"]


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
    assert "below" in evaluations[0].metadata["reason"].value
    assert not any(m.asset_key == AssetKey("mixture_search") for m in result.get_asset_materialization_events())
    assert (tmp_path / "storage" / layout.searched_configs()).read_bytes() == before
    assert not instance.get_dynamic_partitions("mixtures")


def test_best_measured_export_is_labelled(demo_run, tmp_path):
    """When the regressor is not promoted the runner exports the best measured config, labelled."""
    from quadmix_assets.defs.export.export import SELECTED_AS_TAG

    settings, instance, summary, _ = demo_run
    shutil.copytree(settings.storage_root, tmp_path / "storage")
    copy = make_settings(settings.corpus_glob, tmp_path / "storage")
    storage = copy.storage()
    best, loss = best_measured(storage)
    ts = training_set(storage)
    assert loss == ts.y.min() and best == ts.specs[int(np.argmin(ts.y))].mixture_id
    inst = DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("mixtures", [best])
    inst.add_dynamic_partitions("exports", [best])
    label = f"best measured config (proxy loss {loss:.4g}); regressor not promoted: test"
    res = build_definitions(copy).resolve_job_def("export_job").execute_in_process(instance=inst, partition_key=best,
                                                                                    tags={SELECTED_AS_TAG: label})
    assert res.success
    doc = storage.read_json(f"{layout.export_dir(best)}/manifest.json")
    assert doc["selected_as"] == label


def test_diverged_proxy_runs_never_reach_the_regressor(demo_run, tmp_path):
    settings, *_ = demo_run
    shutil.copytree(settings.storage_root, tmp_path / "storage")
    storage = StorageRoot(str(tmp_path / "storage"))
    ts = training_set(storage)
    victim = ts.specs[0].mixture_id
    run = storage.read_json(layout.proxy_run(victim))
    run.update(status="diverged", target_loss=None)
    storage.write_json(layout.proxy_run(victim), run)
    ts2 = training_set(storage)
    assert victim not in {s.mixture_id for s in ts2.specs} and ts2.left_out["no_finished_proxy"] == 1
    assert len(ts2.specs) == len(ts.specs) - 1
