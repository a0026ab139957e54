"""A user's objective and judge from files, through `quadmix run` (test preset, two real shards) and
`quadmix compare`: the weights, the duplicates and the corpus leaks show up where docs/objective.md says."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from quadmix_assets import cli
from quadmix_assets.storage import StorageRoot, layout

WORDS = ("river mountain orchard lantern copper harbor meadow violin glacier saffron thimble walnut "
         "compass ember falcon quartz tundra velvet").split()


def _sentences(rng, n, lo=12, hi=24):
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi)))) + "." for _ in range(n)]


def _corpus_sentences(corpus, n):
    """``n`` long passages copied from the corpus (they must be reported as leaks)."""
    out = []
    with gzip.open(sorted(corpus.glob("*.jsonl.gz"))[0], "rt") as fh:
        for line in fh:
            words = json.loads(line)["text"].split()
            if len(words) > 60:
                out.append(" ".join(words[20:45]))
            if len(out) == n:
                return out
    raise AssertionError("corpus too short")


def test_user_objective_and_judge_from_files(tmp_path, two_shard_corpus, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    mine = _sentences(rng, 60)
    leaked = _corpus_sentences(two_shard_corpus, 3)
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in mine + leaked + mine[:4]))
    judge_only = _sentences(rng, 24)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": judge_only}), tmp_path / "exam.parquet")
    (tmp_path / "targets.json").write_text(json.dumps({"judge": [{"path": str(tmp_path / "mine.jsonl"), "weight": 3},
                                                                 {"path": str(tmp_path / "exam.parquet"), "text_field": "body"}]}))
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    storage = tmp_path / "storage"
    code = cli.main(["run", "--corpus", str(two_shard_corpus / "*.jsonl.gz"), "--storage", str(storage),
                     "--dagster-home", str(home), "--preset", "test", "--jobs", "1",
                     "--objective", f"{tmp_path / 'mine.jsonl'}@3", "--objective", "copa",
                     "--targets", str(tmp_path / "targets.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[targets] objective (weighted mean loss): copa x1, mine x3; judge: exam x1, mine x3" in out
    assert "[targets] exact duplicates dropped per set: {'mine': 4}" in out
    assert "[targets] WARNING target examples also in the corpus" in out and "'mine': 3" in out

    st = StorageRoot(str(storage))
    card = st.read_json(layout.target_card())
    assert card["objective_weights"] == {"copa": 1.0, "mine": 3.0}
    assert card["judge_weights"] == {"exam": 1.0, "mine": 3.0}
    assert card["sets"]["mine"]["role"] == "both" and card["sets"]["copa"]["role"] == "objective"
    assert card["sets"]["exam"]["role"] == "judge" and card["sets"]["exam"]["target"] == 0
    assert card["sets"]["copa"]["heldout"] == 0 and card["sets"]["mine"]["duplicates_dropped"] == 4
    assert card["sets"]["mine"]["corpus_leaks"] == 3 and card["sets"]["exam"]["corpus_leaks"] == 0
    assert set(card["sets"]) == {"copa", "mine", "exam"}  # no bundled set the user did not name
    # every proxy's target loss is the weighted mean of its per-set losses
    runs = [st.read_json(rel) for rel in st.list("proxies", ".json") if rel.endswith("run.json")]
    ok = [r for r in runs if r.get("status") == "ok"]
    assert ok
    for r in ok:
        assert r["objective_weights"] == {"copa": 1.0, "mine": 3.0}
        assert r["target_loss"] == pytest.approx((r["target_losses"]["copa"] + 3 * r["target_losses"]["mine"]) / 4)

    # quadmix compare judges on the judge's sets only, with the judge's weights
    table = tmp_path / "cmp"
    args = ["compare", "--storage", str(storage), "--eval-preset", "cpu-tiny", "--budget-tokens", str(2 * 16 * 129),
            "--max-examples", "8", "--methods", "random,english-random,langid-only,quadmix", "--threads", "1"]
    assert cli.main([*args, "--seeds", "2", "--out", str(table)]) == 0
    doc = json.loads((table / "selection_table.json").read_text())
    # the controls, QuaDMix paired against each (english-random: a stored mixture like every baseline)
    assert [r["method"] for r in doc["rows"]] == ["random", "english-random", "langid-only", "quadmix", "chance"]
    assert doc["methods"]["english-random"]["origin"] == "baseline"
    manifest = st.read_parquet(layout.mixture_manifest(doc["methods"]["english-random"]["mixture_id"]))
    langid = {k: st.read_parquet(layout.attribute("quality_langid", k))["score"].to_numpy() for k in set(manifest["shard"].to_pylist())}
    assert manifest.num_rows > 0
    assert all(langid[k][r] >= 0.65 for k, r in zip(manifest["shard"].to_pylist(), manifest["row"].to_pylist()))
    assert [r["control"] for r in doc["optimum_vs_controls"]] == ["random", "english-random", "langid-only"]
    per_seed = doc["per_seed_rows"]
    for c in doc["optimum_vs_controls"]:
        want = [next(x["avg_loss"] for x in rows if x["method"] == "quadmix") - next(x["avg_loss"] for x in rows if x["method"] == c["control"])
                for rows in per_seed]
        assert c["diffs"] == pytest.approx(want) and c["seeds"] == 2
    assert doc["sets"] == ["exam", "mine"] and doc["judge"]["weights"] == {"exam": 1.0, "mine": 3.0}
    assert doc["judge"]["sets"]["mine"]["corpus_leaks"] == 3
    for r in doc["rows"][:-1]:
        assert r["avg_loss"] == pytest.approx((r["heldout_loss"]["exam"] + 3 * r["heldout_loss"]["mine"]) / 4)
    printed = capsys.readouterr().out
    assert "quadmix against each control, paired over 2 seed(s)" in printed and "| english-random |" in printed
    assert "Judge (avg = weighted mean of held-out losses): exam x1, mine x3" in printed
    assert "judge examples that also appear in the corpus" in printed

    # a judge given at compare time: used whole, minus what the proxies were scored on
    target_half = [t for s, h, t in zip(*(st.read_parquet(layout.target_examples(), columns=["set", "half", "text"])[c].to_pylist()
                                          for c in ("set", "half", "text"))) if s == "mine" and h == "target"]
    (tmp_path / "late.jsonl").write_text("".join(json.dumps({"q": t}) + "\n" for t in _sentences(rng, 20) + target_half[:5]))
    args = [a if a != "random,english-random,langid-only,quadmix" else "random,quadmix" for a in args]
    assert cli.main([*args, "--judge", f"{tmp_path / 'late.jsonl'}@2", "--targets", str(tmp_path / "late.yaml")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "late.yaml").write_text(f"judge:\n  - path: {tmp_path / 'late.jsonl'}\n    text_field: q\n    weight: 2\n")
    assert cli.main([*args, "--targets", str(tmp_path / "late.yaml"), "--out", str(table)]) == 0
    doc = json.loads((table / "selection_table.json").read_text())
    assert doc["sets"] == ["late"] and doc["judge"]["given_to_compare"]
    assert doc["judge"]["sets"]["late"]["dropped_in_proxy_target_half"] == 5 and doc["judge"]["sets"]["late"]["examples"] == 20
    assert "5 dropped: in the proxies' target half" in capsys.readouterr().out
