"""Evaluation helpers and every criterion's ROC-AUC against the DCLM human quality votes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from quadmix_assets.scoring.dclm_classifier import dclm_scores
from quadmix_assets.scoring.evaluation import roc_auc, spearman
from quadmix_assets.scoring.heuristics import heuristic_score, heuristic_signals
from quadmix_assets.scoring.langid import LanguageScorer


@pytest.mark.parametrize("seed", range(8))
def test_roc_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    # heavy ties on even seeds, continuous scores on odd ones
    s = rng.integers(0, 4, n).astype(float) if seed % 2 == 0 else rng.normal(size=n) + y
    assert roc_auc(s, y) == roc_auc_score(y, s)  # the library's own number, not a re-implementation


def test_roc_auc_edges():
    assert roc_auc([0.1, 0.2, 0.3], [0, 0, 1]) == 1.0
    assert roc_auc([0.3, 0.2, 0.1], [0, 0, 1]) == 0.0
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    assert np.isnan(roc_auc([1, 2], [1, 1]))
    with pytest.raises(ValueError):
        roc_auc([1, 2, 3], [0, 1])


def test_spearman_is_scipys():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 10, 200).astype(float)
    b = a + rng.normal(size=200) * 3
    assert spearman(a, b) == spearmanr(a, b).statistic
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3])) and np.isnan(spearman([1, 2, 3], [4, 4, 4]))
    assert np.isnan(spearman([1.0], [2.0]))
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_human_labels_load(human_labels):
    texts, y = human_labels
    assert len(texts) == y.size == 499
    assert set(np.unique(y).tolist()) == {0, 1}
    assert all(isinstance(t, str) and t for t in texts)


def test_criteria_vs_human_votes(human_labels, dclm_trained):
    """Each criterion's ROC-AUC against the 499 human good/bad votes (never trained on).

    Measured on the full corpus: DCLM stand-in 0.78-0.79 over four training seeds, heuristic ~0.81, langid
    ~0.70 (benchmarks/RESULTS.md). The DCLM model is the pipeline's (trained on the whole reference corpus),
    held to the goal of 0.75; the others really beat chance, and are asserted to.
    """
    texts, y = human_labels
    model, _ = dclm_trained
    aucs = {
        "dclm": roc_auc(dclm_scores(model, texts), y),
        "heuristic": roc_auc(heuristic_score(heuristic_signals(texts)), y),
        "langid": roc_auc(LanguageScorer().score(texts), y),
    }
    print("ROC-AUC vs DCLM human votes:", {k: round(v, 3) for k, v in aucs.items()})
    assert all(np.isfinite(v) for v in aucs.values())
    assert aucs["heuristic"] > 0.7, aucs
    assert aucs["langid"] > 0.6, aucs
    assert aucs["dclm"] >= 0.75, aucs
