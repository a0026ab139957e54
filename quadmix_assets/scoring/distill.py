"""Annotate-then-distill for corpora too large for a heavy scorer (AskLLM, an Edu-style teacher).

1. :func:`sample_for_annotation` picks a seeded sample of document ids: the ``n`` ids with the smallest
   ``blake2b(seed|id)``, so the sample depends only on the ids and the seed, never on shard order,
   partitioning or worker count, and grows monotonically with ``n``.
2. The heavy teacher scores the sample (``teacher.score(texts)``).
3. :func:`train_student` trains a fast student on (text, teacher score) and reports the teacher-student
   Spearman on a held-out part of the sample (hash split by id, salt ``"distill-v1"``).
4. ``student.score(texts)`` is applied to every shard.

Students (``kind``):

* ``"fasttext"`` (default): a fastText classifier over teacher-score quantile bins (``n_bins`` = 4 by
  default; edges at the training scores' quantiles, duplicated edges merged); its score is the expected
  bin value (the mean teacher score of the bin's training documents) under the predicted distribution,
  i.e. a continuous score on the teacher's scale. ``threads=1`` and a fixed seed make training
  deterministic (see :mod:`quadmix_assets.scoring.fasttext_model`); ``bucket=200_000`` keeps the model
  file small. Saved as fastText ``.bin`` + JSON sidecar.
* ``"embedding"``: a :class:`~quadmix_assets.scoring.edu_scorer.TextEncoder` (``encoder=``, default the
  bundled MiniLM) with a ridge head on the teacher scores. Saved as ``.npz`` + JSON; the JSON names the
  encoder, which :meth:`Student.load` reopens unless one is passed.

:func:`pick_scoring_mode` is the rule a preset uses to choose between scoring every document with the
teacher (``"direct"``) and distilling (``"distill"``): direct when the teacher's estimated time over the
corpus fits the budget.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quadmix_assets.scoring.domain_classifier import split_by_id
from quadmix_assets.scoring.sampling import sample_for_annotation  # noqa: F401 - also imported from here
from quadmix_assets.scoring.evaluation import spearman
from quadmix_assets.scoring.fasttext_model import (
    as_text_list,
    file_sha256,
    load_model,
    predict_proba,
    save_model,
    train_fasttext,
)

DISTILL_SALT = "distill-v1"
#: fastText student hyper-parameters. Chosen on a tuning split (salt "distill-tune") of 1,400 bundled
#: fineweb documents scored by the Edu teacher (MiniLM + ridge head), held-out teacher-student Spearman:
#: these 0.878; 20 epochs / lr 0.2 / bigrams (DCLM-like) 0.772; same with unigrams 0.868; 8 bins 0.686
#: (bigrams); 2 bins 0.876 (unigrams); dim 32 0.864; 30 epochs / lr 0.1 0.844. Small bucket keeps the file small.
FASTTEXT_STUDENT_PARAMS: dict = {
    "epoch": 10,
    "lr": 0.5,
    "dim": 16,
    "word_ngrams": 1,
    "min_count": 2,
    "bucket": 200_000,
    "max_chars": 10_000,
    "threads": 1,
}


def corpus_sample(storage, shards: Sequence[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded, order-independent sample of ``n`` documents (ids, texts) of the stored ``shards``
    (:func:`sample_for_annotation` over their ids); ``storage`` is a :class:`~quadmix_assets.storage.StorageRoot`."""
    from quadmix_assets.storage import layout

    paths = [layout.documents(k) for k in shards]
    ids = storage.dataset(paths).to_table(columns=["id"])["id"].to_pylist()
    picked = np.sort(sample_for_annotation(ids, min(n, len(ids)), seed=seed))
    texts = storage.dataset(paths).to_table(columns=["text"])["text"].take(picked)
    return [ids[i] for i in picked], texts.to_pylist()


def pick_scoring_mode(n_docs: int, teacher_docs_per_s: float, time_budget_s: float) -> str:
    """``"direct"`` if the teacher can score ``n_docs`` within ``time_budget_s``, else ``"distill"``."""
    if teacher_docs_per_s <= 0 or not np.isfinite(teacher_docs_per_s):
        return "distill"
    return "direct" if n_docs / teacher_docs_per_s <= time_budget_s else "distill"


def quantile_bins(scores: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, bin index per score)``: inner edges at the quantiles, duplicates merged."""
    s = np.asarray(scores, dtype=np.float64)
    qs = np.quantile(s, np.linspace(0, 1, n_bins + 1)[1:-1]) if n_bins > 1 else np.zeros(0)
    edges = np.unique(qs)
    # a bin must hold something on both sides of an edge
    edges = np.asarray([e for e in edges if (s < e).any() and (s >= e).any()], dtype=np.float64)
    return edges, np.searchsorted(edges, s, side="right")


@dataclass
class Student:
    """A fast scorer trained on a teacher's scores; ``score(texts) -> float32``."""

    kind: str
    model: object  # fastText model, or EduHead for the embedding student
    meta: dict = field(default_factory=dict)
    encoder: object = None
    _version: str | None = None

    def score(self, texts) -> np.ndarray:
        texts = as_text_list(texts)
        if self.kind == "fasttext":
            labels = self.meta["labels"]
            p = predict_proba(self.model, texts, labels, max_chars=int(self.meta["params"]["max_chars"]))
            p /= np.maximum(p.sum(1, keepdims=True), 1e-12)
            return (p @ np.asarray(self.meta["values"], dtype=np.float32)).astype(np.float32)
        emb, _ = self.encoder.encode(texts)
        return self.model.predict(emb)

    def _write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, kind=self.kind)
        if self.kind == "fasttext":
            save_model(self.model, path)
        else:
            self.model.save(path)  # EduHead: .npz + its own sidecar, merged into ours below
            head = json.loads(path.with_suffix(".json").read_text())
            meta["head"] = {"alpha": head["alpha"], "clip": head["clip"]}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=float))

    @staticmethod
    def _version_of(path: Path) -> str:
        """sha256 over the model file and its sidecar JSON (the held-out report left out)."""
        meta = json.loads(path.with_suffix(".json").read_text())
        meta.pop("report", None)
        h = hashlib.sha256(file_sha256(path).encode())
        h.update(json.dumps(meta, sort_keys=True).encode())
        return "sha256:" + h.hexdigest()

    def save(self, path: str | os.PathLike) -> str:
        """fastText: ``path`` (.bin); embedding: ``path`` (.npz); plus a ``.json`` sidecar."""
        path = Path(path)
        self._write(path)
        self._version = self._version_of(path)
        return str(path)

    @property
    def model_version(self) -> str:
        if self._version is None:
            with tempfile.TemporaryDirectory(prefix="quadmix-student-") as d:
                p = Path(d) / ("student.bin" if self.kind == "fasttext" else "student.npz")
                self._write(p)
                self._version = self._version_of(p)
        return self._version

    @classmethod
    def load(cls, path: str | os.PathLike, *, encoder=None) -> "Student":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        kind = meta.pop("kind")
        if kind == "fasttext":
            st = cls(kind, load_model(path), meta)
        else:
            from quadmix_assets.scoring.edu_scorer import EduHead, TextEncoder

            if encoder is None:
                enc = meta.get("encoder", {})
                encoder = TextEncoder(enc.get("model"), max_length=int(enc.get("max_length", 256)))
            with np.load(path, allow_pickle=False) as z:
                head = EduHead(z["weights"].astype(np.float32), float(z["bias"]), float(meta["head"]["alpha"]),
                               tuple(meta["head"]["clip"]))
            st = cls(kind, head, meta, encoder)
        st._version = st._version_of(path)
        return st


def train_student(texts, teacher_scores, ids: Sequence[str], *, kind: str = "fasttext", test_fraction: float = 0.2,
                  seed: int = 0, n_bins: int = 4, encoder=None, salt: str = DISTILL_SALT,
                  **params) -> tuple[Student, dict]:
    """Train a student on the training part of the annotated sample; report held-out teacher-student Spearman.

    ``params`` override :data:`FASTTEXT_STUDENT_PARAMS` (fastText student) or go to the ridge head
    (``alpha``) of the embedding student.
    """
    texts = as_text_list(texts)
    y = np.asarray(teacher_scores, dtype=np.float64)
    if not (len(texts) == len(y) == len(ids)):
        raise ValueError(f"{len(texts)} texts, {len(y)} scores, {len(ids)} ids")
    test = split_by_id(ids, test_fraction, salt=salt)
    tr = np.flatnonzero(~test)
    te = np.flatnonzero(test)
    if len(tr) < 2:
        raise ValueError("fewer than 2 training documents")
    tr_texts = [texts[i] for i in tr]
    if kind == "fasttext":
        p = dict(FASTTEXT_STUDENT_PARAMS, **params)
        edges, bins = quantile_bins(y[tr], n_bins)
        k = len(edges) + 1
        values = [float(y[tr][bins == b].mean()) if (bins == b).any() else 0.0 for b in range(k)]
        labels = [f"b{b}" for b in range(k)]
        model = train_fasttext(tr_texts, [labels[b] for b in bins], seed=seed, **p)
        student = Student("fasttext", model, {"labels": labels, "values": values, "edges": edges.tolist(),
                                              "params": p, "seed": int(seed)})
    elif kind == "embedding":
        from quadmix_assets.scoring.edu_scorer import DEFAULT_ALPHAS, TextEncoder, fit_ridge_head

        encoder = encoder if encoder is not None else TextEncoder()
        emb, _ = encoder.encode(tr_texts)
        head = fit_ridge_head(emb, y[tr], alpha=params.get("alpha", DEFAULT_ALPHAS), seed=seed,
                              clip=(float(y.min()), float(y.max())))
        student = Student("embedding", head, {"encoder": {"model": encoder.model_name, "max_length": encoder.max_length,
                                                          "version": encoder.model_version},
                                              "alpha": head.alpha, "seed": int(seed)}, encoder)
    else:
        raise ValueError(f"unknown student kind {kind!r} (fasttext | embedding)")
    report = {"kind": kind, "n_train": int(len(tr)), "n_test": int(len(te))}
    if len(te):
        pred = student.score([texts[i] for i in te])
        report["spearman"] = spearman(pred, y[te])
        report["mae"] = float(np.abs(pred - y[te]).mean())
    student.meta["report"] = report
    return student, report
