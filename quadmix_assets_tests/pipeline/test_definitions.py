"""The structure of the asset graph, kept deliberate by a snapshot: keys, groups, partitions, deps,
jobs, sensors and schedules. Change the snapshot only together with the graph."""

from __future__ import annotations

from pathlib import Path

from quadmix_assets.definitions import build_definitions
from quadmix_assets.dagster_support.resources import QuadmixSettings

ALL_CRITERIA = ("dclm", "heuristic", "langid", "edu", "askllm")

EXPECTED_ASSETS = {
    # key: (group, partitions, upstream keys)
    "documents": ("corpus", "shards", set()),
    "domain_classifier": ("models", None, set()),
    "dclm_classifier": ("models", None, set()),
    "edu_teacher": ("models", None, set()),
    "edu_student": ("models", None, {"documents", "edu_teacher"}),
    "askllm_student": ("models", None, {"documents"}),
    "domain_labels": ("labels", "shards", {"documents", "domain_classifier"}),
    "quality_dclm": ("quality", "shards", {"documents", "dclm_classifier"}),
    "quality_heuristic": ("quality", "shards", {"documents"}),
    "quality_langid": ("quality", "shards", {"documents"}),
    "quality_edu": ("quality", "shards", {"documents", "edu_teacher", "edu_student"}),
    "quality_askllm": ("quality", "shards", {"documents", "askllm_student"}),
    "criteria_evaluation": (
        "quality",
        None,
        {"dclm_classifier", "edu_student", "askllm_student", *(f"quality_{c}" for c in ALL_CRITERIA)},
    ),
    "quality_normaliser": ("normalise", None, {"documents", *(f"quality_{c}" for c in ALL_CRITERIA)}),
    "mixture_configs": ("mixtures", None, {"domain_classifier"}),
    "mixture_scores": ("mixtures", "mixtures", {"mixture_configs", "quality_normaliser", "domain_labels", "documents"}),
    "mixture_manifest": ("mixtures", "mixtures", {"mixture_scores"}),
    "target_sets": ("proxies", None, {"documents"}),  # the corpus leak check reads the documents
    "proxy_tokenizer": ("proxies", None, {"documents"}),
    "proxy_run": ("proxies", "mixtures", {"mixture_manifest", "target_sets", "proxy_tokenizer"}),
    "proxy_noise": ("proxies", None, {"mixture_configs", "proxy_run"}),
    "mixture_regressor": ("optimisation", None, {"mixture_configs", "proxy_run", "proxy_noise"}),
    "mixture_rounds": ("optimisation", None, {"mixture_regressor", "mixture_configs"}),
    "mixture_search": ("optimisation", None, {"mixture_regressor", "mixture_configs"}),
    "mixture_export": ("export", "exports", {"mixture_manifest", "proxy_tokenizer"}),  # only promoted mixtures
}

EXPECTED_CHECKS = {
    # asset: {check name: (partitioned, blocking)}
    "documents": {"documents_valid": (True, False)},
    "domain_labels": {"domain_labels_aligned_and_in_range": (True, False)},
    **{f"quality_{c}": {f"quality_{c}_aligned_and_in_range": (True, False)} for c in ALL_CRITERIA},
    "criteria_evaluation": {"criterion_cards_sound": (False, False)},
    "quality_normaliser": {"normaliser_ranks_valid": (False, False), "normaliser_covers_corpus": (False, False)},
    "mixture_scores": {"mixture_covers_corpus": (True, False)},
    "mixture_manifest": {"mixture_manifest_valid": (True, False)},
    "proxy_run": {"proxy_loss_finite": (True, False)},
    "mixture_regressor": {"regressor_fit_quality": (False, True)},
    "mixture_export": {"mixture_export_complete": (True, False)},
}


def _defs(tmp_path):
    settings = QuadmixSettings.from_env(corpus_glob=str(tmp_path / "*.jsonl"), storage_root=str(tmp_path / "s"))
    return build_definitions(settings)


def test_asset_graph_snapshot(tmp_path):
    defs = _defs(tmp_path)
    graph = defs.resolve_asset_graph()
    actual = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        pdef = node.partitions_def
        actual[key.to_user_string()] = (
            node.group_name,
            getattr(pdef, "name", None),
            {p.to_user_string() for p in node.parent_keys},
        )
    assert actual == EXPECTED_ASSETS


def test_asset_checks_snapshot(tmp_path):
    defs = _defs(tmp_path)
    graph = defs.resolve_asset_graph()
    actual: dict[str, dict] = {}
    for key in graph.asset_check_keys:
        node = graph.get(key)
        spec = node.spec if hasattr(node, "spec") else node
        actual.setdefault(key.asset_key.to_user_string(), {})[key.name] = (
            getattr(spec, "partitions_def", None) is not None, bool(getattr(spec, "blocking", False))
        )
    assert actual == EXPECTED_CHECKS


def test_jobs_sensors_schedules(tmp_path):
    defs = _defs(tmp_path)
    repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs() if not j.name.startswith("__")} == {
        "models_job",
        "shard_fast_job",
        "distill_job",
        "shard_model_job",
        "shard_job",
        "refresh_job",
        "mixture_job",
        "proxy_setup_job",
        "proxy_job",
        "noise_job",
        "regressor_job",
        "rounds_job",
        "search_job",
        "export_job",
    }
    # one orchestrator runs by default, the loop; the shard and automation sensors are there to turn on
    assert sorted((s.name, s.default_status.value) for s in repo.sensor_defs) == [
        ("quadmix_automation_sensor", "STOPPED"),
        ("quadmix_loop", "RUNNING"),
        ("shard_sensor", "STOPPED"),
    ]
    # no schedule: the nightly refresh is the normaliser's and configs' automation condition (cron tick, stale)
    assert list(repo.schedule_defs) == []


EXPECTED_AUTOMATION = {
    # asset: automation condition label (dagster_support/conditions.py); every other asset has none: the models and
    # the optimisation loop are run deliberately
    "documents": "documents_code_changed",
    "domain_labels": "shard_attribute_current",
    **{f"quality_{c}": "shard_attribute_current" for c in ALL_CRITERIA},
    "criteria_evaluation": "criteria_current",
    "quality_normaliser": "refresh_when_stale",
    "mixture_configs": "refresh_when_stale",
    "mixture_scores": "mixture_scores_current",
    "mixture_manifest": "mixture_manifest_current",
}


def test_automation_conditions_snapshot(tmp_path):
    graph = _defs(tmp_path).resolve_asset_graph()
    actual = {}
    for key in graph.get_all_asset_keys():
        condition = graph.get(key).automation_condition
        if condition is not None:
            actual[key.to_user_string()] = condition.get_label()
    assert actual == EXPECTED_AUTOMATION


def test_code_location_loads_from_workspace_module():
    import importlib

    mod = importlib.import_module("quadmix_assets.definitions")
    assert mod.defs.resolve_asset_graph().get_all_asset_keys()


def test_workspace_yaml_validates_with_the_dagster_cli(tmp_path):
    """What `dagster dev -w workspace.yaml` loads: the code location validates with no errors."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(repo / "workspace.yaml")],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful for code location quadmix" in out.stdout + out.stderr


def test_dg_check_defs(tmp_path):
    """The `dg` project ([tool.dg] in pyproject.toml) loads: `dg check defs` passes, warning-free."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    dg = Path(sys.executable).parent / "dg"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    out = subprocess.run([str(dg), "check", "defs"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All definitions loaded successfully" in out.stdout + out.stderr
    assert not re.findall(r"(?:Preview|Beta|Supersession)Warning", out.stdout + out.stderr), out.stdout + out.stderr


def test_gpu_steps_use_the_gpu_pool(tmp_path):
    """GPU steps join the `gpu` concurrency pool through `pool=` (not the old concurrency-key tag)."""
    from quadmix_assets.dagster_support.k8s import requests_gpu

    graph = _defs(tmp_path).resolve_asset_graph()
    pools = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert "dagster/concurrency_key" not in (node.assets_def.op.tags or {}), key
        pools[key.to_user_string()] = (node.pools, requests_gpu(node.assets_def.op.tags or {}))
    gpu = {k for k, (_, g) in pools.items() if g}
    assert {"quality_edu", "quality_askllm", "edu_student", "askllm_student", "edu_teacher", "criteria_evaluation",
            "proxy_run"} <= gpu
    assert all(p == {"gpu"} for k, (p, _) in pools.items() if k in gpu), pools
    assert all(not p for k, (p, _) in pools.items() if k not in gpu), pools


def test_quadmix_commands_print_no_dagster_warnings(tmp_path):
    """`quadmix --help` and `quadmix lineage` (which loads the code location) print no Preview/Beta/
    Supersession warning, with Python's default warning filters on."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    code = "import quadmix_assets.definitions, sys; from quadmix_assets.cli import main; sys.exit(main())"
    for args in (["--help"], ["lineage", "draw-0001"]):
        out = subprocess.run([sys.executable, "-W", "default", "-c", code, *args], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=900)
        text = out.stdout + out.stderr
        assert "quadmix" in text, text
        assert not re.findall(r"(?:Preview|Beta|Supersession)Warning", text), text


def test_code_location_reads_its_settings_when_a_run_starts(tmp_path, monkeypatch):
    """Locally the code location binds the settings as EnvVar: a run sets the resource up with the
    environment of that moment (and the UI shows the variable), not with what was set when it loaded."""
    from dagster import build_resources

    monkeypatch.delenv("QUADMIX_DEPLOYMENT", raising=False)
    monkeypatch.setenv("QUADMIX_STORAGE", str(tmp_path / "at-load"))
    monkeypatch.setenv("QUADMIX_CONFIGS", "7")
    monkeypatch.delenv("QUADMIX_PRESET", raising=False)
    resource = build_definitions().resources["settings"]
    config = resource.get_resource_definition().config_schema.default_value
    assert config["storage_root"] == {"env": "QUADMIX_STORAGE"} and config["n_configs"] == {"env": "QUADMIX_CONFIGS"}
    assert "env" not in str(config["corpus_glob"])  # unset variables: the default, fixed at load

    monkeypatch.setenv("QUADMIX_STORAGE", str(tmp_path / "at-launch"))
    monkeypatch.setenv("QUADMIX_CONFIGS", "9")
    with build_resources({"settings": resource}) as resources:
        assert resources.settings.storage_root == str(tmp_path / "at-launch")
        assert resources.settings.n_configs == 9
        assert resources.settings.run_preset().n_configs == 9



def _job_selection(job) -> tuple[set[str], set[str]]:
    """The asset keys and the check keys one job runs."""
    from dagster import AssetCheckKey
    from dagster._core.definitions.dependency import NodeHandle

    layer = job.asset_layer
    checks = {
        k.to_user_string()
        for name in job.graph.node_dict
        for k in (layer.get_selected_entity_keys_for_node(NodeHandle(name, None)) or ())
        if isinstance(k, AssetCheckKey)
    }
    return {k.to_user_string() for k in layer.selected_asset_keys}, checks


def test_jobs_select_by_key(tmp_path):
    """The jobs name their assets by key (quadmix_assets.keys, the criterion registry) and run each selected
    asset's checks, except the regressor's blocking check in regressor_job."""
    from quadmix_assets.scoring.criteria import criteria, teacher_criteria

    defs = _defs(tmp_path)
    quality = {c.attribute for c in criteria()}
    fast = {c.attribute for c in criteria() if not c.accelerator}
    heavy = quality - fast
    attribute_checks = lambda names: {f"{n}:{n}_aligned_and_in_range" for n in names}  # noqa: E731
    shard_checks = {"documents:documents_valid", *attribute_checks({"domain_labels"})}
    expected = {
        "models_job": ({"domain_classifier", *(m for c in criteria() for m in c.models)}, set()),
        "shard_job": ({"documents", "domain_labels", *quality}, shard_checks | attribute_checks(quality)),
        "shard_fast_job": ({"documents", "domain_labels", *fast}, shard_checks | attribute_checks(fast)),
        "distill_job": ({c.student for c in teacher_criteria()}, set()),
        "shard_model_job": (heavy, attribute_checks(heavy)),
        "refresh_job": ({"quality_normaliser", "criteria_evaluation", "mixture_configs"},
                        {"quality_normaliser:normaliser_ranks_valid", "quality_normaliser:normaliser_covers_corpus",
                         "criteria_evaluation:criterion_cards_sound"}),
        "mixture_job": ({"mixture_scores", "mixture_manifest"},
                        {"mixture_scores:mixture_covers_corpus", "mixture_manifest:mixture_manifest_valid"}),
        "proxy_setup_job": ({"target_sets", "proxy_tokenizer"}, set()),
        "proxy_job": ({"proxy_run"}, {"proxy_run:proxy_loss_finite"}),
        "noise_job": ({"proxy_noise"}, set()),
        "regressor_job": ({"mixture_regressor"}, set()),
        "rounds_job": ({"mixture_rounds"}, set()),
        "search_job": ({"mixture_regressor", "mixture_search"}, {"mixture_regressor:regressor_fit_quality"}),
        "export_job": ({"mixture_export"}, {"mixture_export:mixture_export_complete"}),
    }
    actual = {name: _job_selection(defs.resolve_job_def(name)) for name in expected}
    assert actual == expected
    partitions = {name: getattr(defs.resolve_job_def(name).partitions_def, "name", None) for name in expected}
    assert partitions == {
        **dict.fromkeys(expected), "shard_job": "shards", "shard_fast_job": "shards", "shard_model_job": "shards",
        "mixture_job": "mixtures", "proxy_job": "mixtures", "export_job": "exports",
    }


def test_the_defs_folder_is_the_code_location(tmp_path):
    """The defs folder, loaded the way `dg` loads a project's defs module, holds every asset, check, job and
    sensor; the code location adds only the settings resource (and the executor)."""
    from dagster import load_from_defs_folder

    from quadmix_assets.definitions import folder_definitions

    folder = load_from_defs_folder(path_within_project=Path(__file__).resolve().parents[2])
    location = _defs(tmp_path)
    graph = location.resolve_asset_graph()
    loaded = [*(folder.assets or ()), *(folder.asset_checks or ())]
    assert {k for a in loaded for k in getattr(a, "keys", ())} == graph.get_all_asset_keys()
    assert {k for a in loaded for k in a.check_keys} == graph.asset_check_keys
    names = lambda d: ({j.name for j in d.jobs or ()}, {s.name for s in d.sensors or ()})  # noqa: E731
    assert names(folder) == names(folder_definitions()) == names(location)
    assert set(location.resources) == {"settings"}
