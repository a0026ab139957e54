"""RegMix-style domain reweighting (Liu et al. 2024), fitted by the same proxy-regression loop as QuaDMix.

A config is one vector ``w`` of domain weights on the simplex (no quality criteria at all).

* Draws: ``w ~ Dirichlet(c * M' * p)`` where ``p`` is the pool's token share per domain (over the ``M'``
  domains that have any documents; absent domains get weight 0) and the concentration multiplier ``c`` is
  log-uniform on ``[0.1, 5]``, drawn afresh per vector (RegMix draws around the token distribution with a
  range of multipliers: small ``c`` gives sparse, extreme mixtures, large ``c`` mixtures near ``p``).
  ``np.random.default_rng(seed)``: multiplier first, then the Dirichlet draw, vector by vector.
* Manifest of ``w`` at a budget ``T`` (``n_tokens`` units), :func:`domain_manifest`: domain ``m`` gets
  ``t_m = w_m * T`` tokens. Its documents are shuffled (``default_rng([seed, m])``) and the longest prefix
  with token sum ``<= t_m`` is taken, one copy each. Repetition happens only when a domain runs out: if
  ``t_m`` exceeds the domain's total, every document of the domain gets ``floor(t_m / total)`` copies
  (whole passes) and the remainder is filled by the prefix rule on the shuffled order.
* Proxies: one per draw, trained stacked in one :func:`train_proxies` call with the *same* init seed for
  all (so the data are the only difference), each on its manifest's token stream at the proxy budget
  (wrapped when a manifest yields fewer tokens). Score = mean over target sets of the mean token loss on
  the *target* half (:func:`evaluate_losses`, the proxy library's loss evaluator, with each forward pass
  bounded to ``MAX_LOGITS`` logits); non-finite scores are dropped by the regressor.
* LightGBM (:func:`fit_regressor`): weights -> score; its held-out Spearman / MAE are in the info.
* Search: ``n_search`` fresh vectors from the same draw (seed + 1); vectors that would need more than
  ``max_epochs`` passes over any domain at the *final* budget are excluded (the proxies, trained at a
  tiny budget, never saw repetition, so the regressor cannot judge it); the element-wise mean of the
  ``top_k`` lowest predictions, re-normalised, is the RegMix mixture, built at the final budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from quadmix_assets.proxy.model import MAX_LOGITS, ProxyConfig, evaluate_losses, train_proxies
from quadmix_assets.proxy.regressor import fit_regressor
from quadmix_assets.proxy.stream import manifest_token_stream

from .dsir import manifest_from

CONCENTRATION_RANGE = (0.1, 5.0)


def domain_tokens(documents: pa.Table, n_domains: int) -> np.ndarray:
    """Tokens of the pool per domain ``(n_domains,)``."""
    d = documents["domain"].to_numpy().astype(np.int64)
    t = documents["n_tokens"].to_numpy().astype(np.float64)
    if len(d) and (d.min() < 0 or d.max() >= n_domains):
        raise ValueError(f"domain ids outside 0..{n_domains - 1}")
    return np.bincount(d, weights=t, minlength=n_domains)


def sample_weights(prior: np.ndarray, n: int, seed: int,
                   concentration: tuple[float, float] = CONCENTRATION_RANGE) -> np.ndarray:
    """``(n, M)`` domain-weight vectors: ``Dirichlet(c * M' * prior)`` with ``c`` log-uniform on
    ``concentration``; domains with prior 0 always get weight 0. Vectorised and safe for tiny Dirichlet
    parameters: ``log g = log Gamma(a + 1) + log(U) / a`` (so ``g ~ Gamma(a)``), ``w = softmax(log g)``;
    draw order: the ``n`` multipliers, then the Gamma variates, then the uniforms."""
    prior = np.asarray(prior, dtype=np.float64)
    present = prior > 0
    if not present.any():
        raise ValueError("no domain has any tokens")
    p = prior[present] / prior[present].sum()
    rng = np.random.default_rng(seed)
    lo, hi = np.log10(concentration[0]), np.log10(concentration[1])
    c = 10 ** rng.uniform(lo, hi, size=int(n))
    a = c[:, None] * present.sum() * p[None, :]
    log_g = np.log(rng.gamma(a + 1.0)) + np.log(rng.uniform(size=a.shape)) / a
    log_g -= log_g.max(axis=1, keepdims=True)
    w = np.exp(log_g)
    out = np.zeros((int(n), len(prior)))
    out[:, present] = w / w.sum(axis=1, keepdims=True)
    return out


def domain_copies(documents: pa.Table, weights: np.ndarray, budget_tokens: float, seed: int) -> np.ndarray:
    """Copies per document of the pool for domain weights ``weights`` at ``budget_tokens`` (module
    docstring: shuffled prefix per domain; whole extra passes only when a domain runs out)."""
    d = documents["domain"].to_numpy().astype(np.int64)
    nt = documents["n_tokens"].to_numpy().astype(np.int64)
    copies = np.zeros(len(d), dtype=np.int64)
    for m, w in enumerate(np.asarray(weights, dtype=np.float64)):
        if w <= 0:
            continue
        idx = np.flatnonzero(d == m)
        if not len(idx):
            continue
        want = w * float(budget_tokens)
        total = float(nt[idx].sum())
        full = int(want // total) if total > 0 else 0
        copies[idx] += full
        rest = want - full * total
        order = idx[np.random.default_rng([int(seed), m]).permutation(len(idx))]
        fits = np.cumsum(nt[order]) <= rest  # the prefix rule: stop at the first document that does not fit
        n_fit = len(order) if fits.all() else int(np.argmin(fits))
        copies[order[:n_fit]] += 1
    return copies


def domain_manifest(documents: pa.Table, weights: np.ndarray, budget_tokens: float, seed: int) -> pa.Table:
    """Mixture manifest (id, shard, row, n_tokens, domain, copies) of ``weights`` at ``budget_tokens``."""
    copies = domain_copies(documents, weights, budget_tokens, seed)
    keep = np.flatnonzero(copies > 0)
    return manifest_from(documents, keep, copies[keep])


def max_passes(weights: np.ndarray, dom_tokens: np.ndarray, budget_tokens: float) -> np.ndarray:
    """Passes over its domain's tokens the most-repeated domain needs, per weight vector."""
    W = np.atleast_2d(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(W > 0, W * float(budget_tokens) / np.maximum(dom_tokens, 1e-9), 0.0)
    return need.max(axis=1)


def _fit_to(arr: np.ndarray, n_seqs: int, width: int) -> np.ndarray:
    if len(arr) == 0:
        return np.zeros((n_seqs, width), dtype=np.uint16)
    return arr[np.arange(n_seqs) % len(arr)]


@dataclass
class RegMixResult:
    weights: np.ndarray  # (M,) the fitted domain weights, sum 1
    manifest: pa.Table
    info: dict = field(default_factory=dict)


def regmix_select(documents: pa.Table, read_texts: Callable[[str, Sequence[int]], list[str]], tokenizer,
                  target_seqs: Mapping[str, Sequence[np.ndarray]], proxy_config: ProxyConfig, *,
                  n_proxies: int, final_budget_tokens: int, seed: int, n_domains: int,
                  domain_names: Sequence[str] | None = None, n_search: int = 100_000, top_k: int = 10,
                  max_epochs: float = 4.0, group_size: int | None = 16, valid_fraction: float = 0.2,
                  concentration: tuple[float, float] = CONCENTRATION_RANGE, device=None,
                  log: Callable[[str], None] = lambda s: None) -> RegMixResult:
    """Fit RegMix on ``documents`` (pool: id, shard, row, n_tokens, domain) with ``n_proxies`` proxies
    scored on ``target_seqs`` (token arrays of the *target* half), return the mixture at
    ``final_budget_tokens`` (``n_tokens`` units). See the module docstring for every rule."""
    t0 = time.perf_counter()
    names = list(domain_names) if domain_names is not None else [f"domain_{m}" for m in range(n_domains)]
    if len(names) != n_domains:
        raise ValueError(f"{len(names)} domain names for {n_domains} domains")
    dom_tok = domain_tokens(documents, n_domains)
    prior = dom_tok / dom_tok.sum()
    W = sample_weights(prior, n_proxies, seed, concentration)
    cfg = proxy_config
    width = cfg.seq_len + 1
    n_seqs = cfg.steps * cfg.batch_size
    budget = n_seqs * width  # proxy tokens; the manifests are built at the same number of n_tokens units
    batches, available = [], []
    for i, w in enumerate(W):
        man = domain_manifest(documents, w, budget, seed + i)
        arr = manifest_token_stream(man, read_texts, tokenizer, seed=seed + i, budget_tokens=budget, seq_len=cfg.seq_len)
        available.append(int(arr.size))
        batches.append(_fit_to(arr, n_seqs, width))
    t_data = time.perf_counter() - t0
    log(f"regmix: {n_proxies} domain-weight draws, proxy streams built in {t_data:.1f}s; training proxies")
    run = train_proxies(cfg, np.stack(batches), seeds=[cfg.seed] * n_proxies, group_size=group_size, device=device)
    losses = evaluate_losses(run.state, target_seqs, device=device, max_logits=MAX_LOGITS)
    y = np.mean(np.stack([losses[s] for s in sorted(losses)]), axis=0)
    y = np.where(run.finite, y, np.nan)
    t_train = time.perf_counter() - t0 - t_data
    log(f"regmix: proxies trained and scored in {t_train:.1f}s ({run.tokens_per_s:,.0f} tokens/s); fitting LightGBM")
    booster, report = fit_regressor(W, y, feature_names=names, seed=seed, valid_fraction=valid_fraction)
    cand = sample_weights(prior, n_search, seed + 1, concentration)
    ok = max_passes(cand, dom_tok, final_budget_tokens) <= max_epochs
    if not ok.any():
        ok[:] = True
    cand = cand[ok]
    pred = booster.predict(cand, num_iteration=booster.best_iteration or None)
    top = np.argsort(pred, kind="stable")[:top_k]
    best = cand[top].mean(axis=0)
    best = best / best.sum()
    pred_best = float(booster.predict(best[None, :], num_iteration=booster.best_iteration or None)[0])
    manifest = domain_manifest(documents, best, final_budget_tokens, seed)
    sel = manifest["n_tokens"].to_numpy() * manifest["copies"].to_numpy()
    info = {
        "method": "regmix", "n_proxies": int(n_proxies), "seed": int(seed),
        "proxy_config": dict(cfg.__dict__), "proxy_budget_tokens": int(budget),
        "proxy_train_seconds": float(run.wall_s), "proxy_tokens_per_s": float(run.tokens_per_s),
        "proxy_available_tokens": available, "proxy_scores": [float(v) if np.isfinite(v) else None for v in y],
        "proxy_weights": [[float(v) for v in w] for w in W],
        "target_sets": sorted(losses),
        "regressor": {k: report[k] for k in ("spearman", "mae", "mae_constant", "n_train", "n_valid",
                                                "n_dropped_nonfinite", "best_iteration")},
        "importance_gain": dict(list(report["importance_gain"].items())[:8]),
        "search": {"n": int(n_search), "n_feasible": int(ok.sum()), "max_epochs": float(max_epochs),
                   "top_k": int(top_k), "top_predicted": [float(pred[i]) for i in top],
                   "predicted_loss_of_mean": pred_best, "median_predicted": float(np.median(pred)),
                   "best_proxy_score": float(np.nanmin(y)) if np.isfinite(y).any() else None},
        "prior": {n: float(p) for n, p in zip(names, prior)},
        "weights": {n: float(v) for n, v in zip(names, best)},
        "final_budget_tokens": int(final_budget_tokens), "selected_tokens": int(sel.sum()),
        "selected_documents": int(manifest.num_rows),
        "max_copies": int(manifest["copies"].to_numpy().max()) if manifest.num_rows else 0,
        "seconds": float(time.perf_counter() - t0),
    }
    return RegMixResult(weights=best, manifest=manifest, info=info)
