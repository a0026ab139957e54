"""Worse-than ranks: the per-criterion normalisation of QUADMIX.md section 2.

``s(x)`` = (tokens of documents whose score is strictly greater than ``score(x)``) / (all tokens),
so 0 is the best document and values lie in ``[0, 1]``. When every document has 0 tokens, document
counts are used instead of tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["worse_than_rank", "Normaliser", "MIN_SAMPLE_SIZE"]

#: The smallest reference sample a large-corpus :class:`Normaliser` may be fitted from.
MIN_SAMPLE_SIZE = 10_000

_META_PREFIX = "quadmix.normaliser."


def _as_scores(scores: Any) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be one-dimensional; got shape {s.shape}")
    if s.dtype.kind not in "fiub":
        raise ValueError(f"scores must be numbers; got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s


def _as_tokens(tokens: Any, n: int) -> np.ndarray:
    """Tokens as int64 (integer input) or float64 (float input); validated >= 0 and finite."""
    if tokens is None:
        return np.ones(n, dtype=np.int64)
    t = np.asarray(tokens)
    if t.ndim != 1:
        raise ValueError(f"tokens must be one-dimensional; got shape {t.shape}")
    if t.shape[0] != n:
        raise ValueError(f"tokens and documents differ in length: {t.shape[0]} tokens for {n} documents")
    if t.dtype.kind in "iub":
        t = t.astype(np.int64, copy=False)
    elif t.dtype.kind == "f":
        t = t.astype(np.float64, copy=False)
        if not np.isfinite(t).all():
            raise ValueError("tokens must be finite")
    else:
        raise ValueError(f"tokens must be numbers; got dtype {t.dtype}")
    if n and t.min() < 0:
        raise ValueError("tokens must be >= 0")
    return t


def _reference(scores: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Sorted unique values, the share of weight strictly greater than each, the inverse map, and
    the total token count (the weights are counts when that total is 0)."""
    values, inverse = np.unique(scores, return_inverse=True)
    inverse = inverse.reshape(-1)
    weights = np.bincount(inverse, weights=tokens, minlength=values.shape[0])
    total_tokens = float(weights.sum()) if weights.size else 0.0
    if not (weights > 0).any():
        weights = np.bincount(inverse, minlength=values.shape[0]).astype(np.float64)
    # suffix[k] = sum_{j >= k} weights[j]; greater[k] = sum_{j > k} weights[j]
    suffix = np.cumsum(weights[::-1])[::-1]
    greater = np.empty_like(suffix)
    greater[:-1] = suffix[1:]
    if greater.size:
        greater[-1] = 0.0
        share = greater / suffix[0]
    else:
        share = greater
    return values, share, inverse, total_tokens


def worse_than_rank(scores: Any, tokens: Any) -> np.ndarray:
    """Worse-than rank of every document, 0 = best.

    ``s(x) = sum(tokens[y] for y with scores[y] > scores[x]) / sum(tokens)`` -- strictly greater, so
    tied documents share one rank. If the total of ``tokens`` is 0, document counts are used.
    O(n log n) (one sort). Raises ``ValueError`` on NaN scores, negative or non-finite tokens, or a
    length mismatch. Empty input gives an empty array.
    """
    s = _as_scores(scores)
    t = _as_tokens(tokens, s.shape[0])
    if s.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    _, share, inverse, _ = _reference(s, t)
    return share[inverse]


@dataclass(frozen=True, eq=False)
class Normaliser:
    """A fitted, storable reference for one criterion.

    ``values`` are the sorted unique reference scores and ``share_greater[k]`` the share of reference
    tokens whose score is strictly greater than ``values[k]``. :meth:`transform` maps any score ``v``
    to the share of reference tokens strictly greater than ``v``, which for the reference documents
    themselves (when ``exact``) is exactly :func:`worse_than_rank`.
    """

    values: np.ndarray
    share_greater: np.ndarray
    n_reference_docs: int
    exact: bool
    total_tokens: float

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=np.float64, copy=True)
        share = np.array(self.share_greater, dtype=np.float64, copy=True)
        if values.ndim != 1 or share.shape != values.shape:
            raise ValueError(
                f"values and share_greater must be 1-D of one length; got {values.shape}, {share.shape}"
            )
        if values.size == 0:
            raise ValueError("a Normaliser needs at least one reference value")
        if np.isnan(values).any() or (values.size > 1 and not (np.diff(values) > 0).all()):
            raise ValueError("values must be strictly increasing and not NaN")
        if not np.isfinite(share).all() or share.min() < 0 or share.max() > 1:
            raise ValueError("share_greater must lie in [0, 1]")
        values.setflags(write=False)
        share.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "share_greater", share)
        object.__setattr__(self, "n_reference_docs", int(self.n_reference_docs))
        object.__setattr__(self, "exact", bool(self.exact))
        object.__setattr__(self, "total_tokens", float(self.total_tokens))
        # lookup[j] = share of reference weight strictly greater than a value with j reference
        # values <= it (j = 0: everything is greater).
        lookup = np.concatenate([[1.0], share])
        lookup.setflags(write=False)
        object.__setattr__(self, "_lookup", lookup)

    @classmethod
    def fit(
        cls,
        scores: Any,
        tokens: Any,
        *,
        max_exact: int = 2_000_000,
        sample_size: int = 100_000,
        seed: int = 0,
    ) -> Normaliser:
        """Fit the reference from a corpus' scores and token counts.

        Exact when ``len(scores) <= max_exact``; otherwise from a uniform random sample (without
        replacement, ``np.random.default_rng(seed)``) of ``sample_size >= 10,000`` documents. Token
        weighted; counts are used when the reference's tokens total 0. ``tokens=None`` means counts.
        """
        if int(sample_size) < MIN_SAMPLE_SIZE:
            raise ValueError(f"sample_size must be >= {MIN_SAMPLE_SIZE}; got {sample_size}")
        if int(max_exact) < 0:
            raise ValueError(f"max_exact must be >= 0; got {max_exact}")
        s = _as_scores(scores)
        t = _as_tokens(tokens, s.shape[0])
        n = s.shape[0]
        if n == 0:
            raise ValueError("cannot fit a Normaliser on an empty corpus")
        exact = n <= int(max_exact) or int(sample_size) >= n
        if not exact:
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(n, size=int(sample_size), replace=False))
            s, t = s[idx], t[idx]
        values, share, _, total = _reference(s, t)
        return cls(
            values=values,
            share_greater=share,
            n_reference_docs=int(s.shape[0]),
            exact=exact,
            total_tokens=total,
        )

    def transform(self, scores: Any) -> np.ndarray:
        """Share of reference tokens strictly greater than each score (0 = best); works for scores
        never seen in the reference (binary search)."""
        s = _as_scores(scores)
        j = np.searchsorted(self.values, s, side="right")
        return self._lookup[j]  # type: ignore[attr-defined]

    # ----------------------------------------------------------------- storage
    def to_table(self) -> pa.Table:
        """A pyarrow Table (``value``, ``share_greater``) with ``exact``, ``n_reference_docs`` and
        ``total_tokens`` in the schema metadata."""
        meta = {
            f"{_META_PREFIX}exact": "true" if self.exact else "false",
            f"{_META_PREFIX}n_reference_docs": str(self.n_reference_docs),
            f"{_META_PREFIX}total_tokens": repr(self.total_tokens),
        }
        return pa.table(
            {
                "value": pa.array(self.values, type=pa.float64()),
                "share_greater": pa.array(self.share_greater, type=pa.float64()),
            }
        ).replace_schema_metadata(meta)

    @classmethod
    def from_table(cls, table: pa.Table) -> Normaliser:
        """Inverse of :meth:`to_table`."""
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        try:
            exact = meta[f"{_META_PREFIX}exact"] == "true"
            n_docs = int(meta[f"{_META_PREFIX}n_reference_docs"])
            total = float(meta[f"{_META_PREFIX}total_tokens"])
        except KeyError as exc:
            raise ValueError(f"not a Normaliser table: metadata {exc} missing") from None
        if not math.isfinite(total):
            raise ValueError("total_tokens metadata is not finite")
        return cls(
            values=table.column("value").to_numpy(),
            share_greater=table.column("share_greater").to_numpy(),
            n_reference_docs=n_docs,
            exact=exact,
            total_tokens=total,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Normaliser):
            return NotImplemented
        return (
            np.array_equal(self.values, other.values)
            and np.array_equal(self.share_greater, other.share_greater)
            and self.n_reference_docs == other.n_reference_docs
            and self.exact == other.exact
            and self.total_tokens == other.total_tokens
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):
        # Re-validate (and re-freeze the arrays) when unpickled or deep-copied.
        return (
            type(self),
            (self.values, self.share_greater, self.n_reference_docs, self.exact, self.total_tokens),
        )
