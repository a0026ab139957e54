"""QuadMixParams and ParamSpace (QUADMIX.md sections 3-4)."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quadmix_assets.method import ParamSpace, QuadMixParams
from quadmix_assets_tests.method import reference as ref


def simple_params(**over):
    base = dict(
        alpha=[[0.5, 0.5], [0.25, 0.75]],
        lam=[10.0, 100.0],
        omega=[0.1, 0.05],
        eta=[0.5, 1.0],
        eps=[0.001, 0.0],
    )
    base.update(over)
    return QuadMixParams(**base)


# ---------------------------------------------------------------------------- QuadMixParams
def test_shapes_and_readonly_copies():
    alpha = np.array([[0.5, 0.5], [0.25, 0.75]])
    lam = np.array([10.0, 100.0])
    p = QuadMixParams(alpha=alpha, lam=lam, omega=[0.1, 0.05], eta=[0.5, 1.0], eps=[0.001, 0.0])
    assert p.n_domains == 2 and p.n_criteria == 2
    assert p.alpha.dtype == np.float64 and p.lam.dtype == np.float64
    alpha[0, 0] = 0.9  # the config keeps its own copy
    lam[0] = 5.0
    assert p.alpha[0, 0] == 0.5 and p.lam[0] == 10.0
    with pytest.raises(ValueError):
        p.alpha[0, 0] = 0.1
    with pytest.raises(ValueError):
        p.eps[0] = 0.1


@pytest.mark.parametrize(
    "over, message",
    [
        (dict(alpha=[0.5, 0.5]), "shape"),
        (dict(alpha=[[0.5, 0.5]]), r"shape \(1,\)"),
        (dict(lam=[10.0]), "lam must have shape"),
        (dict(alpha=[[0.6, 0.6], [0.25, 0.75]]), "sum to 1"),
        (dict(alpha=[[1.5, -0.5], [0.25, 0.75]]), ">= 0"),
        (dict(alpha=[[np.nan, 0.5], [0.25, 0.75]]), "finite"),
        (dict(lam=[0.0, 1.0]), "lambda must be > 0"),
        (dict(lam=[np.inf, 1.0]), "finite"),
        (dict(omega=[-0.01, 0.1]), "omega"),
        (dict(omega=[1.01, 0.1]), "omega"),
        (dict(eta=[-1e-9, 0.1]), "eta"),
        (dict(eps=[0.0, -1e-12]), "eps"),
    ],
)
def test_validation(over, message):
    with pytest.raises(ValueError, match=message):
        simple_params(**over)


def test_row_sum_tolerance():
    simple_params(alpha=[[0.5 + 4e-7, 0.5], [0.25, 0.75]])  # within 1e-6: accepted
    with pytest.raises(ValueError):
        simple_params(alpha=[[0.5 + 2e-6, 0.5], [0.25, 0.75]])


def test_edge_values_accepted():
    p = simple_params(omega=[0.0, 1.0], eta=[0.0, 0.0], eps=[0.0, 0.0], lam=[1e-9, 1000.0])
    assert p.omega.tolist() == [0.0, 1.0]


def test_config_id_pinned():
    p = simple_params()
    expected_json = (
        '{"alpha":["0.5","0.5","0.25","0.75"],"eps":["0.001","0.0"],"eta":["0.5","1.0"],'
        '"lambda":["10.0","100.0"],"omega":["0.1","0.05"],"shape":[2,2]}'
    )
    assert p.canonical_json() == expected_json
    assert p.config_id == hashlib.sha256(expected_json.encode()).hexdigest()[:16]
    # Regression literal, computed once: it must never change across runs, machines or versions.
    assert p.config_id == "c8c3ce0bed966c1d"


def test_config_id_distinguishes_configs():
    p = simple_params()
    ids = {p.config_id}
    ids.add(simple_params(lam=[10.0, np.nextafter(100.0, 200.0)]).config_id)
    ids.add(simple_params(alpha=[[0.5, 0.5], [0.75, 0.25]]).config_id)
    ids.add(simple_params(eps=[0.0, 0.001]).config_id)
    ids.add(simple_params(omega=[0.05, 0.1]).config_id)
    assert len(ids) == 5
    # the same numbers (even from different containers / -0.0) give the same id
    assert simple_params(eps=np.array([0.001, -0.0])).config_id == p.config_id
    assert hash(simple_params()) == hash(p) and simple_params() == p


def test_config_ids_of_samples_distinct():
    configs = ParamSpace(4, 3).sample(500, seed=3)
    assert len({c.config_id for c in configs}) == 500
    assert all(len(c.config_id) == 16 and int(c.config_id, 16) >= 0 for c in configs)


def test_vector_round_trip_and_names():
    p = ParamSpace(3, 2).sample(1, seed=11)[0]
    v = p.to_vector()
    assert v.shape == (3 * (2 + 4),) and v.dtype == np.float64
    np.testing.assert_array_equal(v[:6], p.alpha.reshape(-1))
    np.testing.assert_array_equal(v[6:9], p.lam)
    np.testing.assert_array_equal(v[9:12], p.omega)
    np.testing.assert_array_equal(v[12:15], p.eta)
    np.testing.assert_array_equal(v[15:18], p.eps)
    q = QuadMixParams.from_vector(v, 3, 2)
    assert q == p and q.config_id == p.config_id
    names = QuadMixParams.feature_names(3, 2)
    assert len(names) == len(v)
    assert names[:3] == ["alpha[0,0]", "alpha[0,1]", "alpha[1,0]"]
    assert names[5] == "alpha[2,1]"
    assert names[6:9] == ["lambda[0]", "lambda[1]", "lambda[2]"]
    assert names[9] == "omega[0]" and names[12] == "eta[0]" and names[17] == "eps[2]"
    with pytest.raises(ValueError):
        QuadMixParams.from_vector(v[:-1], 3, 2)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 4))
def test_dict_round_trip_exact(seed, m, n):
    p = ParamSpace(m, n, omega_max=1.0, lambda_scale="linear").sample(1, seed)[0]
    d = json.loads(json.dumps(p.to_dict()))
    assert isinstance(d["alpha"][0][0], float)
    q = QuadMixParams.from_dict(d)
    assert q == p and q.config_id == p.config_id
    np.testing.assert_array_equal(QuadMixParams.from_vector(p.to_vector(), m, n).to_vector(), p.to_vector())


def test_mean_renormalises():
    a, b = ParamSpace(3, 2).sample(2, seed=5)
    avg = QuadMixParams.mean([a, b])
    np.testing.assert_allclose(avg.alpha.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(avg.lam, (a.lam + b.lam) / 2)
    raw = (a.alpha + b.alpha) / 2
    np.testing.assert_allclose(avg.alpha, raw / raw.sum(axis=1, keepdims=True))


# ---------------------------------------------------------------------------- ParamSpace
def test_space_validation():
    for bad in (dict(omega_max=0.0), dict(omega_max=1.5), dict(lambda_scale="exp"), dict(n_domains=0)):
        kw = dict(n_domains=2, n_criteria=3)
        kw.update(bad)
        with pytest.raises(ValueError):
            ParamSpace(**kw)
    assert ParamSpace(24, 3).n_features == 24 * 7


@pytest.mark.parametrize("scale", ["log", "linear"])
def test_sample_ranges_and_shapes(scale):
    sp = ParamSpace(5, 3, omega_max=0.3, lambda_scale=scale)
    arr = sp.sample_arrays(4000, seed=1)
    assert arr["alpha"].shape == (4000, 5, 3)
    for k in ("lam", "omega", "eta", "eps"):
        assert arr[k].shape == (4000, 5)
    assert (arr["alpha"] >= 0).all()
    np.testing.assert_allclose(arr["alpha"].sum(axis=2), 1.0, atol=1e-12)
    lam = arr["lam"]
    if scale == "log":
        assert lam.min() >= 1.0 and lam.max() < 1000.0
        # log-uniform: the median of log10(lambda) is near 1.5
        assert abs(np.median(np.log10(lam)) - 1.5) < 0.05
    else:
        assert lam.min() > 0.0 and lam.max() <= 1000.0
        assert abs(np.median(lam) - 500.0) < 20.0
    assert arr["omega"].min() >= 0 and arr["omega"].max() < 0.3
    assert arr["omega"].max() > 0.29  # the whole range is used
    assert arr["eta"].min() >= 0 and arr["eta"].max() < 1
    assert arr["eps"].min() >= 0 and arr["eps"].max() < 1e-3


@pytest.mark.parametrize("scale,omega_max", [("log", 0.1), ("linear", 0.5)])
def test_sample_matches_reference_algorithm(scale, omega_max):
    sp = ParamSpace(4, 3, omega_max=omega_max, lambda_scale=scale)
    arr = sp.sample_arrays(30, seed=42)
    expected = ref.draw_configs(30, 42, 4, 3, omega_max=omega_max, lambda_scale=scale)
    for i, e in enumerate(expected):
        np.testing.assert_allclose(arr["alpha"][i], e["alpha"], rtol=1e-12, atol=0)
        np.testing.assert_allclose(arr["lam"][i], e["lambda"], rtol=1e-12, atol=0)
        np.testing.assert_allclose(arr["omega"][i], e["omega"], rtol=1e-15, atol=0)
        np.testing.assert_array_equal(arr["eta"][i], e["eta"])
        np.testing.assert_allclose(arr["eps"][i], e["eps"], rtol=1e-15, atol=0)


def test_same_seed_same_configs_and_sample_consistency():
    sp = ParamSpace(6, 3)
    a = sp.sample(20, seed=7)
    b = sp.sample(20, seed=7)
    assert [x.config_id for x in a] == [x.config_id for x in b]
    c = sp.sample(20, seed=8)
    assert not set(x.config_id for x in a) & set(x.config_id for x in c)
    arr = sp.sample_arrays(20, seed=7)
    np.testing.assert_array_equal(arr["alpha"][3], a[3].alpha)
    np.testing.assert_array_equal(arr["eps"][19], a[19].eps)
    mat = ParamSpace.arrays_to_matrix(arr)
    assert mat.shape == (20, sp.n_features)
    for i in (0, 9, 19):
        np.testing.assert_array_equal(mat[i], a[i].to_vector())
    assert sp.feature_names() == QuadMixParams.feature_names(6, 3)


def test_first_draws_pinned():
    # The documented draw order is part of reproducibility: pin a few numbers.
    sp = ParamSpace(2, 2)
    rng = np.random.default_rng(123)
    a = rng.random((1, 2))
    b = rng.random((1, 2, 2))
    u_lam = rng.random((1, 2))
    u_omega = rng.random((1, 2))
    eta = rng.random((1, 2))
    u_eps = rng.random((1, 2))
    p = sp.sample(1, seed=123)[0]
    at = a[0] / a[0].sum()
    num = at * b[0]
    np.testing.assert_allclose(p.alpha, num / num.sum(axis=1, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(p.lam, 10.0 ** (3 * u_lam[0]), rtol=1e-14)
    np.testing.assert_array_equal(p.omega, 0.1 * u_omega[0])
    np.testing.assert_array_equal(p.eta, eta[0])
    np.testing.assert_array_equal(p.eps, u_eps[0] / 1000.0)


def test_sample_arrays_is_vectorised():
    sp = ParamSpace(24, 3)
    sp.sample_arrays(1000, seed=0)
    t0 = time.perf_counter()
    arr = sp.sample_arrays(100_000, seed=0)
    elapsed = time.perf_counter() - t0
    assert arr["alpha"].shape == (100_000, 24, 3)
    # well under a second on an idle core; generous bound for shared CI machines
    assert elapsed < 3.0, elapsed


def test_pickle_and_deepcopy_keep_frozen_arrays():
    import copy
    import pickle

    p = ParamSpace(3, 2).sample(1, seed=0)[0]
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):
        assert q == p and q.config_id == p.config_id
        assert not q.alpha.flags.writeable and not q.lam.flags.writeable
