"""Benchmark: the fastText scoring step vs a bare fastText predict loop (and, optionally, quality figures).

Run from the repository root::

    .venv/bin/python benchmarks/fasttext_scoring.py              # throughput only
    .venv/bin/python benchmarks/fasttext_scoring.py --quality    # + classifier / criterion quality

Throughput: trains the DCLM-style classifier on the real corpus (or loads ``--model``), then over
the same texts (all 14,389 documents by default) and in the same process measures, interleaved and
repeated (best of ``--repeats``):

  (a) bare loop: ``for line in lines: model.predict(line)`` over lines normalised beforehand;
  (b) pipeline step: ``predict_proba(model, texts, labels)`` on the raw texts, normalisation
      (``fasttext_line``) included;

and prints docs/s for both and the ratio b/a (goal >= 0.8).

``--quality`` adds, on the full corpus: the domain classifier's test accuracy / macro-F1, the DCLM
classifier's held-out accuracy / AUC, and the ROC-AUC against the 499 DCLM human quality votes of
the DCLM score, the heuristic score and the langid score (plus their run times).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quadmix_assets.scoring.dclm_classifier import LABELS, dclm_scores, train_dclm_classifier  # noqa: E402
from quadmix_assets.scoring.fasttext_model import (  # noqa: E402
    DEFAULT_MAX_CHARS,
    fasttext_line,
    file_sha256,
    load_model,
    predict_proba,
    save_model,
)
from quadmix_assets.settings import data_dir  # noqa: E402


def load_corpus(root: Path, max_docs: int | None = None) -> list[dict]:
    docs: list[dict] = []
    for shard in sorted((root / "corpus" / "webtext").glob("shard-*.jsonl.gz")):
        with gzip.open(shard, "rt", encoding="utf-8") as fh:
            docs.extend(json.loads(line) for line in fh if line.strip())
    return docs[:max_docs] if max_docs else docs


def throughput(model, texts: list[str], repeats: int, batch_size: int) -> dict:
    t0 = time.perf_counter()
    lines = [fasttext_line(t, DEFAULT_MAX_CHARS) for t in texts]
    normalise_s = time.perf_counter() - t0
    labels = list(LABELS)
    bare, step = [], []
    ref = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        for line in lines:
            model.predict(line)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        proba = predict_proba(model, texts, labels, batch_size=batch_size)
        step.append(time.perf_counter() - t0)
        ref = proba
    # sanity: the step's P(hq) equals fastText's own answer on the normalised line
    check = [dict(zip(*model.predict(line, k=-1))).get("__label__hq", 0.0) for line in lines[:200]]
    max_err = max(abs(float(a) - float(b)) for a, b in zip(ref[:200, 0], check))
    n = len(texts)
    a, b = min(bare), min(step)
    return {
        "docs": n,
        "chars": sum(map(len, texts)),
        "normalise_only_s": round(normalise_s, 3),
        "bare_loop_s_best": round(a, 3),
        "bare_loop_s_median": round(statistics.median(bare), 3),
        "step_s_best": round(b, 3),
        "step_s_median": round(statistics.median(step), 3),
        "bare_loop_docs_per_s": round(n / a, 1),
        "step_docs_per_s": round(n / b, 1),
        "ratio_step_over_bare": round(a / b, 3),
        "ratio_median": round(statistics.median(bare) / statistics.median(step), 3),
        "max_abs_diff_vs_fasttext": max_err,
    }


def quality(root: Path, docs: list[dict], dclm_model, dclm_report: dict) -> dict:
    import numpy as np

    from quadmix_assets.scoring.domain_classifier import load_topic_labels, load_topic_names, train_domain_classifier
    from quadmix_assets.scoring.evaluation import load_dclm_human_labels, roc_auc
    from quadmix_assets.scoring.heuristics import heuristic_score, heuristic_signals
    from quadmix_assets.scoring.langid import LanguageScorer

    out: dict = {}
    topics = load_topic_labels(root)
    wo = [d for d in docs if d["id"] in topics]
    t0 = time.perf_counter()
    _, rep = train_domain_classifier(
        [d["text"] for d in wo], [topics[d["id"]] for d in wo], [d["id"] for d in wo], topic_names=load_topic_names(root)
    )
    out["domain_classifier"] = {
        "accuracy": round(rep["accuracy"], 4),
        "macro_f1": round(rep["macro_f1"], 4),
        "n_train": rep["n_train"],
        "n_test": rep["n_test"],
        "train_seconds": rep["train_seconds"],
        "total_seconds": round(time.perf_counter() - t0, 2),
        "per_class_f1": {k: round(v, 3) for k, v in rep["per_class_f1"].items()},
    }
    out["dclm_classifier"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dclm_report.items() if k != "params"}

    texts_h, y = load_dclm_human_labels(root)
    human: dict = {"n": int(y.size), "n_good": int(y.sum())}
    human["dclm_score_auc"] = round(roc_auc(dclm_scores(dclm_model, texts_h), y), 4)
    human["heuristic_score_auc"] = round(roc_auc(heuristic_score(heuristic_signals(texts_h)), y), 4)
    scorer = LanguageScorer()
    human["langid_en_auc"] = round(roc_auc(scorer.score(texts_h), y), 4)
    out["human_votes_roc_auc"] = human

    texts = [d["text"] for d in docs]
    t0 = time.perf_counter()
    sig = heuristic_signals(texts)
    h = heuristic_score(sig)
    out["heuristics_full_corpus_seconds"] = round(time.perf_counter() - t0, 2)
    out["heuristic_score_unique_fraction"] = round(len(np.unique(h)) / len(h), 4)
    t0 = time.perf_counter()
    scorer.score(texts)
    out["langid_full_corpus_seconds"] = round(time.perf_counter() - t0, 2)
    src = np.array([d["source"] for d in docs])  # evaluation only, never a model input
    out["heuristic_score_mean_by_source"] = {s: round(float(h[src == s].mean()), 4) for s in sorted(set(src))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=data_dir())
    ap.add_argument("--model", help="load this DCLM-style model instead of training one")
    ap.add_argument("--save-model", help="save the trained model here")
    ap.add_argument("--max-docs", type=int, default=None, help="score only the first N documents")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--quality", action="store_true", help="also measure classifier / criterion quality")
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args(argv)

    root = Path(args.data_dir)
    t0 = time.perf_counter()
    docs = load_corpus(root)
    print(f"loaded {len(docs)} documents in {time.perf_counter() - t0:.1f}s from {root}", flush=True)
    results: dict = {"python": platform.python_version(), "machine": platform.machine()}

    report: dict = {}
    if args.model:
        model = load_model(args.model)
        results["model"] = {"path": args.model, "sha256": file_sha256(args.model)}
    else:
        t0 = time.perf_counter()
        model, report = train_dclm_classifier([d["id"] for d in docs], [d["text"] for d in docs], root)
        results["dclm_training"] = {
            "seconds_total": round(time.perf_counter() - t0, 2),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in report.items() if k != "params"},
            "params": {k: v for k, v in report["params"].items() if k != "positives"},
        }
        print(f"trained DCLM-style classifier: {results['dclm_training']}", flush=True)
        if args.save_model:
            save_model(model, args.save_model)
            results["model"] = {"path": args.save_model, "sha256": file_sha256(args.save_model)}

    texts = [d["text"] for d in docs][: args.max_docs] if args.max_docs else [d["text"] for d in docs]
    tp = throughput(model, texts, args.repeats, args.batch_size)
    results["throughput"] = tp
    print(
        f"(a) bare model.predict loop : {tp['bare_loop_docs_per_s']:>9.1f} docs/s  ({tp['bare_loop_s_best']} s best)\n"
        f"(b) predict_proba step      : {tp['step_docs_per_s']:>9.1f} docs/s  ({tp['step_s_best']} s best, "
        f"normalisation alone {tp['normalise_only_s']} s)\n"
        f"ratio b/a = {tp['ratio_step_over_bare']} (median-based {tp['ratio_median']}; goal >= 0.8)",
        flush=True,
    )

    if args.quality:
        if not report:
            ap.error("--quality needs a freshly trained model (drop --model)")
        results["quality"] = quality(root, docs, model, report)
        print(json.dumps(results["quality"], indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
