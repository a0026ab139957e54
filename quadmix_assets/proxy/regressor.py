"""RegMix's LightGBM regression from domain-weight vectors to proxy loss with a held-out split (RegMix
settings; used by the RegMix baseline of ``quadmix compare``). The QuaDMix regressor is
:mod:`quadmix_assets.proxy.surrogate`."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np



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
