"""Benchmark: the transformer quality scorers (Edu-style encoder + head, AskLLM) batched vs one document at a time.

Run from the repository root::

    .venv/bin/python benchmarks/transformer_scorers.py                  # throughput (Edu 256 docs, AskLLM 64)
    .venv/bin/python benchmarks/transformer_scorers.py --quality        # + ROC-AUC vs DCLM human votes
    .venv/bin/python benchmarks/transformer_scorers.py --distill        # + annotate-then-distill figures

Throughput, in one process over the first N documents of the bundled corpus, for each scorer:

  (a) naive loop: for each document, tokenise it alone (same truncation), one forward pass of the SAME model
      object, same pooling / head / answer-token read-out (AskLLM: same ``logits_to_keep=1``), so the ratio
      isolates batching with length buckets;
  (b) the scorer's ``.score`` at its default batch settings (Edu batch 32 x 256 tokens; AskLLM batch 8,
      documents cut to 256 tokens);

interleaved: the texts are cut into ``--rounds`` chunks (default 4) and each chunk is scored naive, then
batched, so load from other processes on a shared machine hits both alike (batches are bucketed within a
chunk; each chunk holds at least one full batch). It prints docs/s, tokens/s, the ratio b/a and the
largest |a - b| (batched results must equal the naive ones). The device is named (CPU model or GPU card). ``--threads`` sets ``torch.set_num_threads``.

Edu head: loaded from ``--edu-head`` when given, else trained on the bundled LLM-scored documents
(``--edu-train-docs`` of them, all 2,800 by default) and saved to ``--save-edu-head`` if given; the
held-out Spearman / MAE are printed.

``--quality``: ROC-AUC against the 499 DCLM human votes (``labels/dclm_human_majority_data.jsonl``) of the
Edu scorer (all 499) and AskLLM (a seeded ``--quality-docs`` subset, default 100, as the 135M model is
slow on a CPU), plus their pairwise Spearman on the common subset (and the distilled students' when
``--distill`` is given as well).

``--distill``: annotate-then-distill with each teacher: a seeded sample of corpus documents
(``--distill-edu-docs``, ``--distill-askllm-docs``) scored by the teacher, a fastText student trained on
it; prints the held-out teacher-student Spearman and the student's docs/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from quadmix_assets.scoring.askllm import AskLLMScorer  # noqa: E402
from quadmix_assets.scoring.edu_scorer import (  # noqa: E402
    EduHead,
    EduScorer,
    TextEncoder,
    load_edu_training_set,
    train_edu_head,
)
from quadmix_assets.scoring.reference_data import load_reference_corpus  # noqa: E402
from quadmix_assets.settings import data_dir  # noqa: E402


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"GPU {torch.cuda.get_device_name(0)}"
    model = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} cores visible, torch threads {torch.get_num_threads()})"


def naive_edu(scorer: EduScorer, texts: list[str]) -> tuple[np.ndarray, int, float]:
    import torch

    enc = scorer.encoder
    out, tokens = [], 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for t in texts:
            b = enc.tokenizer(t, truncation=True, max_length=enc.max_length, return_tensors="pt").to(enc.device)
            h = enc.model(**b).last_hidden_state.float()
            m = b["attention_mask"].unsqueeze(-1).float()
            e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1)
            out.append(scorer.head.predict(e.cpu().numpy())[0])
            tokens += int(b["input_ids"].shape[1])
    return np.asarray(out, dtype=np.float32), tokens, time.perf_counter() - t0


def naive_askllm(scorer: AskLLMScorer, texts: list[str]) -> tuple[np.ndarray, int, float]:
    import torch

    out, tokens = [], 0
    kw = {scorer._keep_kw: 1} if scorer._keep_kw else {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for t in texts:
            seq = scorer.sequences([t])[0]
            z = scorer.model(input_ids=torch.tensor([seq], device=scorer.device), **kw).logits[0, -1].float()
            yes = torch.logsumexp(z[scorer.yes_ids], 0)
            no = torch.logsumexp(z[scorer.no_ids], 0)
            out.append(float(torch.sigmoid(yes - no)))
            tokens += len(seq)
    return np.asarray(out, dtype=np.float32), tokens, time.perf_counter() - t0


def compare(name: str, scorer, naive_fn, texts: list[str], rounds: int = 4) -> dict:
    """Naive loop and batched ``.score`` over the same texts, interleaved in ``rounds`` chunks.

    The chunks alternate naive / batched, so load from other processes on a shared machine hits both alike;
    each chunk holds several full batches, which the batched call buckets by length within the chunk.
    """
    from quadmix_assets.scoring.transformer_common import InferenceStats

    scorer.score(texts[:2])  # warm-up (first-call allocations), not timed
    naive_fn(scorer, texts[:1])
    chunk = max(scorer_batch_size(scorer), -(-len(texts) // max(1, rounds)))
    naive_parts, batched_parts = [], []
    naive_tokens, naive_s, stats = 0, 0.0, InferenceStats()
    for i in range(0, len(texts), chunk):
        part = texts[i : i + chunk]
        out, tok, sec = naive_fn(scorer, part)
        naive_parts.append(out)
        naive_tokens += tok
        naive_s += sec
        b, st = scorer.score(part)
        batched_parts.append(b)
        stats = stats + st
    naive, batched = np.concatenate(naive_parts), np.concatenate(batched_parts)
    row = {
        "scorer": name,
        "docs": len(texts),
        "batch_size": stats.batch_size,
        "naive_docs_per_s": round(len(texts) / naive_s, 2),
        "naive_tokens_per_s": round(naive_tokens / naive_s, 1),
        "batched_docs_per_s": round(stats.docs_per_s, 2),
        "batched_tokens_per_s": round(stats.tokens_per_s, 1),
        "speedup_batched_over_naive": round(naive_s / stats.seconds, 2),
        "max_abs_diff": float(np.abs(naive - batched).max()),
        "naive_s": round(naive_s, 2),
        "batched_s": round(stats.seconds, 2),
        "interleaved_chunks": -(-len(texts) // chunk),
    }
    print(json.dumps(row), flush=True)
    return row


def scorer_batch_size(scorer) -> int:
    return int(getattr(scorer, "batch_size", None) or scorer.encoder.batch_size)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edu-docs", type=int, default=256)
    ap.add_argument("--askllm-docs", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4, help="interleaved naive/batched chunks")
    ap.add_argument("--edu-batch-size", type=int, default=None)
    ap.add_argument("--askllm-batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--edu-head", default=None, help="a saved EduHead (.npz); default: train one here")
    ap.add_argument("--save-edu-head", default=None)
    ap.add_argument("--edu-train-docs", type=int, default=None)
    ap.add_argument("--skip-edu", action="store_true")
    ap.add_argument("--skip-askllm", action="store_true")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--quality-docs", type=int, default=100, help="AskLLM subset of the 499 human-voted docs")
    ap.add_argument("--distill", action="store_true")
    ap.add_argument("--distill-edu-docs", type=int, default=1500)
    ap.add_argument("--distill-askllm-docs", type=int, default=200)
    ap.add_argument("--student-kind", choices=["fasttext", "embedding", "both"], default="fasttext")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    root = data_dir()
    table = load_reference_corpus(root)
    corpus_ids = table.column("id").to_pylist()
    corpus_texts = table.column("text").to_pylist()

    t0 = time.perf_counter()
    encoder = TextEncoder(device=args.device)
    print(json.dumps({"device": device_name(encoder.device), "torch": torch.__version__,
                      "edu_encoder_load_s": round(time.perf_counter() - t0, 2)}), flush=True)
    if args.edu_head:
        head = EduHead.load(args.edu_head)
        print(json.dumps({"edu_head": args.edu_head, "report": head.meta.get("report")}), flush=True)
    else:
        ids, texts, scores = load_edu_training_set(root)
        n = args.edu_train_docs or len(ids)
        emb, st = encoder.encode(texts[:n])
        head, rep = train_edu_head(emb, scores[:n], ids[:n])
        print(json.dumps({"edu_head_trained_on": n, "encode_docs_per_s": round(st.docs_per_s, 2), "report": rep}),
              flush=True)
        if args.save_edu_head:
            head.save(args.save_edu_head)
    edu = EduScorer(encoder, head)

    rows = []
    if not args.skip_edu:
        if args.edu_batch_size:
            encoder.batch_size = args.edu_batch_size
        rows.append(compare("edu(minilm+ridge)", edu, naive_edu, corpus_texts[: args.edu_docs], args.rounds))
    ask = None
    if not args.skip_askllm or args.quality or args.distill:
        t0 = time.perf_counter()
        ask = AskLLMScorer(device=args.device)
        load_s = time.perf_counter() - t0
        p, st = ask.score(corpus_texts[:1])
        print(json.dumps({"askllm_model": f"{ask.model_name}/{ask.gguf_file}", "gguf_load_s": round(load_s, 2),
                          "first_doc_s": round(st.seconds, 3)}), flush=True)
        if not args.skip_askllm:
            if args.askllm_batch_size:
                ask.batch_size = args.askllm_batch_size
            row = compare("askllm(smollm2-135m)", ask, naive_askllm, corpus_texts[: args.askllm_docs], args.rounds)
            row["naive_latency_s_per_doc"] = round(row["naive_s"] / row["docs"], 3)
            rows.append(row)
            print(json.dumps({"askllm_naive_latency_s_per_doc": row["naive_latency_s_per_doc"]}), flush=True)

    students = {}
    if args.distill:
        from quadmix_assets.scoring.distill import sample_for_annotation, train_student

        for name, teacher, n in (("edu", edu, args.distill_edu_docs), ("askllm", ask, args.distill_askllm_docs)):
            if n <= 0:
                continue
            idx = sample_for_annotation(corpus_ids, n, seed=0)
            s_texts = [corpus_texts[i] for i in idx]
            s_ids = [corpus_ids[i] for i in idx]
            y, st = teacher.score(s_texts)
            kinds = ["fasttext", "embedding"] if args.student_kind == "both" else [args.student_kind]
            for kind in kinds:
                t0 = time.perf_counter()
                student, rep = train_student(s_texts, y, s_ids, kind=kind, seed=0,
                                             **({"encoder": encoder} if kind == "embedding" else {}))
                train_s = time.perf_counter() - t0
                timed = corpus_texts if kind == "fasttext" else corpus_texts[:256]
                t0 = time.perf_counter()
                student.score(timed)
                stu_s = time.perf_counter() - t0
                students[f"{name}_{kind}"] = student
                print(json.dumps({"distill": name, "student": kind, "sample": n,
                                  "teacher_docs_per_s": round(st.docs_per_s, 2),
                                  "student_train_s": round(train_s, 2),
                                  "student_docs_per_s": round(len(timed) / stu_s, 1),
                                  "teacher_student_spearman_held_out": round(rep["spearman"], 4),
                                  "n_train": rep["n_train"], "n_test": rep["n_test"]}), flush=True)

    if args.quality:
        from quadmix_assets.scoring.distill import sample_for_annotation
        from quadmix_assets.scoring.evaluation import load_dclm_human_labels, roc_auc, spearman

        texts, labels = load_dclm_human_labels(root)
        e, st = edu.score(texts)
        out = {"edu_roc_auc_499": round(roc_auc(e, labels), 4), "edu_docs_per_s": round(st.docs_per_s, 2)}
        sub = sample_for_annotation([str(i) for i in range(len(texts))], args.quality_docs, seed=0)
        crit = {"edu": e[sub]}
        a, st = ask.score([texts[i] for i in sub])
        crit["askllm"] = a
        out[f"askllm_roc_auc_{len(sub)}"] = round(roc_auc(a, labels[sub]), 4)
        out[f"edu_roc_auc_same_{len(sub)}"] = round(roc_auc(e[sub], labels[sub]), 4)
        out["askllm_docs_per_s"] = round(st.docs_per_s, 2)
        for name, stu in students.items():
            s = stu.score(texts)
            out[f"{name}_student_roc_auc_499"] = round(roc_auc(s, labels), 4)
            crit[f"{name}_student"] = s[sub]
        names = sorted(crit)
        out["pairwise_spearman"] = {f"{a}~{b}": round(spearman(crit[a], crit[b]), 4)
                                    for i, a in enumerate(names) for b in names[i + 1:]}
        out["positives_in_subset"] = int(labels[sub].sum())
        print(json.dumps(out), flush=True)

    print("\nscorer                 docs  naive docs/s  batched docs/s  batched tok/s  ratio  max|diff|")
    for r in rows:
        print(f"{r['scorer']:<22} {r['docs']:>4}  {r['naive_docs_per_s']:>12}  {r['batched_docs_per_s']:>14}  "
              f"{r['batched_tokens_per_s']:>13}  {r['speedup_batched_over_naive']:>5}  {r['max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
