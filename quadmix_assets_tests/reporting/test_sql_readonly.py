"""``quadmix sql`` is read-only on the storage (issue 28): every statement that could write, load, attach or
change a setting is refused before it runs, with a message and exit 1, and no stored byte changes; a plain
SELECT and ``--out`` outside the storage root still work; a missing storage root is an error, not 0 rows.

The stored run is a small random corpus written with the storage API (no pipeline run)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os

import duckdb
import pyarrow.parquet as pq
import pytest

from quadmix_assets.cli import main
from quadmix_assets.reporting import sql_views
from quadmix_assets.storage import StorageRoot, layout

from quadmix_assets_tests.storage.fanin_support import write_random_corpus


def _sql(root: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["sql", *args, "--storage", root])
    return code, out.getvalue()


def _snapshot(folder: str) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256 of its bytes)."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return files


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("sql-readonly") / "storage")
    write_random_corpus(StorageRoot(root), [30, 20], 3, seed=7)
    return root


def _forbidden(root: str, elsewhere: str) -> list[str]:
    stored_file = f"{root}/{layout.documents('shard-000')}"
    return [
        f"COPY (SELECT 1 AS x) TO '{stored_file}'",
        f"COPY (SELECT 1 AS x) TO '{root}/new.csv'",
        f"COPY (SELECT 1 AS x) TO '{elsewhere}'",
        f"COPY documents TO '{root}/documents' (FORMAT parquet, OVERWRITE_OR_IGNORE)",
        # a COPY or a DML statement in a common table expression parses as a SELECT: DuckDB's plan tells
        f"WITH w AS (COPY (SELECT 1 AS x) TO '{stored_file}') SELECT 1",
        "WITH w AS (INSERT INTO documents SELECT * FROM documents RETURNING *) SELECT count(*) FROM w",
        f"EXPORT DATABASE '{root}/export'",
        f"ATTACH '{root}/x.duckdb' AS x",
        "DETACH memory",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CREATE TABLE t AS SELECT 1 AS x",
        "CREATE OR REPLACE VIEW documents AS SELECT 1 AS x",
        "INSERT INTO documents SELECT * FROM documents",
        "UPDATE documents SET n_tokens = 0",
        "DELETE FROM documents",
        "DROP VIEW documents",
        "ALTER VIEW documents RENAME TO d",
        "SELECT 1; SELECT 2",
        f"SELECT 1 AS x; COPY (SELECT 1 AS x) TO '{stored_file}'",
        "SET enable_external_access = true",
        "RESET allowed_directories",
        "SET lock_configuration = false",
        "PRAGMA threads = 1",
        "PRAGMA version",
        "CALL checkpoint()",
        "EXPLAIN ANALYZE SELECT 1",
        "BEGIN TRANSACTION",
        "",
    ]


def test_every_statement_that_could_write_is_refused_and_nothing_changes(stored, tmp_path):
    before = _snapshot(stored)
    elsewhere = tmp_path / "elsewhere.csv"
    for query in _forbidden(stored, str(elsewhere)):
        code, text = _sql(stored, query)
        assert code == 1, (query, text)
        assert text.startswith("quadmix sql: "), (query, text)
        if not query.startswith("WITH w AS (INSERT"):  # refused by DuckDB's binder first: the views are not tables
            assert "refused" in text and "quadmix sql only reads" in text, (query, text)
        assert _snapshot(stored) == before, query
        assert not elsewhere.exists(), query
    assert list(tmp_path.iterdir()) == []


def test_refused_before_anything_runs_through_the_library_too(stored):
    """The library functions check themselves: a caller other than the command cannot run a write."""
    storage = StorageRoot(stored)
    with duckdb.connect() as con:
        sql_views.create_views(con, storage)
        sql_views.lock_to_storage(con, storage)
        target = f"{stored}/{layout.documents('shard-001')}"
        for query in (f"COPY (SELECT 1 AS x) TO '{target}'", f"WITH w AS (COPY (SELECT 1 AS x) TO '{target}') SELECT 1"):
            with pytest.raises(sql_views.SqlRefused, match="refused"):
                sql_views.query_text(con, query)
        with pytest.raises(sql_views.SqlRefused, match="under the storage root"):
            sql_views.query_to_file(con, "SELECT 1 AS x", target, storage=storage)
        # the configuration is locked: not even quadmix's own code can reopen external access
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
        assert "(2 rows)" in sql_views.query_text(con, "SELECT shard, count(*) FROM documents GROUP BY 1")


def test_select_and_out_still_work_and_out_stays_outside_the_storage(stored, tmp_path):
    before = _snapshot(stored)
    code, text = _sql(stored, "SELECT shard, count(*) AS n FROM documents GROUP BY 1 ORDER BY 1")
    assert code == 0, text
    assert text.splitlines()[2:4] == ["shard-000  30", "shard-001  20"]
    code, text = _sql(stored, "WITH f AS (FROM features) SELECT id, s_dclm FROM f ORDER BY id", "--out", str(tmp_path / "f.parquet"))
    assert code == 0 and "50 rows written" in text, text
    assert pq.read_table(tmp_path / "f.parquet").column_names == ["id", "s_dclm"]
    code, text = _sql(stored, "SELECT 1 AS x", "--out", str(tmp_path / "one.csv"))
    assert code == 0 and (tmp_path / "one.csv").read_text().splitlines() == ['"x"', "1"]
    # --out under the storage root, directly, through a symbolic link, or a new file there: refused
    link = tmp_path / "link"
    link.symlink_to(stored, target_is_directory=True)
    for out in (f"{stored}/{layout.documents('shard-000')}", f"{stored}/new.parquet", f"{link}/documents/shard-001.parquet",
                f"{stored}/documents/../new.csv"):
        code, text = _sql(stored, "SELECT 1 AS x", "--out", out)
        assert code == 1 and "under the storage root" in text, (out, text)
    for out, why in ((str(tmp_path / "x.txt"), ".parquet or .csv"), (str(tmp_path / "no" / "x.csv"), "does not exist")):
        code, text = _sql(stored, "SELECT 1 AS x", "--out", out)
        assert code == 1 and why in text, (out, text)
    assert _snapshot(stored) == before


def test_a_missing_or_empty_storage_is_an_error_not_zero_rows(tmp_path):
    code, text = _sql(str(tmp_path / "nowhere"), "SELECT count(*) FROM documents")
    assert code == 1 and "no storage at" in text and "--storage" in text, text
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    code, text = _sql(str(tmp_path / "empty"), "SELECT count(*) FROM documents")
    assert code == 1 and "holds no stored run" in text, text
