"""Stable 64-bit keys for document ids.

A document's key is the first 8 bytes (little-endian) of BLAKE2b over its UTF-8 id. Keys drive the
deterministic copy draws (``draw_copies``), so they depend on nothing but the id: not on shard order,
worker count or partitioning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def hash_id(doc_id: str) -> int:
    """The 64-bit key of one document id."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


def hash_ids(doc_ids: Iterable[str]) -> np.ndarray:
    """The 64-bit keys of many document ids, as a ``uint64`` array."""
    return np.fromiter((hash_id(i) for i in doc_ids), dtype=np.uint64)
