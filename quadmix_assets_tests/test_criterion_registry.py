"""The criterion registry is the one place a criterion is defined: a toy criterion registered in the test
only (``toy_criterion.py``) reaches the asset graph, its checks, the criteria evaluation, the automation
conditions, the jobs and the runner's stages with no other edit; so does a toy criterion with a trained
scikit-learn model (``toy_model_criterion.py``: one module, one registry entry), whose model asset, options,
per-shard scores, normaliser column and mixture column are generated from the entry, whether it is
registered by ``register_criterion`` or comes from another package through the ``quadmix.criteria``
entry-point group."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from quadmix_assets import settings as env
from quadmix_assets.config import resolve_config
from quadmix_assets.scoring import criteria as registry
from quadmix_assets.scoring.criteria import Criterion, TeacherConfig, register_criterion, unregister_criterion
from quadmix_assets_tests import toy_model_criterion as toyfit
from quadmix_assets_tests.toy_criterion import NAME, TOY

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ("dclm", "heuristic", "langid", "edu", "askllm")


@pytest.fixture
def toy():
    """The toy criterion registered for one test, removed afterwards."""
    register_criterion(TOY)
    try:
        yield TOY
    finally:
        unregister_criterion(NAME)
    assert registry.CRITERIA == BUILTIN


def test_builtin_registry():
    assert registry.CRITERIA == BUILTIN
    assert [c.name for c in registry.teacher_criteria()] == ["edu", "askllm"]
    edu = registry.get_criterion("edu")
    assert edu.student == "edu_student" and edu.scorer_models == ("edu_student",) and edu.models == ("edu_teacher",)
    assert registry.get_criterion("dclm").scorer_models == ("dclm_classifier",)
    assert registry.get_criterion("edu").score_range == (0.0, 5.0)
    with pytest.raises(KeyError):
        registry.get_criterion("nope")


def test_register_and_remove(toy):
    assert registry.CRITERIA == (*BUILTIN, NAME)
    assert registry.get_criterion(NAME).attribute == "quality_toy" and registry.get_criterion(NAME).student is None
    with pytest.raises(ValueError):
        register_criterion(TOY)  # already registered
    with pytest.raises(ValueError):
        Criterion("both", "x", (0, 1), "v1")  # neither a scorer nor a teacher
    with pytest.raises(ValueError):
        Criterion("Bad-Name", "x", (0, 1), "v1", scorer=TOY.scorer)


def test_toy_scorer_runs(toy, tmp_path):
    from quadmix_assets.storage import StorageRoot

    score, versions = toy.make_scorer(None, StorageRoot(str(tmp_path)))
    assert list(score(["abc", "a1 2", ""]).values) == [1.0, 0.25, 0.0] and versions == {"toy": "letters-share-v1"}


def test_teacher_settings_are_typed_and_resolved_once():
    cfg = resolve_config("cpu", modes={"askllm": "direct"})
    assert cfg.teacher("edu") == TeacherConfig(mode="distill", sample=3200)
    assert cfg.teacher("askllm") == TeacherConfig(mode="direct", sample=384)
    assert resolve_config("paper").teacher("edu").mode == "direct"
    with pytest.raises(ValueError):
        resolve_config("cpu", modes={"edu": "sometimes"})
    with pytest.raises(ValueError):
        resolve_config("cpu", modes={"heuristic": "direct"})  # not a teacher criterion
    with pytest.raises(KeyError):
        cfg.teacher("dclm")


def test_builtin_models_and_options_come_from_the_registry():
    assert [m.name for m in registry.model_specs()] == ["dclm_classifier", "edu_teacher"]
    assert registry.get_criterion("edu").option_names == ("mode", "sample", "model", "encoder", "labels", "train_docs", "max_length")
    # the old flat names are aliases of (criterion, option)
    assert registry.option_alias("edu_mode") == ("edu", "mode") and registry.option_alias("dclm_model") == ("dclm", "model")
    assert registry.option_alias("dclm_model", preset_only=True) is None  # a setting, not a preset value
    assert registry.option_alias("domain_model") is None  # not a criterion
    cfg = resolve_config("test", {"dclm_epochs": 7}, options={"edu": {"encoder": "/x", "sample": "9"}})
    assert cfg.criterion("dclm") == {"model": None, "epochs": 7} and cfg.preset.dclm_epochs == 7
    assert cfg.criterion("edu")["encoder"] == "/x" and cfg.teacher("edu").sample == 9  # text converted by the option
    with pytest.raises(ValueError):
        resolve_config("test", options={"edu": {"no_such_option": 1}})
    with pytest.raises(ValueError):
        resolve_config("test", options={"nope": {"model": "x"}})


def test_settings_aliases_and_the_criteria_mapping_agree(tmp_path):
    from quadmix_assets.dagster_support.resources import QuadmixSettings

    def settings(**kw):
        return QuadmixSettings.from_env(corpus_glob=str(tmp_path / "*.jsonl"), storage_root=str(tmp_path), preset="test", **kw)

    old = settings(edu_mode="direct", dclm_model="/m.bin", askllm_gguf_file="f.gguf")
    new = settings(criteria={"edu": {"mode": "direct"}, "dclm": {"model": "/m.bin"}, "askllm": {"gguf_file": "f.gguf"}})
    assert old.config() == new.config() and new.config().teacher("edu").mode == "direct"
    with pytest.raises(ValueError):
        settings(edu_mode="direct", criteria={"edu": {"mode": "distill"}}).config()


def test_toy_model_criterion_in_one_module(tmp_path):
    """The model criterion's builder and scorer, in process: fitted on `docs` documents, or imported."""
    from quadmix_assets.dagster_support.resources import QuadmixSettings
    from quadmix_assets.storage import StorageRoot, layout

    register_criterion(toyfit.TOYFIT)
    try:
        assert registry.CRITERIA == (*BUILTIN, toyfit.NAME)
        assert [m.name for m in registry.model_specs()][-1] == toyfit.MODEL
        assert toyfit.TOYFIT.models == (toyfit.MODEL,) and toyfit.TOYFIT.scorer_models == (toyfit.MODEL,)
        s = QuadmixSettings.from_env(corpus_glob=str(tmp_path / "*.jsonl"), storage_root=str(tmp_path / "s"), preset="test",
                                     criteria={toyfit.NAME: {"docs": "12"}})
        assert s.run_preset().toyfit_docs == 40 and s.run_preset().to_dict()["toyfit_docs"] == 40  # the registry default
        assert s.config().criterion(toyfit.NAME) == {"docs": 12, "model": None}
        storage = StorageRoot(str(tmp_path / "s"))
        built = toyfit.TOYFIT.model_specs[0].build(s, storage)
        assert built.metadata["n_train"] == 12
        score, versions = toyfit.TOYFIT.make_scorer(s, storage)
        values = score(["A plain sentence about law.", "x1 2 3"]).values
        assert values.shape == (2,) and ((values >= 0) & (values <= 5)).all()
        assert versions == {toyfit.MODEL: built.metadata["model_version"]}
        # imported instead of fitted: the `model` option (a setting)
        card = storage.read_json(layout.model_card(toyfit.MODEL))
        (tmp_path / "m.json").write_text(json.dumps({"coef": card["coef"], "intercept": card["intercept"]}))
        s2 = QuadmixSettings.from_env(corpus_glob=str(tmp_path / "*.jsonl"), storage_root=str(tmp_path / "s2"), preset="test",
                                      criteria={toyfit.NAME: {"model": str(tmp_path / "m.json")}})
        assert toyfit.TOYFIT.model_specs[0].build(s2, StorageRoot(str(tmp_path / "s2"))).metadata["model_version"] == versions[toyfit.MODEL]
    finally:
        unregister_criterion(toyfit.NAME)
    assert registry.CRITERIA == BUILTIN


def test_entry_point_criteria_are_loaded(monkeypatch):
    """Criteria from other installed packages: the `quadmix.criteria` entry points, by name order."""
    import importlib.metadata as md

    eps = [md.EntryPoint("toyfit", "quadmix_assets_tests.toy_model_criterion:TOYFIT", registry.ENTRY_POINT_GROUP),
           md.EntryPoint("a_toy", "quadmix_assets_tests.toy_criterion:TOY", registry.ENTRY_POINT_GROUP)]
    asked = []

    def entry_points(group=None):
        asked.append(group)
        return md.EntryPoints(eps) if group == registry.ENTRY_POINT_GROUP else md.EntryPoints([])

    monkeypatch.setattr(md, "entry_points", entry_points)
    try:
        assert registry.load_entry_points() == [NAME, toyfit.NAME]  # by entry-point name: a_toy, toyfit
        assert registry.CRITERIA == (*BUILTIN, NAME, toyfit.NAME) and asked == [registry.ENTRY_POINT_GROUP]
        assert registry.load_entry_points() == []  # already registered
    finally:
        for name in (NAME, toyfit.NAME):
            if name in registry.REGISTRY:
                unregister_criterion(name)
    eps[:] = [md.EntryPoint("broken", "quadmix_assets_tests.no_such_module:X", registry.ENTRY_POINT_GROUP)]
    with pytest.raises(ImportError, match="broken"):
        registry.load_entry_points()
    eps[:] = [md.EntryPoint("wrong", "quadmix_assets_tests.toy_criterion:NAME", registry.ENTRY_POINT_GROUP)]
    with pytest.raises(TypeError, match="wrong"):
        registry.load_entry_points()
    assert registry.CRITERIA == BUILTIN


def _entry_point_dist(tmp_path: Path) -> Path:
    """A package installed only on a path: its dist-info registers toyfit in the quadmix.criteria group."""
    site = tmp_path / "site"
    info = site / "quadmix_toyfit-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quadmix-toyfit\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\ntoyfit = quadmix_assets_tests.toy_model_criterion:TOYFIT\n")
    return site


def _small_corpus(tmp_path: Path, n: int = 120) -> str:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    src = Path(env.data_dir()) / "corpus" / "webtext" / "shard-00000.jsonl.gz"
    with gzip.open(src, "rt") as f:
        lines = [next(f) for _ in range(n)]
    (corpus / "small.jsonl").write_text("".join(lines))
    return str(corpus / "*.jsonl")


def _run_toy(tmp_path: Path, *flags: str, site: Path | None = None) -> dict:
    out = tmp_path / "toy.json"
    path = [str(ROOT), *([str(site)] if site else []), os.environ.get("PYTHONPATH", "")]
    environ = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(path)}
    res = subprocess.run(
        [sys.executable, "-W", "default", "-m", "quadmix_assets_tests.toy_criterion", str(out), _small_corpus(tmp_path),
         str(tmp_path / "storage"), *flags],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # loading the code location and materializing print no Preview/Beta/Supersession warning (defs/__init__.py
    # silences the two deliberate ones by their exact message)
    assert not re.findall(r"\w+ (?:Preview|Beta|Supersession)Warning: .*", res.stderr), res.stderr[-3000:]
    return json.loads(out.read_text())


def test_toy_criterion_reaches_graph_checks_conditions_jobs_and_runner(tmp_path):
    got = _run_toy(tmp_path)
    assert got["criteria"] == [*BUILTIN, toyfit.NAME, NAME]
    assert "quality_toy" in got["assets"]
    assert got["toy_group"] == "quality" and got["toy_parents"] == ["documents"]
    assert got["toy_checks"] == ["quality_toy_aligned_and_in_range"]
    assert got["toy_condition"] == "shard_attribute_current"
    assert "quality_toy" in got["evaluation_parents"] and "quality_toy" in got["normaliser_parents"]
    # the runner runs shard_fast_job per shard: the toy (no GPU, no teacher) is scored there
    assert got["jobs_with_toy"] == ["shard_fast_job", "shard_job"]
    assert got["runner_students"] == [["edu", "edu_student"], ["askllm", "askllm_student"]]
    # its scoring asset materialized for one shard, aligned and in range, its check run and passed
    assert got["materialized"] and got["toy_check_passed"] == [True]
    assert got["toy_rows"] == got["toy_documents"] == 120
    assert got["toy_row_count_metadata"] == [120]  # Dagster's standard table metadata
    assert 0.0 <= got["toy_score_range"][0] <= got["toy_score_range"][1] <= 1.0
    assert got["toy_provenance_models"] == {"toy": "letters-share-v1"}
    _check_toyfit(got)


def _check_toyfit(got: dict) -> None:
    """The toy criterion with a model: its model asset and scores generated, built, scored, and ranked."""
    assert {"toyfit_model", "quality_toyfit"} <= set(got["assets"])
    assert got["toyfit_model_group"] == "models" and got["toyfit_model_kinds"] == ["sklearn"]
    assert got["toyfit_parents"] == ["documents", "toyfit_model"]
    assert got["toyfit_checks"] == ["quality_toyfit_aligned_and_in_range"]
    assert "models_job" in got["jobs_with_toyfit_model"]
    assert "quality_toyfit" in got["normaliser_parents"] and "quality_toyfit" in got["evaluation_parents"]
    # its option, set through the settings' per-criterion mapping, and its default recorded with the preset
    assert got["toyfit_options"] == {"docs": 30, "model": None} and got["preset_dict_toyfit_docs"] == 40
    assert got["models_materialized"] and got["toyfit_model_metadata"][0]["n_train"] == 30
    assert got["toyfit_model_metadata"][0]["dagster/uri"].endswith("models/toyfit_model/model.json")
    assert got["toyfit_rows"] == 120 and got["toyfit_check_passed"] == [True]
    assert 0.0 <= got["toyfit_score_range"][0] <= got["toyfit_score_range"][1] <= 5.0
    assert set(got["toyfit_provenance_models"]) == {"toyfit_model"}


def test_plain_registry_with_toy_runs_the_criteria_evaluation(tmp_path):
    """Only plain criteria (no built-in model to train): the evaluation scores the human votes with the toys
    too; the toy with a model comes from another "package", through the quadmix.criteria entry-point group
    (a dist-info on the path); the normaliser ranks both toys and the mixtures draw a column for each."""
    got = _run_toy(tmp_path, "--plain-only", "--entry-point", site=_entry_point_dist(tmp_path))
    assert got["criteria"] == ["heuristic", "langid", toyfit.NAME, NAME]
    assert not {"quality_dclm", "quality_edu", "edu_student", "askllm_student", "dclm_classifier", "edu_teacher"} & set(got["assets"])
    assert got["runner_students"] == [] and got["jobs_with_toy"] == ["shard_fast_job", "shard_job"]
    assert got["evaluation_ok"] and set(got["evaluation_roc_auc"]) == {"heuristic", "langid", toyfit.NAME, NAME}
    assert 0.0 <= got["evaluation_roc_auc"][NAME] <= 1.0
    assert got["evaluation_spearman"] == ["heuristic~langid", "heuristic~toy", "heuristic~toyfit", "langid~toy",
                                          "langid~toyfit", "toyfit~toy"]
    _check_toyfit(got)
    assert got["normaliser_and_configs_ok"] and got["normaliser_criteria"] == got["criteria"]
    assert got["rank_columns"] == [f"s_{c}" for c in got["criteria"]]
    assert got["mixture_space_criteria"] == got["criteria"] and got["drawn_alpha_width"] == [4]
    assert got["mixture_scores_ok"]
    # a criterion card for every registered criterion, the toy's included, and the cards' check ran
    assert got["cards"] == ["heuristic", "langid", toyfit.NAME, NAME]
    toy = got["toy_card"]
    assert toy["coverage"] == 1.0 and toy["documents"] == 120 and toy["roc_auc_human"] == got["evaluation_roc_auc"][NAME]
    assert toy["edu_prompt"]["n"] == 150 and -1 <= toy["edu_prompt"]["spearman"] <= 1
    assert not toy["verdict"]["lean_judged"] and "30 documents" in toy["verdict"]["why_not_judged"]  # 120 docs: too few
    assert got["cards_check"] == [["criterion_cards_sound", True, "WARN"]]
    assert {"criterion_cards", "card_toy", "card_warnings"} <= set(got["cards_metadata"])
