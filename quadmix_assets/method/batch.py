"""Many configs in one pass over the attribute columns: aggregate -> in-domain rank -> sampling frequency ->
copies for K configs, equal bit for bit to :func:`~quadmix_assets.method.sampling_plan` per config.

What the configs share is done once: the documents are grouped by domain (one stable sort), their ranks
and tokens laid out per domain. Then, for a chunk of configs at a time, each domain's ``qbar`` is a
``(configs, documents)`` matrix accumulated criterion by criterion in the same order as the per-config
kernel (so the same floating-point operations), sorted row-wise (one row per config) in one ``argsort``,
and ranked with a row-wise cumulative sum; ``S(r)`` is evaluated on the whole matrix; the copies are drawn
per config (the uniform depends on the config's seed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .aggregation import _check_ranks, _check_tokens, _sort_key_dtype
from .params import QuadMixParams
from .sampling import _domain_codes, _draw, _keys

__all__ = ["sampling_plans"]

_OUTPUTS = ("qbar", "r", "expected", "copies")


def _rank_rows(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise ``_segment_rank`` (one row per config): ``out[k, i] = sum(w[q[k] <= q[k, i]]) / sum(w)``
    (counts if the weights total 0)."""
    kb, k = q.shape
    order = np.argsort(q, axis=1)
    qs = np.take_along_axis(q, order, axis=1)
    c = np.cumsum(w[order], axis=1)
    total = c[:, -1:]
    if total[0, 0] == 0:  # the same weights in every row
        c = np.broadcast_to(np.arange(1, k + 1, dtype=np.int64), (kb, k)).copy()
        total = np.full((kb, 1), k, dtype=np.int64)
    is_end = np.empty((kb, k), dtype=bool)
    np.not_equal(qs[:, 1:], qs[:, :-1], out=is_end[:, :-1])
    is_end[:, -1] = True
    if not is_end.all():
        sentinel = np.iinfo(np.int64).max if c.dtype.kind == "i" else np.inf
        c = np.where(is_end, c, sentinel)
        rev = c[:, ::-1]
        np.minimum.accumulate(rev, axis=1, out=rev)
    out = np.empty((kb, k), dtype=np.float64)
    np.put_along_axis(out, order, c / total, axis=1)
    return out


def _frequency_matrix(r: np.ndarray, lam: np.ndarray, omega: np.ndarray, eta: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """``S(r)`` for one domain, ``r`` of shape (configs, documents) and the configs' parameters (configs,),
    with the element-wise operations of :func:`~quadmix_assets.method.sampling._frequency`."""
    out = np.broadcast_to(eps[:, None], r.shape).copy()
    sel = r <= omega[:, None]
    if sel.any():
        rows, cols = np.nonzero(sel)
        x = lam[rows] * (omega[rows] - r[rows, cols])
        np.negative(x, out=x)
        np.exp(x, out=x)
        x += 1.0
        np.divide(2.0, x, out=x)
        np.power(x, eta[rows], out=x)
        x += eps[rows]
        out[rows, cols] = x
    return out


def sampling_plans(
    ranks: Any,
    domains: Any,
    tokens: Any,
    doc_keys: Any,
    params: Sequence[QuadMixParams],
    seeds: Sequence[int | str],
    *,
    domain_aware: bool = True,
    outputs: Sequence[str] = ("copies",),
    chunk: int = 64,
) -> Iterator[dict[str, np.ndarray]]:
    """For each config ``params[k]`` (with draw seed ``seeds[k]``), in order, a dict of the requested
    ``outputs`` (any of ``qbar``, ``r``, ``expected``, ``copies``; arrays in input order), equal to
    ``sampling_plan(ranks, domains, tokens, doc_keys, params[k], seeds[k], domain_aware)``.

    ``chunk`` configs are computed together (memory ~ 6 x documents x chunk x 8 bytes). All configs must
    have the same numbers of domains and criteria.
    """
    params = list(params)
    seeds = list(seeds)
    if len(params) != len(seeds):
        raise ValueError(f"{len(params)} configs but {len(seeds)} seeds")
    bad = [o for o in outputs if o not in _OUTPUTS]
    if bad:
        raise ValueError(f"unknown outputs {bad}; choose from {_OUTPUTS}")
    if not params:
        return
    if any(not isinstance(p, QuadMixParams) for p in params):
        raise TypeError("params must be QuadMixParams")
    n_dom, n_crit = params[0].n_domains, params[0].n_criteria
    if any(p.n_domains != n_dom or p.n_criteria != n_crit for p in params):
        raise ValueError("all configs must have the same numbers of domains and criteria")
    s = _check_ranks(ranks, n_crit)
    n = s.shape[0]
    d = _domain_codes(domains, n, n_dom, domain_aware)
    m_used = n_dom if domain_aware else 1
    t = _check_tokens(tokens, n)
    keys = _keys(doc_keys)
    if keys.shape[0] != n:
        raise ValueError(f"doc_keys has {keys.shape[0]} entries for {n} documents")
    # once for every config: documents grouped by domain
    counts = np.bincount(d, minlength=m_used) if n else np.zeros(m_used, np.int64)
    starts = np.zeros(m_used + 1, dtype=np.intp)
    np.cumsum(counts, out=starts[1:])
    by_domain = np.argsort(d.astype(_sort_key_dtype(m_used), copy=False), kind="stable")
    s_t = np.ascontiguousarray(s[by_domain].T)  # (criteria, documents by domain)
    w_by = t[by_domain]
    present = np.flatnonzero(counts)
    want = set(outputs)
    for c0 in range(0, len(params), max(1, int(chunk))):
        block = params[c0:c0 + max(1, int(chunk))]
        kb = len(block)
        alpha = np.stack([p.alpha[:m_used] for p in block])  # (kb, M, N)
        lam = np.stack([p.lam[:m_used] for p in block])
        omega = np.stack([p.omega[:m_used] for p in block])
        eta = np.stack([p.eta[:m_used] for p in block])
        eps = np.stack([p.eps[:m_used] for p in block])
        q_by = np.empty((kb, n)) if "qbar" in want else None
        r_by = np.empty((kb, n)) if "r" in want else None
        e_by = np.empty((kb, n))
        for m in present:
            lo, hi = int(starts[m]), int(starts[m + 1])
            seg = s_t[:, lo:hi]
            q = alpha[:, m, 0][:, None] * seg[0][None, :]
            for j in range(1, n_crit):
                q += alpha[:, m, j][:, None] * seg[j][None, :]
            r = _rank_rows(q, w_by[lo:hi])
            if q_by is not None:
                q_by[:, lo:hi] = q
            if r_by is not None:
                r_by[:, lo:hi] = r
            e_by[:, lo:hi] = _frequency_matrix(r, lam[:, m], omega[:, m], eta[:, m], eps[:, m])
        for k in range(kb):
            res: dict[str, np.ndarray] = {}
            for name, arr in (("qbar", q_by), ("r", r_by), ("expected", e_by)):
                if arr is not None:
                    col = np.empty(n, dtype=np.float64)
                    col[by_domain] = arr[k]
                    res[name] = col
            if "copies" in want:
                res["copies"] = _draw(res["expected"], keys, seeds[c0 + k])
            yield {o: res[o] for o in outputs}
