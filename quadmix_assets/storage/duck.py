"""DuckDB over the stored Parquet files: one connection with a memory limit and a spill folder, able to read
a local storage root or any fsspec one (the root's filesystem is registered with DuckDB).

Paths reach SQL only through :func:`sql_list` / :func:`sql_str` (quoted literals) built from
:meth:`StorageRoot.path`, so every file a query reads was checked to lie under the storage root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Iterator

import duckdb

from quadmix_assets.storage.root import StorageRoot

__all__ = ["DEFAULT_MEMORY_LIMIT", "connect", "duck_session", "file_ref", "sql_list", "sql_str"]

#: DuckDB's memory limit for the fan-in queries; beyond it sorts, windows and joins spill to disk.
DEFAULT_MEMORY_LIMIT = "1GB"


def sql_str(value: str) -> str:
    """A SQL string literal (single quotes doubled; NUL refused)."""
    if "\x00" in value:
        raise ValueError("a SQL string may not contain NUL")
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    """A SQL list literal of strings: ``['a', 'b']``."""
    return "[" + ", ".join(sql_str(v) for v in values) + "]"


def file_ref(storage: StorageRoot, relpath: str) -> str:
    """What DuckDB opens for ``relpath``: the local path, or ``protocol://path`` on the registered fsspec
    filesystem (checked under the root by :meth:`StorageRoot.path`)."""
    path = storage.path(relpath)
    return path if storage.is_local else storage.fs.unstrip_protocol(path)


def connect(
    storage: StorageRoot | None = None,
    *,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    temp_dir: str | None = None,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection limited to ``memory_limit`` that spills to ``temp_dir``, with the
    storage root's fsspec filesystem registered when it is not local. ``threads`` defaults to DuckDB's
    (every core)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = {sql_str(str(memory_limit))}")
        if temp_dir is not None:
            con.execute(f"SET temp_directory = {sql_str(str(temp_dir))}")
        con.execute("SET preserve_insertion_order = true")
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        if storage is not None and not storage.is_local:
            con.register_filesystem(storage.fs)
    except Exception:
        con.close()
        raise
    return con


@contextmanager
def duck_session(
    storage: StorageRoot | None = None,
    *,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    temp_dir: str | None = None,
    threads: int | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """:func:`connect` with a fresh local spill folder (under ``temp_dir`` or the system's temporary
    folder), removed with the connection at the end."""
    spill = tempfile.mkdtemp(prefix="quadmix-duckdb-", dir=temp_dir)
    con = connect(storage, memory_limit=memory_limit, temp_dir=os.path.join(spill, "spill"), threads=threads)
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
