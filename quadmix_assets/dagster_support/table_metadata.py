"""Dagster's standard metadata for an asset that writes files: ``dagster/uri`` (where its output is: the
file, or the folder of an output made of several files) and, for a Parquet table, ``dagster/row_count``
and ``dagster/column_schema`` (the catalog shows them: row counts over time, the columns and their types).
Built with Dagster's own metadata sets (``UriMetadataSet``, ``TableMetadataSet``), so the UI and
``TableMetadataSet.extract`` read them back."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from dagster import TableColumn, TableSchema
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet, UriMetadataSet


def _schema(schema: pa.Schema) -> TableSchema:
    return TableSchema(columns=[TableColumn(f.name, str(f.type)) for f in schema])


def table_metadata(table: pa.Table) -> dict:
    """Row count and column schema (Arrow type names) of ``table``."""
    return dict(TableMetadataSet(row_count=table.num_rows, column_schema=_schema(table.schema)))


def stored_table_metadata(storage, relpaths: Iterable[str]) -> dict:
    """Row count (summed) and column schema of Parquet files under ``storage`` that make one table (the
    parts of one output, or one file per shard), read from their footers: no column is read. The schema is
    the first file's (they share it)."""
    import pyarrow.parquet as pq

    paths = list(relpaths)
    if not paths:
        return {}
    rows = sum(storage.parquet_rows(p) for p in paths)
    schema = pq.read_schema(storage.path(paths[0]), filesystem=storage.fs)
    return dict(TableMetadataSet(row_count=rows, column_schema=_schema(schema)))


def uri_metadata(uri: str) -> dict:
    """``dagster/uri``: the storage URI of the asset's output (``StorageRoot.uri``: a local path or an
    fsspec URL such as ``s3://bucket/prefix/...``)."""
    return dict(UriMetadataSet(uri=str(uri)))
