"""Exact text duplicates across shards, resolved by one documented rule where the shards meet.

Per-shard runs stay independent: reading a shard quarantines only what that shard alone can tell
(``duplicate_id`` within the shard, bad records). Whether the same text also sits in another shard is
known only where shards meet, the normaliser's fan-in, which applies this rule:

* **Exact text**: two documents are duplicates when their ``text`` (the stored string, UTF-8 bytes, no
  normalisation of case, whitespace or Unicode form) is identical, compared by SHA-256 of those bytes.
  Near duplicates (MinHash, suffix arrays) are a different step and not done here.
* **Which copy is kept**: the text is kept in the lexicographically first shard key (of the shards the
  fan-in uses) that holds it; every occurrence in a later shard is quarantined with reason
  ``duplicate_text`` and a pointer to the kept copy (its shard key, row and id: the first row of the text
  in the kept shard).
* **Within one shard** repeated texts are left as they are (each is its own record of that shard); only
  cross-shard repeats are resolved, so adding or removing another shard never changes which rows of a
  shard are kept *within* it.

Downstream fan-ins (mixture scores, hence manifests and exports, and the normaliser's reference) leave the
quarantined rows out (:func:`rows_left_out`); the per-shard files keep every row, so attribute files stay
aligned row for row with the documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa

__all__ = ["DUPLICATE_TEXT", "DUPLICATES_SCHEMA", "text_digests", "cross_shard_duplicates", "rows_left_out"]

DUPLICATE_TEXT = "duplicate_text"

#: One row per quarantined occurrence: where it is, why, and where the kept copy is.
DUPLICATES_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("kept_shard", pa.string()),
        pa.field("kept_row", pa.int64()),
        pa.field("kept_id", pa.string()),
        pa.field("text_sha256", pa.string()),
    ]
)


def text_digests(texts: Iterable[str | None]) -> np.ndarray:
    """SHA-256 of every text's UTF-8 bytes, as a ``(n,)`` array of 32-byte strings (dtype ``S32``)."""
    out = [hashlib.sha256(t.encode("utf-8")).digest() for t in (t if t is not None else "" for t in texts)]
    return np.array(out, dtype="S32") if out else np.empty(0, dtype="S32")


def cross_shard_duplicates(shards: Mapping[str, tuple[Iterable[str], np.ndarray]]) -> pa.Table:
    """The occurrences to quarantine under the module's rule.

    ``shards`` maps a shard key to (ids, digests) of its documents in row order (digests from
    :func:`text_digests`). Returns a :data:`DUPLICATES_SCHEMA` table sorted by (shard, row); empty when
    no text occurs in two shards. The result depends only on the keys and contents given, never on the
    mapping's order.
    """
    keys = sorted(shards)
    if not keys:
        return DUPLICATES_SCHEMA.empty_table()
    ids_per = [list(shards[k][0]) for k in keys]
    dig_per = [np.asarray(shards[k][1], dtype="S32") for k in keys]
    for k, i, d in zip(keys, ids_per, dig_per):
        if len(i) != d.shape[0]:
            raise ValueError(f"shard {k}: {len(i)} ids for {d.shape[0]} digests")
    shard_idx = np.concatenate([np.full(d.shape[0], j, dtype=np.int64) for j, d in enumerate(dig_per)])
    rows = np.concatenate([np.arange(d.shape[0], dtype=np.int64) for d in dig_per])
    digests = np.concatenate(dig_per)
    if digests.size == 0:
        return DUPLICATES_SCHEMA.empty_table()
    # np.unique's return_index is the first occurrence in array order: (first shard key, first row)
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    kept = first[inverse.reshape(-1)]
    dup = np.flatnonzero(shard_idx != shard_idx[kept])  # cross-shard only; within-shard repeats stay
    ids = [x for i in ids_per for x in i]
    out = {
        "shard": [keys[shard_idx[i]] for i in dup],
        "row": rows[dup],
        "id": [ids[i] for i in dup],
        "reason": [DUPLICATE_TEXT] * dup.size,
        "detail": [
            f"same text as row {int(rows[kept[i]])} of shard {keys[shard_idx[kept[i]]]} (id {ids[kept[i]]}), which is kept"
            for i in dup
        ],
        "kept_shard": [keys[shard_idx[kept[i]]] for i in dup],
        "kept_row": rows[kept[dup]],
        "kept_id": [ids[kept[i]] for i in dup],
        "text_sha256": [digests[i].hex() for i in dup],
    }
    return pa.table(out, schema=DUPLICATES_SCHEMA)


def rows_left_out(duplicates: pa.Table | None, shards: Iterable[str]) -> dict[str, np.ndarray]:
    """Per shard of ``shards``, the sorted rows a fan-in over exactly ``shards`` leaves out, the module's
    rule applied to that subset: an occurrence is left out when its kept copy is among ``shards``; when the
    kept shard is not used (left out of this fan-in), the text is kept in the first used shard holding it
    instead, so a text never vanishes from a fan-in nor appears in two of its shards."""
    used = set(shards)
    out: dict[str, np.ndarray] = {}
    if duplicates is None or duplicates.num_rows == 0:
        return out
    shard, row, kept, digest = (duplicates[c].to_pylist() for c in ("shard", "row", "kept_shard", "text_sha256"))
    orphans: dict[str, list[tuple[str, int]]] = {}  # digest -> occurrences in used shards whose kept shard is not used
    acc: dict[str, list[int]] = {}
    for s, r, k, d in zip(shard, row, kept, digest):
        if s not in used:
            continue
        if k in used:
            acc.setdefault(s, []).append(int(r))
        else:
            orphans.setdefault(d, []).append((s, int(r)))
    for occ in orphans.values():
        first = min(s for s, _ in occ)
        for s, r in occ:
            if s != first:
                acc.setdefault(s, []).append(r)
    return {s: np.unique(np.asarray(r, dtype=np.int64)) for s, r in sorted(acc.items())}
