"""A stored corpus of random documents and attributes (ties and zero-token documents included), laid out
as the pipeline stores it, for the DuckDB fan-in tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quadmix_assets.method import Normaliser, hash_ids
from quadmix_assets.storage import StorageRoot, layout

CRITERIA = ("dclm", "heuristic", "langid")


def write_random_corpus(
    storage: StorageRoot,
    sizes: list[int],
    n_domains: int,
    seed: int,
    *,
    levels: int = 50,
    zero_token_domain: int | None = None,
    max_exact: int = 2_000_000,
    sample_size: int = 100_000,
) -> list[str]:
    """Shards ``shard-<i>`` of the given sizes: documents (id, id_hash, n_tokens, text), domain labels,
    raw scores per criterion rounded to ``levels`` values (many ties), the normaliser tables fitted over
    all shards, and the per-shard rank attribute. Returns the shard keys."""
    rng = np.random.default_rng(seed)
    shards = [f"shard-{i:03d}" for i in range(len(sizes))]
    all_scores = {c: [] for c in CRITERIA}
    all_tokens = []
    for k, n in zip(shards, sizes):
        ids = [f"{k}-doc-{j}" for j in range(n)]
        tokens = rng.integers(0, 400, n).astype(np.int64)
        tokens[rng.random(n) < 0.05] = 0
        domain = rng.integers(0, n_domains, n).astype(np.int16)
        if zero_token_domain is not None:
            tokens[domain == zero_token_domain] = 0
        texts = [f"text of {i} " * int(1 + t % 3) for i, t in zip(ids, tokens)]
        storage.write_parquet(layout.documents(k), pa.table({
            "id": pa.array(ids, pa.string()), "id_hash": pa.array(hash_ids(ids)),
            "n_tokens": pa.array(tokens), "text": pa.array(texts, pa.string()),
            "row": pa.array(np.arange(n, dtype=np.int64)), "shard": pa.array([f"source-{k}"] * n, pa.string()),
        }), {})
        storage.write_parquet(layout.attribute("domain", k), pa.table({"domain": pa.array(domain)}), {})
        for c in CRITERIA:
            s = np.round(rng.random(n) * levels) / levels
            if c == "langid":
                s = s.astype(np.float32)
            storage.write_parquet(layout.attribute(f"quality_{c}", k), pa.table({"score": pa.array(s)}), {})
            all_scores[c].append(np.asarray(s, np.float64))
        all_tokens.append(tokens)
    tokens = np.concatenate(all_tokens)
    norms = {}
    for c in CRITERIA:
        norms[c] = Normaliser.fit(np.concatenate(all_scores[c]), tokens, max_exact=max_exact, sample_size=sample_size, seed=seed)
        storage.write_parquet(layout.normaliser_table(c), norms[c].to_table(), {})
    for i, k in enumerate(shards):
        cols = {f"s_{c}": pa.array(norms[c].transform(all_scores[c][i]), pa.float64()) for c in CRITERIA}
        storage.write_parquet(layout.attribute(layout.RANKS_ATTRIBUTE, k), pa.table(cols), {})
    return shards
