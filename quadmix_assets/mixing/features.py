"""The feature reader: the per-document features a mixture is computed from, read from the stored files
and never written. A shard's documents (id, id_hash, n_tokens), its ``domain`` attribute and its
worse-than ranks (``quality_ranks``: ``s_<criterion>``) are aligned row for row; rows the normaliser
quarantined as exact text duplicates of a kept copy in another shard (``duplicate_text``) are left out.

* :func:`document_features`: every shard's features as one table, for the in-memory engine;
* :func:`feature_chunks`: one shard's features a chunk at a time, for the out-of-core engine (memory holds
  a chunk, not the shard);
* :func:`documents_count`: how many documents a fan-in over some shards holds, from the files' footers
  (what chooses the engine);
* :func:`duplicate_rows`: the quarantined rows, per shard.

No text is read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quadmix_assets.corpus.duplicates import rows_left_out
from quadmix_assets.storage import StorageRoot, layout

__all__ = ["SOURCE_ROWS", "KeepMask", "document_features", "documents_count", "duplicate_rows", "feature_chunks", "read_chunks"]

#: rows per chunk :func:`read_chunks` reads of a shard's files (the out-of-core engine's unit of memory)
SOURCE_ROWS = 1 << 14


def duplicate_rows(storage: StorageRoot, shards: list[str]) -> dict[str, np.ndarray]:
    """Per shard, the rows a fan-in over ``shards`` leaves out as exact text duplicates of a kept copy in
    another shard (the normaliser's ``duplicate_text`` quarantine; none before the normaliser ran)."""
    if not storage.exists(layout.cross_shard_duplicates()):
        return {}
    return rows_left_out(storage.read_parquet(layout.cross_shard_duplicates()), shards)


def document_features(storage: StorageRoot, shards: list[str], criteria, *, leave_out_duplicates: bool = True) -> pa.Table:
    """Shard, row, id, key, tokens, domain and the worse-than rank ``s_<criterion>`` of every document of
    ``shards`` (attribute files aligned row for row with the documents; no text is read). Rows the
    normaliser quarantined as cross-shard text duplicates are left out unless ``leave_out_duplicates`` is
    false; ``row`` is always the row in the shard's documents file."""
    dropped = duplicate_rows(storage, shards) if leave_out_duplicates else {}
    parts = []
    for key in shards:
        docs = storage.read_parquet(layout.documents(key), columns=["id", "id_hash", "n_tokens"])
        dom = storage.read_parquet(layout.attribute("domain", key), columns=["domain"])
        ranks = storage.read_parquet(layout.attribute(layout.RANKS_ATTRIBUTE, key), columns=[f"s_{c}" for c in criteria])
        if not docs.num_rows == dom.num_rows == ranks.num_rows:
            raise ValueError(f"shard {key}: documents/domain/ranks are not aligned")
        n = docs.num_rows
        t = pa.table({"shard": pa.array([key] * n, pa.string()), "row": pa.array(np.arange(n, dtype=np.int64)),
                      "id": docs["id"], "id_hash": docs["id_hash"], "n_tokens": docs["n_tokens"], "domain": dom["domain"]})
        for c in criteria:
            t = t.append_column(f"s_{c}", ranks[f"s_{c}"])
        if key in dropped:
            keep = np.ones(n, dtype=bool)
            keep[dropped[key]] = False
            t = t.filter(pa.array(keep))
        parts.append(t)
    return pa.concat_tables(parts)


def documents_count(storage: StorageRoot, shards: list[str]) -> int:
    """The documents a fan-in over ``shards`` holds (the cross-shard duplicate quarantine left out), from
    the files' footers: what :func:`document_features` would return, without reading a column."""
    n = sum(storage.parquet_rows(layout.documents(k)) for k in shards)
    return n - sum(int(rows.size) for rows in duplicate_rows(storage, shards).values())


def feature_parts(shard: str, criteria: Sequence[str], doc_columns: Sequence[str] = ("id", "id_hash", "n_tokens"),
                  ) -> list[tuple[str, list[str]]]:
    """The files a shard's features are read from, aligned row for row, with the columns read of each:
    [(relpath, columns)] for the documents, the domain labels and the worse-than ranks."""
    return [(layout.documents(shard), list(doc_columns)), (layout.attribute("domain", shard), ["domain"]),
            (layout.attribute(layout.RANKS_ATTRIBUTE, shard), [f"s_{c}" for c in criteria])]


def release_arrow_memory() -> None:
    """Give the pages Arrow's allocator keeps from the previous shard back to the system before the next
    is read (mimalloc, Arrow's default, holds freed pages: reading 100 shards one after another otherwise
    grows the RSS by tens of MB)."""
    pa.default_memory_pool().release_unused()


def read_chunks(storage: StorageRoot, parts: Sequence[tuple[str, Sequence[str]]], rows: int | None = None,
                ) -> Iterator[tuple[int, tuple[pa.Table, ...]]]:
    """The files of one shard (aligned row for row) read side by side, ``rows`` rows at a time: (first row,
    one table per file with the same rows of each). Each file is decoded a batch at a time
    (``iter_batches``), so memory holds a chunk, not the shard: a 100k-row shard read whole cost the plan
    about 20 MB more at 10M rows. ``ValueError`` when the files end at different rows. ``rows`` defaults
    to :data:`SOURCE_ROWS`."""
    rows = rows or SOURCE_ROWS
    with contextlib.ExitStack() as stack:
        its = [stack.enter_context(pq.ParquetFile(storage.path(rel), filesystem=storage.fs))
               .iter_batches(batch_size=rows, columns=list(cols), use_threads=False) for rel, cols in parts]
        bufs: list[list[pa.RecordBatch]] = [[] for _ in parts]
        have = [0] * len(parts)
        done = [False] * len(parts)
        lo = 0
        while True:
            for j, it in enumerate(its):
                while have[j] < rows and not done[j]:
                    b = next(it, None)
                    if b is None:
                        done[j] = True
                    elif b.num_rows:
                        bufs[j].append(b)
                        have[j] += b.num_rows
            n = min(min(have), rows)
            if n == 0:
                if any(have):
                    counts = {rel: lo + have[j] for j, (rel, _) in enumerate(parts)}
                    raise ValueError(f"files are not aligned row for row: they end at different rows ({counts})")
                return
            out = []
            for j in range(len(parts)):
                t = pa.Table.from_batches(bufs[j])
                out.append(t.slice(0, n))
                bufs[j] = t.slice(n).to_batches()
                have[j] -= n
            yield lo, tuple(out)
            lo += n
            del out
            release_arrow_memory()


def feature_chunks(storage: StorageRoot, shard: str, criteria: Sequence[str], doc_columns: Sequence[str] = ("n_tokens",),
                   rows: int | None = None, left_out: np.ndarray | None = None,
                   ) -> Iterator[tuple[np.ndarray, pa.Table, pa.ChunkedArray, np.ndarray]]:
    """One shard a chunk at a time (:func:`read_chunks`): (row numbers, the documents' ``doc_columns``,
    domain labels, worse-than ranks as a float64 (documents x criteria) matrix) of its documents except the
    rows ``left_out`` (the cross-shard duplicate quarantine, :func:`duplicate_rows`); the same values as
    :func:`document_features` has for these rows."""
    release_arrow_memory()
    for lo, (docs, dom_t, ranks) in read_chunks(storage, feature_parts(shard, criteria, doc_columns), rows):
        row = np.arange(lo, lo + docs.num_rows, dtype=np.int64)
        if left_out is not None and left_out.size:
            keep = ~np.isin(row, left_out)
            if not keep.all():
                mask = pa.array(keep)
                row, docs, dom_t, ranks = row[keep], docs.filter(mask), dom_t.filter(mask), ranks.filter(mask)
        s = np.column_stack([ranks.column(f"s_{c}").to_numpy().astype(np.float64, copy=False) for c in criteria])
        yield row, docs, dom_t.column("domain"), s


class KeepMask:
    """Which documents a mixture's keep rule (:attr:`~quadmix_assets.mixing.specs.MixtureSpec.keep`) lets it
    select: every ``(criterion, min_score)`` pair's raw score (the criterion's ``quality_<criterion>``
    attribute, column ``score``, aligned row for row with the documents) must be >= min_score. One shard's
    scores are held at a time (the engines go shard by shard)."""

    def __init__(self, storage: StorageRoot, keep):
        self.storage, self.keep = storage, tuple(keep)
        self._shard: str | None = None
        self._ok: np.ndarray | None = None

    def __call__(self, shard: str, rows: np.ndarray) -> np.ndarray:
        if self._shard != shard:
            from quadmix_assets.scoring.criteria import attribute_name

            ok = None
            for criterion, floor in self.keep:
                score = self.storage.read_parquet(layout.attribute(attribute_name(criterion), shard), columns=["score"])
                v = score["score"].to_numpy(zero_copy_only=False) >= float(floor)
                ok = v if ok is None else ok & v
            self._shard, self._ok = shard, ok
        return self._ok[np.asarray(rows, dtype=np.int64)]

    def table(self, shards: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The mask of documents given by (shard, row) arrays, in any order."""
        out = np.zeros(len(rows), dtype=bool)
        for shard in dict.fromkeys(shards.tolist()):
            sel = np.flatnonzero(shards == shard)
            out[sel] = self(shard, rows[sel])
        return out
