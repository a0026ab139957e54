"""DSIR (Xie et al. 2023, "Data Selection for Language Models via Importance Resampling"), plain numpy.

Features: the lower-cased text is split into words and punctuation (``\\w+|[^\\w\\s]``, DSIR's
word-punct tokenisation); every unigram and every bigram is hashed into one shared space of
``n_buckets`` (default 10,000) buckets. The hash is stable across runs, machines and Python's hash seed:
a word's 64-bit hash is the first 8 bytes of ``blake2b(word, digest_size=8)`` (little-endian); a
bigram's is ``splitmix64(h(a) * 0x9E3779B97F4A7C15 + h(b))``; the bucket is ``hash % n_buckets``.

Distributions: bag-of-n-grams bucket counts of the *target* texts and of the raw corpus, each with
add-one smoothing: ``p(b) = (count(b) + 1) / (total + n_buckets)``. The target texts of several sets are
pooled with equal weight per set (each set's counts are rescaled to the same total before summing), so a
large set does not swamp a small one -- the same "mean over target sets" the proxy objective uses.

Importance: ``log w(x) = sum_b count_x(b) * (log p_target(b) - log p_raw(b))`` (DSIR's unnormalised
log-likelihood ratio; no length normalisation). Resampling without replacement by Gumbel-top-k:
``key(x) = log w(x) + Gumbel(0, 1)`` drawn from ``np.random.default_rng(seed)``, documents sorted by
descending key, and the longest prefix whose ``n_tokens`` sum stays within the budget is kept
(``copies = 1``). Same inputs and seed -> same manifest.

Only the texts passed as ``target_texts`` are used: callers pass the *target* half of the target sets,
never the held-out half (see :func:`quadmix_assets.selection.stored.target_half_texts`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

N_BUCKETS = 10_000
_WORD = re.compile(r"\w+|[^\w\s]")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


class NgramHasher:
    """Text -> bucket ids of its unigrams and bigrams (one entry per occurrence)."""

    def __init__(self, n_buckets: int = N_BUCKETS):
        if n_buckets < 2:
            raise ValueError("n_buckets must be >= 2")
        self.n_buckets = int(n_buckets)
        self._cache: dict[str, int] = {}

    def word_hash(self, word: str) -> int:
        h = self._cache.get(word)
        if h is None:
            h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
            if len(self._cache) < 5_000_000:
                self._cache[word] = h
        return h

    def buckets(self, text: str) -> np.ndarray:
        words = _WORD.findall(str(text).lower())
        if not words:
            return np.zeros(0, dtype=np.int32)
        h = np.fromiter((self.word_hash(w) for w in words), dtype=np.uint64, count=len(words))
        with np.errstate(over="ignore"):
            bi = _splitmix64(h[:-1] * _GOLDEN + h[1:])
        B = np.uint64(self.n_buckets)
        return np.concatenate([h % B, bi % B]).astype(np.int32)

    def counts(self, texts: Sequence[str]) -> np.ndarray:
        """Summed bucket counts of ``texts`` (float64, length n_buckets)."""
        out = np.zeros(self.n_buckets, dtype=np.float64)
        for t in texts:
            b = self.buckets(t)
            if len(b):
                out += np.bincount(b, minlength=self.n_buckets)
        return out


def smoothed(counts: np.ndarray) -> np.ndarray:
    """Add-one smoothing: ``(counts + 1) / (sum + n_buckets)``."""
    c = np.asarray(counts, dtype=np.float64)
    return (c + 1.0) / (c.sum() + len(c))


def target_distribution(hasher: NgramHasher, target_texts: Mapping[str, Sequence[str]] | Sequence[str]) -> np.ndarray:
    """Smoothed bucket distribution of the target texts, each named set weighted equally."""
    if not isinstance(target_texts, Mapping):
        target_texts = {"target": list(target_texts)}
    per_set = [hasher.counts(list(texts)) for texts in target_texts.values()]
    per_set = [c for c in per_set if c.sum() > 0]
    if not per_set:
        raise ValueError("DSIR needs at least one non-empty target text")
    mean_total = float(np.mean([c.sum() for c in per_set]))
    pooled = sum(c * (mean_total / c.sum()) for c in per_set)
    return smoothed(pooled)


def gumbel_top_k(log_weights: np.ndarray, n_tokens: np.ndarray, budget_tokens: int, seed: int) -> np.ndarray:
    """Indices sampled without replacement with probability proportional to ``exp(log_weights)`` (Gumbel
    top-k), in sampled order: the longest prefix of the order whose token sum is <= ``budget_tokens``."""
    lw = np.asarray(log_weights, dtype=np.float64)
    nt = np.asarray(n_tokens, dtype=np.int64)
    keys = lw + np.random.default_rng(seed).gumbel(size=len(lw))
    order = np.argsort(-keys, kind="stable")
    within = np.cumsum(nt[order]) <= int(budget_tokens)
    n_keep = int(np.argmin(within)) if not within.all() else len(order)
    return order[:n_keep]


@dataclass
class DSIRResult:
    manifest: pa.Table  # id, shard, row, n_tokens, domain, copies (= 1)
    log_weights: np.ndarray  # per corpus document, in the order of the documents table
    info: dict = field(default_factory=dict)


MANIFEST_SCHEMA = pa.schema([("id", pa.string()), ("shard", pa.string()), ("row", pa.int64()),
                             ("n_tokens", pa.int64()), ("domain", pa.int16()), ("copies", pa.int32())])


def manifest_from(documents: pa.Table, index: np.ndarray, copies: np.ndarray | None = None) -> pa.Table:
    """Rows ``index`` of a documents table (id, shard, row, n_tokens, domain) as a mixture manifest."""
    idx = pa.array(np.asarray(index, dtype=np.int64))
    cols = {c: documents[c].take(idx) for c in ("id", "shard", "row", "n_tokens", "domain")}
    cp = np.ones(len(index), np.int32) if copies is None else np.asarray(copies, np.int32)
    return pa.table({"id": cols["id"].cast(pa.string()), "shard": cols["shard"].cast(pa.string()),
                     "row": cols["row"].cast(pa.int64()), "n_tokens": cols["n_tokens"].cast(pa.int64()),
                     "domain": cols["domain"].cast(pa.int16()), "copies": pa.array(cp, pa.int32())},
                    schema=MANIFEST_SCHEMA)


def document_buckets(documents: pa.Table, read_texts: Callable[[str, Sequence[int]], list[str]],
                     hasher: NgramHasher) -> list[np.ndarray]:
    """Bucket ids of every document of the table (read shard by shard through ``read_texts``)."""
    shard = np.asarray(documents["shard"].to_pylist(), dtype=object)
    row = documents["row"].to_numpy()
    out: list[np.ndarray] = [np.zeros(0, np.int32)] * len(row)
    for s in sorted(set(shard.tolist())):
        idx = np.flatnonzero(shard == s)
        texts = read_texts(s, [int(r) for r in row[idx]])
        for i, t in zip(idx, texts):
            out[int(i)] = hasher.buckets(t)
    return out


def dsir_select(documents: pa.Table, read_texts: Callable[[str, Sequence[int]], list[str]],
                target_texts: Mapping[str, Sequence[str]] | Sequence[str], *, budget_tokens: int, seed: int,
                n_buckets: int = N_BUCKETS) -> DSIRResult:
    """DSIR selection of about ``budget_tokens`` (``n_tokens`` units) from ``documents`` (columns id,
    shard, row, n_tokens, domain: the raw pool) toward ``target_texts`` (the *target* half only)."""
    hasher = NgramHasher(n_buckets)
    p_t = target_distribution(hasher, target_texts)
    doc_b = document_buckets(documents, read_texts, hasher)
    raw = np.zeros(hasher.n_buckets, dtype=np.float64)
    for b in doc_b:
        if len(b):
            raw += np.bincount(b, minlength=hasher.n_buckets)
    p_r = smoothed(raw)
    ratio = np.log(p_t) - np.log(p_r)
    logw = np.array([float(ratio[b].sum()) if len(b) else 0.0 for b in doc_b])
    n_tok = documents["n_tokens"].to_numpy().astype(np.int64)
    pick = gumbel_top_k(logw, n_tok, budget_tokens, seed)
    manifest = manifest_from(documents, pick)
    info = {"method": "dsir", "n_buckets": hasher.n_buckets, "features": "hashed unigrams+bigrams, add-one smoothed",
            "seed": int(seed), "budget_tokens": int(budget_tokens), "selected_tokens": int(n_tok[pick].sum()),
            "selected_documents": int(len(pick)), "pool_documents": int(len(n_tok)),
            "pool_tokens": int(n_tok.sum()),
            "target_sets": sorted(target_texts) if isinstance(target_texts, Mapping) else ["target"],
            "log_weight_quantiles": {q: float(np.quantile(logw, q)) for q in (0.01, 0.5, 0.99)} if len(logw) else {}}
    return DSIRResult(manifest=manifest, log_weights=logw, info=info)
