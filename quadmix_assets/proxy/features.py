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

from quadmix_assets.method import ParamSpace, QuadMixParams


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


def _params_arrays(configs) -> dict[str, np.ndarray]:
    if isinstance(configs, dict):
        return {k: np.asarray(v, dtype=np.float64) for k, v in configs.items()}
    configs = list(configs)
    return {"alpha": np.stack([c.alpha for c in configs]), "lam": np.stack([c.lam for c in configs]),
            "omega": np.stack([c.omega for c in configs]), "eta": np.stack([c.eta for c in configs]),
            "eps": np.stack([c.eps for c in configs])}


def expected_copies(docs: DocumentTable, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``(C, n)`` expected copies ``S(r)`` of every document (in ``docs`` order) under C configs."""
    alpha, lam, omega, eta, eps = (arrays[k] for k in ("alpha", "lam", "omega", "eta", "eps"))
    C = alpha.shape[0]
    n = docs.domains.shape[0]
    dom = docs.domains
    qbar = np.einsum("cnj,nj->cn", alpha[:, dom, :], docs.ranks)  # (C, n)
    counts = np.bincount(dom, minlength=docs.n_domains)
    starts = np.concatenate([[0], np.cumsum(counts)])
    # docs are grouped by domain: sort each domain block by qbar (one argsort of qbar + 2 * domain)
    order = np.argsort(qbar + 2.0 * dom[None, :], axis=1, kind="stable")
    tok_sorted = docs.tokens[order]
    cum = np.cumsum(tok_sorted, axis=1)
    base = np.concatenate([[0.0], np.cumsum(np.bincount(dom, weights=docs.tokens, minlength=docs.n_domains))])
    dom_tokens = base[1:] - base[:-1]
    denom = np.where(dom_tokens > 0, dom_tokens, 1.0)[dom]
    r_sorted = np.clip((cum - base[dom][None, :]) / denom[None, :], 0.0, 1.0)  # dom is the same in sorted order
    om = omega[:, dom]
    x = lam[:, dom] * (om - r_sorted)
    S = np.where(r_sorted <= om, (2.0 / (1.0 + np.exp(-np.maximum(x, 0.0)))) ** eta[:, dom], 0.0) + eps[:, dom]
    out = np.empty((C, n))
    np.put_along_axis(out, order, S, axis=1)
    del starts
    return out


def mixture_features(docs: DocumentTable, configs, *, batch: int = 256) -> np.ndarray:
    """``(C, M + N + 3)`` mixture statistics (see the module docstring) of C configs: a list of
    :class:`QuadMixParams` or :meth:`ParamSpace.sample_arrays`-style arrays. Batched over configs."""
    arrays = _params_arrays(configs)
    C = arrays["alpha"].shape[0]
    M, N = docs.n_domains, docs.n_criteria
    out = np.empty((C, M + N + 3))
    onehot = np.zeros((docs.domains.shape[0], M))
    onehot[np.arange(docs.domains.shape[0]), docs.domains] = 1.0
    tok = docs.tokens
    tq = docs.ranks * tok[:, None]
    for lo in range(0, C, batch):
        part = {k: v[lo:lo + batch] for k, v in arrays.items()}
        S = expected_copies(docs, part)
        wt = S * tok[None, :]  # expected tokens per document
        total = np.maximum(wt.sum(axis=1), 1e-12)
        share = (wt @ onehot) / total[:, None]
        quality = (S @ tq) / total[:, None]
        distinct = np.minimum(S, 1.0)
        repeat = np.maximum(S - 1.0, 0.0) @ tok / total
        out[lo:lo + batch] = np.column_stack([share, quality, np.log(total), np.log(np.maximum(distinct.sum(axis=1), 1e-12)), repeat])
    return out


def space_candidates(space: ParamSpace, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` fresh configs of ``space`` as arrays (the search's candidates)."""
    return space.sample_arrays(n, seed)


def arrays_config(arrays: dict[str, np.ndarray], i: int) -> QuadMixParams:
    return QuadMixParams(alpha=arrays["alpha"][i], lam=arrays["lam"][i], omega=arrays["omega"][i],
                         eta=arrays["eta"][i], eps=arrays["eps"][i])
