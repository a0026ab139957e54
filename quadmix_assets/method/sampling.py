"""The sampling function and the deterministic copy draw (QUADMIX.md section 3).

For domain ``m``::

    S(r) = (2 / (1 + exp(-lam_m * (omega_m - r)))) ** eta_m + eps_m    if r <= omega_m
    S(r) = eps_m                                                        if r >  omega_m

``S`` is an expected number of copies: a document is emitted ``floor(S)`` times plus once more with
probability ``S - floor(S)``. The extra copy is decided by a uniform number that is a pure function
of (seed, document key), so a mixture is rebuilt bit for bit whatever the shard order, worker count
or partitioning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .aggregation import (
    _aggregate_unchecked,
    _check_domains,
    _check_ranks,
    _check_tokens,
)
from .ids import hash_ids
from .params import QuadMixParams

__all__ = ["sampling_frequency", "draw_copies", "sampling_plan", "seed_to_uint64", "uniforms"]

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


# --------------------------------------------------------------------------- sampling function
def _check_r(r: Any) -> np.ndarray:
    a = np.asarray(r, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"r must be one-dimensional; got shape {a.shape}")
    if a.size:
        if np.isnan(a).any():
            raise ValueError("r contains NaN")
        if a.min() < 0.0 or a.max() > 1.0:
            raise ValueError("r must lie in [0, 1]")
    return a


def _frequency(r: np.ndarray, domains: np.ndarray, params: QuadMixParams) -> np.ndarray:
    omega = np.take(params.omega, domains)
    out = np.take(params.eps, domains)
    sel = np.flatnonzero(r <= omega)
    if sel.size:
        d = domains[sel]
        # x = lam * (omega - r) >= 0 on the selected documents, so exp(-x) lies in (0, 1]: no overflow.
        x = np.take(params.lam, d) * (omega[sel] - r[sel])
        np.negative(x, out=x)
        np.exp(x, out=x)
        x += 1.0
        np.divide(2.0, x, out=x)
        np.power(x, np.take(params.eta, d), out=x)
        x += out[sel]
        out[sel] = x
    return out


def sampling_frequency(r: Any, domains: Any, params: QuadMixParams) -> np.ndarray:
    """Expected copies ``S`` per document (float64).

    For a document in domain ``m`` with in-domain rank ``r``:
    ``S = (2 / (1 + exp(-lam_m * (omega_m - r)))) ** eta_m + eps_m`` if ``r <= omega_m``, else
    ``S = eps_m``. So ``S(omega_m) = 1 + eps_m``, ``S -> 2 ** eta_m + eps_m`` at the top, and
    ``eta_m = 0`` gives ``1 + eps_m`` for every ``r <= omega_m``. The exponential is only evaluated
    at non-positive arguments (no overflow).
    """
    if not isinstance(params, QuadMixParams):
        raise TypeError(f"params must be a QuadMixParams; got {type(params).__name__}")
    rr = _check_r(r)
    d = _check_domains(domains, rr.shape[0], params.n_domains)
    return _frequency(rr, d, params)


# --------------------------------------------------------------------------- deterministic draw
def _splitmix64_int(x: int) -> int:
    z = (x + _GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def _splitmix64_inplace(z: np.ndarray) -> np.ndarray:
    """SplitMix64 output function on a ``uint64`` array, in place (wraparound intended)."""
    tmp = np.empty_like(z)
    with np.errstate(over="ignore"):
        z += np.uint64(_GAMMA)
        np.right_shift(z, np.uint64(30), out=tmp)
        z ^= tmp
        z *= np.uint64(_MIX1)
        np.right_shift(z, np.uint64(27), out=tmp)
        z ^= tmp
        z *= np.uint64(_MIX2)
        np.right_shift(z, np.uint64(31), out=tmp)
        z ^= tmp
    return z


def seed_to_uint64(seed: int | str) -> int:
    """A draw seed as a 64-bit integer: an ``int`` modulo ``2**64``; a ``str`` (e.g. a config_id)
    as the first 8 bytes, little-endian, of BLAKE2b over its UTF-8 text."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an int or a str, not a bool")
    if isinstance(seed, str):
        return int.from_bytes(hashlib.blake2b(seed.encode("utf-8"), digest_size=8).digest(), "little")
    if isinstance(seed, (int, np.integer)):
        return int(seed) & _MASK64
    raise TypeError(f"seed must be an int or a str; got {type(seed).__name__}")


def _domain_codes(domains, n: int, n_domains: int, domain_aware: bool) -> np.ndarray:
    """Each document's domain code: the checked ``domains`` when ranking per domain, else all 0 (``domains``,
    if given, must still have one entry per document)."""
    if domain_aware:
        return _check_domains(domains, n, n_domains)
    if domains is not None:
        dd = np.asarray(domains)
        if dd.ndim != 1 or dd.shape[0] != n:
            raise ValueError(f"domains has shape {dd.shape} for {n} documents")
    return np.zeros(n, dtype=np.uint8)


def _keys(doc_ids: Any) -> np.ndarray:
    if isinstance(doc_ids, np.ndarray):
        if doc_ids.ndim != 1:
            raise ValueError(f"doc_ids must be one-dimensional; got shape {doc_ids.shape}")
        if doc_ids.dtype == np.uint64:
            return doc_ids
        if doc_ids.dtype.kind in "iu":
            return doc_ids.astype(np.uint64)  # signed ids wrap modulo 2**64
        if doc_ids.dtype.kind in "UOS" or doc_ids.size == 0:
            if doc_ids.size == 0:
                return np.empty(0, dtype=np.uint64)
            return hash_ids(str(x) if not isinstance(x, bytes) else x.decode("utf-8") for x in doc_ids)
        raise ValueError(f"doc_ids must be uint64 keys or str ids; got dtype {doc_ids.dtype}")
    if isinstance(doc_ids, str):
        raise ValueError("doc_ids must be a sequence of ids, not a single str")
    if isinstance(doc_ids, Sequence):
        if len(doc_ids) == 0:
            return np.empty(0, dtype=np.uint64)
        if all(isinstance(x, str) for x in doc_ids):
            return hash_ids(doc_ids)
        return _keys(np.asarray(doc_ids))
    return _keys(np.asarray(doc_ids))


def uniforms(doc_keys: Any, seed: int | str) -> np.ndarray:
    """The per-document uniform in ``[0, 1)`` behind :func:`draw_copies`.

    ``u = (splitmix64(key XOR splitmix64(seed64)) >> 11) * 2**-53`` where
    ``splitmix64(z)``: ``z += 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
    z = (z ^ z>>27) * 0x94D049BB133111EB; return z ^ z>>31`` (all modulo ``2**64``), and
    ``seed64 = seed_to_uint64(seed)``. ``doc_keys`` are ``uint64`` keys or str ids (hashed with
    :func:`hash_ids`).
    """
    keys = _keys(doc_keys)
    z = keys ^ np.uint64(_splitmix64_int(seed_to_uint64(seed)))
    _splitmix64_inplace(z)
    z >>= np.uint64(11)
    u = z.astype(np.float64)
    u *= 2.0**-53
    return u


def draw_copies(expected: Any, doc_ids: Any, seed: int | str) -> np.ndarray:
    """Integer copies per document: ``floor(S) + (u < S - floor(S))`` with ``u = uniforms(doc_ids,
    seed)``, so ``E[copies] = S``.

    ``u`` depends only on (seed, document key): the result for a document does not depend on the
    order of the documents, on batching or on partitioning. ``doc_ids`` is a ``uint64`` array of keys
    (:func:`hash_ids`) or a sequence/array of str ids; ``seed`` an int or a str (e.g. a config_id).
    Raises ``ValueError`` on negative or non-finite ``expected`` or a length mismatch.
    """
    s = np.asarray(expected, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"expected must be one-dimensional; got shape {s.shape}")
    if s.size:
        if not np.isfinite(s).all():
            raise ValueError("expected copies must be finite")
        if s.min() < 0:
            raise ValueError("expected copies must be >= 0")
        if s.max() >= 2.0**62:
            raise ValueError("expected copies too large")
    keys = _keys(doc_ids)
    if keys.shape[0] != s.shape[0]:
        raise ValueError(f"expected has {s.shape[0]} entries but doc_ids has {keys.shape[0]}")
    return _draw(s, keys, seed)


def _draw(s: np.ndarray, keys: np.ndarray, seed: int | str) -> np.ndarray:
    whole = np.floor(s)
    frac = s - whole
    u = uniforms(keys, seed)
    copies = whole.astype(np.int64)
    copies += u < frac
    return copies


# --------------------------------------------------------------------------- composition
def sampling_plan(
    ranks: Any,
    domains: Any,
    tokens: Any,
    doc_keys: Any,
    params: QuadMixParams,
    seed: int | str,
    domain_aware: bool = True,
) -> dict[str, np.ndarray]:
    """The whole selection for one config, in one call.

    ``qbar, r = aggregate(ranks, domains, tokens, params)``; ``expected = sampling_frequency(r,
    domains, params)``; ``copies = draw_copies(expected, doc_keys, seed)``. Returns a dict with
    ``qbar``, ``r``, ``expected`` and ``copies`` (arrays in input order).

    ``domain_aware=False`` ranks all documents as one domain: ``domains`` is ignored (may be
    ``None``; if given, its length is still checked) and only the FIRST domain's row of the params
    is used -- ``alpha[0]``, ``lam[0]``, ``omega[0]``, ``eta[0]``, ``eps[0]`` -- so baselines such as
    "criteria averaged without domains" are a config whose first row holds the wanted numbers.
    """
    if not isinstance(params, QuadMixParams):
        raise TypeError(f"params must be a QuadMixParams; got {type(params).__name__}")
    s = _check_ranks(ranks, params.n_criteria)
    n = s.shape[0]
    d = _domain_codes(domains, n, params.n_domains, domain_aware)
    if domain_aware:
        p = params
    else:
        p = QuadMixParams(
            alpha=params.alpha[:1],
            lam=params.lam[:1],
            omega=params.omega[:1],
            eta=params.eta[:1],
            eps=params.eps[:1],
        )
    t = _check_tokens(tokens, n)
    keys = _keys(doc_keys)
    if keys.shape[0] != n:
        raise ValueError(f"doc_keys has {keys.shape[0]} entries for {n} documents")
    qbar, r = _aggregate_unchecked(s, d, t, p)
    expected = _frequency(r, d, p)
    copies = _draw(expected, keys, seed)
    return {"qbar": qbar, "r": r, "expected": expected, "copies": copies}
