"""Evaluation helpers for quality scorers: tie-aware ROC-AUC, Spearman's rho, the DCLM human labels.

``roc_auc`` is the Mann-Whitney U statistic with average ranks for ties, divided by
``n_pos * n_neg``; it equals ``sklearn.metrics.roc_auc_score`` (tested). ``spearman`` is Pearson's
correlation of average ranks (scipy's definition). ``load_dclm_human_labels`` reads the 499 web
documents with human majority good (1) / bad (0) votes from mlfoundations/dclm: the honest
validation set for any quality scorer; never train on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

DCLM_HUMAN_MAJORITY = "labels/dclm_human_majority_data.jsonl"


def rankdata(x) -> np.ndarray:
    """Average ranks (1-based, ties get the mean of their ranks), float64."""
    x = np.asarray(x)
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # boundaries of runs of equal values
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    run = np.cumsum(new) - 1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = avg[run]
    return ranks


def roc_auc(scores, labels) -> float:
    """Tie-aware ROC-AUC of ``scores`` for binary ``labels`` (1 = positive); NaN if one class is empty."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.shape[0]} scores but {y.shape[0]} labels")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    u = r[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def spearman(a, b) -> float:
    """Spearman's rank correlation (Pearson on average ranks); NaN when either side is constant."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"lengths differ: {a.shape[0]} vs {b.shape[0]}")
    if a.size < 2:
        return float("nan")
    ra = rankdata(a)
    rb = rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if den == 0:
        return float("nan")
    return float((ra * rb).sum() / den)


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
