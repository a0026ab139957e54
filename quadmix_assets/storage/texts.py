"""Read document texts back by (shard, row) for the steps that need words, not scores (proxy training,
export). Only the ``text`` column of a shard's documents file is read, once per shard, and kept for the
next request (a few shards at a time)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import pyarrow as pa

from . import layout
from .root import StorageRoot


class ShardTexts:
    """``texts(shard, rows) -> list[str]``: callable handed to the token streams and the exporter."""

    def __init__(self, storage: StorageRoot, max_shards: int = 8):
        self.storage = storage
        self.max_shards = int(max_shards)
        self._cache: OrderedDict[str, pa.ChunkedArray] = OrderedDict()

    def column(self, shard: str) -> pa.ChunkedArray:
        if shard in self._cache:
            self._cache.move_to_end(shard)
            return self._cache[shard]
        col = self.storage.read_parquet(layout.documents(shard), columns=["text"])["text"]
        self._cache[shard] = col
        while len(self._cache) > self.max_shards:
            self._cache.popitem(last=False)
        return col

    def __call__(self, shard: str, rows: Sequence[int]) -> list[str]:
        col = self.column(shard)
        n = len(col)
        bad = [r for r in rows if not 0 <= int(r) < n]
        if bad:
            raise IndexError(f"shard {shard!r} has {n} documents; rows {bad[:5]} do not exist (stale manifest?)")
        return col.take(pa.array(rows, pa.int64())).to_pylist()
