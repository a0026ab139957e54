import numpy as np
import pytest

from quadmix_assets.selection.dsir import NgramHasher, dsir_select, gumbel_top_k, smoothed, target_distribution

from .conftest import make_pool, topical_text


def _targets(topic="math", n=40, seed=5):
    rng = np.random.default_rng(seed)
    return {"t": [topical_text(rng, topic) for _ in range(n)]}


def _share(manifest, pool, domain):
    d = manifest["domain"].to_numpy()
    t = manifest["n_tokens"].to_numpy()
    return float(t[d == domain].sum() / t.sum())


def test_hash_is_stable_and_not_pythons_hash():
    h = NgramHasher(10_000)
    # fixed values: blake2b word hashes + splitmix64 bigrams; a change of hash (or Python's salted
    # hash()) changes these
    assert h.buckets("The cat").tolist() == [9790, 1939, 6961]
    assert h.buckets("the CAT").tolist() == [9790, 1939, 6961]  # lower-cased
    b = h.buckets("a b a b")
    assert len(b) == 4 + 3 and b[0] == b[2] and b[4] == b[6]  # unigrams then bigrams; repeats share a bucket
    assert h.buckets("").tolist() == []


def test_prefers_target_like_documents(pool):
    table, _, read = pool
    budget = int(table["n_tokens"].to_numpy().sum() * 0.2)
    res = dsir_select(table, read, _targets("math"), budget_tokens=budget, seed=0)
    base = _share(table, table, 0)
    assert base < 0.4
    assert _share(res.manifest, table, 0) > 0.9  # base rate 1/3
    # the log importance weights separate the topics
    d = table["domain"].to_numpy()
    assert res.log_weights[d == 0].min() > res.log_weights[d != 0].max()
    # and toward another target, another topic
    res2 = dsir_select(table, read, _targets("cooking"), budget_tokens=budget, seed=0)
    assert _share(res2.manifest, table, 1) > 0.9


def test_budget_and_manifest_shape(pool):
    table, _, read = pool
    budget = 1500
    res = dsir_select(table, read, _targets(), budget_tokens=budget, seed=3)
    m = res.manifest
    assert m.column_names == ["id", "shard", "row", "n_tokens", "domain", "copies"]
    tok = int(m["n_tokens"].to_numpy().sum())
    assert tok <= budget
    assert tok > budget - int(table["n_tokens"].to_numpy().max())
    assert (m["copies"].to_numpy() == 1).all()
    assert len(set(m["id"].to_pylist())) == m.num_rows  # without replacement
    assert res.info["selected_tokens"] == tok


def test_deterministic_by_seed():
    t1, _, r1 = make_pool(seed=0)
    t2, _, r2 = make_pool(seed=0)
    a = dsir_select(t1, r1, _targets(), budget_tokens=2000, seed=11)
    b = dsir_select(t2, r2, _targets(), budget_tokens=2000, seed=11)
    c = dsir_select(t1, r1, _targets(), budget_tokens=2000, seed=12)
    assert a.manifest.equals(b.manifest)
    assert np.array_equal(a.log_weights, b.log_weights)
    assert a.manifest["id"].to_pylist() != c.manifest["id"].to_pylist()


def test_gumbel_top_k_follows_weights():
    # sampling without replacement: a heavily weighted item is almost always picked first
    lw = np.log(np.array([100.0, 1.0, 1.0, 1.0]))
    firsts = [gumbel_top_k(lw, np.ones(4), 1, seed=s)[0] for s in range(200)]
    assert np.mean(np.array(firsts) == 0) > 0.9
    # uniform weights: every item first about equally often
    firsts = [gumbel_top_k(np.zeros(4), np.ones(4), 1, seed=s)[0] for s in range(400)]
    assert min(np.bincount(firsts, minlength=4)) > 60
    assert len(gumbel_top_k(np.zeros(5), np.full(5, 10), 35, seed=0)) == 3
    assert len(gumbel_top_k(np.zeros(5), np.full(5, 10), 5, seed=0)) == 0


def test_smoothing_and_equal_set_weights():
    p = smoothed(np.array([0.0, 2.0]))
    assert np.allclose(p, [1 / 4, 3 / 4])
    h = NgramHasher(64)
    small = target_distribution(h, {"a": ["x"], "b": ["y " * 50]})
    # "x" (one set of one word) keeps as much mass as the 50-word set: equal weight per set
    bx, by = h.buckets("x")[0], h.buckets("y")[0]
    assert bx != by
    assert small[bx] > 0.3 * small[by]
    with pytest.raises(ValueError):
        target_distribution(h, {"a": [""]})
