import numpy as np

from quadmix_assets.method.params import ParamSpace
from quadmix_assets.proxy.regressor import fit_regressor


def _loss(X):
    return 3.0 + np.sin(3 * X[:, 0]) + (X[:, 1] - 0.5) ** 2 + 0.5 * X[:, 2]


def test_fit_reports_held_out_fit():
    space = ParamSpace(n_domains=3, n_criteria=2)
    X = ParamSpace.arrays_to_matrix(space.sample_arrays(600, 1))
    y = _loss(X)
    booster, rep = fit_regressor(X, y, feature_names=space.feature_names(), seed=0)
    assert rep["spearman"] > 0.9 and rep["n_valid"] == 120
    assert set(rep["importance_gain"]) == set(space.feature_names())
    assert booster.model_to_string().startswith("tree")
