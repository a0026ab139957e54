"""A toy quality criterion with a trained model, in one module: ``toyfit``, a scikit-learn ridge regression of
the FineWeb-Edu prompt score on three surface features (share of letters, mean word length, log length),
fitted on the first ``docs`` documents of ``labels/fineweb_edu_prompt_scores.csv`` (a preset option, default
40; settable per run as ``criteria: {toyfit: {docs: "20"}}``), or imported from the JSON file the ``model``
setting names. It exists only in the tests.

This module is all a criterion with a model needs: the feature and training functions, the scorer, and
:data:`TOYFIT`, the registry entry. Its model asset (``toyfit_model``), its per-shard scores
(``quality_toyfit``), its options, its column in the normaliser and the mixtures are generated from the entry.
It reaches the registry either by ``register_criterion(TOYFIT)`` or through the ``quadmix.criteria``
entry-point group (``toyfit = quadmix_assets_tests.toy_model_criterion:TOYFIT``), see
``test_criterion_registry.py``.
"""

from __future__ import annotations

import json

import numpy as np

from quadmix_assets.scoring.criteria import Criterion, Model, Option, Scored
from quadmix_assets.scoring.stored_models import BuiltModel
from quadmix_assets.storage import StorageRoot, content_hash, layout

NAME = "toyfit"
MODEL = "toyfit_model"


def features(texts: list[str]) -> np.ndarray:
    rows = []
    for t in texts:
        words = t.split()
        rows.append([sum(ch.isalpha() for ch in t) / max(len(t), 1),
                     sum(len(w) for w in words) / max(len(words), 1) / 10.0,
                     np.log1p(len(t)) / 10.0])
    return np.asarray(rows, dtype=np.float64).reshape(len(texts), 3)


def build(settings, storage: StorageRoot) -> BuiltModel:
    """Fit (or import) the model and store it as its card, ``models/toyfit_model/model.json``."""
    from sklearn.linear_model import Ridge

    from quadmix_assets.scoring.cards import load_fineweb_edu_prompt_scores

    opts = settings.config().criterion(NAME)
    if opts["model"]:
        with open(opts["model"], encoding="utf-8") as f:
            model = {k: v for k, v in json.load(f).items() if k in ("coef", "intercept")}
        model["trained_here"] = False
    else:
        texts, scores = load_fineweb_edu_prompt_scores(settings.data_dir)
        n = min(int(opts["docs"]), len(texts))
        fit = Ridge(alpha=1.0).fit(features(texts[:n]), scores[:n])
        model = {"coef": [float(v) for v in fit.coef_], "intercept": float(fit.intercept_), "n_train": n,
                 "trained_here": True}
    model["version"] = content_hash([model["coef"], model["intercept"]])
    uri = storage.write_json(layout.model_card(MODEL), model)
    return BuiltModel(uri=uri, metadata={"n_train": int(model.get("n_train", 0)), "model_version": model["version"]})


def scorer(settings, storage: StorageRoot):
    card = storage.read_json(layout.model_card(MODEL))
    coef, intercept = np.asarray(card["coef"]), float(card["intercept"])

    def score(texts: list[str]) -> Scored:
        return Scored(np.clip(features(texts) @ coef + intercept, 0.0, 5.0))

    return score, {MODEL: card["version"]}


TOYFIT = Criterion(
    NAME,
    "Ridge regression of the FineWeb-Edu prompt score on surface features (a test-only criterion)",
    (0.0, 5.0),
    "quality-toyfit-v1",
    scorer=scorer,
    models=(Model(MODEL, build, "toyfit-model-v1", "The toy criterion's ridge model (test only).", kinds=("sklearn",)),),
    options=(Option("docs", "documents the model is fitted on", 40, type=int, preset=True),
             Option("model", "JSON file {coef, intercept} to import instead of fitting")),
)
