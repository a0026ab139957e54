"""What a regressor can learn from with tens of proxy runs: statistics of the mixture a config samples.

The paper regresses proxy loss on a config's raw ``M * (N + 4)`` numbers (216 at M = 24, N = 5). With
tens of runs that is hopeless; what the loss actually depends on is the *data the config selects*. For a
batch of configs this module computes, in one vectorised pass over the documents' attribute columns
(domain, tokens, worse-than ranks), the expected mixture of each config and a few statistics of it:

* ``share[m]``: the mixture's token share of domain ``m`` (M numbers);
* ``quality[n]``: the token-weighted mean worse-than rank ``s_n`` of the mixture (N numbers, 0 = best);
* ``log_tokens``: log of the expected mixture tokens; ``log_documents``: log of the expected number of
  distinct documents; ``repeat_share``: share of tokens that are second or later copies.

The mixture is the expected one (``S(r)`` copies per document, QUADMIX.md §3), with the in-domain rank
``r`` computed exactly as :func:`quadmix_assets.method.aggregate` does except that tied ``qbar`` values are
ranked in document order (continuous random configs essentially never tie). A seeded, fixed sample of the
documents (``max_docs``) stands in for the corpus when it is large: the same sample serves the training
configs and the search candidates, so they are measured with one ruler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quadmix_assets.method import QuadMixParams


@dataclass(frozen=True)
class DocumentTable:
    """Attribute columns of the documents the statistics are computed over (no text)."""

    ranks: np.ndarray  # (n, N) worse-than ranks in [0, 1]
    domains: np.ndarray  # (n,) int in [0, M)
    tokens: np.ndarray  # (n,) float64 >= 0
    n_domains: int

    @classmethod
    def build(cls, ranks, domains, tokens, n_domains: int, *, max_docs: int | None = None, seed: int = 0) -> "DocumentTable":
        ranks = np.asarray(ranks, dtype=np.float64)
        domains = np.asarray(domains, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.float64)
        if max_docs is not None and len(domains) > max_docs:
            pick = np.sort(np.random.default_rng(seed).choice(len(domains), int(max_docs), replace=False))
            ranks, domains, tokens = ranks[pick], domains[pick], tokens[pick]
        order = np.argsort(domains, kind="stable")  # documents grouped by domain once, for every config
        return cls(ranks=ranks[order], domains=domains[order], tokens=tokens[order], n_domains=int(n_domains))

    @property
    def n_criteria(self) -> int:
        return int(self.ranks.shape[1])


def feature_names(n_domains: int, criteria: list[str] | tuple[str, ...], domain_names: list[str] | None = None) -> list[str]:
    names = domain_names or [f"d{m}" for m in range(n_domains)]
    return ([f"share[{n}]" for n in names] + [f"quality[{c}]" for c in criteria]
            + ["log_tokens", "log_documents", "repeat_share"])


def config_arrays(configs) -> dict[str, np.ndarray]:
    if isinstance(configs, dict):
        return {k: np.asarray(v, dtype=np.float64) for k, v in configs.items()}
    configs = list(configs)
    return {"alpha": np.stack([c.alpha for c in configs]), "lam": np.stack([c.lam for c in configs]),
            "omega": np.stack([c.omega for c in configs]), "eta": np.stack([c.eta for c in configs]),
            "eps": np.stack([c.eps for c in configs])}


def _blocks(docs: DocumentTable, arrays: dict[str, np.ndarray]):
    """Per domain block: (lo, hi, S in block order). Documents are grouped by domain once
    (:meth:`DocumentTable.build`); per block, ``qbar`` is one (C, N) x (N, n_m) product, one argsort per
    row orders it, a cumulative sum of tokens gives ``r``, and ``S`` is evaluated with the block's
    per-config scalars (no per-document gathers of parameters)."""
    alpha, lam, omega, eta, eps = (arrays[k] for k in ("alpha", "lam", "omega", "eta", "eps"))
    counts = np.bincount(docs.domains, minlength=docs.n_domains)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for m in np.flatnonzero(counts):
        lo, hi = int(starts[m]), int(starts[m + 1])
        q = alpha[:, m, 0, None] * docs.ranks[lo:hi, 0]  # (C, n_m); element-wise (no BLAS): the same bits
        for j in range(1, alpha.shape[2]):          # whatever the batch size or number of workers
            q += alpha[:, m, j, None] * docs.ranks[lo:hi, j]
        order = np.argsort(q, axis=1)
        tok = docs.tokens[lo:hi]
        total = tok.sum()
        if total > 0:
            r = np.cumsum(tok[order], axis=1) / total
        else:
            r = np.broadcast_to(np.arange(1, hi - lo + 1) / (hi - lo), q.shape)
        om = omega[:, m, None]
        S = np.zeros(r.shape)
        sel = r <= om
        if sel.any():
            x = np.exp(-(lam[:, m, None] * (om - r))[sel])
            S[sel] = (2.0 / (1.0 + x)) ** np.broadcast_to(eta[:, m, None], r.shape)[sel]
        S += eps[:, m, None]
        block = np.empty_like(S)
        np.put_along_axis(block, order, S, axis=1)
        yield m, lo, hi, block


def expected_copies(docs: DocumentTable, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``(C, n)`` expected copies ``S(r)`` of every document (in ``docs`` order) under C configs."""
    out = np.empty((arrays["alpha"].shape[0], docs.domains.shape[0]))
    for _, lo, hi, block in _blocks(docs, arrays):
        out[:, lo:hi] = block
    return out


def mixture_features(docs: DocumentTable, configs, *, batch: int = 256) -> np.ndarray:
    """``(C, M + N + 3)`` mixture statistics (see the module docstring) of C configs: a list of
    :class:`QuadMixParams` or :meth:`ParamSpace.sample_arrays`-style arrays. Batched over configs,
    accumulated domain block by domain block (memory: a few (batch, largest domain) arrays)."""
    arrays = config_arrays(configs)
    C = arrays["alpha"].shape[0]
    M, N = docs.n_domains, docs.n_criteria
    out = np.empty((C, M + N + 3))
    tq = docs.ranks * docs.tokens[:, None]
    for lo_c in range(0, C, batch):
        part = {k: v[lo_c:lo_c + batch] for k, v in arrays.items()}
        c = part["alpha"].shape[0]
        dom_tokens = np.zeros((c, M))
        quality = np.zeros((c, N))
        distinct = np.zeros(c)
        repeat = np.zeros(c)
        for m, lo, hi, S in _blocks(docs, part):
            tok = docs.tokens[lo:hi]
            # row-wise reductions only (no matrix products): each config's numbers do not depend on the batch
            dom_tokens[:, m] = (S * tok).sum(axis=1)
            quality += (S[:, :, None] * tq[lo:hi][None, :, :]).sum(axis=1)
            distinct += np.minimum(S, 1.0).sum(axis=1)
            repeat += (np.maximum(S - 1.0, 0.0) * tok).sum(axis=1)
        total = np.maximum(dom_tokens.sum(axis=1), 1e-12)
        out[lo_c:lo_c + c] = np.column_stack([dom_tokens / total[:, None], quality / total[:, None], np.log(total),
                                              np.log(np.maximum(distinct, 1e-12)), repeat / total])
    return out


def mixture_features_parallel(docs: DocumentTable, configs, *, workers: int = 1, min_per_worker: int = 5000) -> np.ndarray:
    """:func:`mixture_features` split over ``workers`` processes (same numbers: every config's row is
    computed independently); one process below ``min_per_worker`` configs per worker. The workers die with
    this process (:mod:`quadmix_assets.worker_pool`)."""
    arrays = config_arrays(configs)
    C = arrays["alpha"].shape[0]
    workers = max(1, min(int(workers), C // max(1, min_per_worker)))
    if workers == 1:
        return mixture_features(docs, arrays)
    from quadmix_assets.worker_pool import process_pool

    bounds = np.linspace(0, C, workers + 1).astype(int)
    with process_pool(workers) as pool:
        parts = [pool.submit(mixture_features, docs, {k: v[lo:hi] for k, v in arrays.items()})
                 for lo, hi in zip(bounds[:-1], bounds[1:])]
        return np.concatenate([f.result() for f in parts])


def arrays_config(arrays: dict[str, np.ndarray], i: int) -> QuadMixParams:
    return QuadMixParams(alpha=arrays["alpha"][i], lam=arrays["lam"][i], omega=arrays["omega"][i],
                         eta=arrays["eta"][i], eps=arrays["eps"][i])
