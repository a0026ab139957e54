"""The fan-in steps as DuckDB queries over the stored Parquet attributes (bounded memory: DuckDB sorts,
windows and joins under its memory limit and spills the rest to disk).

* :func:`worse_than_ranks`: the global token-weighted worse-than rank ``s`` of every document per criterion
  (what :meth:`Normaliser.fit` + :meth:`Normaliser.transform` give when the normaliser is exact);
* :func:`normalised_ranks`: the stored normaliser tables applied to raw scores (an ASOF join; equal to
  :meth:`Normaliser.transform` also when the normaliser was fitted on a sample);
* :func:`scores_batches` / :func:`sampling_plan`: ``qbar`` and the in-domain token-weighted rank ``r`` of one
  config (a window query), then ``S(r)`` and the copies with the numpy method functions batch by batch
  (both are element-wise), so the copies are the numpy path's bit for bit;
* :func:`expand_copies`: the export join, manifest x documents with every copy a row.

The numpy library (:mod:`quadmix_assets.method`) stays the reference; the tests check equality with it.
Exact equality holds for integer token counts (the stored ``n_tokens``): every sum is then an exact
integer, and the one division per document is the same IEEE operation in both paths.

Documents and their attribute files are aligned row for row per shard, so a shard's columns are put side
by side with a ``POSITIONAL JOIN`` (no hash join; the row counts are checked first).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from quadmix_assets.method import QuadMixParams, draw_copies, sampling_frequency
from quadmix_assets.storage import StorageRoot, layout
from quadmix_assets.storage.duck import file_ref, sql_list, sql_str

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

_BATCH = 1 << 17


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


def _worse_than_sql(src: str, score: str, key: str) -> str:
    """Per distinct value of ``score`` in relation ``src``: the share of tokens strictly greater (counts
    when all tokens are 0), as :func:`quadmix_assets.method.worse_than_rank`."""
    return f"""
    {key}_v AS (SELECT CAST({_ident(score)} AS DOUBLE) AS v, SUM(n_tokens)::HUGEINT AS w, COUNT(*)::HUGEINT AS k
                FROM {src} GROUP BY 1),
    {key}_t AS (SELECT SUM(w) AS tw, SUM(k) AS tk FROM {key}_v),
    {key}_r AS (
        SELECT v, CASE WHEN (SELECT tw FROM {key}_t) > 0
            THEN CAST(COALESCE(SUM(w) OVER (ORDER BY v DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS DOUBLE)
                 / CAST((SELECT tw FROM {key}_t) AS DOUBLE)
            ELSE CAST(COALESCE(SUM(k) OVER (ORDER BY v DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS DOUBLE)
                 / CAST((SELECT tk FROM {key}_t) AS DOUBLE) END AS s
        FROM {key}_v)"""


def worse_than_ranks(
    con: duckdb.DuckDBPyConnection,
    storage: StorageRoot,
    shards: Sequence[str],
    attributes: dict[str, str],
    *,
    batch_rows: int = _BATCH,
) -> pa.RecordBatchReader:
    """The global worse-than rank of every document of ``shards`` for each criterion, computed over all of
    them: batches of (shard, row, s_<criterion>...) in shard order then row order. ``attributes`` maps a
    criterion to its attribute name (a ``score`` column aligned with the documents). Equal to
    ``Normaliser.fit(scores, tokens).transform(scores)`` for an exact normaliser (NaN scores raise)."""
    if not shards:
        raise ValueError("no shards")
    crit = list(attributes)
    groups = [[layout.documents(k)] + [layout.attribute(attributes[c], k) for c in crit] for k in shards]
    check_aligned(con, storage, groups)
    selects = []
    for i, k in enumerate(shards):
        parts = [(layout.documents(k), ["n_tokens"])] + [
            (layout.attribute(attributes[c], k), [f"score AS score_{j}"]) for j, c in enumerate(crit)
        ]
        selects.append(_shard_select(storage, i, k, parts))
    nan = con.execute(
        "SELECT " + " OR ".join(f"bool_or(isnan(CAST(score_{j} AS DOUBLE)))" for j in range(len(crit)))
        + f" FROM ({' UNION ALL '.join(selects)})"
    ).fetchall()[0][0]
    if nan:
        raise ValueError("scores contain NaN")
    ctes = ["src AS (" + "\nUNION ALL\n".join(selects) + ")"]
    ctes += [_worse_than_sql("src", f"score_{j}", f"c{j}") for j in range(len(crit))]
    joins = " ".join(f"JOIN c{j}_r ON c{j}_r.v = CAST(src.score_{j} AS DOUBLE)" for j in range(len(crit)))
    cols = ", ".join(f"c{j}_r.s AS {_ident('s_' + c)}" for j, c in enumerate(crit))
    sql = f"WITH {', '.join(ctes)} SELECT src.shard, src.row, {cols} FROM src {joins} ORDER BY src.shard_idx, src.row"
    return con.sql(sql).to_arrow_reader(batch_rows)


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


def _alpha_table(params: QuadMixParams) -> pa.Table:
    cols = {"domain": pa.array(np.arange(params.n_domains, dtype=np.int64))}
    for j in range(params.n_criteria):
        cols[f"a{j}"] = pa.array(np.ascontiguousarray(params.alpha[:, j]), pa.float64())
    return pa.table(cols)


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
    """``qbar`` and the in-domain token-weighted rank ``r`` of every document for one config (one window
    query), as batches of (shard, row, id, id_hash, n_tokens, domain, qbar, r) in shard then row order.
    Only fixed-width columns go through the window and the sort; each batch's ``shard`` and ``id`` are
    taken from the shard's documents afterwards (one shard's ids held at a time).
    ``domain_aware=False`` ranks all documents as one domain with the params' first row (as
    ``mixture_scores`` does); ``domain`` is then still the document's label."""
    if not shards:
        raise ValueError("no shards")
    _check_feature_files(con, storage, shards, criteria)
    p = params if domain_aware else global_params(params)
    if p.n_criteria != len(criteria):
        raise ValueError(f"params have {p.n_criteria} criteria for {len(criteria)} criteria columns")
    alpha_name = f"alpha_{uuid.uuid4().hex}"
    con.register(alpha_name, _alpha_table(p))
    try:
        feats = feature_sql(storage, shards, criteria, with_id=False)
        doms = " UNION ALL ".join(f"SELECT domain FROM read_parquet({sql_str(file_ref(storage, layout.attribute('domain', k)))})"
                                  for k in shards)
        lo, hi = con.execute(f"SELECT min(domain), max(domain) FROM ({doms})").fetchall()[0]
        if lo is not None and (lo < 0 or hi >= params.n_domains):
            raise ValueError(f"domain id {lo if lo < 0 else hi} out of range [0, {params.n_domains}) for these params")
        grp = "f.domain" if domain_aware else "0"
        terms = " + ".join(f"a.a{j} * f.{_ident('s_' + c)}" for j, c in enumerate(criteria))
        part = "PARTITION BY g"
        upto = f"({part} ORDER BY qbar RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        sql = f"""
        WITH f AS ({feats}),
        q AS (SELECT f.shard_idx, f.row, f.id_hash, f.n_tokens, f.domain, {grp} AS g,
                     {terms} AS qbar
              FROM f JOIN {alpha_name} AS a ON a.domain = {grp}),
        w AS (SELECT *, SUM(n_tokens) OVER ({part}) AS tw, COUNT(*) OVER ({part}) AS tk,
                     SUM(n_tokens) OVER {upto} AS cw, COUNT(*) OVER {upto} AS ck FROM q)
        SELECT shard_idx, row, id_hash, n_tokens, domain, qbar,
               CASE WHEN tw > 0 THEN CAST(cw AS DOUBLE) / CAST(tw AS DOUBLE)
                    ELSE CAST(ck AS DOUBLE) / CAST(tk AS DOUBLE) END AS r
        FROM w ORDER BY shard_idx, row"""
        reader = con.sql(sql).to_arrow_reader(batch_rows)
        ids: tuple[int, pa.Array] | None = None
        for batch in reader:
            idx = batch.column("shard_idx").to_numpy()
            cuts = np.flatnonzero(np.diff(idx)) + 1
            for lo_, hi_ in zip(np.r_[0, cuts], np.r_[cuts, len(idx)]):
                part = batch.slice(int(lo_), int(hi_ - lo_))
                i = int(idx[lo_])
                if ids is None or ids[0] != i:
                    ids = (i, storage.read_parquet(layout.documents(shards[i]), columns=["id"]).column("id").combine_chunks())
                rows = part.column("row")
                yield pa.RecordBatch.from_arrays(
                    [pa.array([shards[i]] * part.num_rows, pa.string()), rows, ids[1].take(rows),
                     *(part.column(c) for c in ("id_hash", "n_tokens", "domain", "qbar", "r"))],
                    names=["shard", "row", "id", "id_hash", "n_tokens", "domain", "qbar", "r"])
    finally:
        con.unregister(alpha_name)


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
    manifest: pa.Table,
    *,
    seed: int | str | None = None,
    columns: Sequence[str] = ("text",),
    batch_rows: int = 8192,
) -> pa.RecordBatchReader:
    """The export join: every copy of every manifest row (id, shard, row, copies) as a row (id, shard,
    row, copy, <columns of the documents>). With ``seed`` the rows come in the export's shuffled
    occurrence order (:func:`quadmix_assets.proxy.stream.occurrence_order`, held as one int64 array of
    occurrences) and ``copy`` counts a document's occurrences in that order, as the export's text parts;
    without, in manifest order with ``copy`` 0, 1, ... (nothing held outside DuckDB)."""
    for c in ("id", "shard", "row", "copies"):
        if c not in manifest.column_names:
            raise ValueError(f"manifest has no {c!r} column (columns: {manifest.column_names})")
    m = manifest.select(["id", "shard", "row", "copies"])
    m = m.append_column("midx", pa.array(np.arange(m.num_rows, dtype=np.int64)))
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
