"""Evaluation helpers for quality scorers: ROC-AUC and Spearman's rho (scikit-learn and scipy, with the
checks and the NaN conventions the pipeline relies on), and the DCLM human labels.

``load_dclm_human_labels`` reads the 499 web documents with human majority good (1) / bad (0) votes from
mlfoundations/dclm: the honest validation set for any quality scorer; never train on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

DCLM_HUMAN_MAJORITY = "labels/dclm_human_majority_data.jsonl"


def roc_auc(scores, labels) -> float:
    """Tie-aware ROC-AUC of ``scores`` for binary ``labels`` (1 = positive), ``sklearn.metrics.roc_auc_score``;
    NaN if one class is empty (scikit-learn raises there), ValueError on NaN scores or mismatched lengths."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.shape[0]} scores but {y.shape[0]} labels")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def spearman(a, b) -> float:
    """Spearman's rank correlation, ``scipy.stats.spearmanr``; NaN when either side is constant or shorter
    than 2 (quietly: a constant side is an expected outcome here, e.g. a scorer that ties everything)."""
    from scipy.stats import spearmanr

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"lengths differ: {a.shape[0]} vs {b.shape[0]}")
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def load_dclm_human_labels(data_dir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """The 499 DCLM human-vote documents: ``(texts, labels)`` with labels ``int8`` 1 = good."""
    path = Path(data_dir) / DCLM_HUMAN_MAJORITY
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(int(row["label"]))
    return texts, np.asarray(labels, dtype=np.int8)
