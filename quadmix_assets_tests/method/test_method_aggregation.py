"""qbar and the in-domain rank r (QUADMIX.md section 2)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quadmix_assets.method import ParamSpace, QuadMixParams, aggregate, aggregated_quality
from quadmix_assets_tests.method import reference as ref


def params_with_alpha(alpha):
    alpha = np.asarray(alpha, dtype=np.float64)
    m = alpha.shape[0]
    return QuadMixParams(alpha=alpha, lam=np.ones(m), omega=np.full(m, 0.1), eta=np.ones(m), eps=np.zeros(m))


@st.composite
def problem(draw, max_docs=30):
    m = draw(st.integers(1, 4))
    n_crit = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    p = ParamSpace(m, n_crit).sample(1, seed)[0]
    n = draw(st.integers(0, max_docs))
    # ranks from few distinct values -> ties in qbar; includes the edges 0 and 1
    rank_values = st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0]) | st.floats(0, 1)
    ranks = draw(st.lists(st.lists(rank_values, min_size=n_crit, max_size=n_crit), min_size=n, max_size=n))
    # domains may leave some ids unused (empty domains) and give others one document
    domains = draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))
    tokens = draw(st.lists(st.integers(0, 5) | st.integers(0, 10**6), min_size=n, max_size=n))
    return p, ranks, domains, tokens


@settings(max_examples=250, deadline=None)
@given(problem())
def test_matches_reference_exactly(prob):
    p, ranks, domains, tokens = prob
    n_crit = p.n_criteria
    ranks_arr = np.array(ranks, dtype=np.float64).reshape(len(ranks), n_crit)
    qbar, r = aggregate(ranks_arr, np.array(domains, dtype=np.int64), np.array(tokens, dtype=np.int64), p)
    eq, er = ref.aggregate(ranks, domains, tokens, p.alpha.tolist())
    assert qbar.tolist() == eq
    assert r.tolist() == er


def test_ties_share_r_and_count_all_tied_tokens():
    p = params_with_alpha([[1.0]])
    qbar, r = aggregate([[0.1], [0.5], [0.1], [0.9]], [0, 0, 0, 0], [10, 20, 30, 40], p)
    # qbar <= 0.1: both tied docs (40 tokens) -> 0.4; <= 0.5: 60; <= 0.9: 100
    assert r.tolist() == [0.4, 0.6, 0.4, 1.0]


def test_zero_token_domain_uses_counts_only_there():
    p = params_with_alpha([[1.0], [1.0]])
    ranks = [[0.2], [0.4], [0.6], [0.2], [0.4]]
    domains = [0, 0, 0, 1, 1]
    tokens = [0, 0, 0, 7, 0]
    _, r = aggregate(ranks, domains, tokens, p)
    assert r.tolist() == [1 / 3, 2 / 3, 1.0, 1.0, 1.0]


def test_one_document_domains_and_empty_domains():
    p = params_with_alpha([[0.5, 0.5]] * 5)
    _, r = aggregate([[0.3, 0.1], [0.9, 0.9], [0.0, 0.0]], [4, 1, 1], [3, 0, 5], p)
    assert r.tolist() == [1.0, 1.0, 1.0]
    qbar, r = aggregate(np.empty((0, 2)), np.empty(0, dtype=int), np.empty(0, dtype=int), p)
    assert qbar.shape == (0,) and r.shape == (0,)


def test_seeded_numpy_against_reference_larger():
    rng = np.random.default_rng(17)
    p = ParamSpace(7, 3).sample(1, seed=4)[0]
    n = 600
    ranks = rng.integers(0, 8, (n, 3)) / 7
    domains = rng.integers(0, 6, n)  # domain 6 stays empty
    domains[:3] = 6 - 1
    tokens = rng.integers(0, 50, n)
    tokens[domains == 2] = 0  # a zero-token domain
    qbar, r = aggregate(ranks, domains, tokens, p)
    eq, er = ref.aggregate(ranks.tolist(), domains.tolist(), tokens.tolist(), p.alpha.tolist())
    assert qbar.tolist() == eq and r.tolist() == er


def test_float_tokens_close_to_reference():
    rng = np.random.default_rng(3)
    p = ParamSpace(3, 2).sample(1, seed=1)[0]
    n = 300
    ranks = rng.integers(0, 5, (n, 2)) / 4
    domains = rng.integers(0, 3, n)
    tokens = rng.random(n) * 1000
    _, r = aggregate(ranks, domains, tokens, p)
    _, er = ref.aggregate(ranks.tolist(), domains.tolist(), tokens.tolist(), p.alpha.tolist())
    np.testing.assert_allclose(r, er, rtol=1e-12)


def test_permutation_equivariant_and_dtype_independent():
    rng = np.random.default_rng(8)
    p = ParamSpace(5, 3).sample(1, seed=2)[0]
    n = 5000
    ranks = rng.integers(0, 20, (n, 3)) / 19
    domains = rng.integers(0, 5, n)
    tokens = rng.integers(0, 100, n)
    qbar, r = aggregate(ranks, domains, tokens, p)
    perm = rng.permutation(n)
    for dtype in (np.uint8, np.int16, np.uint64):
        qbar2, r2 = aggregate(ranks[perm], domains[perm].astype(dtype), tokens[perm].astype(np.int32), p)
        np.testing.assert_array_equal(qbar2, qbar[perm])
        np.testing.assert_array_equal(r2, r[perm])
    # r is a token share: top of each domain is 1, values in (0, 1]
    for m in range(5):
        sel = domains == m
        assert r[sel].max() == 1.0 and r[sel].min() > 0
        # a larger qbar never gets a smaller r
        o = np.argsort(qbar[sel], kind="stable")
        assert (np.diff(r[sel][o]) >= 0).all()


@pytest.mark.parametrize(
    "ranks, domains, tokens, message",
    [
        ([[0.1, 0.2]], [2], [1], "out of range"),
        ([[0.1, 0.2]], [-1], [1], "out of range"),
        ([[0.1, 0.2, 0.3]], [0], [1], "criteria"),
        ([[0.1, np.nan]], [0], [1], "NaN"),
        ([[0.1, 1.5]], [0], [1], r"\[0, 1\]"),
        ([[0.1, -0.5]], [0], [1], r"\[0, 1\]"),
        ([[0.1, 0.2]], [0, 1], [1], "domains"),
        ([[0.1, 0.2]], [0], [1, 2], "tokens"),
        ([[0.1, 0.2]], [0], [-1], ">= 0"),
        ([[0.1, 0.2]], [0.5], [1], "integer"),
    ],
)
def test_validation(ranks, domains, tokens, message):
    p = params_with_alpha([[0.5, 0.5], [0.3, 0.7]])
    with pytest.raises(ValueError, match=message):
        aggregate(ranks, domains, tokens, p)


def test_large_input_is_fast_enough():
    import time

    rng = np.random.default_rng(0)
    p = ParamSpace(24, 3).sample(1, seed=0)[0]
    n = 1_000_000
    ranks = rng.random((n, 3))
    domains = rng.integers(0, 24, n)
    tokens = rng.integers(0, 2000, n)
    t0 = time.perf_counter()
    qbar, r = aggregate(ranks, domains, tokens, p)
    elapsed = time.perf_counter() - t0
    assert r.shape == (n,)
    # ~0.2 s on one idle core; a Python loop over documents would take minutes
    assert elapsed < 5.0, elapsed


def test_aggregated_quality_is_aggregates_qbar_and_checks_its_inputs():
    rng = np.random.default_rng(4)
    params = ParamSpace(5, 3).sample(1, seed=2)[0]
    ranks = rng.random((400, 3))
    domains = rng.integers(0, 5, 400)
    qbar, _ = aggregate(ranks, domains, rng.integers(0, 9, 400), params)
    assert np.array_equal(aggregated_quality(ranks, domains, params), qbar)
    assert aggregated_quality(np.empty((0, 3)), np.empty(0, np.int64), params).shape == (0,)
    with pytest.raises(ValueError, match="out of range"):
        aggregated_quality(ranks, np.full(400, 5), params)
    with pytest.raises(ValueError):
        aggregated_quality(ranks[:, :2], domains, params)
