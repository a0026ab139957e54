import numpy as np

from quadmix_assets.method.params import ParamSpace, QuadMixParams
from quadmix_assets.proxy.regressor import fit_regressor, load_booster, save_booster, search


def _loss(X):
    return 3.0 + np.sin(3 * X[:, 0]) + (X[:, 1] - 0.5) ** 2 + 0.5 * X[:, 2]


def test_fit_save_load_search(tmp_path):
    space = ParamSpace(n_domains=3, n_criteria=2)
    X = ParamSpace.arrays_to_matrix(space.sample_arrays(600, 1))
    y = _loss(X)
    booster, rep = fit_regressor(X, y, feature_names=space.feature_names(), seed=0)
    assert rep["spearman"] > 0.9 and rep["n_valid"] == 120
    assert set(rep["importance_gain"]) == set(space.feature_names())
    path = tmp_path / "model.txt"
    save_booster(booster, path)
    assert path.read_text().startswith("tree")
    again = load_booster(path)
    np.testing.assert_array_equal(again.predict(X), booster.predict(X, num_iteration=booster.best_iteration))
    best, info = search(again, space, n=5000, seed=2, top_k=10)
    assert isinstance(best, QuadMixParams) and best.n_domains == 3
    np.testing.assert_allclose(best.alpha.sum(1), 1.0)
    assert len(info["top_predicted_losses"]) == 10
    assert info["predicted_loss_of_mean"] < info["median_predicted_loss"]
    assert max(info["top_predicted_losses"]) <= info["median_predicted_loss"]
