"""The fan-in steps out of core over the stored Parquet files: DuckDB sorts and joins under its memory limit
and spills the rest to disk; Python holds a batch and one chunk of a shard's files at a time.

* :func:`worse_than_ranks`: the global token-weighted worse-than rank ``s`` of every document per criterion
  (what :meth:`Normaliser.fit` + :meth:`Normaliser.transform` give when the normaliser is exact);
* :func:`normalised_ranks`: the stored normaliser tables applied to raw scores (an ASOF join; equal to
  :meth:`Normaliser.transform` also when the normaliser was fitted on a sample);
* :func:`scores_batches` / :func:`sampling_plan`: ``qbar`` and the in-domain token-weighted rank ``r`` of one
  config, then ``S(r)`` and the copies with the numpy method functions batch by batch (both are
  element-wise), so the copies are the numpy path's bit for bit;
* :func:`expand_copies`: the export join, manifest x documents with every copy a row.

A rank is a running token sum in sorted order. Both rankings are one DuckDB ``ORDER BY`` (an external sort)
over rows Python reads a chunk of a shard at a time (:func:`_chunks`), :class:`_RunningSums` over the sorted stream (ties kept
together across batches), and :class:`_ShardBuckets`, which hands every running sum back to its shard's
row in a local spill file, so no second sort and no window over a whole domain is needed.

The numpy library (:mod:`quadmix_assets.method`) stays the reference; the tests check equality with it.
Exact equality holds for integer token counts (the stored ``n_tokens``): every sum is then an exact
integer, and the one division per document is the same IEEE operation in both paths.

Documents and their attribute files are aligned row for row per shard (the row counts are checked first;
a DuckDB query puts a shard's columns side by side with a ``POSITIONAL JOIN``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quadmix_assets.method import QuadMixParams, aggregated_quality, draw_copies, sampling_frequency
from quadmix_assets.storage import StorageRoot, layout
from quadmix_assets.storage.duck import file_ref, sql_list, sql_str

from .catalog import duplicate_rows
from .specs import global_params

__all__ = [
    "feature_sql",
    "check_aligned",
    "worse_than_ranks",
    "normalised_ranks",
    "scores_batches",
    "sampling_plan",
    "expand_copies",
]

_BATCH = 1 << 15


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _shard_select(storage: StorageRoot, index: int, shard: str, parts: Sequence[tuple[str, Sequence[str]]]) -> str:
    """One shard's columns side by side: ``parts`` is [(relpath, columns)], the first also gives the row
    number. Aligned by position."""
    cols = [f"{int(index)} AS shard_idx", f"{sql_str(shard)} AS shard"]
    froms = []
    for j, (rel, columns) in enumerate(parts):
        alias = f"p{j}"
        extra = ", file_row_number = true" if j == 0 else ""
        froms.append(f"read_parquet({sql_str(file_ref(storage, rel))}{extra}) AS {alias}")
        if j == 0:
            cols.append(f"{alias}.file_row_number AS row")
        cols += [f"{alias}.{_ident(c)}" + (f" AS {_ident(a)}" if a != c else "") for c, a in _pairs(columns)]
    return f"SELECT {', '.join(cols)} FROM {' POSITIONAL JOIN '.join(froms)}"


def _pairs(columns: Sequence[str]) -> list[tuple[str, str]]:
    """``"col"`` or ``"col AS alias"`` entries as (column, alias)."""
    out = []
    for c in columns:
        if " AS " in c:
            a, b = c.split(" AS ", 1)
            out.append((a.strip(), b.strip()))
        else:
            out.append((c, c))
    return out


def _feature_parts(criteria: Sequence[str], shard: str, *, with_id: bool = True) -> list[tuple[str, list[str]]]:
    return [
        (layout.documents(shard), (["id"] if with_id else []) + ["id_hash", "n_tokens"]),
        (layout.attribute("domain", shard), ["domain"]),
        (layout.attribute(layout.RANKS_ATTRIBUTE, shard), [f"s_{c}" for c in criteria]),
    ]


def feature_sql(storage: StorageRoot, shards: Sequence[str], criteria: Sequence[str], *, with_id: bool = True) -> str:
    """A query of every document of ``shards`` (in that order): shard_idx, shard, row, id (unless not
    ``with_id``), id_hash, n_tokens, domain and ``s_<criterion>`` (the stored worse-than ranks). The DuckDB
    counterpart of :func:`~quadmix_assets.mixing.catalog.document_features`."""
    if not shards:
        raise ValueError("no shards")
    return "\nUNION ALL\n".join(
        _shard_select(storage, i, k, _feature_parts(criteria, k, with_id=with_id)) for i, k in enumerate(shards))


def check_aligned(con: duckdb.DuckDBPyConnection, storage: StorageRoot, groups: Sequence[Sequence[str]]) -> None:
    """Raise ``ValueError`` unless the Parquet files of each group (one shard's documents and attributes)
    have one row count (read from the footers)."""
    files = sorted({file_ref(storage, rel) for g in groups for rel in g})
    rows = dict(con.execute(f"SELECT file_name, num_rows FROM parquet_file_metadata({sql_list(files)})").fetchall())
    for g in groups:
        counts = {rel: rows[file_ref(storage, rel)] for rel in g}
        if len(set(counts.values())) > 1:
            raise ValueError(f"files are not aligned row for row: {counts}")


def _check_feature_files(con, storage: StorageRoot, shards: Sequence[str], criteria: Sequence[str]) -> None:
    check_aligned(con, storage, [[rel for rel, _ in _feature_parts(criteria, k)] for k in shards])


def worse_than_ranks(
    con: duckdb.DuckDBPyConnection,
    storage: StorageRoot,
    shards: Sequence[str],
    attributes: dict[str, str],
    *,
    batch_rows: int = _BATCH,
) -> pa.RecordBatchReader:
    """The global worse-than rank of every document of ``shards`` for each criterion, computed over all of
    them: batches of (shard, row, s_<criterion>...), one shard at a time, in shard order then row order.
    ``attributes`` maps a criterion to its attribute name (a ``score`` column aligned with the documents).
    Equal to ``Normaliser.fit(scores, tokens).transform(scores)`` for an exact normaliser (NaN scores raise).

    Per criterion the documents' (score, tokens), read a chunk of a shard at a time, go through one DuckDB sort by
    score, best first (external: it spills beyond the memory limit); :class:`_RunningSums` gives each the
    tokens strictly above its score, and :class:`_ShardBuckets` hands those back to their shards. What
    grows with the corpus is only DuckDB's sort (bounded by its memory limit) and the spill files; memory
    otherwise holds a batch, a chunk and one shard's running sums. The sorts run before this returns."""
    if not shards:
        raise ValueError("no shards")
    crit = list(attributes)
    groups = [[layout.documents(k)] + [layout.attribute(attributes[c], k) for c in crit] for k in shards]
    check_aligned(con, storage, groups)
    buckets = _ShardBuckets(con)
    try:
        totals = []
        for j, c in enumerate(crit):
            sums = _RunningSums(inclusive=False)
            source = _Source(_RANK_SOURCE, _score_rows(storage, shards, attributes[c]))
            for batch in sums.run(_sorted(con, source, "v DESC", batch_rows)):
                buckets.add(j, batch)
            totals.append(sums.totals())
    except BaseException:
        buckets.close()
        raise
    schema = pa.schema([("shard", pa.string()), ("row", pa.int64())] + [(f"s_{c}", pa.float64()) for c in crit])

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for i, k in enumerate(shards):
                _release_arrow_memory()
                n = storage.parquet_rows(layout.documents(k))
                if not n:
                    continue
                cols = [_shares(*buckets.read(j, i, n), 0, totals[j]) for j in range(len(crit))]
                whole = pa.RecordBatch.from_arrays([pa.repeat(pa.scalar(k, pa.string()), n), pa.array(np.arange(n, dtype=np.int64)),
                                                    *(pa.array(c, pa.float64()) for c in cols)], schema=schema)
                for start in range(0, n, batch_rows):
                    yield whole.slice(start, batch_rows)
        finally:
            buckets.close()

    return pa.RecordBatchReader.from_batches(schema, batches())


def normalised_ranks(
    con: duckdb.DuckDBPyConnection,
    storage: StorageRoot,
    shards: Sequence[str],
    attributes: dict[str, str],
    *,
    batch_rows: int = _BATCH,
) -> pa.RecordBatchReader:
    """The stored normaliser tables (``normaliser/<criterion>.parquet``) applied to every document's raw
    score: the share of reference tokens strictly greater than the score, 1.0 below every reference value
    (an ASOF join, as :meth:`Normaliser.transform`). Batches of (shard, row, s_<criterion>...)."""
    crit = list(attributes)
    groups = [[layout.attribute(attributes[c], k) for c in crit] for k in shards]
    check_aligned(con, storage, groups)
    selects = []
    for i, k in enumerate(shards):
        parts = [(layout.attribute(attributes[c], k), [f"score AS score_{j}"]) for j, c in enumerate(crit)]
        selects.append(_shard_select(storage, i, k, parts))
    ctes = ["src AS (" + "\nUNION ALL\n".join(selects) + ")"]
    joins, cols = [], []
    for j, c in enumerate(crit):
        ref = file_ref(storage, layout.normaliser_table(c))
        ctes.append(f"n{j} AS (SELECT value, share_greater FROM read_parquet({sql_str(ref)}))")
        joins.append(f"ASOF LEFT JOIN n{j} ON CAST(src.score_{j} AS DOUBLE) >= n{j}.value")
        cols.append(f"COALESCE(n{j}.share_greater, 1.0) AS {_ident('s_' + c)}")
    sql = (f"WITH {', '.join(ctes)} SELECT src.shard, src.row, {', '.join(cols)} FROM src {' '.join(joins)} "
           "ORDER BY src.shard_idx, src.row")
    return con.sql(sql).to_arrow_reader(batch_rows)


# --------------------------------------------------------------------------- out-of-core support
_RANK_SOURCE = pa.schema([("shard_idx", pa.int32()), ("row", pa.int32()), ("v", pa.float64()), ("w", pa.int64())])
_PLAN_SOURCE = pa.schema([("shard_idx", pa.int32()), ("row", pa.int32()), ("g", pa.int32()), ("v", pa.float64()),
                          ("w", pa.int64())])
_SUMS = np.dtype([("row", "<i4"), ("cw", "<i8"), ("ck", "<i8")])
#: rows per batch handed to DuckDB's sort (a shard is cut into such batches)
_SOURCE_ROWS = 1 << 14


def _group_of(tab: pa.Table | pa.RecordBatch) -> np.ndarray:
    return tab.column("g").to_numpy() if "g" in tab.schema.names else np.zeros(tab.num_rows, np.int32)


def _row_numbers(row: np.ndarray, shard: str) -> pa.Array:
    """Row numbers in a shard as the int32 the sorted streams carry."""
    if row.size and int(row[-1]) >= 2**31 - 1:
        raise ValueError(f"shard {shard} has more than 2**31 - 1 rows; the out-of-core fan-in takes at most that many")
    return pa.array(row.astype(np.int32))


def _release_arrow_memory() -> None:
    """Give the pages Arrow's allocator keeps from the previous shard back to the system before the next
    is read (mimalloc, Arrow's default, holds freed pages: reading 100 shards one after another otherwise
    grows the RSS by tens of MB)."""
    pa.default_memory_pool().release_unused()


def _chunks(storage: StorageRoot, parts: Sequence[tuple[str, Sequence[str]]], rows: int | None = None,
            ) -> Iterator[tuple[int, tuple[pa.Table, ...]]]:
    """The files of one shard (aligned row for row) read side by side, ``rows`` rows at a time: (first row,
    one table per file with the same rows of each). Each file is decoded a batch at a time
    (``iter_batches``), so memory holds a chunk, not the shard: a 100k-row shard read whole cost the plan
    about 20 MB more at 10M rows. ``ValueError`` when the files end at different rows. ``rows`` defaults
    to ``_SOURCE_ROWS``."""
    rows = rows or _SOURCE_ROWS
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
            _release_arrow_memory()


def _score_rows(storage: StorageRoot, shards: Sequence[str], attribute: str) -> Iterator[pa.RecordBatch]:
    """(shard_idx, row, v = score, w = tokens) of every document, one chunk of a shard at a time."""
    for i, k in enumerate(shards):
        _release_arrow_memory()
        parts = [(layout.documents(k), ["n_tokens"]), (layout.attribute(attribute, k), ["score"])]
        for lo, (docs, att) in _chunks(storage, parts):
            v = att.column("score").to_numpy().astype(np.float64, copy=False)
            if np.isnan(v).any():
                raise ValueError(f"scores contain NaN ({attribute}, shard {k})")
            yield pa.RecordBatch.from_arrays([pa.array(np.full(v.size, i, np.int32)), _row_numbers(np.arange(lo, lo + v.size), k),
                                              pa.array(v), docs.column("n_tokens").combine_chunks().cast(pa.int64())],
                                             schema=_RANK_SOURCE)


def _feature_chunks(storage: StorageRoot, shard: str, criteria: Sequence[str], params: QuadMixParams,
                    n_domains: int, domain_aware: bool, doc_columns: Sequence[str] = ("n_tokens",), rows: int | None = None,
                    left_out: np.ndarray | None = None,
                    ) -> Iterator[tuple[np.ndarray, pa.Table, pa.ChunkedArray, np.ndarray, np.ndarray]]:
    """One shard a chunk at a time: (row numbers, documents' ``doc_columns``, domain labels, groups,
    ``qbar``) of its documents except the rows ``left_out`` (the cross-shard duplicate quarantine); the same
    numbers each time it is read (``qbar`` is element-wise)."""
    _release_arrow_memory()
    parts = [(layout.documents(shard), list(doc_columns)), (layout.attribute("domain", shard), ["domain"]),
             (layout.attribute(layout.RANKS_ATTRIBUTE, shard), [f"s_{c}" for c in criteria])]
    for lo, (docs, dom_t, ranks) in _chunks(storage, parts, rows):
        row = np.arange(lo, lo + docs.num_rows, dtype=np.int64)
        if left_out is not None and left_out.size:
            keep = ~np.isin(row, left_out)
            if not keep.all():
                mask = pa.array(keep)
                row, docs, dom_t, ranks = row[keep], docs.filter(mask), dom_t.filter(mask), ranks.filter(mask)
        dom = dom_t.column("domain")
        d = dom.to_numpy()
        if d.size and (int(d.min()) < 0 or int(d.max()) >= n_domains):
            bad = int(d.min()) if int(d.min()) < 0 else int(d.max())
            raise ValueError(f"domain id {bad} out of range [0, {n_domains}) for these params")
        g = d.astype(np.int32) if domain_aware else np.zeros(d.size, np.int32)
        s = np.column_stack([ranks.column(f"s_{c}").to_numpy().astype(np.float64, copy=False) for c in criteria])
        yield row, docs, dom, g, aggregated_quality(s, g, params)


class _Source:
    """Batches from Python for a DuckDB query, keeping the exception the generator raised (DuckDB reports
    it as its own error)."""

    def __init__(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch]):
        self.schema, self._batches, self.error = schema, batches, None

    def reader(self) -> pa.RecordBatchReader:
        def guarded():
            try:
                yield from self._batches
            except BaseException as exc:
                self.error = exc
                raise
        return pa.RecordBatchReader.from_batches(self.schema, guarded())


def _sorted(con: duckdb.DuckDBPyConnection, source: _Source, order: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """``source``'s rows sorted by DuckDB (``ORDER BY order``: external, it spills beyond the memory
    limit), as batches."""
    name = f"src_{uuid.uuid4().hex}"
    con.register(name, source.reader())
    try:
        yield from con.sql(f"SELECT * FROM {name} ORDER BY {order}").to_arrow_reader(batch_rows)
    except duckdb.Error:
        if source.error is not None:
            raise source.error from None
        raise
    finally:
        con.unregister(name)


class _ShardBuckets:
    """The running sums of a sorted stream handed back to their shards: each batch's (row, cw, ck) are
    appended to one local file per shard (and stream) in the connection's spill folder, and
    :meth:`read` puts a shard's back in row order (a scatter, no second sort). Removed by :meth:`close`."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        folder = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] or None
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.folder = tempfile.mkdtemp(prefix="quadmix-fanin-", dir=folder)

    def _file(self, stream: int, shard_idx: int) -> str:
        return os.path.join(self.folder, f"{stream}-{shard_idx}.bin")

    def add(self, stream: int, batch: pa.RecordBatch) -> None:
        idx = batch.column("shard_idx").to_numpy()
        rec = np.empty(idx.size, _SUMS)
        rec["row"], rec["cw"], rec["ck"] = (batch.column(c).to_numpy() for c in ("row", "cw", "ck"))
        order = np.argsort(idx, kind="stable")
        idx, rec = idx[order], rec[order]
        cuts = np.flatnonzero(np.diff(idx)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, idx.size]):
            with open(self._file(stream, int(idx[lo])), "ab") as fh:
                rec[lo:hi].tofile(fh)

    def read(self, stream: int, shard_idx: int, n: int, left_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(cw, ck) of the shard's ``n`` rows in row order (those of the rows ``left_out`` are undefined)."""
        path = self._file(stream, shard_idx)
        rec = np.fromfile(path, _SUMS) if os.path.exists(path) else np.empty(0, _SUMS)
        cw, ck = np.empty(n, np.int64), np.empty(n, np.int64)
        seen = np.zeros(n, bool)
        cw[rec["row"]], ck[rec["row"]], seen[rec["row"]] = rec["cw"], rec["ck"], True
        expected = np.ones(n, bool)
        if left_out is not None:
            expected[left_out] = False
        if rec.size != int(expected.sum()) or not np.array_equal(seen, expected):
            raise RuntimeError(f"the sorted stream gave {rec.size} rows of shard #{shard_idx} for {int(expected.sum())}")
        return cw, ck

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _RunningSums:
    """Token sums over a stream of rows sorted by (``g``, ``v``), one batch at a time: for every row the
    sum of the weights ``w`` (and the count of rows) of its group ``g`` at values ordered before it
    (``inclusive=False``: ties excluded) or up to it (``inclusive=True``: ties included). Only a batch and
    the rows tied with its last row are held (a tie group is never split, so the rows of one tie group
    must fit in memory); ``totals()`` gives every group's sums once the stream has ended.

    Every sum is an integer sum (``int64``), so the shares later divided from them are the numpy
    reference's exactly, whatever the batch boundaries."""

    def __init__(self, *, inclusive: bool):
        self.inclusive = inclusive
        self._group: int | None = None
        self._w = 0
        self._k = 0
        self._totals: dict[int, tuple[int, int]] = {}

    def run(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Each input batch's rows (held-back ties deferred) with ``cw`` and ``ck`` appended; ``v`` and
        ``w`` must be columns, ``g`` may be (without it, all rows are one group 0)."""
        pending: pa.Table | None = None
        for batch in batches:
            tab = pa.Table.from_batches([batch]) if pending is None else pa.concat_tables([pending, pa.Table.from_batches([batch])])
            if tab.num_rows == 0:
                continue
            g = _group_of(tab)
            v = tab.column("v").to_numpy()
            tied = (g == g[-1]) & (v == v[-1])  # the last row's tie group: contiguous, at the end
            start = int(np.argmax(tied))
            pending = tab.slice(start)
            if start:
                yield self._sums(tab.slice(0, start))
        if pending is not None and pending.num_rows:
            yield self._sums(pending)
        if self._group is not None:
            self._totals[self._group] = (self._w, self._k)

    def totals(self) -> dict[int, tuple[int, int]]:
        return dict(self._totals)

    def _sums(self, tab: pa.Table) -> pa.RecordBatch:
        tab = tab.combine_chunks()
        g = _group_of(tab)
        v = tab.column("v").to_numpy()
        w = tab.column("w").to_numpy().astype(np.int64, copy=False)
        n = g.size
        new_group = np.empty(n, bool)
        new_group[0] = True
        np.not_equal(g[1:], g[:-1], out=new_group[1:])
        new_tie = new_group.copy()
        new_tie[1:] |= v[1:] != v[:-1]
        cs_w = np.cumsum(w)
        cs_k = np.arange(1, n + 1, dtype=np.int64)
        g_start = np.flatnonzero(new_group)
        g_id = np.cumsum(new_group) - 1
        off_w = -np.r_[np.int64(0), cs_w][g_start]
        off_k = -g_start.astype(np.int64)
        if self._group is not None and int(g[0]) == self._group:
            off_w[0] += self._w
            off_k[0] += self._k
        incl_w = cs_w + off_w[g_id]
        incl_k = cs_k + off_k[g_id]
        for j in range(g_start.size):  # groups that end in this batch (all but its last)
            gj = int(g[g_start[j]])
            if self._group is not None and gj != self._group:
                self._totals[self._group] = (self._w, self._k)
            self._group = gj
            end = (int(g_start[j + 1]) if j + 1 < g_start.size else n) - 1
            self._w, self._k = int(incl_w[end]), int(incl_k[end])
        t_start = np.flatnonzero(new_tie)
        t_id = np.cumsum(new_tie) - 1
        if self.inclusive:
            t_end = np.r_[t_start[1:], n] - 1
            cw, ck = incl_w[t_end][t_id], incl_k[t_end][t_id]
        else:
            cw, ck = (incl_w - w)[t_start][t_id], (incl_k - 1)[t_start][t_id]
        batch = tab.to_batches()[0]
        return pa.RecordBatch.from_arrays([*batch.columns, pa.array(cw), pa.array(ck)],
                                          names=[*batch.schema.names, "cw", "ck"])


def _shares(cw: np.ndarray, ck: np.ndarray, g: np.ndarray | int, totals: dict[int, tuple[int, int]]) -> np.ndarray:
    """``cw / tw`` of each row's group (document counts ``ck / tk`` where the group's tokens total 0), as
    ``CAST(cw AS DOUBLE) / CAST(tw AS DOUBLE)``."""
    if not totals:
        return np.empty(0, np.float64)
    keys = np.array(sorted(totals), dtype=np.int64)
    g = np.broadcast_to(np.asarray(g, np.int64), cw.shape)
    tw = np.array([totals[k][0] for k in keys], np.float64)
    tk = np.array([totals[k][1] for k in keys], np.float64)
    pos = np.searchsorted(keys, g.astype(np.int64))
    tw, tk = tw[pos], tk[pos]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tw > 0, cw.astype(np.float64) / tw, ck.astype(np.float64) / tk)


def scores_batches(
    con: duckdb.DuckDBPyConnection,
    storage: StorageRoot,
    shards: Sequence[str],
    criteria: Sequence[str],
    params: QuadMixParams,
    *,
    domain_aware: bool = True,
    batch_rows: int = _BATCH,
) -> Iterator[pa.RecordBatch]:
    """``qbar`` and the in-domain token-weighted rank ``r`` of every document for one config, as batches of
    (shard, row, id, id_hash, n_tokens, domain, qbar, r), one shard at a time, in shard then row order.

    ``qbar`` is :func:`~quadmix_assets.method.aggregated_quality` of one chunk at a time. The documents'
    (domain, ``qbar``, tokens) go through one DuckDB sort by (domain, ``qbar``) (external: it spills beyond
    the memory limit) and no window; :class:`_RunningSums` gives each the tokens of its domain up to its
    ``qbar`` (ties included), and :class:`_ShardBuckets` hands those back to their shards, where ``r`` is
    that sum over the domain's total. (A window ``PARTITION BY domain ORDER BY qbar`` holds a whole domain
    in memory: it failed at 10M rows under a 160 MB limit.) ``domain_aware=False`` ranks all documents as
    one domain with the params' first row (as ``mixture_scores`` does); ``domain`` is then still the
    document's label. Rows quarantined as cross-shard text duplicates (the normaliser's ``duplicate_text``)
    are left out, as :func:`~quadmix_assets.mixing.catalog.document_features` leaves them out."""
    if not shards:
        raise ValueError("no shards")
    _check_feature_files(con, storage, shards, criteria)
    p = params if domain_aware else global_params(params)
    if p.n_criteria != len(criteria):
        raise ValueError(f"params have {p.n_criteria} criteria for {len(criteria)} criteria columns")

    dropped = duplicate_rows(storage, list(shards))  # as document_features leaves them out

    def features(i: int, doc_columns=("n_tokens",)):
        return _feature_chunks(storage, shards[i], criteria, p, params.n_domains, domain_aware, doc_columns,
                               left_out=dropped.get(shards[i]))

    def rows() -> Iterator[pa.RecordBatch]:
        for i, k in enumerate(shards):
            for row, docs, _, g, qbar in features(i):
                yield pa.RecordBatch.from_arrays(
                    [pa.array(np.full(g.size, i, np.int32)), _row_numbers(row, k), pa.array(g), pa.array(qbar),
                     docs.column("n_tokens").combine_chunks().cast(pa.int64())], schema=_PLAN_SOURCE)

    names = ["shard", "row", "id", "id_hash", "n_tokens", "domain", "qbar", "r"]
    buckets = _ShardBuckets(con)
    try:
        sums = _RunningSums(inclusive=True)
        for batch in sums.run(_sorted(con, _Source(_PLAN_SOURCE, rows()), "g, v", batch_rows)):
            buckets.add(0, batch)
        totals = sums.totals()
        for i, k in enumerate(shards):
            n = storage.parquet_rows(layout.documents(k))
            if not n:
                continue
            cw, ck = buckets.read(0, i, n, dropped.get(k))
            for row, docs, dom, g, qbar in features(i, ("id", "id_hash", "n_tokens")):
                m = g.size
                if not m:
                    continue
                r = _shares(cw[row], ck[row], g, totals)
                chunk = pa.RecordBatch.from_arrays(
                    [pa.repeat(pa.scalar(k, pa.string()), m), pa.array(row),
                     *(docs.column(c).combine_chunks() for c in ("id", "id_hash", "n_tokens")), dom.combine_chunks(),
                     pa.array(qbar, pa.float64()), pa.array(r, pa.float64())], names=names)
                for start in range(0, m, batch_rows):
                    yield chunk.slice(start, batch_rows)
            del cw, ck
    finally:
        buckets.close()


def sampling_plan(
    con: duckdb.DuckDBPyConnection,
    storage: StorageRoot,
    shards: Sequence[str],
    criteria: Sequence[str],
    params: QuadMixParams,
    seed: int | str,
    *,
    domain_aware: bool = True,
    keep_scores: bool = False,
    batch_rows: int = _BATCH,
) -> Iterator[pa.RecordBatch]:
    """The whole selection of one config, streamed: batches of (shard, row, id, id_hash, n_tokens,
    domain, qbar, r, expected, copies) in shard then row order; ``S(r)`` and the copies come from
    :func:`~quadmix_assets.method.sampling_frequency` and :func:`~quadmix_assets.method.draw_copies` on
    each batch (element-wise, so equal to the whole-corpus call). Unless ``keep_scores``, only rows with
    copies > 0 are yielded (the manifest)."""
    p = params if domain_aware else global_params(params)
    for batch in scores_batches(con, storage, shards, criteria, params, domain_aware=domain_aware, batch_rows=batch_rows):
        r = batch.column("r").to_numpy()
        dom = batch.column("domain").to_numpy().astype(np.int64) if domain_aware else np.zeros(len(r), np.int64)
        expected = sampling_frequency(r, dom, p)
        copies = draw_copies(expected, batch.column("id_hash").to_numpy(), seed)
        out = pa.RecordBatch.from_arrays(
            [*batch.columns, pa.array(expected, pa.float64()), pa.array(copies, pa.int64())],
            names=[*batch.schema.names, "expected", "copies"],
        )
        if not keep_scores:
            out = out.filter(pa.array(copies > 0))
        if out.num_rows:
            yield out


def expand_copies(
    con: duckdb.DuckDBPyConnection,
    storage: StorageRoot,
    manifest: pa.Table | str,
    *,
    seed: int | str | None = None,
    columns: Sequence[str] = ("text",),
    batch_rows: int = 8192,
) -> pa.RecordBatchReader:
    """The export join: every copy of every manifest row (id, shard, row, copies) as a row (id, shard,
    row, copy, <columns of the documents>). With ``seed`` the rows come in the export's shuffled
    occurrence order (:func:`quadmix_assets.proxy.stream.occurrence_order`, held as one int64 array of
    occurrences) and ``copy`` counts a document's occurrences in that order, as the export's text parts;
    without, in manifest order with ``copy`` 0, 1, ..., one query per run of consecutive manifest rows
    from one shard (a manifest in shard order: one shard's documents at a time).

    ``manifest`` is a table or the relpath of a stored manifest (Parquet under the storage root). Read from
    its file in manifest order, it is streamed a chunk at a time, so memory does not grow with the
    manifest; the shuffled order needs the whole manifest (it is read whole)."""
    if isinstance(manifest, str):
        if seed is None:
            return _expand_stored(con, storage, manifest, columns, batch_rows)
        manifest = storage.read_parquet(manifest, columns=["id", "shard", "row", "copies"])
    for c in ("id", "shard", "row", "copies"):
        if c not in manifest.column_names:
            raise ValueError(f"manifest has no {c!r} column (columns: {manifest.column_names})")
    m = manifest.select(["id", "shard", "row", "copies"])
    m = m.append_column("midx", pa.array(np.arange(m.num_rows, dtype=np.int64)))
    if seed is None and m.num_rows:
        return _expand_by_shard(con, storage, m, columns, batch_rows)
    shards = sorted(set(m.column("shard").to_pylist()))
    doc_cols = [c for c in columns if c not in ("id", "shard", "row", "copy")]
    names = {"m": f"manifest_{uuid.uuid4().hex}", "o": f"order_{uuid.uuid4().hex}"}
    con.register(names["m"], m)
    try:
        docs = "\nUNION ALL\n".join(
            _shard_select(storage, i, k, [(layout.documents(k), doc_cols)]) for i, k in enumerate(shards)
        ) if shards else None
        out_cols = ", ".join(f"d.{_ident(c)}" for c in doc_cols)
        out_cols = (", " + out_cols) if out_cols else ""
        if docs is None:
            sql = f"SELECT id, shard, row, 0::INTEGER AS copy FROM {names['m']} WHERE false"
        elif seed is None:
            sql = f"""
            WITH d AS ({docs})
            SELECT m.id, m.shard, m.row, CAST(c.copy AS INTEGER) AS copy{out_cols}
            FROM {names['m']} AS m, LATERAL (SELECT range AS copy FROM range(m.copies)) AS c
            JOIN d ON d.shard = m.shard AND d.row = m.row
            ORDER BY m.midx, c.copy"""
        else:
            from quadmix_assets.proxy.stream import occurrence_order

            if isinstance(seed, str):  # as export_mixture turns a str seed into its permutation seed
                seed = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "little")
            order = occurrence_order(m.column("copies").to_numpy(), seed)
            con.register(names["o"], pa.table({"pos": pa.array(np.arange(order.size, dtype=np.int64)), "midx": pa.array(order)}))
            sql = f"""
            WITH d AS ({docs})
            SELECT m.id, m.shard, m.row,
                   CAST(ROW_NUMBER() OVER (PARTITION BY o.midx ORDER BY o.pos) - 1 AS INTEGER) AS copy{out_cols}
            FROM {names['o']} AS o JOIN {names['m']} AS m ON m.midx = o.midx
            JOIN d ON d.shard = m.shard AND d.row = m.row
            ORDER BY o.pos"""
        # the registered tables stay with the connection (the reader streams from them)
        return con.sql(sql).to_arrow_reader(batch_rows)
    except BaseException:
        con.unregister(names["m"])
        raise


def _expand_stored(con: duckdb.DuckDBPyConnection, storage: StorageRoot, relpath: str, columns: Sequence[str],
                   batch_rows: int) -> pa.RecordBatchReader:
    """:func:`expand_copies` in manifest order of a stored manifest, read a chunk (``_SOURCE_ROWS`` rows) at a time
    (each chunk's runs of one shard joined as :func:`_expand_by_shard` does)."""
    schema = pq.read_schema(storage.path(relpath), filesystem=storage.fs)
    missing = [c for c in ("id", "shard", "row", "copies") if c not in schema.names]
    if missing:
        raise ValueError(f"manifest has no {missing[0]!r} column (columns: {schema.names})")
    chunks = _chunks(storage, [(relpath, ["id", "shard", "row", "copies"])])

    def parts() -> Iterator[pa.RecordBatchReader]:
        for lo, (t,) in chunks:
            t = t.append_column("midx", pa.array(np.arange(lo, lo + t.num_rows, dtype=np.int64)))
            yield _expand_by_shard(con, storage, t, columns, batch_rows)

    gen = parts()
    first = next(gen, None)
    if first is None:  # an empty manifest: no rows, the columns of the join
        empty = pa.table({"id": pa.array([], pa.string()), "shard": pa.array([], pa.string()),
                          "row": pa.array([], pa.int64()), "copies": pa.array([], pa.int32())})
        return expand_copies(con, storage, empty, columns=columns, batch_rows=batch_rows)

    def batches() -> Iterator[pa.RecordBatch]:
        yield from first
        for part in gen:
            yield from part

    return pa.RecordBatchReader.from_batches(first.schema, batches())


def _expand_by_shard(con: duckdb.DuckDBPyConnection, storage: StorageRoot, m: pa.Table, columns: Sequence[str],
                     batch_rows: int) -> pa.RecordBatchReader:
    """:func:`expand_copies` in manifest order: each run of consecutive manifest rows of one shard joined
    with that shard's documents alone, so the join holds one shard's columns at a time."""
    doc_cols = [c for c in columns if c not in ("id", "shard", "row", "copy")]
    coded = m.column("shard").combine_chunks().dictionary_encode()  # no Python string per manifest row
    codes = coded.indices.to_numpy()
    cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    runs = list(zip(np.r_[0, cuts].tolist(), np.r_[cuts, m.num_rows].tolist()))
    shard = {lo: coded.dictionary[int(codes[lo])].as_py() for lo, _ in runs}
    out_cols = "".join(f", d.{_ident(c)}" for c in doc_cols)

    def reader(lo: int, hi: int) -> tuple[pa.RecordBatchReader, str]:
        name = f"manifest_{uuid.uuid4().hex}"
        con.register(name, m.slice(lo, hi - lo))
        docs = _shard_select(storage, 0, shard[lo], [(layout.documents(shard[lo]), doc_cols)])
        sql = f"""
        WITH d AS ({docs})
        SELECT m.id, m.shard, m.row, CAST(c.copy AS INTEGER) AS copy{out_cols}
        FROM {name} AS m, LATERAL (SELECT range AS copy FROM range(m.copies)) AS c
        JOIN d ON d.row = m.row
        ORDER BY m.midx, c.copy"""
        return con.sql(sql).to_arrow_reader(batch_rows), name

    first, first_name = reader(*runs[0])

    def batches() -> Iterator[pa.RecordBatch]:
        current, name = first, first_name
        try:
            for j in range(len(runs)):
                if j:
                    current, name = reader(*runs[j])
                yield from current
                con.unregister(name)
                name = None
        finally:
            if name is not None:
                con.unregister(name)

    return pa.RecordBatchReader.from_batches(first.schema, batches())
