"""Aggregation of the normalised criteria and the in-domain rank (QUADMIX.md section 2).

* ``qbar(x) = sum_n alpha[d(x), n] * s_n(x)`` (summed in criterion order ``n = 0, 1, ...``);
* ``r(x) = (tokens of documents in domain d(x) with qbar <= qbar(x)) / (tokens in domain d(x))``,
  0 = best; tied documents all get the same ``r`` (all tied tokens count). A domain whose documents
  carry 0 tokens in total uses document counts instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .params import QuadMixParams
from .ranking import _as_tokens

__all__ = ["aggregate"]


# --------------------------------------------------------------------------- validation helpers
def _check_domains(domains: Any, n: int, n_domains: int) -> np.ndarray:
    d = np.asarray(domains)
    if d.ndim != 1:
        raise ValueError(f"domains must be one-dimensional; got shape {d.shape}")
    if d.shape[0] != n:
        raise ValueError(f"domains has {d.shape[0]} entries for {n} documents")
    if d.size == 0:
        return d.astype(np.intp)
    if d.dtype.kind not in "iu":
        raise ValueError(f"domains must be integer domain ids; got dtype {d.dtype}")
    lo, hi = int(d.min()), int(d.max())
    if lo < 0 or hi >= n_domains:
        bad = lo if lo < 0 else hi
        raise ValueError(f"domain id {bad} out of range [0, {n_domains}) for these params")
    if d.dtype == np.uint64:  # bincount / take need a type that casts safely to intp
        d = d.astype(np.int64)
    return d


def _check_tokens(tokens: Any, n: int) -> np.ndarray:
    """Tokens as int64 / float64, validated (one entry per document, finite, >= 0); None = 1 each."""
    return _as_tokens(tokens, n)


def _check_ranks(ranks: Any, n_criteria: int) -> np.ndarray:
    s = np.asarray(ranks, dtype=np.float64)
    if s.ndim == 1 and n_criteria == 1:
        s = s.reshape(-1, 1)
    if s.ndim != 2 or s.shape[1] != n_criteria:
        raise ValueError(
            f"ranks must have shape (n documents, {n_criteria} criteria); got shape {s.shape}"
        )
    if s.size:
        if np.isnan(s).any():
            raise ValueError("ranks contain NaN")
        if s.min() < 0.0 or s.max() > 1.0:
            raise ValueError("ranks must lie in [0, 1] (worse-than ranks)")
    return s


# --------------------------------------------------------------------------- kernels
def _qbar(ranks: np.ndarray, domains: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``qbar = sum_n alpha[d, n] * ranks[:, n]``, accumulated left to right over ``n``."""
    alpha_t = np.ascontiguousarray(alpha.T)
    qbar = np.take(alpha_t[0], domains)
    qbar *= ranks[:, 0]
    if alpha.shape[1] > 1:
        tmp = np.empty_like(qbar)
        for j in range(1, alpha.shape[1]):
            np.take(alpha_t[j], domains, out=tmp)
            tmp *= ranks[:, j]
            qbar += tmp
    return qbar


def _sort_key_dtype(n_domains: int) -> type:
    # numpy's stable argsort is a radix sort for <= 16-bit integers.
    if n_domains <= 256:
        return np.uint8
    if n_domains <= 65536:
        return np.uint16
    return np.int64


def _segment_rank(q: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = sum(w[q <= q[i]]) / sum(w)`` for one domain (counts if ``sum(w) == 0``)."""
    k = q.shape[0]
    order = np.argsort(q)
    qs = q[order]
    c = np.cumsum(w[order])
    total = c[-1]
    if total == 0:
        c = np.arange(1, k + 1, dtype=np.int64)
        total = k
    # End of each tie group: the next value differs (or the segment ends). c is non-decreasing, so
    # the cumulative weight at the end of an element's tie group is the minimum of the group-end
    # values at or after it: a reversed minimum-accumulate.
    is_end = np.empty(k, dtype=bool)
    np.not_equal(qs[1:], qs[:-1], out=is_end[:-1])
    is_end[-1] = True
    if is_end.all():  # no ties
        c_end = c
    else:
        sentinel = np.iinfo(np.int64).max if c.dtype.kind == "i" else np.inf
        c_end = np.where(is_end, c, sentinel)
        rev = c_end[::-1]
        np.minimum.accumulate(rev, out=rev)
    out[order] = c_end / total


def _domain_rank(
    qbar: np.ndarray, domains: np.ndarray, tokens: np.ndarray, n_domains: int
) -> np.ndarray:
    """In-domain token-weighted rank ``r`` (``qbar <= qbar(x)``, ties inclusive).

    One stable radix sort groups the documents by domain; each domain segment is then sorted by
    ``qbar`` and ranked on its own (cache-sized pieces; an O(M) Python loop over domains).
    """
    n = qbar.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.float64)
    counts = np.bincount(domains, minlength=n_domains)
    starts = np.zeros(n_domains + 1, dtype=np.intp)
    np.cumsum(counts, out=starts[1:])
    by_domain = np.argsort(domains.astype(_sort_key_dtype(n_domains), copy=False), kind="stable")
    q_by = qbar[by_domain]
    w_by = tokens[by_domain]
    r_by = np.empty(n, dtype=np.float64)
    for m in np.flatnonzero(counts):
        lo, hi = int(starts[m]), int(starts[m + 1])
        _segment_rank(q_by[lo:hi], w_by[lo:hi], r_by[lo:hi])
    del q_by, w_by
    r = np.empty(n, dtype=np.float64)
    r[by_domain] = r_by
    return r


# --------------------------------------------------------------------------- public API
def aggregated_quality(ranks: Any, domains: Any, params: QuadMixParams) -> np.ndarray:
    """``qbar[x] = sum_n alpha[d(x), n] * ranks[x, n]`` alone (the first half of :func:`aggregate`, the
    same floating-point operations), for callers that rank ``qbar`` themselves, e.g. out of core.
    Raises ``ValueError`` on bad shapes, out-of-range domain ids or NaN."""
    if not isinstance(params, QuadMixParams):
        raise TypeError(f"params must be a QuadMixParams; got {type(params).__name__}")
    s = _check_ranks(ranks, params.n_criteria)
    d = _check_domains(domains, s.shape[0], params.n_domains)
    if s.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    return _qbar(s, d, params.alpha)


def aggregate(
    ranks: Any, domains: Any, tokens: Any, params: QuadMixParams
) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate criteria ranks into ``qbar`` and rank it inside each domain into ``r``.

    ``qbar[x] = sum_n alpha[d(x), n] * ranks[x, n]``;
    ``r[x] = sum(tokens[y] : d(y) = d(x), qbar[y] <= qbar[x]) / sum(tokens[y] : d(y) = d(x))``
    (ties inclusive; a domain whose tokens total 0 uses document counts).

    ``ranks``: ``(n, N)`` worse-than ranks in ``[0, 1]``; ``domains``: ``(n,)`` integers in
    ``[0, M)``; ``tokens``: ``(n,)`` non-negative (``None`` = one per document). Returns two
    ``float64`` arrays of length ``n``. Raises ``ValueError`` on bad shapes, out-of-range domain ids
    or NaN. Vectorised: one radix sort by domain, one sort of ``qbar`` per domain, cumulative sums.
    """
    if not isinstance(params, QuadMixParams):
        raise TypeError(f"params must be a QuadMixParams; got {type(params).__name__}")
    s = _check_ranks(ranks, params.n_criteria)
    n = s.shape[0]
    d = _check_domains(domains, n, params.n_domains)
    t = _check_tokens(tokens, n)
    return _aggregate_unchecked(s, d, t, params)


def _aggregate_unchecked(
    ranks: np.ndarray, domains: np.ndarray, tokens: np.ndarray, params: QuadMixParams
) -> tuple[np.ndarray, np.ndarray]:
    if ranks.shape[0] == 0:
        return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64)
    qbar = _qbar(ranks, domains, params.alpha)
    r = _domain_rank(qbar, domains, tokens, params.n_domains)
    return qbar, r
