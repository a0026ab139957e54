import numpy as np

from quadmix_assets.proxy.model import preset
from quadmix_assets.selection.regmix import domain_copies, domain_manifest, max_passes, regmix_select, sample_weights
from quadmix_assets.selection.stored import token_seqs

from .conftest import DOMAINS, make_pool, topical_text


def test_sample_weights_simplex_and_deterministic():
    prior = np.array([0.5, 0.0, 0.3, 0.2])
    w = sample_weights(prior, 200, seed=3)
    assert w.shape == (200, 4)
    assert np.allclose(w.sum(1), 1.0) and (w >= 0).all()
    assert (w[:, 1] == 0).all()  # a domain without tokens never gets weight
    assert np.array_equal(w, sample_weights(prior, 200, seed=3))
    assert not np.array_equal(w, sample_weights(prior, 200, seed=4))
    # centred on the prior, with a spread of concentrations (some near-degenerate draws)
    assert np.allclose(w.mean(0), prior, atol=0.08)
    assert (w.max(1) > 0.9).any() and (w.max(1) < 0.7).any()


def test_domain_manifest_meets_weights_within_budget(pool):
    table, _, _ = pool
    budget = 2000
    w = np.array([0.6, 0.1, 0.3])
    m = domain_manifest(table, w, budget, seed=1)
    tok = m["n_tokens"].to_numpy() * m["copies"].to_numpy()
    assert tok.sum() <= budget
    per = np.bincount(m["domain"].to_numpy(), weights=tok, minlength=3)
    biggest = int(table["n_tokens"].to_numpy().max())
    for d in range(3):
        assert w[d] * budget - biggest < per[d] <= w[d] * budget
    assert (m["copies"].to_numpy() == 1).all()  # nothing runs out at this budget
    assert m.equals(domain_manifest(table, w, budget, seed=1))
    assert m["id"].to_pylist() != domain_manifest(table, w, budget, seed=2)["id"].to_pylist()


def test_repetition_only_when_a_domain_runs_out(pool):
    table, _, _ = pool
    d = table["domain"].to_numpy()
    nt = table["n_tokens"].to_numpy()
    dom0 = int(nt[d == 0].sum())
    # domain 0 asked for 2.5x its tokens: every document twice, then a shuffled prefix once more
    cp = domain_copies(table, np.array([1.0, 0.0, 0.0]), 2.5 * dom0, seed=0)
    assert (cp[d != 0] == 0).all()
    assert set(np.unique(cp[d == 0])) <= {2, 3} and (cp[d == 0] == 3).any()
    assert 2.5 * dom0 - nt.max() < (cp * nt).sum() <= 2.5 * dom0
    assert np.isclose(max_passes(np.array([1.0, 0.0, 0.0]), np.bincount(d, weights=nt), 2.5 * dom0)[0], 2.5)


def _fit(seed, tokenizer, n_proxies=16, steps=40):
    table, _, read = make_pool((40, 40, 40), seed=0)
    rng = np.random.default_rng(9)
    target = {"math": token_seqs(tokenizer, [topical_text(rng, "math") for _ in range(16)])}
    cfg = preset("cpu-tiny", vocab_size=tokenizer.get_vocab_size(), seq_len=32, batch_size=8, steps=steps,
                 warmup_steps=2, lr=1e-2, d_model=32, d_ff=64, n_heads=2)
    final = int(table["n_tokens"].to_numpy().sum() * 0.3)
    res = regmix_select(table, read, tokenizer, target, cfg, n_proxies=n_proxies, final_budget_tokens=final, seed=seed,
                        n_domains=3, domain_names=DOMAINS, n_search=2000, top_k=10, group_size=None)
    return res, table, final


def test_regmix_end_to_end(tokenizer):
    res, table, final = _fit(0, tokenizer)
    assert np.isclose(res.weights.sum(), 1.0) and (res.weights >= 0).all()
    tok = res.manifest["n_tokens"].to_numpy() * res.manifest["copies"].to_numpy()
    assert 0 < tok.sum() <= final
    assert res.info["n_proxies"] == 16 and len(res.info["proxy_scores"]) == 16
    assert set(res.info["regressor"]) >= {"spearman", "mae", "mae_constant", "n_train", "n_valid"}
    assert set(res.info["weights"]) == set(DOMAINS)
    # the proxies see the data: more math in a proxy's mix, lower loss on the math target
    from scipy.stats import spearmanr

    w_math = np.array(res.info["proxy_weights"])[:, 0]
    assert spearmanr(w_math, res.info["proxy_scores"]).statistic < -0.6
    # and the fitted mixture up-weights math (prior share about 1/3)
    assert res.weights[0] > 0.5


def test_regmix_deterministic(tokenizer):
    a, _, _ = _fit(3, tokenizer, n_proxies=6, steps=3)
    b, _, _ = _fit(3, tokenizer, n_proxies=6, steps=3)
    assert np.isclose(a.weights.sum(), 1.0)
    assert np.array_equal(a.weights, b.weights)
    assert a.manifest.equals(b.manifest)
    assert a.info["proxy_scores"] == b.info["proxy_scores"]
