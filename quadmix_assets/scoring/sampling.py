"""The seeded, order-independent document sample that a teacher annotates (the distilled students' training
documents, the Edu head's training subset): the ``n`` ids with the smallest seeded hash."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _hash_u64(seed: int, ids: Sequence[str]) -> np.ndarray:
    prefix = f"annotate-{int(seed)}".encode() + b"\x00"
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(prefix + str(i).encode("utf-8"), digest_size=8).digest(), "little")
         for i in ids),
        dtype=np.uint64, count=len(ids),
    )


def sample_for_annotation(ids: Sequence[str], n: int, seed: int = 0) -> np.ndarray:
    """Indices (ascending, i.e. in input order) of the ``n`` ids with the smallest seeded hash."""
    h = _hash_u64(seed, ids)
    n = max(0, min(int(n), len(h)))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ids_arr = np.asarray([str(i) for i in ids], dtype=object)
    order = np.lexsort((ids_arr, h))  # hash, then id: total order independent of input order
    return np.sort(order[:n]).astype(np.int64)
