"""A DCLM stand-in: a fastText bigram classifier, "explanatory reference text" vs "web text like it".

DCLM (Li et al. 2024) trains a bigram fastText classifier with OpenHermes-2.5 instructions and
r/ExplainLikeImFive answers as positives and random RefinedWeb documents as negatives, and ranks the
pool by P(positive); the released model is ``mlfoundations/fasttext-oh-eli5`` (import it with the
``dclm_model`` option). Neither positive source exists here, so the stand-in is built the same way from
the WebOrganizer labels of the bundled corpus (joined by document id; ``source`` and ``url`` are never
used, only the label file):

* positives (``hq``): documents whose WebOrganizer *format* is Knowledge Article (7), Nonfiction Writing
  (11) or Tutorial (22) (``format_confidence >= 0.5``): text written to explain or instruct, as OH-2.5
  answers and ELI5 answers are (about 1.4k documents);
* negatives (``cc``): documents of the *other* WebOrganizer formats, drawn per topic in the positives'
  topic proportions (:func:`build_dclm_training_set`). Positives and negatives come from the same source
  (the WebOrganizer pages, the only labelled one) with the same topic mix, so the classifier cannot learn
  the source or the topic, only the kind of text. The legal-keyword FineWeb pages and the raw Common
  Crawl pages are never trained on.

The format set was compared with others on the full corpus (all reported in docs/criteria.md, "DCLM
reference positives", with the human-vote AUC and the legal-page share of each): the issue's
question-answer kin (FAQ, Q&A Forum, Tutorial, Knowledge Article) ranks the human votes at 0.58; forum
threads and FAQ pages are question-answer *pages*, not the edited answers DCLM's positives are. v2 also
took Academic Writing (0): over four training seeds its top quarter held 0.48-0.52 of the legal-keyword
FineWeb pages' tokens (the card warned at three of them), against 0.44-0.47 without it, at the same
human-vote AUC (0.77-0.80 against 0.78-0.79): research papers are not the plain explanations DCLM's
positives are, and they taught the classifier the legal pages' register.

The held-out test split is chosen by a salted hash of the document id (never by position) and the
report gives its accuracy and ROC-AUC. Human quality votes (``dclm_human_majority_data.jsonl``) and
the target sets are never used for training.

Hyper-parameters (``DEFAULT_PARAMS``): ``epoch=20, lr=0.2, dim=32, word_ngrams=2, min_count=3,
bucket=200_000, max_chars=10000``. Bigrams as in DCLM; chosen for the first version of this classifier
on a validation split (salt ``"dclm-tune"``, 20%) carved out of the non-test ids, never on the test split
or the human votes (5 epochs / lr 0.1, unigrams, lr 0.5, 40 epochs and 1M buckets were worse or slower).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from quadmix_assets.scoring.domain_classifier import split_by_id
from quadmix_assets.scoring.evaluation import roc_auc
from quadmix_assets.scoring.fasttext_model import DEFAULT_MAX_CHARS, predict_proba, train_fasttext

POSITIVE = "hq"
NEGATIVE = "cc"
LABELS = (POSITIVE, NEGATIVE)
#: WebOrganizer formats taken as reference positives, the bundled data's nearest kin of DCLM's positives:
#: OpenHermes-2.5 (instructions with their answers) ~ Tutorial (22); ELI5 answers (plain explanations) ~
#: Knowledge Article (7), Nonfiction Writing (11). v2 also had Academic Writing (0); see the module docstring
POSITIVE_FORMATS = (7, 11, 22)
MIN_FORMAT_CONFIDENCE = 0.5
WEBORGANIZER_LABELS = "labels/weborganizer_topics.jsonl.gz"
DEFAULT_SALT = "dclm-v2"

DEFAULT_PARAMS: dict = {
    "epoch": 20,
    "lr": 0.2,
    "dim": 32,
    "word_ngrams": 2,
    "min_count": 3,
    "bucket": 200_000,
    "max_chars": DEFAULT_MAX_CHARS,
}


def load_format_topic_labels(data_dir: str | os.PathLike) -> dict[str, tuple[int, float, int]]:
    """``id -> (format_id, format_confidence, topic_id)`` of every WebOrganizer-labelled document."""
    out: dict[str, tuple[int, float, int]] = {}
    with gzip.open(Path(data_dir) / WEBORGANIZER_LABELS, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                out[str(r["id"])] = (int(r["format_id"]), float(r["format_confidence"]), int(r["topic_id"]))
    return out


def reference_positive_ids(data_dir: str | os.PathLike, formats: Sequence[int] = POSITIVE_FORMATS,
                           min_confidence: float = MIN_FORMAT_CONFIDENCE) -> set[str]:
    """Ids of the reference positives, from the label file alone (see the module docstring)."""
    formats = set(int(f) for f in formats)
    return {i for i, (f, c, _) in load_format_topic_labels(data_dir).items() if f in formats and c >= min_confidence}


def _draw(rng: np.random.Generator, pool: list[int], k: int) -> list[int]:
    """``min(k, len(pool))`` members of ``pool`` without replacement (no draw from the generator when none)."""
    k = min(k, len(pool))
    return [pool[j] for j in rng.choice(len(pool), size=k, replace=False).tolist()] if k else []


def build_dclm_training_set(
    ids: Sequence[str], texts: Sequence[str], data_dir: str | os.PathLike, seed: int = 0, *,
    formats: Sequence[int] = POSITIVE_FORMATS, min_confidence: float = MIN_FORMAT_CONFIDENCE,
    length_bins: int = 0,
) -> tuple[list[str], list[str], dict]:
    """``(texts, labels, info)``: every reference positive among ``ids`` plus negatives matched to them.

    Each id counts once (first occurrence). Only WebOrganizer-labelled documents take part (the positives'
    one source). The negatives are drawn per topic: for each WebOrganizer topic, as many documents of the
    other formats (any confidence) as there are positives of that topic (all of them when there are
    fewer), without replacement, with ``numpy.random.default_rng(seed)`` over the candidates sorted by
    id, topic by topic in topic order, so the draw does not depend on the input order. With
    ``length_bins`` > 0 the draw is also matched in length: within a topic, per bin of the text's length
    in characters (the bins are the positives' length quantiles), as many negatives as positives, then
    any shortfall of the topic from its other negatives (positives run about 1.8 times as long as the
    other formats; matching them made both the human-vote AUC and the legal-page share worse, so the
    default is no bins: docs/criteria.md, "DCLM reference positives").
    Positives and negatives thus share their source and their topic mix (and their lengths), and the
    classifier can only learn the format. The returned documents are in id order, positives first.
    ``labels`` are ``"hq"`` / ``"cc"``; ``info`` holds ``ids`` (aligned with the returned texts),
    ``n_pos``, ``n_neg``, ``n_pool``, ``n_unmatched`` (positives whose topic had too few negatives), the
    per-topic counts and the positive definition.
    """
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    labels_by_id = load_format_topic_labels(data_dir)
    formats = tuple(int(f) for f in formats)
    first: dict[str, int] = {}
    for i, d in enumerate(ids):
        first.setdefault(d, i)  # the corpus repeats a few ids: each document counts once
    unique = sorted((i for d, i in first.items() if d in labels_by_id), key=lambda i: ids[i])
    pos_idx: list[int] = []
    rest_by_topic: dict[int, list[int]] = {}
    pos_by_topic: dict[int, list[int]] = {}
    for i in unique:
        fmt, conf, topic = labels_by_id[ids[i]]
        if fmt in formats and conf >= min_confidence:
            pos_idx.append(i)
            pos_by_topic.setdefault(topic, []).append(i)
        elif fmt not in formats:
            rest_by_topic.setdefault(topic, []).append(i)
    if length_bins > 0 and pos_idx:
        edges = np.quantile([len(texts[i]) for i in pos_idx], np.arange(1, length_bins) / length_bins)
        bin_of = {i: int(np.searchsorted(edges, len(texts[i]), side="right")) for i in unique}
    else:
        bin_of = {i: 0 for i in unique}
    rng = np.random.default_rng(seed)
    neg_idx: list[int] = []
    per_topic: dict[str, list[int]] = {}
    unmatched = 0
    for topic in sorted(pos_by_topic):
        rest = rest_by_topic.get(topic, [])
        want = len(pos_by_topic[topic])
        pos_per_bin = Counter(bin_of[i] for i in pos_by_topic[topic])
        taken: list[int] = []
        for b in sorted(pos_per_bin):
            taken += _draw(rng, [i for i in rest if bin_of[i] == b], pos_per_bin[b])
        if len(taken) < want:  # the bins short of negatives: the rest of the topic's
            chosen_set = set(taken)
            taken += _draw(rng, [i for i in rest if i not in chosen_set], want - len(taken))
        unmatched += want - len(taken)
        neg_idx += taken
        per_topic[str(topic)] = [want, len(taken)]
    neg_idx.sort(key=lambda i: ids[i])
    chosen = pos_idx + neg_idx
    labels = [POSITIVE] * len(pos_idx) + [NEGATIVE] * len(neg_idx)
    info = {
        "ids": [ids[i] for i in chosen],
        "n_pos": len(pos_idx),
        "n_neg": len(neg_idx),
        "n_pool": len(ids),
        "n_unmatched": unmatched,
        "per_topic": per_topic,
        "seed": seed,
        "positives": {
            "weborganizer_formats": list(formats),
            "min_format_confidence": min_confidence,
            "negatives": "other WebOrganizer formats, matched per topic"
                         + (f" and per length bin ({length_bins} positive-length quantile bins)" if length_bins > 0 else ""),
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
    formats: Sequence[int] = POSITIVE_FORMATS,
    min_confidence: float = MIN_FORMAT_CONFIDENCE,
    length_bins: int = 0,
    **kw,
):
    """Build the training set from the corpus, train on the non-test ids, evaluate on the test ids.

    Returns ``(model, report)``; ``report`` has accuracy, auc, n_train, n_test, n_pos, n_neg,
    params, train_seconds.
    """
    sel_texts, labels, info = build_dclm_training_set(
        ids, texts, data_dir, seed=seed, formats=formats, min_confidence=min_confidence, length_bins=length_bins
    )
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
