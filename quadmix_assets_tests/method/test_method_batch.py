"""Many configs in one pass give exactly the per-config sampling plan."""

from __future__ import annotations

import numpy as np
import pytest

from quadmix_assets.method import ParamSpace, sampling_plan
from quadmix_assets.method.batch import sampling_plans

OUT = ("qbar", "r", "expected", "copies")


def _corpus(n=3000, m=7, k=3, seed=0):
    rng = np.random.default_rng(seed)
    ranks = np.round(rng.random((n, k)), 2)  # heavy ties
    dom = rng.integers(0, m, n)
    dom[dom == 2] = 3  # an empty domain
    tok = rng.integers(0, 500, n)
    tok[dom == 5] = 0  # a domain whose tokens total 0
    keys = rng.integers(0, 2**63, n).astype(np.uint64)
    return ranks, dom, tok, keys


@pytest.mark.parametrize("aware", [True, False])
def test_batched_plans_equal_the_per_config_plan(aware):
    ranks, dom, tok, keys = _corpus()
    configs = ParamSpace(7, 3).sample(11, seed=5)
    seeds = [f"cfg-{i}" for i in range(len(configs))]
    got = list(sampling_plans(ranks, dom, tok, keys, configs, seeds, domain_aware=aware, outputs=OUT, chunk=4))
    assert len(got) == len(configs)
    for params, seed, g in zip(configs, seeds, got):
        ref = sampling_plan(ranks, dom, tok, keys, params, seed, domain_aware=aware)
        for o in OUT:
            assert np.array_equal(g[o], ref[o]), o
    # different configs do give different plans (the comparison can fail)
    assert not np.array_equal(got[0]["copies"], got[1]["copies"])


def test_outputs_subset_chunking_and_errors():
    ranks, dom, tok, keys = _corpus(n=500, seed=2)
    configs = ParamSpace(7, 3).sample(5, seed=1)
    a = [g["copies"] for g in sampling_plans(ranks, dom, tok, keys, configs, range(5), chunk=1)]
    b = [g["copies"] for g in sampling_plans(ranks, dom, tok, keys, configs, range(5), chunk=64)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert list(sampling_plans(ranks, dom, tok, keys, [], [])) == []
    with pytest.raises(ValueError, match="seeds"):
        list(sampling_plans(ranks, dom, tok, keys, configs, [1]))
    with pytest.raises(ValueError, match="same numbers"):
        list(sampling_plans(ranks, dom, tok, keys, [configs[0], ParamSpace(8, 3).sample(1, 0)[0]], [1, 2]))
    with pytest.raises(ValueError, match="unknown outputs"):
        list(sampling_plans(ranks, dom, tok, keys, configs, range(5), outputs=("nope",)))
