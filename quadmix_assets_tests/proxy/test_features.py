"""Mixture statistics for many configs in one pass equal the reference method applied config by config."""

from __future__ import annotations

import numpy as np

from quadmix_assets.method import ParamSpace, aggregate, sampling_frequency
from quadmix_assets.proxy.features import DocumentTable, expected_copies, feature_names, mixture_features


def _docs(n=3000, M=6, N=3, seed=0):
    rng = np.random.default_rng(seed)
    ranks = rng.random((n, N))  # continuous: no ties
    domains = rng.integers(0, M, n)
    tokens = rng.integers(1, 2000, n).astype(float)
    return ranks, domains, tokens


def _reference(ranks, domains, tokens, p):
    _, r = aggregate(ranks, domains, tokens, p)
    S = sampling_frequency(r, domains, p)
    wt = S * tokens
    total = wt.sum()
    M = p.n_domains
    share = np.bincount(domains, weights=wt, minlength=M) / total
    quality = (wt[:, None] * ranks).sum(0) / total
    return S, np.concatenate([share, quality, [np.log(total), np.log(np.minimum(S, 1).sum()),
                                               (np.maximum(S - 1, 0) * tokens).sum() / total]])


def test_batched_features_equal_the_reference_method():
    ranks, domains, tokens = _docs()
    space = ParamSpace(6, 3, omega_max=0.5)
    configs = space.sample(40, 3)
    docs = DocumentTable.build(ranks, domains, tokens, 6)
    got = mixture_features(docs, configs, batch=7)
    assert got.shape == (40, 6 + 3 + 3) and len(feature_names(6, ["a", "b", "c"])) == 12
    order = np.argsort(domains, kind="stable")
    S_all = expected_copies(docs, space.sample_arrays(40, 3))
    for i, p in enumerate(configs):
        S_ref, want = _reference(ranks, domains, tokens, p)
        np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(S_all[i], S_ref[order], rtol=1e-9, atol=1e-12)


def test_arrays_and_configs_agree_and_sample_is_seeded():
    ranks, domains, tokens = _docs(5000)
    space = ParamSpace(6, 3, omega_max=0.5)
    a = DocumentTable.build(ranks, domains, tokens, 6, max_docs=1000, seed=1)
    b = DocumentTable.build(ranks, domains, tokens, 6, max_docs=1000, seed=1)
    assert np.array_equal(a.ranks, b.ranks) and len(a.tokens) == 1000
    x = mixture_features(a, space.sample_arrays(10, 2))
    y = mixture_features(a, space.sample(10, 2))
    np.testing.assert_array_equal(x, y)


def test_parallel_features_equal_the_single_process_ones():
    from quadmix_assets.proxy.features import mixture_features_parallel

    ranks, domains, tokens = _docs(800)
    docs = DocumentTable.build(ranks, domains, tokens, 6)
    arrays = ParamSpace(6, 3, omega_max=0.5).sample_arrays(60, 4)
    one = mixture_features(docs, arrays)
    np.testing.assert_array_equal(mixture_features_parallel(docs, arrays, workers=2, min_per_worker=10), one)
    np.testing.assert_array_equal(mixture_features(docs, arrays, batch=7), one)  # bits do not depend on batching
