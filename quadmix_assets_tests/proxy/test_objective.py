"""The user's objective and judge (quadmix_assets.proxy.objective): sources, roles, weights, validation, leaks."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quadmix_assets.proxy.objective import (
    MIN_EXAMPLES,
    ObjectiveError,
    TargetSource,
    corpus_leaks,
    drop_duplicates,
    load_source,
    normalise_text,
    parse_flag,
    parse_sources,
    plan,
    validate_set,
    weighted_mean,
)
from quadmix_assets.proxy.runs import card_objective, objective_loss
from quadmix_assets.proxy.targets import load_target_sets, target_table

DATA = Path(os.environ.get("QUADMIX_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))


def _jsonl(path: Path, texts, field="text", gz=False) -> Path:
    body = "".join(json.dumps({field: t}) + "\n" for t in texts)
    if gz:
        path.write_bytes(gzip.compress(body.encode()))
    else:
        path.write_text(body)
    return path


def test_weighted_mean_and_equal_weights_are_the_plain_mean():
    losses = {"a": 3.1, "b": 2.7, "c": 4.05}
    assert weighted_mean(losses, {"a": 1.0, "b": 3.0}) == pytest.approx((3.1 + 3 * 2.7) / 4)
    # equal weights (and a list of names) give exactly the old objective, np.mean over the sets
    assert weighted_mean(losses, {"a": 2.0, "b": 2.0, "c": 2.0}) == float(np.mean([3.1, 2.7, 4.05]))
    assert objective_loss(losses, ["a", "c"]) == float(np.mean([3.1, 4.05]))
    assert card_objective({"objective_sets": ["a", "b"]}) == ["a", "b"]
    assert card_objective({"objective_sets": ["a", "b"], "objective_weights": {"a": 1, "b": 3}}) == {"a": 1.0, "b": 3.0}
    assert objective_loss(losses, card_objective({"objective_sets": ["a", "b"], "objective_weights": {"a": 1, "b": 3}})) \
        == pytest.approx(2.8)


def test_sources_are_checked():
    ok = parse_sources([{"path": "x/my-set.jsonl.gz", "weight": 2}, {"name": "winogrande"}], "objective")
    assert [s.set_name for s in ok] == ["my-set", "winogrande"] and ok[0].weight == 2.0
    for bad, why in (([{"path": "a.jsonl", "weight": 0}], "positive"), ([{"path": "a.jsonl", "weight": "x"}], "not a number"),
                     ([{"path": "a.csv"}], "neither JSONL"), ([{"path": "../a.jsonl"}], "'..'"),
                     ([{"weight": 1}], "give a path"), ([{"path": "a.jsonl"}, {"path": "b/a.jsonl"}], "named twice"),
                     ([{"path": "a.jsonl", "name": "../x"}], "set name"), ([{"path": "a.jsonl", "color": 1}], "unknown keys")):
        with pytest.raises(ObjectiveError, match=why):
            parse_sources(bad, "objective")
    assert parse_flag("s3://b/t.parquet@2.5") == {"weight": 2.5, "path": "s3://b/t.parquet"}
    assert parse_flag("winogrande") == {"name": "winogrande"}
    assert parse_flag("my@file.jsonl") == {"path": "my@file.jsonl"}


def test_roles_and_weights_of_a_plan():
    a, b, c = (TargetSource(path=f"{n}.jsonl", weight=w) for n, w in (("a", 1.0), ("b", 3.0), ("c", 1.0)))
    assert plan([], []) is None  # nothing given: the default
    p = plan([a, b], [b, c])
    assert p.roles == {"a": "objective", "b": "both", "c": "judge"}
    assert p.objective == {"a": 1.0, "b": 3.0} and p.judge == {"b": 3.0, "c": 1.0}
    p = plan([a, b], [])  # no judge: the objective's sets, split
    assert p.roles == {"a": "both", "b": "both"} and p.judge == {"a": 1.0, "b": 3.0} and p.bundled == []
    p = plan([], [c, TargetSource(name="copa")])  # judge only: the default objective and every bundled set stay
    assert p.roles == {"c": "judge", "copa": "both"} and p.bundled is None


def test_halves_follow_the_roles():
    from quadmix_assets.proxy.targets import TargetExample, TargetSet

    sets = {n: TargetSet(name=n, examples=[TargetExample(text=f"{n} {i}") for i in range(40)]) for n in ("a", "b", "c")}
    t = target_table(sets, {"a": "objective", "b": "both", "c": "judge"})
    half = {n: set(h for s, h in zip(t["set"].to_pylist(), t["half"].to_pylist()) if s == n) for n in sets}
    assert half["a"] == {"target"} and half["c"] == {"heldout"} and half["b"] == {"target", "heldout"}
    assert target_table(sets).equals(target_table(sets, {}))  # the default: every set split


@pytest.mark.skipif(not (DATA / "targets").is_dir(), reason="no reference data")
def test_default_target_table_is_unchanged():
    """The bundled default's table: roles absent give the sha256 split of before (same rows, same halves)."""
    from quadmix_assets.proxy.targets import _heldout

    sets = load_target_sets(DATA, names=["copa", "winogrande"])
    t = target_table(sets)
    expect = ["heldout" if _heldout(s, i, x) else "target" for s, i, x in
              zip(t["set"].to_pylist(), t["index"].to_pylist(), t["text"].to_pylist())]
    assert t["half"].to_pylist() == expect


def test_files_load_validate_and_deduplicate(tmp_path):
    texts = [f"example number {i} about cooking" for i in range(30)]
    src = TargetSource(path=str(_jsonl(tmp_path / "mine.jsonl.gz", texts + texts[:5] + ["", "  "], gz=True)))
    ts, dropped = drop_duplicates(load_source(src))
    assert len(ts) == 30 and dropped == 5 and ts.name == "mine"
    table = pa.table({"body": texts[:10]})
    pq.write_table(table, tmp_path / "small.parquet")
    small = load_source(TargetSource(path=str(tmp_path / "small.parquet"), text_field="body"))
    assert len(small) == 10
    with pytest.raises(ObjectiveError, match="too small"):
        validate_set(small, "judge", {"heldout": 10})
    validate_set(ts, "objective", {"target": 30})
    with pytest.raises(ObjectiveError, match="each half"):
        validate_set(ts, "both", {"target": 20, "heldout": MIN_EXAMPLES - 1})
    with pytest.raises(ObjectiveError, match="does not exist"):
        load_source(TargetSource(path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ObjectiveError, match="no column 'text'"):
        load_source(TargetSource(path=str(tmp_path / "small.parquet")))
    with pytest.raises(ObjectiveError, match="no field 'body'"):
        load_source(TargetSource(path=str(tmp_path / "mine.jsonl.gz"), text_field="body"))
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ObjectiveError, match="not JSON"):
        load_source(TargetSource(path=str(tmp_path / "bad.jsonl")))
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ObjectiveError, match="folder|exist"):
        load_source(TargetSource(path=str(tmp_path / "dir.jsonl")))


def test_leaks_are_long_ngram_overlaps():
    doc = ("Some page text. The Quick brown fox, jumps over the lazy dog near the old river bank today; "
           "and then some more words follow here.")
    sets = {"s": ["the quick brown fox jumps over the lazy dog near the old river bank",  # 14 words, 13-gram in doc
                  "the quick brown fox jumps over the lazy cat near the old river bank",  # one word differs
                  "jumps over the lazy dog near the old",  # 8 words, whole text in doc
                  "the lazy dog",  # too short to check
                  "nothing like this appears anywhere in that document at all really"]}
    assert corpus_leaks(sets, [doc, "unrelated"])["s"].tolist() == [True, False, True, False, False]
    assert corpus_leaks(sets, ["unrelated"])["s"].tolist() == [False] * 5
    # a 13-gram split across two documents is no leak (the documents are hashed end to end in batches)
    halves = ["the quick brown fox jumps over the", "lazy dog near the old river bank"]
    assert corpus_leaks({"s": sets["s"][:1]}, halves)["s"].tolist() == [False]
    assert corpus_leaks(sets, ["unrelated", doc, "more"], batch_docs=1)["s"].tolist() == [True, False, True, False, False]
    assert corpus_leaks({"s": sets["s"][:1]}, [" ".join(halves)])["s"].tolist() == [True]
    assert normalise_text("  Ünïcode—TEXT,  here!") == "ünïcode text here"


def test_cluster_refuses_target_files_outside_the_data_folder(tmp_path):
    from quadmix_assets import settings as env

    e = {"QUADMIX_DEPLOYMENT": "cluster"}
    env.check_target_location(str(tmp_path / "data" / "t.jsonl"), str(tmp_path / "data"), e)
    with pytest.raises(env.LocationPolicyError, match="refused"):
        env.check_target_location("/etc/passwd.jsonl", str(tmp_path / "data"), e)
    with pytest.raises(env.LocationPolicyError, match="'..'"):
        env.check_target_location(str(tmp_path / "data" / ".." / "t.jsonl"), str(tmp_path / "data"), {})
    env.check_target_location("/anywhere/t.jsonl", str(tmp_path / "data"), {})  # local: the user's own machine


def test_the_cli_refuses_a_bad_objective_before_running(tmp_path, monkeypatch, capsys):
    from quadmix_assets import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    base = ["run", "--storage", str(tmp_path / "s"), "--dagster-home", str(tmp_path / "home"), "--preset", "test"]
    assert cli.main([*base, "--objective", str(tmp_path / "missing.jsonl")]) == 1
    assert "missing.jsonl' (missing) does not exist" in capsys.readouterr().err
    assert cli.main([*base, "--objective", f"{_jsonl(tmp_path / 'a.jsonl', ['x'])}@-1"]) == 1
    assert "weight must be a positive finite number" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing ran, nothing written


def test_objective_and_judge_reach_the_ui_and_submitted_runs():
    """`quadmix run` hands its objective and judge to `quadmix ui` / `--submit` as JSON variables, read back
    when the code location loads; an unset objective leaves the settings hash of a default run alone."""
    from quadmix_assets.dagster_support.resources import QuadmixSettings, launch_environment, read_targets_from_env
    from quadmix_assets.resume import settings_fingerprint

    kw = dict(corpus_glob="/c/*.jsonl", storage_root="/s", data_dir="/d", preset="test")
    s = QuadmixSettings.from_env(**kw, objective=[{"path": "/t/a.jsonl", "weight": 2}], judge=[{"name": "copa"}])
    env = launch_environment(s)
    assert json.loads(env["QUADMIX_OBJECTIVE"]) == [{"path": "/t/a.jsonl", "weight": 2.0, "name": None, "text_field": "text"}]
    back = QuadmixSettings.from_env(**kw, **read_targets_from_env(env))
    assert back.target_sources() == s.target_sources()
    default = QuadmixSettings.from_env(**kw)
    assert "QUADMIX_OBJECTIVE" not in launch_environment(default)
    assert settings_fingerprint(default) == settings_fingerprint(QuadmixSettings.from_env(**kw, objective=[]))
    assert settings_fingerprint(back) != settings_fingerprint(default)
