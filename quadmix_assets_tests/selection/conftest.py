"""Tiny synthetic pools for the selection tests: three topical vocabularies (math, cooking, sports) so that
"target-like" has an unambiguous meaning; every test runs in seconds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

VOCAB = {
    "math": ["integral", "equation", "theorem", "prime", "matrix", "derivative", "proof", "sum", "variable",
             "algebra", "lemma", "vector"],
    "cooking": ["oven", "flour", "butter", "recipe", "bake", "sugar", "salt", "onion", "garlic", "simmer",
                "whisk", "dough"],
    "sports": ["goal", "team", "match", "score", "player", "coach", "season", "league", "win", "ball",
               "referee", "stadium"],
}
COMMON = ["the", "of", "is", "and", "a", "to"]
DOMAINS = list(VOCAB)


def topical_text(rng, topic: str, lo: int = 20, hi: int = 60) -> str:
    words = VOCAB[topic] + COMMON
    p = np.array([3.0] * len(VOCAB[topic]) + [1.0] * len(COMMON))
    return " ".join(rng.choice(words, size=int(rng.integers(lo, hi)), p=p / p.sum()))


def make_pool(n_per_domain=(60, 60, 60), seed=0, n_shards=2):
    """(documents table with id, shard, row, n_tokens, domain; {shard: [texts]}; read_texts)."""
    rng = np.random.default_rng(seed)
    docs = []
    for d, n in enumerate(n_per_domain):
        for i in range(n):
            docs.append((DOMAINS[d], d, topical_text(rng, DOMAINS[d])))
    order = rng.permutation(len(docs))
    shards: dict[str, list[str]] = {f"s{j}": [] for j in range(n_shards)}
    cols = {k: [] for k in ("id", "shard", "row", "n_tokens", "domain")}
    for pos, i in enumerate(order):
        topic, d, text = docs[i]
        s = f"s{pos % n_shards}"
        cols["id"].append(f"{topic}-{i}")
        cols["shard"].append(s)
        cols["row"].append(len(shards[s]))
        cols["n_tokens"].append(max(1, (len(text) + 3) // 4))
        cols["domain"].append(d)
        shards[s].append(text)
    table = pa.table({"id": pa.array(cols["id"], pa.string()), "shard": pa.array(cols["shard"], pa.string()),
                      "row": pa.array(cols["row"], pa.int64()), "n_tokens": pa.array(cols["n_tokens"], pa.int64()),
                      "domain": pa.array(cols["domain"], pa.int16())})
    calls = []

    def read_texts(shard, rows):
        calls.append((shard, list(rows)))
        return [shards[shard][int(r)] for r in rows]

    read_texts.calls = calls
    return table, shards, read_texts


@pytest.fixture
def pool():
    return make_pool()


@pytest.fixture(scope="session")
def tokenizer():
    from quadmix_assets.proxy.tokenizer import train_bpe_tokenizer

    rng = np.random.default_rng(1)
    texts = [topical_text(rng, t) for t in DOMAINS for _ in range(30)]
    texts += ["Question: which is right? Answer: yes no maybe", "TARGETONLY heldout choice A B C D"]
    return train_bpe_tokenizer(iter(texts), 300, seed=0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: these models are tiny, and the machine's cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
