"""One regressor interface from configs to proxy loss: fit / predict / save / load, several models behind
it, and the choice between them by repeated cross-validation.

A surrogate is a (feature set, model) pair:

* feature sets: ``raw`` (the paper's M*(N+4) config numbers), ``stats`` (statistics of the mixture the
  config samples, :mod:`quadmix_assets.proxy.features`), ``raw+stats``;
* models: ``ridge`` (standardised features, ridge penalty chosen by leave-one-out inside the fit),
  ``gp`` (Gaussian process, RBF + white noise on standardised features, hyper-parameters by marginal
  likelihood), ``lgbm`` (LightGBM sized for tens of points: 4 leaves, 3 points per leaf, 200 rounds).

Every model saves to JSON (LightGBM: its text format inside the JSON), never a pickle; loading gives the
same predictions. :func:`select_surrogate` scores every candidate by repeated K-fold cross-validated
Spearman rho (out-of-fold predictions of each repetition ranked against the measured losses) and refits
the best on all points. Swapping in another model = one class here with the same five methods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr

FEATURE_SETS = ("raw", "stats", "raw+stats", "quality", "compact")


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    return mean, scale


class RidgeModel:
    name = "ridge"

    def __init__(self, state: dict | None = None):
        self.state = state

    def fit(self, X, y, seed: int = 0) -> "RidgeModel":
        from sklearn.linear_model import RidgeCV

        X = np.asarray(X, np.float64)
        mean, scale = _standardise(X)
        m = RidgeCV(alphas=np.logspace(-2, 4, 25)).fit((X - mean) / scale, y)
        self.state = {"mean": mean.tolist(), "scale": scale.tolist(), "coef": m.coef_.tolist(),
                      "intercept": float(m.intercept_), "penalty": float(m.alpha_)}
        return self

    def predict(self, X) -> np.ndarray:
        s = self.state
        Z = (np.asarray(X, np.float64) - np.asarray(s["mean"])) / np.asarray(s["scale"])
        return Z @ np.asarray(s["coef"]) + s["intercept"]

    def to_json(self) -> dict:
        return dict(self.state)

    def importance(self, names) -> dict[str, float]:
        return {n: abs(float(c)) for n, c in zip(names, self.state["coef"])}


class GPModel:
    name = "gp"

    def __init__(self, state: dict | None = None):
        self.state = state
        self._gp = None

    @staticmethod
    def _kernel(n_features: int):
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        return ConstantKernel(1.0, (1e-3, 1e3)) * RBF(length_scale=np.sqrt(n_features), length_scale_bounds=(1e-2, 1e4)) \
            + WhiteKernel(0.5, (1e-4, 1e1))

    def fit(self, X, y, seed: int = 0) -> "GPModel":
        from sklearn.gaussian_process import GaussianProcessRegressor

        X = np.asarray(X, np.float64)
        mean, scale = _standardise(X)
        gp = GaussianProcessRegressor(self._kernel(X.shape[1]), normalize_y=True, random_state=seed)
        gp.fit((X - mean) / scale, y)
        self.state = {"mean": mean.tolist(), "scale": scale.tolist(), "X": ((X - mean) / scale).tolist(),
                      "y": np.asarray(y, np.float64).tolist(), "theta": gp.kernel_.theta.tolist(),
                      "kernel": str(gp.kernel_)}
        self._gp = gp
        return self

    def _model(self):
        if self._gp is None:  # rebuilt from JSON: the fitted kernel, no optimisation (same predictions)
            from sklearn.gaussian_process import GaussianProcessRegressor

            Xs = np.asarray(self.state["X"])
            kernel = self._kernel(Xs.shape[1]).clone_with_theta(np.asarray(self.state["theta"]))
            self._gp = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None).fit(Xs, np.asarray(self.state["y"]))
        return self._gp

    def predict(self, X) -> np.ndarray:
        Z = (np.asarray(X, np.float64) - np.asarray(self.state["mean"])) / np.asarray(self.state["scale"])
        out = np.empty(len(Z))
        gp = self._model()
        for lo in range(0, len(Z), 8192):
            out[lo:lo + 8192] = gp.predict(Z[lo:lo + 8192])
        return out

    def to_json(self) -> dict:
        return dict(self.state)

    def importance(self, names) -> dict[str, float]:
        return {}


class LGBMModel:
    name = "lgbm"
    ROUNDS = 200

    def __init__(self, state: dict | None = None):
        self.state = state
        self._booster = None

    @staticmethod
    def params(seed: int) -> dict:
        return {"objective": "regression", "learning_rate": 0.05, "num_leaves": 4, "min_data_in_leaf": 3,
                "feature_fraction": 0.8, "feature_fraction_seed": int(seed), "lambda_l2": 1.0, "seed": int(seed),
                "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbosity": -1,
                "min_data_in_bin": 1}

    def fit(self, X, y, seed: int = 0) -> "LGBMModel":
        import lightgbm as lgb

        X = np.asarray(X, np.float64)
        booster = lgb.train(self.params(seed), lgb.Dataset(X, np.asarray(y, np.float64), params={"verbosity": -1}),
                            num_boost_round=self.ROUNDS)
        self.state = {"model_text": booster.model_to_string()}
        self._booster = booster
        return self

    def _model(self):
        if self._booster is None:
            import lightgbm as lgb

            self._booster = lgb.Booster(model_str=self.state["model_text"])
        return self._booster

    def predict(self, X) -> np.ndarray:
        return self._model().predict(np.asarray(X, np.float64))

    def to_json(self) -> dict:
        return dict(self.state)

    def importance(self, names) -> dict[str, float]:
        gain = self._model().feature_importance(importance_type="gain")
        return {n: float(g) for n, g in zip(names, gain)}


MODELS = {m.name: m for m in (RidgeModel, GPModel, LGBMModel)}
# (model, feature set) pairs scored by select_surrogate; the paper's choice (lgbm on raw numbers) included
CANDIDATES = (("ridge", "quality"), ("ridge", "compact"), ("gp", "compact"), ("ridge", "stats"), ("gp", "stats"),
              ("lgbm", "stats"), ("ridge", "raw+stats"), ("lgbm", "raw"))


def _stats_columns(feature_set: str, n_stats: int, n_criteria: int) -> slice:
    """``quality``: the N per-criterion quality means; ``compact``: those and the 3 size statistics (the
    last N + 3 columns of the statistics, after the M domain shares)."""
    return slice(n_stats - 3 - n_criteria, n_stats - 3) if feature_set == "quality" else slice(n_stats - 3 - n_criteria, n_stats)


def feature_matrix(feature_set: str, raw: np.ndarray, stats: np.ndarray, n_criteria: int | None = None) -> np.ndarray:
    if feature_set == "raw":
        return raw
    if feature_set == "stats":
        return stats
    if feature_set in ("quality", "compact"):
        if n_criteria is None:
            raise ValueError(f"feature set {feature_set!r} needs the number of criteria")
        return stats[:, _stats_columns(feature_set, stats.shape[1], n_criteria)]
    if feature_set == "raw+stats":
        return np.concatenate([raw, stats], axis=1)
    raise ValueError(f"unknown feature set {feature_set!r}; choose one of {FEATURE_SETS}")


@dataclass
class Surrogate:
    """A fitted (model, feature set) pair and how it was chosen."""

    model_name: str
    feature_set: str
    model: object
    feature_names: list[str]
    report: dict = field(default_factory=dict)
    n_criteria: int | None = None

    def predict(self, raw: np.ndarray, stats: np.ndarray) -> np.ndarray:
        return self.model.predict(feature_matrix(self.feature_set, raw, stats, self.n_criteria))

    def to_json(self) -> str:
        return json.dumps({"model": self.model_name, "feature_set": self.feature_set, "feature_names": self.feature_names,
                           "n_criteria": self.n_criteria, "state": self.model.to_json(), "report": self.report}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Surrogate":
        d = json.loads(text)
        return cls(d["model"], d["feature_set"], MODELS[d["model"]](d["state"]), d["feature_names"], d.get("report", {}),
                   d.get("n_criteria"))


def _spearman(a, b) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def repeated_cv(model_name: str, X: np.ndarray, y: np.ndarray, *, folds: int = 5, repeats: int = 5, seed: int = 0) -> dict:
    """Repeated K-fold CV of one model: mean and SD over repetitions of the Spearman rho of the
    out-of-fold predictions, and their mean absolute error (with a constant predictor's beside it)."""
    n = len(y)
    if n < 2 * folds:
        return {"cv_spearman": float("nan"), "cv_spearman_sd": float("nan"), "cv_mae": float("nan"),
                "cv_mae_constant": float("nan"), "n": int(n)}
    rhos, maes, const = [], [], []
    for rep in range(repeats):
        fold = np.random.default_rng([seed, rep]).permutation(n) % folds
        oof = np.empty(n)
        cst = np.empty(n)
        for f in range(folds):
            te, tr = fold == f, fold != f
            oof[te] = MODELS[model_name]().fit(X[tr], y[tr], seed=seed + rep).predict(X[te])
            cst[te] = y[tr].mean()
        rhos.append(_spearman(oof, y))
        maes.append(float(np.mean(np.abs(oof - y))))
        const.append(float(np.mean(np.abs(cst - y))))
    return {"cv_spearman": float(np.nanmean(rhos)), "cv_spearman_sd": float(np.nanstd(rhos)), "cv_mae": float(np.mean(maes)),
            "cv_mae_constant": float(np.mean(const)), "n": int(n), "folds": folds, "repeats": repeats}


def select_surrogate(raw: np.ndarray, stats: np.ndarray, y: np.ndarray, *, raw_names: list[str], stats_names: list[str],
                     n_criteria: int, candidates=CANDIDATES, folds: int = 5, repeats: int = 5, seed: int = 0) -> Surrogate:
    """Score every (model, feature set) candidate by repeated K-fold CV Spearman, refit the best on all
    points. The report lists every candidate's scores and the choice."""
    y = np.asarray(y, np.float64)
    scores = {}
    for model_name, fs in candidates:
        scores[f"{model_name}/{fs}"] = repeated_cv(model_name, feature_matrix(fs, raw, stats, n_criteria), y, folds=folds,
                                                   repeats=repeats, seed=seed)
    key = max(scores, key=lambda k: (np.nan_to_num(scores[k]["cv_spearman"], nan=-2.0), -list(scores).index(k)))
    model_name, fs = key.split("/")
    if fs in ("quality", "compact"):
        names = stats_names[_stats_columns(fs, len(stats_names), n_criteria)]
    else:
        names = {"raw": raw_names, "stats": stats_names, "raw+stats": raw_names + stats_names}[fs]
    model = MODELS[model_name]().fit(feature_matrix(fs, raw, stats, n_criteria), y, seed=seed)
    report = {"chosen": key, "candidates": scores, **scores[key], "n": int(len(y)),
              "selection_note": f"best of {len(scores)} candidates by the same CV: its score is slightly optimistic",
              "importance": dict(sorted(model.importance(names).items(), key=lambda t: -t[1])[:15])}
    return Surrogate(model_name, fs, model, names, report, n_criteria)
