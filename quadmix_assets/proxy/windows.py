"""Training windows for a proxy model: a representative sample of its whole mixture.

A proxy's token budget is far smaller than its mixture (cpu preset: ~246k tokens of a mixture of a few
million), so *which* text it reads must not be left to chance. Streaming whole shuffled documents reads a
few hundred documents, and which ones dominates the loss. Instead a proxy trains on ``seq_len + 1``-token
windows drawn across the whole mixture:

* every manifest row (document) gets the weight ``copies * max(1, n_tokens / width)``: its number of
  windows, so the expected number of tokens read from a document is proportional to its tokens times its
  copies (token-uniform over the mixture);
* windows are drawn by *systematic sampling* over the documents in a canonical order (their 64-bit id
  key): with ``D`` draws and one shared random shift ``u``, draw ``j`` lands at cumulative weight
  ``(j + u) / D * total``. Every document is read within one window of its expected share (no document
  is over- or under-read by chance), and two mixtures that hold the same documents with similar weights
  read them in the same places: common random numbers across configs;
* a window inside a long document starts at an offset drawn from (document key, occurrence index, seed);
  short documents give a shorter segment (the document and its EOS); segments are shuffled with one
  seeded permutation (the same for every mixture) and packed into rows of ``width`` tokens.

Same manifest, tokenizer and seed -> the same array, byte for byte, whatever else runs in the process.
"""

from __future__ import annotations

import math
from typing import Callable, MutableMapping, Sequence

import numpy as np

from quadmix_assets.method.ids import hash_ids
from quadmix_assets.method.sampling import uniforms

from .tokenizer import eos_id, token_dtype

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _column(table, name: str) -> np.ndarray:
    col = table[name]
    return np.asarray(col.to_numpy() if hasattr(col, "to_numpy") else col)


def window_draws(keys: np.ndarray, weights: np.ndarray, n_draws: int, seed: int | str,
                 strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Systematic sample of ``n_draws`` documents with probability proportional to ``weights``.

    Documents are visited in the order of their ``keys`` (uint64 hashes of the ids; ties by position),
    within ``strata`` when given (integer labels, e.g. domains: visited stratum by stratum, so every
    stratum gets its weight's share of the draws to within one). Returns ``(doc_index, occurrence)``: the
    row of every draw (non-decreasing in visiting order) and how many earlier draws landed on the same
    document (0, 1, ...)."""
    keys = np.asarray(keys, dtype=np.uint64)
    w = np.asarray(weights, dtype=np.float64)
    if keys.shape != w.shape or (strata is not None and np.shape(strata) != w.shape):
        raise ValueError("keys, weights and strata need one entry per document")
    if n_draws <= 0 or w.size == 0 or not (w > 0).any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(keys, kind="stable") if strata is None else np.lexsort((keys, np.asarray(strata, dtype=np.int64)))
    cum = np.cumsum(w[order])
    total = cum[-1]
    shift = float(uniforms(np.zeros(1, np.uint64), f"windows-shift:{seed}")[0])
    points = (np.arange(n_draws, dtype=np.float64) + shift) * (total / n_draws)
    pos = np.minimum(np.searchsorted(cum, points, side="right"), len(cum) - 1)
    doc = order[pos]
    first = np.searchsorted(pos, pos, side="left")  # pos is non-decreasing
    occurrence = np.arange(n_draws, dtype=np.int64) - first
    return doc.astype(np.int64), occurrence


def window_offsets(doc_keys: np.ndarray, occurrence: np.ndarray, lengths: np.ndarray, width: int,
                   seed: int | str) -> np.ndarray:
    """Start of each window inside its document: uniform over ``[0, length - width]`` from (key,
    occurrence, seed); 0 where the document is not longer than the window."""
    k = np.asarray(doc_keys, dtype=np.uint64) + np.asarray(occurrence, dtype=np.uint64) * _GOLDEN
    u = uniforms(k, f"windows-offset:{seed}")
    room = np.maximum(np.asarray(lengths, dtype=np.int64) - int(width) + 1, 1)
    return np.minimum((u * room).astype(np.int64), room - 1)


def mixture_windows(manifest, read_texts: Callable[[str, Sequence[int]], list[str]], tokenizer, *, seed: int | str,
                    n_seqs: int, seq_len: int, oversample: float = 1.3,
                    cache: MutableMapping[tuple[str, int], np.ndarray] | None = None,
                    stratify: str | None = None) -> tuple[np.ndarray, dict]:
    """``(n_seqs, seq_len + 1)`` token windows sampled across a mixture manifest (columns id, shard,
    row, n_tokens, copies), and statistics of the sample (documents read, their share of the mixture).

    ``stratify`` names an integer manifest column (``domain``) to draw within, stratum by stratum
    (:func:`window_draws`). ``cache`` maps (shard, row) to the document's token ids (+ EOS); pass one dict to every mixture of a
    run so shared documents are tokenized once."""
    width = int(seq_len) + 1
    need = int(n_seqs) * width
    dtype = token_dtype(tokenizer.get_vocab_size())
    eos = eos_id(tokenizer)
    copies = _column(manifest, "copies").astype(np.int64)
    n_tok = np.maximum(_column(manifest, "n_tokens").astype(np.float64), 1.0)
    keep = copies > 0
    if not keep.any() or need == 0:
        return np.zeros((0, width), dtype), {"documents_read": 0, "windows": 0, "mixture_documents": int(keep.sum())}
    ids = _column(manifest, "id").astype(str)
    shard = _column(manifest, "shard").astype(str)
    row = _column(manifest, "row").astype(np.int64)
    keys = hash_ids(ids)
    weights = np.where(keep, copies * np.maximum(1.0, n_tok / width), 0.0)
    seg_est = float(np.sum(weights * np.minimum(n_tok + 1, width)) / np.sum(weights))
    n_draws = max(1, math.ceil(need / seg_est * oversample))
    strata = _column(manifest, stratify).astype(np.int64) if stratify else None
    doc, occ = window_draws(keys, weights, n_draws, seed, strata=strata)
    cache = {} if cache is None else cache
    unique = np.unique(doc)
    todo: dict[str, list[int]] = {}
    for i in unique:
        if (shard[i], int(row[i])) not in cache:
            todo.setdefault(shard[i], []).append(int(i))
    for s in sorted(todo):
        idx = todo[s]
        texts = read_texts(s, [int(row[i]) for i in idx])
        for i, e in zip(idx, tokenizer.encode_batch(list(texts))):
            cache[(s, int(row[i]))] = np.asarray([*e.ids, eos], dtype=dtype)
    toks = [cache[(shard[i], int(row[i]))] for i in doc]
    lengths = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
    offsets = window_offsets(keys[doc], occ, lengths, width, seed)
    perm = np.random.default_rng(np.random.SeedSequence([int(x) for x in str(seed).encode()])).permutation(len(doc))
    buf = np.empty(need, dtype=dtype)
    filled = 0
    passes = 0
    while filled < need:
        for j in perm:
            t = toks[j][offsets[j]:offsets[j] + width]
            take = min(len(t), need - filled)
            buf[filled:filled + take] = t[:take]
            filled += take
            if filled >= need:
                break
        passes += 1
    info = {"documents_read": int(unique.size), "mixture_documents": int(keep.sum()), "windows": int(len(doc)),
            "passes": passes,
            "weight_share_read": float(weights[unique].sum() / weights.sum())}
    return buf.reshape(int(n_seqs), width), info
