"""LightGBM regression from config vectors to proxy loss, and the search for the best config
(QUADMIX.md section 5; RegMix settings). Models are saved in LightGBM's text format, never pickled."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..method.params import ParamSpace, QuadMixParams


def _lgb_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_")


def _params(seed: int) -> dict:
    return {"objective": "regression", "learning_rate": 0.01, "num_leaves": 31, "min_data_in_leaf": 5,
            "feature_fraction": 1.0, "bagging_fraction": 1.0, "seed": int(seed), "deterministic": True,
            "force_row_wise": True, "num_threads": 1, "verbosity": -1}


def fit_regressor(X, y, *, feature_names: Sequence[str], seed: int = 0, valid_fraction: float = 0.2,
                  num_boost_round: int = 1000, early_stopping_rounds: int = 50):
    """Fit on a seeded random (1 - valid_fraction) of the configs, early-stop on the rest.
    Returns ``(booster, report)``; report: spearman, mae on the held-out configs, n_train, n_valid,
    best_iteration, importance_gain {feature: gain}."""
    import lightgbm as lgb
    from scipy.stats import spearmanr

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    orig = [str(n) for n in feature_names]
    names = [_lgb_name(n) for n in orig]  # LightGBM rejects JSON special characters; report uses orig
    if X.shape[1] != len(names):
        raise ValueError(f"X has {X.shape[1]} columns, {len(names)} feature names")
    keep = np.isfinite(y)
    X, y = X[keep], y[keep]
    perm = np.random.default_rng(seed).permutation(len(y))
    nv = max(1, int(round(len(y) * valid_fraction)))
    va, tr = perm[:nv], perm[nv:]
    dtr = lgb.Dataset(X[tr], y[tr], feature_name=names, free_raw_data=False)
    dva = lgb.Dataset(X[va], y[va], reference=dtr)
    booster = lgb.train(_params(seed), dtr, num_boost_round=num_boost_round, valid_sets=[dva],
                        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)])
    pred = booster.predict(X[va], num_iteration=booster.best_iteration)
    rho = float(spearmanr(pred, y[va]).statistic) if nv > 2 else float("nan")
    gain = booster.feature_importance(importance_type="gain")
    report = {"spearman": rho, "mae": float(np.mean(np.abs(pred - y[va]))),
              "mae_constant": float(np.mean(np.abs(np.mean(y[tr]) - y[va]))), "n_train": int(len(tr)),
              "n_valid": int(nv), "n_dropped_nonfinite": int((~keep).sum()),
              "best_iteration": int(booster.best_iteration or booster.current_iteration()),
              "importance_gain": {n: float(g) for n, g in sorted(zip(orig, gain), key=lambda t: -t[1])},
              "valid_rows": [int(i) for i in np.flatnonzero(keep)[va]],
              "valid_predicted": [float(v) for v in pred], "valid_actual": [float(v) for v in y[va]]}
    return booster, report


def cross_validated_spearman(X, y, *, seed: int = 0, folds: int = 5, num_boost_round: int = 1000,
                             early_stopping_rounds: int = 50) -> dict:
    """Spearman rho of out-of-fold predictions over every config (``folds``-fold, seeded): a steadier
    figure than one small held-out split. Within each fold the model early-stops on a seeded 20% of
    that fold's training configs, never on the fold being predicted."""
    import lightgbm as lgb
    from scipy.stats import spearmanr

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y)
    X, y = X[keep], y[keep]
    n = len(y)
    if n < 2 * folds:
        return {"cv_spearman": float("nan"), "cv_mae": float("nan"), "folds": int(folds), "n": int(n)}
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    oof = np.empty(n)
    for f in range(folds):
        test = np.flatnonzero(fold_of == f)
        rest = np.flatnonzero(fold_of != f)
        perm = np.random.default_rng(seed + 1 + f).permutation(len(rest))
        nv = max(1, len(rest) // 5)
        va, tr = rest[perm[:nv]], rest[perm[nv:]]
        dtr = lgb.Dataset(X[tr], y[tr], free_raw_data=False)
        dva = lgb.Dataset(X[va], y[va], reference=dtr)
        b = lgb.train(_params(seed), dtr, num_boost_round=num_boost_round, valid_sets=[dva],
                      callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)])
        oof[test] = b.predict(X[test], num_iteration=b.best_iteration)
    return {"cv_spearman": float(spearmanr(oof, y).statistic), "cv_mae": float(np.mean(np.abs(oof - y))),
            "folds": int(folds), "n": int(n)}


def save_booster(booster, path) -> None:
    booster.save_model(str(path), num_iteration=booster.best_iteration or None)


def load_booster(path):
    import lightgbm as lgb

    return lgb.Booster(model_file=str(path))


def search(booster, space: ParamSpace, n: int = 100_000, seed: int = 0, top_k: int = 10):
    """Predict ``n`` fresh configs from ``space`` (seeded), return the element-wise mean of the ``top_k``
    with the lowest predicted loss (``QuadMixParams.mean``) and info (top-k predictions, n, seed,
    prediction of the mean config, median prediction)."""
    arr = space.sample_arrays(n, seed)
    X = ParamSpace.arrays_to_matrix(arr)
    pred = booster.predict(X, num_iteration=booster.best_iteration or None)
    top = np.argsort(pred, kind="stable")[:top_k]
    configs = [QuadMixParams(alpha=arr["alpha"][i], lam=arr["lam"][i], omega=arr["omega"][i],
                             eta=arr["eta"][i], eps=arr["eps"][i]) for i in top]
    best = QuadMixParams.mean(configs)
    pred_best = float(booster.predict(best.to_vector()[None, :], num_iteration=booster.best_iteration or None)[0])
    info = {"top_predicted_losses": [float(pred[i]) for i in top], "n": int(n), "seed": int(seed),
            "top_k": int(top_k), "predicted_loss_of_mean": pred_best, "median_predicted_loss": float(np.median(pred))}
    return best, info
