"""The out-of-core fan-in engine: a mixture's scores, card sums and manifest computed over the stored
Parquet files with DuckDB sorting under its memory limit and spilling the rest to disk; Python holds a
batch and one chunk of a shard's features at a time (:func:`~quadmix_assets.mixing.features.feature_chunks`).

* :func:`scores_batches` / :func:`sampling_plan`: ``qbar`` and the in-domain token-weighted rank ``r`` of one
  config, then ``S(r)`` and the copies with the numpy method functions batch by batch (both are
  element-wise), so the copies are the in-memory engine's bit for bit;
* :func:`summary_out_of_core` / :func:`manifest_out_of_core`: what the mixture assets keep of a mixture
  (its scores card's sums, its manifest), as :mod:`~quadmix_assets.mixing.scores` gives them in memory.

Production reaches them through :func:`quadmix_assets.mixing.fanin.open_fan_in` (above
``QUADMIX_FANIN_IN_MEMORY_ROWS`` documents).

A rank is a running token sum in sorted order: one DuckDB ``ORDER BY`` (an external sort) over rows Python
reads a chunk of a shard at a time, :class:`_RunningSums` over the sorted stream (ties kept together
across batches), and :class:`_ShardBuckets`, which hands every running sum back to its shard's row in a
local spill file, so no second sort and no window over a whole domain is needed.

The numpy library (:mod:`quadmix_assets.method`) stays the reference; the tests check equality with it.
Exact equality holds for integer token counts (the stored ``n_tokens``): every sum is then an exact
integer, and the one division per document is the same IEEE operation in both engines.

Documents and their attribute files are aligned row for row per shard (the row counts are checked first,
from the files' footers).
"""

from __future__ import annotations

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
from quadmix_assets.storage.duck import file_ref, sql_list

from .features import KeepMask, duplicate_rows, feature_chunks, feature_parts
from .scores import MANIFEST_COLUMNS, add_to_summary, new_summary
from .specs import MixtureSpec, global_params

__all__ = [
    "check_aligned",
    "scores_batches",
    "sampling_plan",
    "summary_out_of_core",
    "manifest_out_of_core",
]

_BATCH = 1 << 15


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
    check_aligned(con, storage, [[rel for rel, _ in feature_parts(k, criteria)] for k in shards])


# --------------------------------------------------------------------------- out-of-core support
_PLAN_SOURCE = pa.schema([("shard_idx", pa.int32()), ("row", pa.int32()), ("g", pa.int32()), ("v", pa.float64()),
                          ("w", pa.int64())])
_SUMS = np.dtype([("row", "<i4"), ("cw", "<i8"), ("ck", "<i8")])


def _row_numbers(row: np.ndarray, shard: str) -> pa.Array:
    """Row numbers in a shard as the int32 the sorted streams carry."""
    if row.size and int(row[-1]) >= 2**31 - 1:
        raise ValueError(f"shard {shard} has more than 2**31 - 1 rows; the out-of-core fan-in takes at most that many")
    return pa.array(row.astype(np.int32))


def _feature_chunks(storage: StorageRoot, shard: str, criteria: Sequence[str], params: QuadMixParams,
                    n_domains: int, domain_aware: bool, doc_columns: Sequence[str] = ("n_tokens",), rows: int | None = None,
                    left_out: np.ndarray | None = None,
                    ) -> Iterator[tuple[np.ndarray, pa.Table, pa.ChunkedArray, np.ndarray, np.ndarray]]:
    """One shard a chunk at a time (:func:`~quadmix_assets.mixing.features.feature_chunks`): (row numbers,
    documents' ``doc_columns``, domain labels, groups, ``qbar``); the same numbers each time it is read
    (``qbar`` is element-wise)."""
    for row, docs, dom, s in feature_chunks(storage, shard, criteria, doc_columns, rows, left_out):
        d = dom.to_numpy()
        if d.size and (int(d.min()) < 0 or int(d.max()) >= n_domains):
            bad = int(d.min()) if int(d.min()) < 0 else int(d.max())
            raise ValueError(f"domain id {bad} out of range [0, {n_domains}) for these params")
        g = d.astype(np.int32) if domain_aware else np.zeros(d.size, np.int32)
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
    sum of the weights ``w`` (and the count of rows) of its group ``g`` at values up to its own (ties
    included: the in-domain rank ``r`` of QUADMIX.md §3). Only a batch and
    the rows tied with its last row are held (a tie group is never split, so the rows of one tie group
    must fit in memory); ``totals()`` gives every group's sums once the stream has ended.

    Every sum is an integer sum (``int64``), so the shares later divided from them are the numpy
    reference's exactly, whatever the batch boundaries."""

    def __init__(self):
        self._group: int | None = None
        self._w = 0
        self._k = 0
        self._totals: dict[int, tuple[int, int]] = {}

    def run(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Each input batch's rows (held-back ties deferred) with ``cw`` and ``ck`` appended; ``g``, ``v`` and
        ``w`` must be columns."""
        pending: pa.Table | None = None
        for batch in batches:
            tab = pa.Table.from_batches([batch]) if pending is None else pa.concat_tables([pending, pa.Table.from_batches([batch])])
            if tab.num_rows == 0:
                continue
            g = tab.column("g").to_numpy()
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
        g = tab.column("g").to_numpy()
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
        t_end = np.r_[t_start[1:], n] - 1
        cw, ck = incl_w[t_end][t_id], incl_k[t_end][t_id]
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
    are left out, as :func:`~quadmix_assets.mixing.features.document_features` leaves them out."""
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
        sums = _RunningSums()
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
    keep: Sequence[tuple[str, float]] = (),
) -> Iterator[pa.RecordBatch]:
    """The whole selection of one config, streamed: batches of (shard, row, id, id_hash, n_tokens,
    domain, qbar, r, expected, copies) in shard then row order; ``S(r)`` and the copies come from
    :func:`~quadmix_assets.method.sampling_frequency` and :func:`~quadmix_assets.method.draw_copies` on
    each batch (element-wise, so equal to the whole-corpus call). Unless ``keep_scores``, only rows with
    copies > 0 are yielded (the manifest). ``keep`` (a spec's keep rule): documents it refuses get S = 0."""
    p = params if domain_aware else global_params(params)
    mask = KeepMask(storage, keep) if keep else None
    for batch in scores_batches(con, storage, shards, criteria, params, domain_aware=domain_aware, batch_rows=batch_rows):
        r = batch.column("r").to_numpy()
        dom = batch.column("domain").to_numpy().astype(np.int64) if domain_aware else np.zeros(len(r), np.int64)
        expected = sampling_frequency(r, dom, p)
        if mask is not None:
            expected = np.where(mask.table(batch.column("shard").to_numpy(zero_copy_only=False),
                                           batch.column("row").to_numpy()), expected, 0.0)
        copies = draw_copies(expected, batch.column("id_hash").to_numpy(), seed)
        out = pa.RecordBatch.from_arrays(
            [*batch.columns, pa.array(expected, pa.float64()), pa.array(copies, pa.int64())],
            names=[*batch.schema.names, "expected", "copies"],
        )
        if not keep_scores:
            out = out.filter(pa.array(copies > 0))
        if out.num_rows:
            yield out


def summary_out_of_core(con, storage, shards: Sequence[str], spec: MixtureSpec, criteria: Sequence[str],
                        n_domains: int) -> dict:
    """:func:`~quadmix_assets.mixing.scores.scores_summary` of ``spec`` over ``shards`` computed out of core
    (DuckDB's sort under its memory limit, a batch in memory at a time): the same counts and token sums; the
    expected-token sums are added batch by batch, so they may differ from the in-memory sum in the last bits."""
    out = new_summary(n_domains)
    for batch in sampling_plan(con, storage, shards, criteria, spec.params, 0, domain_aware=spec.domain_aware,
                               keep_scores=True, keep=spec.keep):
        add_to_summary(out, batch.column("domain").to_numpy().astype(np.int64),
                       batch.column("n_tokens").to_numpy().astype(np.float64), batch.column("expected").to_numpy())
    return out


def manifest_out_of_core(con, storage, shards: Sequence[str], spec: MixtureSpec, criteria: Sequence[str],
                         seed: int | str) -> pa.Table:
    """The manifest of ``spec`` over ``shards`` (:func:`~quadmix_assets.mixing.scores.manifest_table` of
    :func:`~quadmix_assets.mixing.scores.score_documents` and ``draw_copies(expected, id_hash, seed)``)
    computed out of core: the same rows, in the same order."""
    batches = list(sampling_plan(con, storage, shards, criteria, spec.params, seed, domain_aware=spec.domain_aware,
                                 keep=spec.keep))
    if not batches:  # nothing selected: no rows, the columns' types as the stored files have them
        def field(rel: str, name: str) -> pa.DataType:
            return pq.read_schema(storage.path(rel), filesystem=storage.fs).field(name).type

        types = {"id": field(layout.documents(shards[0]), "id"), "shard": pa.string(), "row": pa.int64(),
                 "n_tokens": field(layout.documents(shards[0]), "n_tokens"),
                 "domain": field(layout.attribute("domain", shards[0]), "domain"), "copies": pa.int32()}
        return pa.table({c: pa.array([], t) for c, t in types.items()})
    t = pa.Table.from_batches(batches)
    return t.select(list(MANIFEST_COLUMNS[:-1])).append_column("copies", t.column("copies").cast(pa.int32()))
