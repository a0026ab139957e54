"""A stored run as DuckDB views, for ``quadmix sql``: documents, every attribute, ranks, manifests,
per-mixture scores, proxy results and the regressor's training table, aligned by shard and row.

Views (created only when a query names them, so a query reads only what it uses):

* ``documents``: every document column plus ``shard`` and ``row`` (row number in the shard);
* ``attr_<name>``: one attribute folder (``attr_domain``, ``attr_quality_dclm``, ``attr_quality_ranks``...),
  ``shard``, ``row`` and its columns; ``ranks`` is ``attr_quality_ranks`` (``s_<criterion>``, 0 = best);
* ``features``: per document ``shard``, ``row``, ``id``, ``n_tokens``, ``domain``, ``domain_name``, the
  ranks ``s_<criterion>`` and every other attribute column as ``<attribute>_<column>`` (``quality_`` dropped:
  ``dclm_score``), the attribute files put side by side (no text);
* ``domains``: ``domain``, ``domain_name``;
* ``mixtures``: every registered mixture spec (``mixture_id``, ``name``, ``origin``, ``round``, ``domain_aware``);
* ``manifests``: every stored manifest with its ``mixture_id`` (``id``, ``shard``, ``row``, ``copies``, ...);
* ``mixture_scores``: every mixture's scores card, a row per domain (``mixture_id``, ``domain``, ``documents``,
  ``tokens``, ``expected_tokens`` = the sum of ``S x tokens``); per-document scores are not stored (``quadmix
  show`` computes them, the DuckDB fan-in streams them);
* ``proxy_results``: one row per proxy run (``mixture_id``, ``repeat``, ``status``, ``target_loss``, ...);
  ``proxy_set_losses``: (``mixture_id``, ``repeat``, ``target_set``, ``loss``);
* ``regressor_training``: the configs the regressor learns from (``mixture_id``, ``round``, ``loss``) and
  their parameter numbers, one column per number (``alpha[domain,criterion]``-style names).

The user's statement may only read (:func:`read_only_statement`): DuckDB's own parser must find exactly one
statement of type SELECT, and DuckDB's plan of it must hold no operator that writes (a SELECT may carry
``WITH x AS (COPY ... TO ...)`` or ``INSERT``/``UPDATE``/``DELETE ... RETURNING`` in a common table
expression). Both are needed because the lock below cannot say "read only": ``allowed_directories`` lets
DuckDB write where it may read, so without them a ``COPY ... TO '<storage>/documents/...'`` replaced a
stored file. After the views exist the connection is locked (:func:`lock_to_storage`): DuckDB reads only
under the storage root (``enable_external_access = false`` with ``allowed_directories``) and no setting
can change any more (``lock_configuration``). The one write is ``--out``, done by this module's Python
(:func:`query_to_file`), never under the storage root.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quadmix_assets.storage import StorageRoot, layout
from quadmix_assets.storage.duck import file_ref, sql_list, sql_str

__all__ = ["VIEW_NAMES", "SqlRefused", "check_out_path", "check_storage", "create_views", "lock_to_storage", "one_select",
           "query_text", "query_to_file", "read_only_statement"]

_STATIC = ("documents", "features", "ranks", "domains", "mixtures", "manifests", "mixture_scores", "proxy_results",
           "proxy_set_losses", "regressor_training")
VIEW_NAMES = _STATIC  # plus attr_<name> for every attribute folder


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _stem(rel: str) -> str:
    return rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _attributes(storage: StorageRoot) -> dict[str, list[str]]:
    """attribute name -> shards with a file, from ``attributes/<name>/<shard>.parquet``."""
    out: dict[str, list[str]] = {}
    for rel in storage.list("attributes", ".parquet"):
        parts = rel.split("/")
        if len(parts) == 3:
            out.setdefault(parts[1], []).append(_stem(rel))
    return {k: sorted(v) for k, v in sorted(out.items())}


def _per_file_union(storage: StorageRoot, files: list[tuple[str, str, str]], *, row: bool = True) -> str:
    """``files``: (key column name, key value, relpath); each file's rows with the key (and, with ``row``,
    the row number in the file as ``row``, unless the file has its own ``row`` column, as documents do). A
    file column named like the key is kept as ``file_<name>``."""
    selects = []
    for k, v, rel in files:
        names = pq.read_schema(storage.path(rel), filesystem=storage.fs).names
        cols = [f"{sql_str(v)} AS {_ident(k)}"]
        if row and "row" not in names:
            cols.append("file_row_number AS row")
        cols += [_ident(c) + (f" AS {_ident('file_' + c)}" if c == k else "") for c in names]
        extra = ", file_row_number = true" if row and "row" not in names else ""
        selects.append(f"SELECT {', '.join(cols)} FROM read_parquet({sql_str(file_ref(storage, rel))}{extra})")
    return "\nUNION ALL BY NAME\n".join(selects)


def _mixture_files(storage: StorageRoot, name: str) -> list[tuple[str, str, str]]:
    return [("mixture_id", rel.split("/")[1], rel) for rel in storage.list("mixtures", f"/{name}.parquet")
            if rel.count("/") == 2]


def _empty(con, view: str, columns: dict[str, str]) -> None:
    cols = ", ".join(f"CAST(NULL AS {t}) AS {_ident(c)}" for c, t in columns.items())
    con.execute(f"CREATE VIEW {_ident(view)} AS SELECT {cols} WHERE false")


def _arrow_view(con, view: str, table: pa.Table) -> None:
    con.register(view, table)


def _domain_names(storage: StorageRoot) -> list[str]:
    rel = layout.model_card("domain_classifier")
    return list(storage.read_json(rel).get("domain_names") or []) if storage.exists(rel) else []


def _features_sql(storage: StorageRoot, attrs: dict[str, list[str]], shards: list[str]) -> str:
    common = [a for a, ks in attrs.items() if set(shards) <= set(ks)]
    schemas = {a: storage.dataset([layout.attribute(a, shards[0])]).schema.names for a in common}
    selects = []
    for k in shards:
        cols = [f"{sql_str(k)} AS shard", "d.file_row_number AS row", "d.id", "d.n_tokens"]
        froms = [f"read_parquet({sql_str(file_ref(storage, layout.documents(k)))}, file_row_number = true) AS d"]
        for j, a in enumerate(common):
            froms.append(f"read_parquet({sql_str(file_ref(storage, layout.attribute(a, k)))}) AS a{j}")
            for c in schemas[a]:
                short = a.removeprefix("quality_")
                if a == layout.RANKS_ATTRIBUTE or c == short or c.startswith(short + "_"):
                    alias = c
                else:
                    alias = f"{short}_{c}"
                cols.append(f"a{j}.{_ident(c)} AS {_ident(alias)}")
        selects.append(f"SELECT {', '.join(cols)} FROM {' POSITIONAL JOIN '.join(froms)}")
    return "\nUNION ALL\n".join(selects)


def _proxy_tables(storage: StorageRoot) -> tuple[pa.Table, pa.Table]:
    runs, sets = [], []
    for rel in storage.list("proxies", ".json"):
        parts = rel.split("/")
        if len(parts) != 3 or not re.fullmatch(r"run|repeat-\d+", _stem(rel)):
            continue
        d = storage.read_json(rel)
        mid, rep = parts[1], int(d.get("repeat", 0))
        sampler = d.get("sampler") or {}
        runs.append({"mixture_id": mid, "repeat": rep, "status": d.get("status"), "target_loss": d.get("target_loss"),
                     "final_train_loss": d.get("final_train_loss"), "mixture_tokens": d.get("mixture_tokens"),
                     "budget_tokens": d.get("budget_tokens"), "documents_read": sampler.get("documents_read"),
                     "manifest_version": d.get("manifest_version")})
        for s, v in sorted((d.get("target_losses") or {}).items()):
            sets.append({"mixture_id": mid, "repeat": rep, "target_set": s, "loss": v})
    run_schema = pa.schema([("mixture_id", pa.string()), ("repeat", pa.int64()), ("status", pa.string()),
                            ("target_loss", pa.float64()), ("final_train_loss", pa.float64()),
                            ("mixture_tokens", pa.int64()), ("budget_tokens", pa.int64()),
                            ("documents_read", pa.int64()), ("manifest_version", pa.string())])
    set_schema = pa.schema([("mixture_id", pa.string()), ("repeat", pa.int64()), ("target_set", pa.string()),
                            ("loss", pa.float64())])
    return pa.Table.from_pylist(runs, run_schema), pa.Table.from_pylist(sets, set_schema)


def _regressor_training(storage: StorageRoot) -> pa.Table:
    from quadmix_assets.method import QuadMixParams
    from quadmix_assets.proxy.optimise import training_set

    ts = training_set(storage)
    cols: dict[str, pa.Array] = {
        "mixture_id": pa.array([s.mixture_id for s in ts.specs], pa.string()),
        "round": pa.array(ts.rounds, pa.int64()),
        "loss": pa.array(ts.y, pa.float64()),
    }
    if ts.specs:
        p0 = ts.specs[0].params
        raw = np.stack([s.params.to_vector() for s in ts.specs])
        for j, name in enumerate(QuadMixParams.feature_names(p0.n_domains, p0.n_criteria)):
            cols[name] = pa.array(raw[:, j], pa.float64())
    return pa.table(cols)


def create_views(con: duckdb.DuckDBPyConnection, storage: StorageRoot, query: str | None = None) -> list[str]:
    """Create the views a query needs (all of them when ``query`` is None or names none) on ``con``;
    returns their names."""
    attrs = _attributes(storage)
    shards = sorted(_stem(r) for r in storage.list("documents", ".parquet") if r.count("/") == 1)
    names = [*_STATIC, *(f"attr_{a}" for a in attrs)]
    wanted = names
    if query is not None:
        hit = [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", query, flags=re.IGNORECASE)]
        wanted = hit or names
    builders: dict[str, Callable[[], None]] = {}

    def documents() -> None:
        if not shards:
            return _empty(con, "documents", {"shard": "VARCHAR", "row": "BIGINT", "id": "VARCHAR", "n_tokens": "BIGINT"})
        con.execute("CREATE VIEW documents AS " + _per_file_union(storage, [("shard", k, layout.documents(k)) for k in shards]))

    def attr(a: str) -> Callable[[], None]:
        def build() -> None:
            files = [("shard", k, layout.attribute(a, k)) for k in attrs[a]]
            con.execute(f"CREATE VIEW {_ident('attr_' + a)} AS " + _per_file_union(storage, files))
        return build

    def ranks() -> None:
        if layout.RANKS_ATTRIBUTE in attrs:
            if f"attr_{layout.RANKS_ATTRIBUTE}" not in wanted:
                attr(layout.RANKS_ATTRIBUTE)()
            con.execute(f"CREATE VIEW ranks AS SELECT * FROM {_ident('attr_' + layout.RANKS_ATTRIBUTE)}")
        else:
            _empty(con, "ranks", {"shard": "VARCHAR", "row": "BIGINT"})

    def domains() -> None:
        names_ = _domain_names(storage)
        _arrow_view(con, "domains", pa.table({"domain": pa.array(range(len(names_)), pa.int64()),
                                              "domain_name": pa.array(names_, pa.string())}))

    def features() -> None:
        if not shards:
            return _empty(con, "features", {"shard": "VARCHAR", "row": "BIGINT", "id": "VARCHAR", "n_tokens": "BIGINT"})
        if "domains" not in wanted:
            domains()
        base = _features_sql(storage, attrs, shards)
        join = "LEFT JOIN domains USING (domain)" if "domain" in attrs and set(shards) <= set(attrs["domain"]) else ""
        name = "domains.domain_name" if join else "CAST(NULL AS VARCHAR) AS domain_name"
        con.execute(f"CREATE VIEW features AS SELECT f.*, {name} FROM ({base}) AS f {join}")

    def mixtures() -> None:
        from quadmix_assets.mixing.store import all_spec_dicts, round_of

        specs = all_spec_dicts(storage) if storage.exists(layout.mixture_configs()) else []
        rows = [{"mixture_id": d["mixture_id"], "name": d.get("name"), "origin": d.get("origin"), "round": round_of(d),
                 "domain_aware": bool(d.get("domain_aware", True)), "spec": json.dumps(d, sort_keys=True)} for d in specs]
        schema = pa.schema([("mixture_id", pa.string()), ("name", pa.string()), ("origin", pa.string()),
                            ("round", pa.int64()), ("domain_aware", pa.bool_()), ("spec", pa.string())])
        _arrow_view(con, "mixtures", pa.Table.from_pylist(rows, schema))

    def per_mixture(view: str, file: str, columns: dict[str, str]) -> Callable[[], None]:
        def build() -> None:
            files = _mixture_files(storage, file)
            if not files:
                return _empty(con, view, {"mixture_id": "VARCHAR", **columns})
            con.execute(f"CREATE VIEW {view} AS " + _per_file_union(storage, files, row=False))
        return build

    def score_cards() -> None:
        from quadmix_assets.mixing.store import scores_card

        schema = pa.schema([("mixture_id", pa.string()), ("domain", pa.int64()), ("documents", pa.int64()),
                            ("tokens", pa.int64()), ("expected_tokens", pa.float64())])
        rows = []
        for rel in storage.list("mixtures", "/scores.json"):
            if rel.count("/") == 2:
                key = rel.split("/")[1]
                rows += [{"mixture_id": key, **{c: d[c] for c in schema.names[1:]}} for d in scores_card(storage, key)["per_domain"]]
        _arrow_view(con, "mixture_scores", pa.Table.from_pylist(rows, schema))

    def proxies() -> None:
        runs, sets = _proxy_tables(storage)
        _arrow_view(con, "proxy_results", runs)
        _arrow_view(con, "proxy_set_losses", sets)

    def regressor() -> None:
        ok = storage.exists(layout.mixture_configs()) and storage.exists(layout.target_card())
        table = _regressor_training(storage) if ok else pa.table(
            {"mixture_id": pa.array([], pa.string()), "round": pa.array([], pa.int64()), "loss": pa.array([], pa.float64())})
        _arrow_view(con, "regressor_training", table)

    builders.update({
        "documents": documents, "ranks": ranks, "domains": domains, "features": features, "mixtures": mixtures,
        "manifests": per_mixture("manifests", "manifest", {"id": "VARCHAR", "shard": "VARCHAR", "row": "BIGINT", "copies": "INTEGER"}),
        "mixture_scores": score_cards,
        "proxy_results": proxies, "proxy_set_losses": lambda: None, "regressor_training": regressor,
        **{f"attr_{a}": attr(a) for a in attrs},
    })
    if "proxy_set_losses" in wanted and "proxy_results" not in wanted:
        wanted = [*wanted, "proxy_results"]
    order = [n for n in names if n in wanted and n not in ("ranks", "features")] + [n for n in ("ranks", "features") if n in wanted]
    for n in order:
        builders[n]()
    return order


class SqlRefused(ValueError):
    """A ``quadmix sql`` request refused before anything ran: a statement that is not one read-only SELECT,
    an ``--out`` that is not a ``.parquet``/``.csv`` file outside the storage root, or a storage root that
    holds no run."""


#: The statement types the user's statement may have, as DuckDB's parser types it. SELECT covers ``WITH``,
#: ``FROM``-first, ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and ``PIVOT ... IN (...)`` too; every other
#: type (COPY, EXPORT, ATTACH, DETACH, LOAD for INSTALL/LOAD, CREATE, INSERT, UPDATE, DELETE, DROP, ALTER, SET
#: for SET/RESET/USE, PRAGMA, CALL, EXPLAIN, TRANSACTION, ...) is refused.
READING_TYPES = ("SELECT",)

#: Physical operators that change a file or a database, as DuckDB's ``EXPLAIN`` names them (any ``COPY*`` or
#: ``CREATE*`` operator counts too). A SELECT's plan holds one when a common table expression writes:
#: ``WITH x AS (COPY ... TO ...)`` or ``WITH x AS (INSERT/UPDATE/DELETE ... RETURNING *)`` parse as SELECT.
WRITING_OPERATORS = frozenset({
    "INSERT", "BATCH_INSERT", "UPDATE", "DELETE", "DELETE_OPERATOR", "MERGE_INTO", "COPY_TO_FILE", "BATCH_COPY_TO_FILE",
    "FIXED_BATCH_COPY_TO_FILE", "COPY_DATABASE", "EXPORT", "CREATE_TABLE_AS", "BATCH_CREATE_TABLE_AS", "ALTER", "DROP",
    "ATTACH", "DETACH", "SET", "SET_VARIABLE", "RESET", "LOAD", "PRAGMA", "TRANSACTION", "VACUUM", "UPDATE_EXTENSIONS",
})

_ONLY_READS = ("quadmix sql only reads: give one SELECT statement (WITH, FROM, DESCRIBE, SUMMARIZE are SELECTs); "
               "to write the rows to a file, use --out FILE.parquet or FILE.csv")


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(statement: duckdb.Statement) -> str:
    try:
        return statement.type.name
    except ValueError:  # a type the Python API has no name for (UPDATE EXTENSIONS in DuckDB 2.0)
        return "UNKNOWN"


def one_select(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.Statement:
    """The one statement of ``query``, as DuckDB's own parser splits and types it; :class:`SqlRefused` unless
    it is a single SELECT (:data:`READING_TYPES`). Parses only, nothing runs: it can come before the views
    exist, to refuse early. A text that does not parse raises DuckDB's parser error."""
    statements = con.extract_statements(query)
    if not statements:
        raise SqlRefused(f"refused: no statement given; {_ONLY_READS}")
    if len(statements) > 1:
        kinds = "; ".join(_kind(s) for s in statements)
        raise SqlRefused(f"refused: {len(statements)} statements ({kinds}); {_ONLY_READS}")
    statement = statements[0]
    if _kind(statement) not in READING_TYPES:
        raise SqlRefused(f"refused {_shown(statement.query)!r} (statement type {_kind(statement)}): {_ONLY_READS}")
    return statement


def _operators(plan) -> Iterator[str]:
    """Every operator name of an ``EXPLAIN (FORMAT json)`` plan tree."""
    if isinstance(plan, list):
        for node in plan:
            yield from _operators(node)
    elif isinstance(plan, dict):
        if isinstance(plan.get("name"), str):
            yield plan["name"]
        yield from _operators(plan.get("children") or [])


def read_only_statement(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.Statement:
    """``query``'s one SELECT (:func:`one_select`), refused (:class:`SqlRefused`) when DuckDB's plan of it
    holds an operator that writes (:data:`WRITING_OPERATORS`). It is planned (``EXPLAIN``, not ``EXPLAIN
    ANALYZE``), not run, so call this on the connection with the views; run the statement it returns, so what
    runs is what was checked."""
    statement = one_select(con, query)
    explain = f"EXPLAIN (FORMAT json) {statement.query}"
    checked = con.extract_statements(explain)
    if len(checked) != 1 or _kind(checked[0]) != "EXPLAIN":  # pragma: no cover - one SELECT explains as one
        raise SqlRefused(f"refused {_shown(statement.query)!r}: DuckDB cannot plan it alone; {_ONLY_READS}")
    rows = con.execute(explain).fetchall()
    writes = sorted({name for row in rows for name in _operators(json.loads(row[-1]))
                     if name in WRITING_OPERATORS or name.startswith(("COPY", "CREATE"))})
    if writes:
        raise SqlRefused(f"refused {_shown(statement.query)!r}: it writes ({', '.join(writes)} in DuckDB's plan); "
                         f"{_ONLY_READS}")
    return statement


def check_storage(storage: StorageRoot) -> None:
    """:class:`SqlRefused` unless ``storage`` is a folder with stored documents: over a missing or empty root
    every view would be empty and every query would answer 0 rows, as if the run had no data."""
    hint = "pass --storage with the folder a `quadmix run` wrote (default: $QUADMIX_STORAGE or .quadmix/storage)"
    if not storage.fs.isdir(storage.path("")):
        raise SqlRefused(f"no storage at {storage.url}: {hint}, or run `quadmix run` first")
    if not storage.exists("documents"):
        raise SqlRefused(f"{storage.url} holds no stored run (no documents folder): {hint}")


def check_out_path(storage: StorageRoot, out: str) -> str:
    """``out`` as the absolute local path :func:`query_to_file` writes (its folder resolved through symbolic
    links; the rows go to ``<path>.tmp-<pid>`` beside it first). :class:`SqlRefused` unless it ends in
    ``.parquet`` or ``.csv``, its folder exists and it lies outside the storage root: the one write ``quadmix
    sql`` does must not replace or add a stored file."""
    if os.path.splitext(out)[1].lower() not in (".parquet", ".csv"):
        raise SqlRefused(f"--out must end in .parquet or .csv; got {out!r}")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(out)))
    if not os.path.isdir(folder):
        raise SqlRefused(f"--out {out!r}: the folder {folder} does not exist; create it first")
    path = os.path.join(folder, os.path.basename(out))
    if storage.is_local:  # a local file cannot lie under an fsspec root (s3://...)
        root = os.path.realpath(storage.path(""))
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            raise SqlRefused(f"--out {out!r} lies under the storage root {storage.url}: quadmix sql does not change a "
                             "stored run; write the file elsewhere")
    return path


def lock_to_storage(con: duckdb.DuckDBPyConnection, storage: StorageRoot, extra_dirs: list[str] = ()) -> None:
    """From now on DuckDB reads only under the storage root (and ``extra_dirs``, e.g. its spill folder) and
    no setting can change (``lock_configuration``: a statement cannot switch external access back on, move
    the spill folder or raise the memory limit); cannot be undone on this connection. DuckDB may still write
    where it may read: :func:`read_only_statement` is what keeps the user's statement from writing."""
    root = file_ref(storage, "").rstrip("/") + "/"
    con.execute(f"SET allowed_directories = {sql_list([root, *extra_dirs])}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _cell(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    text = str(v).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def query_text(con: duckdb.DuckDBPyConnection, query: str, max_rows: int = 40) -> str:
    """The first ``max_rows`` rows of ``query`` (one read-only SELECT, :func:`read_only_statement`) as an
    aligned text table, and how many more there were."""
    rel = con.sql(read_only_statement(con, query))
    names = rel.columns
    reader = rel.to_arrow_reader(max(1, min(max_rows, 8192)))
    rows, more = [], 0
    for batch in reader:
        for r in batch.to_pylist():
            if len(rows) < max_rows:
                rows.append([_cell(r[n]) for n in names])
            else:
                more += 1
    widths = [max([len(n), *(len(r[j]) for r in rows)]) for j, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"({len(rows) + more} row{'s' if len(rows) + more != 1 else ''}"
                 + (f"; {more} not shown: add LIMIT or --out FILE" if more else "") + ")")
    return "\n".join(lines) + "\n"


def query_to_file(con: duckdb.DuckDBPyConnection, query: str, out: str, *, storage: StorageRoot) -> int:
    """Write every row of ``query`` (one read-only SELECT, :func:`read_only_statement`) to the local file
    ``out`` (``.parquet`` or ``.csv``, outside ``storage``'s root: :func:`check_out_path`), streamed and
    written aside then renamed into place; returns the row count."""
    import pyarrow.csv as pcsv

    path = check_out_path(storage, out)
    rel = con.sql(read_only_statement(con, query))
    reader = rel.to_arrow_reader(65536)
    tmp = f"{path}.tmp-{os.getpid()}"
    n = 0
    try:
        writer = (pq.ParquetWriter(tmp, reader.schema, compression="zstd") if path.lower().endswith(".parquet")
                  else pcsv.CSVWriter(tmp, reader.schema))
        with writer:
            for batch in reader:
                writer.write_batch(batch)
                n += batch.num_rows
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return n
