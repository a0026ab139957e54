"""Training windows: a representative, reproducible sample of the whole mixture, with common random
numbers across mixtures."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quadmix_assets.method.ids import hash_ids
from quadmix_assets.proxy.tokenizer import train_bpe_tokenizer
from quadmix_assets.proxy.windows import mixture_windows, window_draws, window_offsets


def _corpus(n=300, seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(60)]
    return [" ".join(rng.choice(words, size=rng.integers(3, 400))) for _ in range(n)]


TEXTS = _corpus()
TOK = train_bpe_tokenizer(iter(TEXTS), 400, seed=0)


def read_texts(shard, rows):
    return [TEXTS[r] for r in rows]


def _manifest(rows, copies):
    rows = np.asarray(rows)
    return pa.table({"id": [f"doc-{r}" for r in rows], "shard": ["s"] * len(rows), "row": rows,
                     "n_tokens": [len(TEXTS[r].split()) for r in rows], "copies": np.asarray(copies, np.int32)})


def test_systematic_draws_match_expected_shares():
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 5, 400)
    keys = hash_ids([f"d{i}" for i in range(400)])
    n = 20_000
    doc, occ = window_draws(keys, w, n, seed=3)
    counts = np.bincount(doc, minlength=400)
    expected = n * w / w.sum()
    # systematic sampling: every document within one draw of its expected count (not just on average)
    assert np.abs(counts - expected).max() < 1.0 + 1e-9
    # occurrence numbers count 0, 1, ... per document
    for i in np.flatnonzero(counts)[:20]:
        assert sorted(occ[doc == i].tolist()) == list(range(counts[i]))


def test_windows_are_deterministic_and_seeded():
    m = _manifest(np.arange(200), np.ones(200))
    a, ia = mixture_windows(m, read_texts, TOK, seed=5, n_seqs=64, seq_len=31)
    b, _ = mixture_windows(m, read_texts, TOK, seed=5, n_seqs=64, seq_len=31, cache={})
    c, _ = mixture_windows(m, read_texts, TOK, seed=6, n_seqs=64, seq_len=31)
    assert a.shape == (64, 32) and np.array_equal(a, b) and not np.array_equal(a, c)
    # manifest row order does not matter
    perm = np.random.default_rng(0).permutation(200)
    d, _ = mixture_windows(m.take(pa.array(perm)), read_texts, TOK, seed=5, n_seqs=64, seq_len=31)
    assert np.array_equal(a, d)


def test_windows_spread_over_the_mixture():
    """The budget (64 x 32 tokens) is far smaller than the mixture, yet it reads far more documents than
    streaming whole documents would (~2,048 tokens / ~200 tokens per document = ~10)."""
    m = _manifest(np.arange(300), np.ones(300))
    _, info = mixture_windows(m, read_texts, TOK, seed=1, n_seqs=64, seq_len=31)
    assert info["documents_read"] > 40


def test_copies_weight_the_sample():
    """A document with 3 copies is read about 3 times as often as one with 1 copy."""
    rows = np.arange(300)
    copies = np.where(rows < 150, 3, 1)
    m = _manifest(rows, copies)
    keys = hash_ids([f"doc-{r}" for r in rows])
    n_tok = np.asarray([len(TEXTS[r].split()) for r in rows], float)
    w = copies * np.maximum(1, n_tok / 32)
    doc, _ = window_draws(keys, w, 6000, seed=2)
    per_copy = np.bincount(doc, minlength=300) / w
    assert abs(per_copy[:150].mean() / per_copy[150:].mean() - 1) < 0.02
    arr, _ = mixture_windows(m, read_texts, TOK, seed=2, n_seqs=16, seq_len=31)
    assert arr.shape == (16, 32)


def test_common_random_numbers_across_overlapping_mixtures():
    """Two mixtures that differ in a few documents read mostly the same windows (document, occurrence,
    offset) under one seed; under another seed almost none coincide."""
    keys_all = hash_ids([f"doc-{r}" for r in range(205)])
    w = np.random.default_rng(4).uniform(1, 6, 205)

    def drawn(lo, hi, seed):
        d, o = window_draws(keys_all[lo:hi], w[lo:hi], 1000, seed)
        k = keys_all[lo:hi][d]
        off = window_offsets(k, o, np.full(len(d), 2000), 32, seed)
        return {(int(a), int(b), int(c)) for a, b, c in zip(k, o, off)}

    a, b, c = drawn(0, 200, 9), drawn(5, 205, 9), drawn(0, 200, 10)
    shared_crn = len(a & b) / len(a)
    shared_other = len(a & c) / len(a)
    assert shared_crn > 0.6 and shared_crn > shared_other + 0.2


def test_tiny_mixture_wraps_and_empty_mixture_is_empty():
    m = _manifest(np.arange(2), np.ones(2))
    arr, info = mixture_windows(m, read_texts, TOK, seed=1, n_seqs=200, seq_len=31)
    assert arr.shape == (200, 32) and info["documents_read"] == 2  # many windows of the two documents
    empty, _ = mixture_windows(_manifest(np.arange(3), np.zeros(3)), read_texts, TOK, seed=1, n_seqs=4, seq_len=31)
    assert empty.shape == (0, 32)


def test_stratified_draws_give_every_stratum_its_share():
    """Drawn stratum by stratum, every stratum's draw count is within one of its weight's share; drawn in
    key order alone, small strata miss theirs by chance."""
    rng = np.random.default_rng(7)
    n_docs, n = 3000, 240
    w = rng.uniform(0.5, 5, n_docs)
    strata = rng.integers(0, 24, n_docs)
    keys = hash_ids([f"d{i}" for i in range(n_docs)])
    expected = np.bincount(strata, weights=w, minlength=24) / w.sum() * n
    doc, _ = window_draws(keys, w, n, seed=5, strata=strata)
    assert np.abs(np.bincount(strata[doc], minlength=24) - expected).max() < 1.0 + 1e-9
    worst = max(np.abs(np.bincount(strata[window_draws(keys, w, n, seed=s)[0]], minlength=24) - expected).max()
                for s in range(5))
    assert worst > 1.5
