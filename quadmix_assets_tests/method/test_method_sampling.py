"""The sampling function, the deterministic copy draw and sampling_plan (QUADMIX.md section 3)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quadmix_assets.method import (
    ParamSpace,
    QuadMixParams,
    aggregate,
    draw_copies,
    hash_ids,
    sampling_frequency,
    sampling_plan,
)
from quadmix_assets.method.sampling import seed_to_uint64, uniforms
from quadmix_assets_tests.method import reference as ref


def one_domain(lam, omega, eta, eps, n_criteria=1):
    return QuadMixParams(
        alpha=np.full((1, n_criteria), 1.0 / n_criteria), lam=[lam], omega=[omega], eta=[eta], eps=[eps]
    )


# ---------------------------------------------------------------------------- sampling_frequency
lam_st = st.sampled_from([1.0, 1000.0]) | st.floats(1e-3, 1000.0)
omega_st = st.sampled_from([0.0, 1.0, 0.1]) | st.floats(0, 1)
eta_st = st.sampled_from([0.0, 1.0]) | st.floats(0, 1)
eps_st = st.sampled_from([0.0, 0.001]) | st.floats(0, 0.001)


@st.composite
def freq_problem(draw):
    m = draw(st.integers(1, 3))
    params = QuadMixParams(
        alpha=np.ones((m, 1)),
        lam=[draw(lam_st) for _ in range(m)],
        omega=[draw(omega_st) for _ in range(m)],
        eta=[draw(eta_st) for _ in range(m)],
        eps=[draw(eps_st) for _ in range(m)],
    )
    n = draw(st.integers(0, 20))
    # r at the edges, exactly at some omega, or anywhere in [0, 1]
    r_el = st.sampled_from([0.0, 1.0] + params.omega.tolist()) | st.floats(0, 1)
    r = draw(st.lists(r_el, min_size=n, max_size=n))
    d = draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))
    return params, r, d


@settings(max_examples=300, deadline=None)
@given(freq_problem())
def test_frequency_matches_reference(prob):
    p, r, d = prob
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings
        got = sampling_frequency(np.array(r, dtype=np.float64), np.array(d, dtype=np.int64), p)
    for x in range(len(r)):
        m = d[x]
        exp = ref.sampling_value(r[x], p.lam[m], p.omega[m], p.eta[m], p.eps[m])
        if r[x] > p.omega[m]:
            assert got[x] == exp == p.eps[m]  # exact below the threshold
        else:
            assert math.isclose(got[x], exp, rel_tol=1e-12), (got[x], exp)


def test_frequency_landmarks():
    p = QuadMixParams(
        alpha=np.ones((4, 1)),
        lam=[50.0, 1000.0, 1.0, 1000.0],
        omega=[0.2, 1.0, 0.0, 0.5],
        eta=[0.7, 1.0, 0.5, 0.0],
        eps=[0.001, 0.0, 0.0005, 0.002],
    )
    d = [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    r = [0.2, 0.0, 0.3, 0.0, 1.0, 0.0, 0.01, 0.0, 0.5, 0.51]
    s = sampling_frequency(r, d, p)
    assert s[0] == 1.001  # at r = omega: 1 + eps
    assert math.isclose(s[1], (2 / (1 + math.exp(-10))) ** 0.7 + 0.001, rel_tol=1e-12)
    assert s[2] == 0.001  # below the threshold: eps
    assert s[3] == 2.0  # lambda 1000, omega 1, top: 2 ** eta (exp(-1000) underflows to 0, no warning)
    assert s[4] == 1.0  # omega = 1 keeps every document, r = 1 = omega
    assert s[5] == 1.0005 and s[6] == 0.0005  # omega = 0: only r = 0 passes
    assert s[7] == 1.002 and s[8] == 1.002 and s[9] == 0.002  # eta 0: 1 + eps up to omega


def test_frequency_validation():
    p = one_domain(10.0, 0.1, 1.0, 0.0)
    with pytest.raises(ValueError, match="out of range"):
        sampling_frequency([0.1], [1], p)
    with pytest.raises(ValueError):
        sampling_frequency([1.1], [0], p)
    with pytest.raises(ValueError):
        sampling_frequency([np.nan], [0], p)
    with pytest.raises(ValueError):
        sampling_frequency([0.1, 0.2], [0], p)


# ---------------------------------------------------------------------------- draw_copies
def test_splitmix64_known_value():
    # SplitMix64 seeded with 0 outputs 0xE220A8397B1DCDAF first (Vigna's reference sequence).
    assert ref.splitmix64(0) == 0xE220A8397B1DCDAF
    # uniform(key, seed) = splitmix64(key ^ splitmix64(seed)) >> 11, times 2**-53
    key = np.array([0, 1, 2**64 - 1, 0x0123456789ABCDEF], dtype=np.uint64)
    got = uniforms(key, 0)
    for k, u in zip(key.tolist(), got.tolist()):
        assert u == ref.uniform(k, 0)
    assert got[0] == (ref.splitmix64(0 ^ 0xE220A8397B1DCDAF) >> 11) / 2.0**53


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20),
    st.integers(-(2**70), 2**70) | st.text(max_size=20),
    st.lists(st.floats(0, 5), min_size=20, max_size=20),
)
def test_draw_matches_reference(keys, seed, expected):
    exp = np.array(expected[: len(keys)])
    got = draw_copies(exp, np.array(keys, dtype=np.uint64), seed)
    assert got.dtype == np.int64
    assert got.tolist() == [ref.copies(e, k, seed) for e, k in zip(exp.tolist(), keys)]


def test_seed_mapping():
    assert seed_to_uint64(5) == 5
    assert seed_to_uint64(-1) == 2**64 - 1
    assert seed_to_uint64("c8c3ce0bed966c1d") == ref.seed64("c8c3ce0bed966c1d")
    with pytest.raises(TypeError):
        seed_to_uint64(1.5)


def test_str_ids_equal_hashed_keys():
    ids = [f"doc-{i}" for i in range(1000)]
    exp = np.full(1000, 0.5)
    a = draw_copies(exp, ids, "cfg")
    b = draw_copies(exp, hash_ids(ids), "cfg")
    c = draw_copies(exp, np.array(ids), "cfg")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert [ref.doc_key(i) for i in ids[:5]] == hash_ids(ids[:5]).tolist()


def test_deterministic_permutation_and_chunk_invariant():
    rng = np.random.default_rng(1)
    n = 100_000
    keys = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    exp = rng.random(n) * 2.5
    a = draw_copies(exp, keys, "abc")
    np.testing.assert_array_equal(a, draw_copies(exp.copy(), keys.copy(), "abc"))
    perm = rng.permutation(n)
    np.testing.assert_array_equal(draw_copies(exp[perm], keys[perm], "abc"), a[perm])
    cuts = np.sort(rng.choice(n, 7, replace=False))
    chunks = [draw_copies(e, k, "abc") for e, k in zip(np.split(exp, cuts), np.split(keys, cuts))]
    np.testing.assert_array_equal(np.concatenate(chunks), a)
    # another seed changes a fair share of the draws
    b = draw_copies(exp, keys, "abd")
    assert (a != b).mean() > 0.1


def test_integer_part_kept_and_mean_matches():
    rng = np.random.default_rng(2)
    n = 400_000
    keys = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    exp = rng.random(n) * 3.0
    exp[:1000] = np.floor(exp[:1000])  # integral expectations are exact
    c = draw_copies(exp, keys, 12345)
    whole = np.floor(exp).astype(np.int64)
    assert ((c == whole) | (c == whole + 1)).all()
    np.testing.assert_array_equal(c[:1000], whole[:1000])
    # copies - exp has mean 0 and variance frac*(1-frac) <= 1/4 per doc: 6 sigma of the mean
    frac = exp - whole
    sigma = math.sqrt((frac * (1 - frac)).sum()) / n
    assert abs(c.mean() - exp.mean()) < 6 * sigma
    # the uniforms themselves look uniform: every decile holds 10% +- 6 sigma
    u = uniforms(keys, 12345)
    hist = np.histogram(u, bins=10, range=(0, 1))[0] / n
    assert np.abs(hist - 0.1).max() < 6 * math.sqrt(0.09 / n)


def test_draw_validation():
    keys = np.arange(3, dtype=np.uint64)
    for bad in ([0.5, -0.1, 1.0], [0.5, np.nan, 1.0], [0.5, np.inf, 1.0]):
        with pytest.raises(ValueError):
            draw_copies(bad, keys, 0)
    with pytest.raises(ValueError):
        draw_copies([0.5, 0.5], keys, 0)
    assert draw_copies([], np.empty(0, dtype=np.uint64), 0).shape == (0,)
    assert draw_copies([], [], 0).shape == (0,)


# ---------------------------------------------------------------------------- sampling_plan
def _inputs(rng, n, m, n_crit):
    ranks = rng.integers(0, 10, (n, n_crit)) / 9
    domains = rng.integers(0, m, n)
    tokens = rng.integers(0, 100, n)
    keys = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    return ranks, domains, tokens, keys


def test_plan_is_the_composition_and_matches_reference():
    rng = np.random.default_rng(4)
    p = ParamSpace(4, 3, omega_max=0.6).sample(1, seed=9)[0]
    ranks, domains, tokens, keys = _inputs(rng, 300, 4, 3)
    plan = sampling_plan(ranks, domains, tokens, keys, p, p.config_id)
    assert set(plan) == {"qbar", "r", "expected", "copies"}
    qbar, r = aggregate(ranks, domains, tokens, p)
    np.testing.assert_array_equal(plan["qbar"], qbar)
    np.testing.assert_array_equal(plan["r"], r)
    s = sampling_frequency(r, domains, p)
    np.testing.assert_array_equal(plan["expected"], s)
    np.testing.assert_array_equal(plan["copies"], draw_copies(s, keys, p.config_id))
    # and end to end against the naive reference
    eq, er = ref.aggregate(ranks.tolist(), domains.tolist(), tokens.tolist(), p.alpha.tolist())
    assert plan["r"].tolist() == er
    for x in range(300):
        m = domains[x]
        e = ref.sampling_value(er[x], p.lam[m], p.omega[m], p.eta[m], p.eps[m])
        assert math.isclose(plan["expected"][x], e, rel_tol=1e-12)
        # copies from the reference draw on the library's S (S itself may differ by an ulp)
        assert plan["copies"][x] == ref.copies(float(plan["expected"][x]), int(keys[x]), p.config_id)
    assert plan["copies"].sum() > 0


def test_plan_domain_unaware_uses_first_row():
    rng = np.random.default_rng(5)
    p = ParamSpace(3, 2, omega_max=0.5).sample(1, seed=1)[0]
    ranks, domains, tokens, keys = _inputs(rng, 2000, 3, 2)
    plan = sampling_plan(ranks, domains, tokens, keys, p, 7, domain_aware=False)
    first = QuadMixParams(alpha=p.alpha[:1], lam=p.lam[:1], omega=p.omega[:1], eta=p.eta[:1], eps=p.eps[:1])
    zeros = np.zeros(2000, dtype=np.int64)
    expected = sampling_plan(ranks, zeros, tokens, keys, first, 7)
    for k in plan:
        np.testing.assert_array_equal(plan[k], expected[k])
    np.testing.assert_array_equal(sampling_plan(ranks, None, tokens, keys, p, 7, domain_aware=False)["copies"],
                                  plan["copies"])
    # domain-aware differs (other rows are used)
    aware = sampling_plan(ranks, domains, tokens, keys, p, 7)
    assert not np.array_equal(aware["r"], plan["r"])


def test_plan_partition_independent_draws():
    # Splitting the corpus changes r (ranks are corpus-level), but given the same S the draw per
    # document is the same whatever the order: copies depend on (S, key, seed) only.
    rng = np.random.default_rng(6)
    p = ParamSpace(5, 3, omega_max=0.3).sample(1, seed=2)[0]
    ranks, domains, tokens, keys = _inputs(rng, 3000, 5, 3)
    plan = sampling_plan(ranks, domains, tokens, keys, p, "seed")
    perm = rng.permutation(3000)
    plan2 = sampling_plan(ranks[perm], domains[perm], tokens[perm], keys[perm], p, "seed")
    for k in plan:
        np.testing.assert_array_equal(plan2[k], plan[k][perm])


def test_plan_validation():
    p = one_domain(10.0, 0.1, 1.0, 0.0, n_criteria=2)
    ranks = np.full((3, 2), 0.5)
    with pytest.raises(ValueError):
        sampling_plan(ranks, [0, 0, 0], [1, 1, 1], np.arange(2, dtype=np.uint64), p, 0)
    with pytest.raises(ValueError):
        sampling_plan(ranks, [0, 0, 1], [1, 1, 1], np.arange(3, dtype=np.uint64), p, 0)
    with pytest.raises(ValueError):
        sampling_plan(ranks, [0, 0], [1, 1, 1], np.arange(3, dtype=np.uint64), p, 0, domain_aware=False)
    out = sampling_plan(ranks, [0, 0, 0], [1, 1, 1], ["a", "b", "c"], p, 0)
    assert out["copies"].dtype == np.int64 and out["r"].tolist() == [1.0, 1.0, 1.0]
