import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from quadmix_assets.proxy.stream import manifest_token_stream
from quadmix_assets.proxy.targets import load_target_sets, split_target
from quadmix_assets.proxy.tokenizer import load_tokenizer, token_dtype, train_bpe_tokenizer

DATA = Path(os.environ.get("QUADMIX_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.mark.skipif(not (DATA / "targets").is_dir(), reason="no reference data")
def test_load_real_targets_and_split():
    sets = load_target_sets(DATA, names=["copa", "gsm8k", "winogrande", "triviaqa_sm_sub", "mmlu_redux", "wikitext2"])
    assert len(sets["copa"]) == 100 and sets["copa"].multiple_choice
    assert sets["gsm8k"].examples[0].choices is None
    assert 5000 < len(sets["mmlu_redux"]) < 5700
    for name, ts in sets.items():
        t, h = split_target(ts.examples, name)
        t2, h2 = split_target(ts.examples, name)
        assert t == t2 and h == h2
        assert len(t) + len(h) == len(ts)
        assert {id(e) for e in t}.isdisjoint({id(e) for e in h})
        assert len(t) > 0.3 * len(ts) and len(h) > 0.3 * len(ts)


def test_split_rule_synthetic():
    ex = [f"text {i}" for i in range(1000)]
    t, h = split_target(ex, "x")
    assert sorted(t + h) == sorted(ex) and not set(t) & set(h)
    assert split_target(ex, "x") == (t, h)
    assert split_target(ex, "y") != (t, h)


def _corpus(n=200):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "data", "model", "the", "of", "and", "quality"]
    return [" ".join(rng.choice(words, size=rng.integers(5, 40))) for _ in range(n)]


def test_tokenizer_deterministic(tmp_path):
    texts = _corpus()
    a = train_bpe_tokenizer(iter(texts), 300, seed=0)
    b = train_bpe_tokenizer(iter(texts), 300, seed=0)
    assert a.to_str() == b.to_str()
    a.save(str(tmp_path / "tokenizer.json"))
    c = load_tokenizer(tmp_path)
    assert c.encode(texts[0]).ids == a.encode(texts[0]).ids
    assert token_dtype(300) == np.uint16 and token_dtype(100_000) == np.uint32


def test_stream_copies_budget_determinism():
    texts = _corpus(50)
    tok = train_bpe_tokenizer(iter(texts), 300, seed=0)
    reads = []

    def read_texts(shard, rows):
        reads.append((shard, tuple(rows)))
        return [texts[r] for r in rows]

    man = pa.table({"id": [f"d{i}" for i in range(3)], "shard": ["s"] * 3, "row": [0, 1, 2],
                    "n_tokens": [1, 1, 1], "domain": [0, 0, 0], "copies": [2, 0, 1]})
    big = manifest_token_stream(man, read_texts, tok, seed=1, budget_tokens=10**6, seq_len=7)
    n_doc_tokens = 2 * (len(tok.encode(texts[0]).ids) + 1) + len(tok.encode(texts[2]).ids) + 1
    assert big.size == (n_doc_tokens // 8) * 8
    eos = tok.token_to_id("<|endoftext|>")
    assert (big == eos).sum() in (2, 3)  # three occurrences, the tail may be dropped
    assert all(1 not in rows for _, rows in reads)
    man2 = pa.table({"shard": ["s"] * 50, "row": list(range(50)), "copies": [1] * 50})
    s1 = manifest_token_stream(man2, read_texts, tok, seed=3, budget_tokens=1000, seq_len=15)
    s2 = manifest_token_stream(man2, read_texts, tok, seed=3, budget_tokens=1000, seq_len=15)
    s3 = manifest_token_stream(man2, read_texts, tok, seed=4, budget_tokens=1000, seq_len=15)
    assert s1.shape == (1000 // 16, 16) and s1.dtype == np.uint16
    assert s1.tobytes() == s2.tobytes() and s1.tobytes() != s3.tobytes()
