"""Dagster's standard table metadata for an asset that writes a Parquet table: ``dagster/row_count`` and
``dagster/column_schema`` (the catalog shows them: row counts over time, the columns and their types)."""

from __future__ import annotations

import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema


def table_metadata(table: pa.Table) -> dict:
    """Row count and column schema (Arrow type names) of ``table``."""
    schema = TableSchema(columns=[TableColumn(f.name, str(f.type)) for f in table.schema])
    return {"dagster/row_count": table.num_rows, "dagster/column_schema": MetadataValue.table_schema(schema)}
