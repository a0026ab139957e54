"""The criterion registry is the one place a criterion is defined: a toy criterion registered in the test
only (``toy_criterion.py``) reaches the asset graph, its checks, the criteria evaluation, the automation
conditions, the jobs and the runner's stages with no other edit."""

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
    assert cfg.teacher("edu") == TeacherConfig(mode="distill", sample=800)
    assert cfg.teacher("askllm") == TeacherConfig(mode="direct", sample=384)
    assert resolve_config("paper").teacher("edu").mode == "direct"
    with pytest.raises(ValueError):
        resolve_config("cpu", modes={"edu": "sometimes"})
    with pytest.raises(ValueError):
        resolve_config("cpu", modes={"heuristic": "direct"})  # not a teacher criterion
    with pytest.raises(KeyError):
        cfg.teacher("dclm")


def _small_corpus(tmp_path: Path, n: int = 120) -> str:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    src = Path(env.data_dir()) / "corpus" / "webtext" / "shard-00000.jsonl.gz"
    with gzip.open(src, "rt") as f:
        lines = [next(f) for _ in range(n)]
    (corpus / "small.jsonl").write_text("".join(lines))
    return str(corpus / "*.jsonl")


def _run_toy(tmp_path: Path, *flags: str) -> dict:
    out = tmp_path / "toy.json"
    environ = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
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
    assert got["criteria"] == [*BUILTIN, NAME]
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


def test_plain_registry_with_toy_runs_the_criteria_evaluation(tmp_path):
    """Only plain criteria (nothing to train): the evaluation scores the human votes with the toy too."""
    got = _run_toy(tmp_path, "--plain-only")
    assert got["criteria"] == ["heuristic", "langid", NAME]
    assert not {"quality_dclm", "quality_edu", "edu_student", "askllm_student"} & set(got["assets"])
    assert got["runner_students"] == [] and got["jobs_with_toy"] == ["shard_fast_job", "shard_job"]
    assert got["evaluation_ok"] and set(got["evaluation_roc_auc"]) == {"heuristic", "langid", NAME}
    assert 0.0 <= got["evaluation_roc_auc"][NAME] <= 1.0
    assert got["evaluation_spearman"] == ["heuristic~langid", "heuristic~toy", "langid~toy"]
    # a criterion card for every registered criterion, the toy's included, and the cards' check ran
    assert got["cards"] == ["heuristic", "langid", NAME]
    toy = got["toy_card"]
    assert toy["coverage"] == 1.0 and toy["documents"] == 120 and toy["roc_auc_human"] == got["evaluation_roc_auc"][NAME]
    assert toy["edu_prompt"]["n"] == 150 and -1 <= toy["edu_prompt"]["spearman"] <= 1
    assert not toy["verdict"]["lean_judged"] and "30 documents" in toy["verdict"]["why_not_judged"]  # 120 docs: too few
    assert got["cards_check"] == [["criterion_cards_sound", True, "WARN"]]
    assert {"criterion_cards", "card_toy", "card_warnings"} <= set(got["cards_metadata"])
