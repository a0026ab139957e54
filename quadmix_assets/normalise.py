"""Stage 3, the global normaliser, as a plain function (no Dagster): token-weighted worse-than ranks per
criterion (QUADMIX.md §2), fitted once over every complete shard, stored as a versioned lookup table per
criterion, and applied to every shard, giving per-shard rank attributes aligned with the documents.

It is also where the shards meet, so it resolves exact text duplicates across shards
(:mod:`quadmix_assets.corpus.duplicates`): a text is kept in the first shard key holding it, every
occurrence in a later shard is quarantined (``quarantine/cross_shard/duplicate_text.parquet``, reason
``duplicate_text``, pointer to the kept copy), left out of the reference the ranks are fitted on, and
left out of every mixture. Per-shard files keep all rows (still aligned with the documents).

The asset (:mod:`quadmix_assets.defs.quality.normaliser`) picks the shards and records the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quadmix_assets.corpus.duplicates import cross_shard_duplicates as text_duplicates
from quadmix_assets.corpus.duplicates import rows_left_out, text_digests
from quadmix_assets.method import Normaliser
from quadmix_assets.scoring.criteria import CRITERIA, attribute_name
from quadmix_assets.storage import StorageRoot, content_hash, layout

NORMALISER_VERSION = "normaliser-v1"
RANKS_ATTRIBUTE = layout.RANKS_ATTRIBUTE


def cross_shard_duplicates(ids: pa.ChunkedArray) -> list[str]:
    """Ids that occur more than once over the shards (within-shard repeats are already quarantined; pass
    the ids of the documents kept after exact text duplicates are removed: the rest differ in text)."""
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return sorted(repeated.to_pylist())


@dataclass
class NormaliserFit:
    """What :func:`fit_normaliser` wrote: the card (also stored at ``layout.normaliser_card()``), the
    quarantine's URI, and a strided sample of every criterion's raw scores (for a picture)."""

    version: str
    card: dict[str, Any]
    duplicate_uri: str
    duplicates: list[str]
    raw_scores: dict[str, np.ndarray]
    tokens: np.ndarray


def fit_normaliser(
    storage: StorageRoot,
    preset: Any,
    shards: list[str],
    fingerprints: Mapping[str, str],
    missing: Mapping[str, str],
    *,
    provenance: Callable[..., dict[str, Any]],
    info: Callable[[str], None] = lambda _msg: None,
    warning: Callable[[str], None] = lambda _msg: None,
) -> NormaliserFit:
    """Fit the normaliser over ``shards`` (sorted; their content ``fingerprints``), write its tables, the
    cross-shard quarantine, every shard's rank attribute and the card; ``missing``: the shards left out,
    with why (recorded in the card). ``provenance(models=, params=, inputs=)``: the provenance of one
    output file (the caller's step and version); ``preset``: the run preset (``normaliser_max_exact``,
    ``normaliser_sample_size``, ``seed``)."""
    per_shard = {}
    for k in shards:  # one shard's text at a time: only 32-byte digests are held
        t = storage.read_parquet(layout.documents(k), columns=["id", "text"])
        step = 65_536  # Python strings for a slice at a time
        digests = [text_digests(t["text"].slice(i, step).to_pylist()) for i in range(0, t.num_rows, step)]
        per_shard[k] = (t["id"].to_pylist(), np.concatenate(digests) if digests else text_digests([]))
    dup_table = text_duplicates(per_shard)
    sizes = {k: len(v[0]) for k, v in per_shard.items()}
    del per_shard
    dup_rows = rows_left_out(dup_table, shards)
    dup_uri = storage.write_parquet(
        layout.cross_shard_duplicates(), dup_table,
        provenance(inputs={"shard_fingerprints": {k: fingerprints[k] for k in shards}}),
    )
    if dup_table.num_rows:
        info(
            f"{dup_table.num_rows} exact text duplicate(s) across shards quarantined (duplicate_text; the copy in "
            f"the first shard key is kept): {dup_uri}"
        )
    docs = storage.dataset([layout.documents(k) for k in shards]).to_table(columns=["id", "n_tokens"])
    keep = np.ones(docs.num_rows, dtype=bool)
    offset = 0
    for k in shards:
        if k in dup_rows:
            keep[offset + dup_rows[k]] = False
        offset += sizes[k]
    docs = docs.filter(pa.array(keep))
    tokens = docs["n_tokens"].to_numpy()
    duplicates = cross_shard_duplicates(docs["id"])
    if duplicates:
        warning(
            f"{len(duplicates)} document id(s) occur in more than one shard with different texts (each occurrence "
            f"is kept and ranked; their copy draws coincide): {duplicates[:10]}"
        )
    normalisers: dict[str, Normaliser] = {}
    table_hashes = {}
    raw_scores = {}
    for c in CRITERIA:
        paths = [layout.attribute(attribute_name(c), k) for k in shards]
        scores = storage.dataset(paths).to_table(columns=["score"])["score"].to_numpy().astype(np.float64)[keep]
        norm = Normaliser.fit(
            scores, tokens, max_exact=preset.normaliser_max_exact, sample_size=preset.normaliser_sample_size, seed=preset.seed
        )
        normalisers[c] = norm
        raw_scores[c] = scores[:: max(1, scores.size // 200_000)]  # a strided sample bounds the picture's memory
        table = norm.to_table()
        storage.write_parquet(
            layout.normaliser_table(c), table, provenance(params={"criterion": c})
        )
        table_hashes[c] = storage.file_sha256(layout.normaliser_table(c))
    dup_hash = storage.file_sha256(layout.cross_shard_duplicates())
    # the quarantine enters the version only when it holds something: a corpus without cross-shard
    # duplicates keeps the normaliser version (and every byte downstream) it had before this rule
    version = content_hash({"code": NORMALISER_VERSION, "tables": table_hashes,
                            **({"duplicate_text": dup_hash} if dup_table.num_rows else {})})
    inputs = {k: fingerprints[k] for k in shards}
    for key in shards:
        cols = {}
        for c in CRITERIA:
            s = storage.read_parquet(layout.attribute(attribute_name(c), key), columns=["score"])["score"]
            cols[f"s_{c}"] = pa.array(normalisers[c].transform(s.to_numpy().astype(np.float64)), pa.float64())
        storage.write_parquet(
            layout.attribute(RANKS_ATTRIBUTE, key),
            pa.table(cols),
            provenance(models={"normaliser": version}, inputs={"fingerprint": inputs[key]}),
        )
    card = {
        "version": version,
        "criteria": list(CRITERIA),
        "shards": shards,
        "missing_shards": missing,
        "shard_fingerprints": inputs,
        "tables": table_hashes,
        "reference": {c: {"exact": bool(n.exact), "n_reference_docs": int(n.n_reference_docs)} for c, n in normalisers.items()},
        "documents": int(tokens.size),
        "tokens": int(tokens.sum()),
        "cross_shard_duplicate_ids": duplicates,
        "duplicate_text": {
            "rule": "exact text (SHA-256 of the UTF-8 bytes) in more than one shard: kept in the first shard key, "
            "quarantined in the later ones",
            "quarantined": int(dup_table.num_rows),
            "per_shard": {k: int(v.size) for k, v in dup_rows.items()},
            "path": layout.cross_shard_duplicates(),
            "sha256": dup_hash,
        },
    }
    storage.write_json(layout.normaliser_card(), card)
    return NormaliserFit(version=version, card=card, duplicate_uri=dup_uri, duplicates=duplicates,
                         raw_scores=raw_scores, tokens=tokens)
