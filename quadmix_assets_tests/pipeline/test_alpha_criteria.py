"""A run whose alpha leaves a criterion out (docs/criteria.md, "Which criteria form alpha"): the criterion is
still scored and carded, its card and the run's output say why it is left out, and everything downstream
of the mixture configs (fan-in, regressor, rounds, search, export, data view) works on the recorded columns.
The test preset keeps every criterion; this run leaves askllm out through the settings (the same
``Preset.alpha_left_out`` the cpu preset sets), on one real shard with tiny transformers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance

from quadmix_assets.mixing import MixtureSpec
from quadmix_assets.mixing.store import all_spec_dicts
from quadmix_assets.reporting import data_view
from quadmix_assets.runner import run_pipeline
from quadmix_assets.storage import StorageRoot, layout
from quadmix_assets_tests.pipeline.conftest import CORPUS, make_settings

ALPHA = ["dclm", "heuristic", "langid", "edu"]


@pytest.fixture(scope="module")
def run_without_askllm(tmp_path_factory, tiny_transformers):
    root = tmp_path_factory.mktemp("alpha")
    (root / "corpus").mkdir()
    shutil.copy(CORPUS / "shard-00000.jsonl.gz", root / "corpus" / "shard-00000.jsonl.gz")
    settings = make_settings(str(root / "corpus" / "*.jsonl.gz"), root / "storage", alpha_criteria=",".join(ALPHA),
                             **tiny_transformers)
    (root / "home").mkdir()
    instance = DagsterInstance.local_temp(str(root / "home"))
    lines: list[str] = []
    summary = run_pipeline(settings, instance, log=lines.append, jobs=1)
    yield settings, instance, summary, lines
    instance.dispose()


def _md(instance, asset: str) -> dict:
    ev = instance.get_latest_materialization_event(AssetKey(asset))
    return {k: getattr(v, "value", v) for k, v in ev.asset_materialization.metadata.items()}


def test_the_space_has_no_askllm_column_and_the_run_exports(run_without_askllm):
    settings, instance, summary, lines = run_without_askllm
    assert summary.export and summary.ok, (summary.failure_lines(), lines[-20:])
    storage = StorageRoot(settings.storage_root)
    doc = storage.read_json(layout.mixture_configs())
    assert doc["space"]["criteria"] == ALPHA
    assert list(doc["space"]["left_out"]) == ["askllm"]
    assert doc["preset"]["alpha_left_out"] == doc["space"]["left_out"]
    assert "askllm-only" not in {d["name"] for d in doc["configs"]}
    specs = [MixtureSpec.from_dict(d) for d in all_spec_dicts(storage)]
    assert {s.origin for s in specs} >= {"random_draw", "baseline", "round", "search"}
    assert all(s.params.n_criteria == len(ALPHA) for s in specs)
    # still scored and ranked: the normaliser keeps every registered criterion
    assert "askllm" in storage.read_json(layout.normaliser_card())["criteria"]
    export = storage.read_json(f"{layout.export_dir(summary.optimum)}/manifest.json")
    assert np.asarray(export["params"]["alpha"]).shape[1] == len(ALPHA)
    # the data view of the export and of the left-out criterion
    view = data_view.mixture_samples(storage, summary.optimum, n=1)
    assert view["criteria"] == ALPHA and view["rows"]
    assert data_view.criterion_extremes(storage, "askllm", n=2)["rows"]


def test_show_optimum_says_what_was_exported(run_without_askllm, capsys):
    from quadmix_assets.cli import main

    settings, instance, summary, lines = run_without_askllm
    assert main(["show", "optimum", "--storage", settings.storage_root, "--n", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"optimum = the exported mixture {summary.optimum}, selected as {summary.selected_as}"), first


def test_the_reason_is_in_the_output_the_card_and_the_metadata(run_without_askllm):
    settings, instance, summary, lines = run_without_askllm
    why = "not named in the settings' alpha_criteria"
    assert f"[alpha] columns: {', '.join(ALPHA)}" in lines
    assert any(line.startswith("[alpha] askllm left out of alpha") and why in line for line in lines), lines
    md = _md(instance, "mixture_configs")
    assert md["alpha_criteria"] == ALPHA and md["criteria_left_out"] == {"askllm": why}
    assert "Left out of alpha" in md["alpha"] and why in md["alpha"]
    ev = _md(instance, "criteria_evaluation")
    assert ev["criteria_left_out"] == {"askllm": why} and ev["alpha_criteria"] == ALPHA
    assert f"**Left out of alpha**: {why}" in ev["card_askllm"]
    cards = StorageRoot(settings.storage_root).read_json(layout.criterion_cards())
    assert cards["cards"]["askllm"]["alpha"] == {"in_alpha": False, "left_out": why}
    assert cards["cards"]["edu"]["alpha"] == {"in_alpha": True, "left_out": None}
    # never silently: every unreliable column of alpha is a WARNING line naming it, in the run's output and the UI
    for name in cards["unreliable_in_alpha"]:
        assert any("WARNING" in line and f"{name} IS A COLUMN OF ALPHA" in line for line in lines), (name, lines)
        assert any(w.startswith(f"{name} IS A COLUMN OF ALPHA") for w in md["alpha_warnings"])
    assert set(cards["unreliable_in_alpha"]) <= set(ALPHA)
