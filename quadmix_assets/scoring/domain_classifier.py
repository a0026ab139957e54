"""The domain labeller d(x): a fastText classifier over the 24 WebOrganizer topics.

Training data: corpus texts of the ``weborganizer`` documents joined by id with
``labels/weborganizer_topics.jsonl.gz`` (``topic_id`` 0..23, assigned by WebOrganizer's topic
classifier). A held-out test split is chosen by a salted, stable hash of the document id
(:func:`split_by_id`), never by position, so it does not move when shards are reordered; the returned
model is trained on the training split only and the report's metrics are on the test split.

Hyper-parameters (``DEFAULT_PARAMS``): ``epoch=15, lr=0.8, dim=32, word_ngrams=1, min_count=1,
max_chars=10000, loss=softmax``, chosen on a validation split (salt ``"domain-tune"``, 15%) carved
out of the non-test ids; the test ids played no part. Validation accuracy / macro-F1 0.646 / 0.643.
Neighbours: 25 epochs, lr 0.5, dim 64: 0.643 (2x slower); bigrams: 0.565 (they overfit ~8k
documents); 5 epochs at lr 0.1: 0.04 (fastText needs a large rate on few, long documents);
2000 / 4000 normalised characters: 0.596 / 0.626; dim 16 / 64: within 0.01. Training on ~9.8k
documents takes 10-17 s on one (shared) thread. Full corpus, default split (10% test = 1,099 of
the 10,892 labelled ids, trained on 9,793): test accuracy 0.612, macro-F1 0.611 (chance ~0.04);
reproduced by ``benchmarks/fasttext_scoring.py --quality``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from quadmix_assets.scoring.fasttext_model import predict_proba, train_fasttext

N_TOPICS = 24
TOPICS_FILE = "labels/weborganizer_topics.jsonl.gz"
TOPIC_NAMES_FILE = "labels/weborganizer_topic_names.json"
DEFAULT_SALT = "domain-v1"

DEFAULT_PARAMS: dict = {
    "epoch": 15,
    "lr": 0.8,
    "dim": 32,
    "word_ngrams": 1,
    "min_count": 1,
    "max_chars": 10_000,
    "loss": "softmax",
}

#: fallback names (the ``domain_name`` strings of weborganizer_topic_names.json, ``<br>`` -> space)
TOPIC_NAMES: list[str] = [
    "Adult", "Art & Design", "Software Dev.", "Crime & Law", "Education & Jobs", "Hardware",
    "Entertainment", "Social Life", "Fashion & Beauty", "Finance & Business", "Food & Dining",
    "Games", "Health", "History", "Home & Hobbies", "Industrial", "Literature", "Politics",
    "Religion", "Science & Tech.", "Software", "Sports & Fitness", "Transportation", "Travel",
]  # fmt: skip

_LABELS = [str(i) for i in range(N_TOPICS)]


def _clean_name(name: str) -> str:
    return " ".join(name.replace("<br>", " ").split())


def load_topic_names(data_dir: str | os.PathLike) -> list[str]:
    """The 24 WebOrganizer topic names, indexed by ``domain_id`` (``<br>`` replaced by a space)."""
    rows = json.loads((Path(data_dir) / TOPIC_NAMES_FILE).read_text(encoding="utf-8"))
    names = [""] * len(rows)
    for row in rows:
        names[int(row["domain_id"])] = _clean_name(row["domain_name"])
    return names


def load_topic_labels(data_dir: str | os.PathLike) -> dict[str, int]:
    """``{document id: topic_id}`` for every labelled ``weborganizer`` document."""
    out: dict[str, int] = {}
    with gzip.open(Path(data_dir) / TOPICS_FILE, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out[row["id"]] = int(row["topic_id"])
    return out


def split_by_id(ids: Sequence[str], test_fraction: float, salt: str = DEFAULT_SALT) -> np.ndarray:
    """Boolean mask, True = held-out test: ``blake2b(salt|id)`` mapped to [0, 1) is < ``test_fraction``.

    Depends on nothing but the id, the salt and the fraction: stable across runs, machines and
    orderings, and monotone in ``test_fraction`` (a bigger fraction only adds test ids).
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    prefix = salt.encode("utf-8") + b"\x00"
    u = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(prefix + str(i).encode("utf-8"), digest_size=8).digest(), "little")
            for i in ids
        ),
        dtype=np.uint64,
        count=len(ids),
    )
    return (u >> np.uint64(11)).astype(np.float64) / float(1 << 53) < test_fraction


def _f1_scores(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    f1 = np.zeros(k, dtype=np.float64)
    for c in range(k):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        den = 2 * tp + fp + fn
        f1[c] = 2 * tp / den if den else 0.0
    return f1


def classification_report(y_true, y_pred, names: Sequence[str]) -> dict:
    """accuracy, macro_f1 (over classes present in ``y_true``), per_class_f1 {name: f1}."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(names)
    f1 = _f1_scores(y_true, y_pred, k)
    present = np.bincount(y_true, minlength=k)[:k] > 0
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if y_true.size else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class_f1": {names[c]: float(f1[c]) for c in range(k) if present[c]},
    }


def train_domain_classifier(
    texts: Sequence[str],
    topic_ids: Sequence[int],
    ids: Sequence[str],
    *,
    test_fraction: float = 0.1,
    seed: int = 0,
    salt: str = DEFAULT_SALT,
    topic_names: Sequence[str] | None = None,
    epoch: int = DEFAULT_PARAMS["epoch"],
    lr: float = DEFAULT_PARAMS["lr"],
    dim: int = DEFAULT_PARAMS["dim"],
    word_ngrams: int = DEFAULT_PARAMS["word_ngrams"],
    min_count: int = DEFAULT_PARAMS["min_count"],
    max_chars: int = DEFAULT_PARAMS["max_chars"],
    loss: str = DEFAULT_PARAMS["loss"],
    threads: int = 1,
    **kw,
):
    """Train the topic classifier on the non-test ids; evaluate on the held-out ids.

    Returns ``(model, report)``; ``report`` has accuracy, macro_f1, per_class_f1 {topic name: f1},
    n_train, n_test, params, train_seconds. ``topic_ids`` are ints 0..23.
    """
    if not (len(texts) == len(topic_ids) == len(ids)):
        raise ValueError("texts, topic_ids and ids must have the same length")
    y = np.asarray(topic_ids, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= N_TOPICS):
        raise ValueError(f"topic ids must lie in 0..{N_TOPICS - 1}")
    names = list(topic_names) if topic_names is not None else TOPIC_NAMES
    test = split_by_id(ids, test_fraction, salt)
    train_idx = np.flatnonzero(~test)
    test_idx = np.flatnonzero(test)
    params = dict(
        epoch=epoch, lr=lr, dim=dim, word_ngrams=word_ngrams, min_count=min_count,
        max_chars=max_chars, loss=loss, seed=seed, threads=threads, **kw,
    )  # fmt: skip
    t0 = time.perf_counter()
    model = train_fasttext([texts[i] for i in train_idx], [str(int(y[i])) for i in train_idx], **params)
    train_seconds = time.perf_counter() - t0
    report: dict = {"n_train": int(train_idx.size), "n_test": int(test_idx.size)}
    if test_idx.size:
        pred, _ = predict_domains(model, [texts[i] for i in test_idx], max_chars=max_chars)
        report.update(classification_report(y[test_idx], pred, names))
    else:
        report.update({"accuracy": float("nan"), "macro_f1": float("nan"), "per_class_f1": {}})
    report["params"] = {**params, "test_fraction": test_fraction, "salt": salt}
    report["train_seconds"] = round(train_seconds, 3)
    return model, report


def predict_domains(model, texts: Sequence[str], *, max_chars: int = DEFAULT_PARAMS["max_chars"], batch_size: int = 4096):
    """``(domain int16 array, confidence float32 array)``: the arg-max topic and its probability."""
    proba = predict_proba(model, texts, _LABELS, batch_size=batch_size, max_chars=max_chars)
    if proba.shape[0] == 0:
        return np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.float32)
    dom = proba.argmax(axis=1)
    conf = proba[np.arange(proba.shape[0]), dom]
    return dom.astype(np.int16), conf.astype(np.float32)
