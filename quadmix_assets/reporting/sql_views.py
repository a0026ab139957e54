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

After the views exist the connection is locked to the storage root: DuckDB may read only there and write
nowhere (``enable_external_access = false`` with ``allowed_directories``), so a query cannot touch other files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quadmix_assets.storage import StorageRoot, layout
from quadmix_assets.storage.duck import file_ref, sql_list, sql_str

__all__ = ["VIEW_NAMES", "create_views", "lock_to_storage", "query_text", "query_to_file"]

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
        from quadmix_assets.mixing.catalog import all_spec_dicts, round_of

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
        from quadmix_assets.mixing.catalog import scores_card

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


def lock_to_storage(con: duckdb.DuckDBPyConnection, storage: StorageRoot, extra_dirs: list[str] = ()) -> None:
    """From now on DuckDB reads only under the storage root (and ``extra_dirs``) and writes nowhere else;
    cannot be undone on this connection."""
    root = file_ref(storage, "").rstrip("/") + "/"
    con.execute(f"SET allowed_directories = {sql_list([root, *extra_dirs])}")
    con.execute("SET enable_external_access = false")


def _cell(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    text = str(v).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def query_text(con: duckdb.DuckDBPyConnection, query: str, max_rows: int = 40) -> str:
    """The first ``max_rows`` rows of ``query`` as an aligned text table, and how many more there were."""
    rel = con.sql(query)
    if rel is None:  # a statement without a result
        return "OK\n"
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


def query_to_file(con: duckdb.DuckDBPyConnection, query: str, out: str) -> int:
    """Write every row of ``query`` to the local file ``out`` (``.parquet`` or ``.csv``), streamed and
    written aside then renamed into place; returns the row count."""
    import os

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    kind = os.path.splitext(out)[1].lower()
    if kind not in (".parquet", ".csv"):
        raise ValueError(f"--out must end in .parquet or .csv; got {out!r}")
    rel = con.sql(query)
    if rel is None:
        raise ValueError("the statement returns no rows to write")
    reader = rel.to_arrow_reader(65536)
    tmp = f"{out}.tmp-{os.getpid()}"
    n = 0
    try:
        writer = pq.ParquetWriter(tmp, reader.schema, compression="zstd") if kind == ".parquet" else pcsv.CSVWriter(tmp, reader.schema)
        with writer:
            for batch in reader:
                writer.write_batch(batch)
                n += batch.num_rows
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return n
