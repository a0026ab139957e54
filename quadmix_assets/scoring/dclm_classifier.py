"""A DCLM-style fastText quality classifier: "high-quality reference text" vs "random web".

DCLM (Li et al. 2024) trains a bigram fastText classifier with OpenHermes-2.5 instructions and
r/ExplainLikeImFive answers as positives and random RefinedWeb documents as negatives, and ranks the
pool by P(positive). Neither positive source exists here, so the reference positives are chosen from
what the corpus and its labels offer (all joined by document id; ``source`` and ``url`` are never
used, only the label files):

* positives (``hq``):
  - ``weborganizer`` documents whose WebOrganizer *format* is Academic Writing (0), Knowledge
    Article (7), Nonfiction Writing (11) or Tutorial (22) with ``format_confidence >= 0.5``: the
    explanatory, instructive, well-edited end of the web, closest in spirit to ELI5 answers and
    instruction data (about 1.8k documents);
  - ``fineweb`` documents whose LLM usefulness score (``fineweb_legal_llm_scores``) is >= 4 (about
    0.8k documents);
* negatives (``cc``): a seeded random sample, of the same size as the positives, of all the other
  corpus documents: other WebOrganizer formats, lower-scored FineWeb documents and the raw Common
  Crawl pages, i.e. "random web".

The held-out test split is chosen by a salted hash of the document id (never by position) and the
report gives its accuracy and ROC-AUC. Human quality votes (``dclm_human_majority_data.jsonl``) and
the target sets are never used for training.

Hyper-parameters (``DEFAULT_PARAMS``): ``epoch=20, lr=0.2, dim=32, word_ngrams=2, min_count=3,
bucket=200_000, max_chars=10000``. Bigrams as in DCLM; chosen on a validation split (salt
``"dclm-tune"``, 20%) carved out of the non-test ids, never on the test split or the human votes:
validation AUC 0.83 (5 epochs / lr 0.1: 0.77; unigrams: 0.79; lr 0.5 diverges towards one class;
40 epochs / lr 0.1: 0.85 but 3x slower; 1M buckets: no gain over 200k, 5x the model size).
Training on ~4.7k documents takes 10-17 s on one (shared) thread. Full corpus: 2,623 positives +
2,623 negatives, held-out test (496 ids): accuracy 0.679, ROC-AUC 0.785; ROC-AUC against the 499
DCLM human votes 0.739 (``benchmarks/fasttext_scoring.py --quality``).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from pathlib import Path

import numpy as np

from quadmix_assets.scoring.domain_classifier import split_by_id
from quadmix_assets.scoring.evaluation import roc_auc
from quadmix_assets.scoring.fasttext_model import DEFAULT_MAX_CHARS, predict_proba, train_fasttext

POSITIVE = "hq"
NEGATIVE = "cc"
LABELS = (POSITIVE, NEGATIVE)
#: WebOrganizer formats taken as reference positives: Academic Writing, Knowledge Article,
#: Nonfiction Writing, Tutorial
POSITIVE_FORMATS = (0, 7, 11, 22)
MIN_FORMAT_CONFIDENCE = 0.5
MIN_FINEWEB_SCORE = 4
DEFAULT_SALT = "dclm-v1"

DEFAULT_PARAMS: dict = {
    "epoch": 20,
    "lr": 0.2,
    "dim": 32,
    "word_ngrams": 2,
    "min_count": 3,
    "bucket": 200_000,
    "max_chars": DEFAULT_MAX_CHARS,
}


def reference_positive_ids(data_dir: str | os.PathLike) -> set[str]:
    """Ids of the reference positives, from the label files alone (see the module docstring)."""
    labels = Path(data_dir) / "labels"
    pos: set[str] = set()
    with gzip.open(labels / "weborganizer_topics.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if int(r["format_id"]) in POSITIVE_FORMATS and float(r["format_confidence"]) >= MIN_FORMAT_CONFIDENCE:
                pos.add(r["id"])
    with gzip.open(labels / "fineweb_legal_llm_scores.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("score") is not None and float(r["score"]) >= MIN_FINEWEB_SCORE:
                pos.add(r["id"])
    return pos


def build_dclm_training_set(
    ids: Sequence[str], texts: Sequence[str], data_dir: str | os.PathLike, seed: int = 0
) -> tuple[list[str], list[str], dict]:
    """``(texts, labels, info)``: every reference positive among ``ids`` plus as many negatives.

    Each id counts once (first occurrence). Negatives are drawn without replacement from the
    remaining documents with ``numpy.random.default_rng(seed)``, after sorting them by id so the draw
    does not depend on the input order; the returned documents are in id order, positives first. ``labels`` are ``"hq"`` / ``"cc"``; ``info`` holds ``ids`` (aligned with the
    returned texts), ``n_pos``, ``n_neg``, ``n_pool`` and the positive definition.
    """
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    pos_ids = reference_positive_ids(data_dir)
    first: dict[str, int] = {}
    for i, d in enumerate(ids):
        first.setdefault(d, i)  # the corpus repeats a few ids: each document counts once
    unique = sorted(first.values(), key=lambda i: ids[i])
    pos_idx = [i for i in unique if ids[i] in pos_ids]
    rest = [i for i in unique if ids[i] not in pos_ids]
    n_neg = min(len(pos_idx), len(rest))
    rng = np.random.default_rng(seed)
    neg_idx = [rest[j] for j in sorted(rng.choice(len(rest), size=n_neg, replace=False).tolist())] if n_neg else []
    chosen = pos_idx + neg_idx
    labels = [POSITIVE] * len(pos_idx) + [NEGATIVE] * len(neg_idx)
    info = {
        "ids": [ids[i] for i in chosen],
        "n_pos": len(pos_idx),
        "n_neg": len(neg_idx),
        "n_pool": len(ids),
        "seed": seed,
        "positives": {
            "weborganizer_formats": list(POSITIVE_FORMATS),
            "min_format_confidence": MIN_FORMAT_CONFIDENCE,
            "min_fineweb_llm_score": MIN_FINEWEB_SCORE,
        },
    }
    return [texts[i] for i in chosen], labels, info


def train_dclm_classifier(
    ids: Sequence[str],
    texts: Sequence[str],
    data_dir: str | os.PathLike,
    *,
    seed: int = 0,
    test_fraction: float = 0.1,
    salt: str = DEFAULT_SALT,
    epoch: int = DEFAULT_PARAMS["epoch"],
    lr: float = DEFAULT_PARAMS["lr"],
    dim: int = DEFAULT_PARAMS["dim"],
    word_ngrams: int = DEFAULT_PARAMS["word_ngrams"],
    min_count: int = DEFAULT_PARAMS["min_count"],
    bucket: int = DEFAULT_PARAMS["bucket"],
    max_chars: int = DEFAULT_PARAMS["max_chars"],
    threads: int = 1,
    **kw,
):
    """Build the training set from the corpus, train on the non-test ids, evaluate on the test ids.

    Returns ``(model, report)``; ``report`` has accuracy, auc, n_train, n_test, n_pos, n_neg,
    params, train_seconds.
    """
    sel_texts, labels, info = build_dclm_training_set(ids, texts, data_dir, seed=seed)
    test = split_by_id(info["ids"], test_fraction, salt)
    y = np.asarray([lab == POSITIVE for lab in labels], dtype=bool)
    tr = np.flatnonzero(~test)
    te = np.flatnonzero(test)
    params = dict(
        epoch=epoch, lr=lr, dim=dim, word_ngrams=word_ngrams, min_count=min_count, bucket=bucket,
        max_chars=max_chars, seed=seed, threads=threads, **kw,
    )  # fmt: skip
    t0 = time.perf_counter()
    model = train_fasttext([sel_texts[i] for i in tr], [labels[i] for i in tr], **params)
    train_seconds = time.perf_counter() - t0
    report = {
        "n_train": int(tr.size),
        "n_test": int(te.size),
        "n_pos": info["n_pos"],
        "n_neg": info["n_neg"],
        "accuracy": float("nan"),
        "auc": float("nan"),
    }
    if te.size:
        p = dclm_scores(model, [sel_texts[i] for i in te], max_chars=max_chars)
        report["accuracy"] = float(np.mean((p >= 0.5) == y[te]))
        report["auc"] = roc_auc(p, y[te])
    report["params"] = {**params, "test_fraction": test_fraction, "salt": salt, "positives": info["positives"]}
    report["train_seconds"] = round(train_seconds, 3)
    return model, report


def dclm_scores(model, texts: Sequence[str], *, max_chars: int = DEFAULT_PARAMS["max_chars"], batch_size: int = 4096) -> np.ndarray:
    """P(high quality) per text, float32."""
    return predict_proba(model, texts, [POSITIVE], batch_size=batch_size, max_chars=max_chars)[:, 0]


def build_dclm_classifier(settings, storage, options):
    """The ``dclm_classifier`` model (its asset is generated from the criterion registry): the configured
    ``model`` option imported (``dclm_model``), else trained on the bundled reference data with the
    preset's seed and ``epochs``; written to ``models/dclm_classifier/`` with its card (sha256, report)."""
    from quadmix_assets.scoring.fasttext_model import save_model
    from quadmix_assets.scoring.reference_data import load_reference_corpus
    from quadmix_assets.scoring.stored_models import BuiltModel, import_model_file
    from quadmix_assets.storage import layout

    name = "dclm_classifier"
    if options["model"]:
        import_model_file(storage, name, options["model"])
        report = {"source": options["model"], "trained_here": False}
    else:
        corpus = load_reference_corpus(settings.data_dir)
        model, report = train_dclm_classifier(
            corpus["id"].to_pylist(), corpus["text"].to_pylist(), settings.data_dir,
            seed=settings.run_preset().seed, epoch=options["epochs"],
        )
        report = {k: v for k, v in report.items() if k != "train_seconds"}
        report = {**report, "trained_here": True}
        with tempfile.TemporaryDirectory() as d:
            local = Path(d) / "model.bin"
            save_model(model, str(local))
            storage.write_file(layout.model_file(name), local)
    sha = storage.file_sha256(layout.model_file(name))
    storage.write_json(layout.model_card(name), {"name": name, "sha256": sha, "report": report})
    model_uri = storage.uri(layout.model_file(name))
    metadata = {"model_sha256": sha}
    for key in ("accuracy", "auc", "n_train", "n_test", "n_pos", "n_neg"):
        if key in report:
            metadata[f"test_{key}" if key in ("accuracy", "auc") else key] = report[key]
    return BuiltModel(uri=model_uri, metadata=metadata, path=model_uri)
