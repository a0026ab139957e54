"""Token streams from a mixture manifest: the training data of one proxy model."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .tokenizer import eos_id, token_dtype


def occurrence_order(copies, seed) -> np.ndarray:
    """Manifest row of every document occurrence (row i repeated ``copies[i]`` times), shuffled with
    ``np.random.default_rng(seed).permutation``: the order documents are trained on and exported in."""
    copies = np.asarray(copies).astype(np.int64)
    occ = np.repeat(np.arange(len(copies)), np.maximum(copies, 0))
    return occ[np.random.default_rng(seed).permutation(len(occ))]


def manifest_token_stream(manifest_table, read_texts: Callable[[str, Sequence[int]], list[str]], tokenizer,
                          *, seed: int, budget_tokens: int, seq_len: int, batch_docs: int = 256) -> np.ndarray:
    """``(n_seqs, seq_len + 1)`` token ids packed from a manifest (pyarrow Table / pandas-like with columns
    shard, row, copies). Each document appears ``copies`` times; occurrences are shuffled with
    ``np.random.default_rng(seed).permutation``; texts are tokenized, joined with EOS (one after every
    document) and cut into non-overlapping windows of ``seq_len + 1`` tokens until
    ``n_seqs = budget_tokens // (seq_len + 1)`` windows are filled (fewer if the mixture runs out; the
    incomplete tail is dropped). Same inputs -> same bytes."""
    cols = {c: np.asarray(manifest_table[c].to_numpy() if hasattr(manifest_table[c], "to_numpy")
                          else manifest_table[c]) for c in ("shard", "row", "copies")}
    shard = cols["shard"].astype(str)
    row = cols["row"].astype(np.int64)
    copies = cols["copies"].astype(np.int64)
    order = occurrence_order(copies, seed)
    width = int(seq_len) + 1
    n_seqs = int(budget_tokens) // width
    need = n_seqs * width
    dtype = token_dtype(tokenizer.get_vocab_size())
    eos = eos_id(tokenizer)
    buf = np.empty(need, dtype=dtype)
    filled = 0
    cache: dict[int, list[int]] = {}
    pos = 0
    while filled < need and pos < len(order):
        chunk = order[pos:pos + batch_docs]
        pos += len(chunk)
        todo = sorted({int(i) for i in chunk if int(i) not in cache})
        by_shard: dict[str, list[int]] = {}
        for i in todo:
            by_shard.setdefault(shard[i], []).append(i)
        for s, idx in sorted(by_shard.items()):
            texts = read_texts(s, [int(row[i]) for i in idx])
            encs = tokenizer.encode_batch(list(texts))
            for i, e in zip(idx, encs):
                cache[i] = e.ids + [eos]
        for i in chunk:
            ids = cache[int(i)]
            take = min(len(ids), need - filled)
            buf[filled:filled + take] = ids[:take]
            filled += take
            if filled >= need:
                break
        if len(cache) > 50_000:
            cache.clear()
    n_full = filled // width
    return buf[: n_full * width].reshape(n_full, width)
