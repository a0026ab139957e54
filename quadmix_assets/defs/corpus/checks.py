"""The documents check: each shard's partition reads only its own file (column projections)."""

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetKey, asset_check

from quadmix_assets import keys
from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.storage import layout

REQUIRED_DOCUMENT_COLUMNS = ("id", "id_hash", "text", "n_tokens", "row", "record")


@asset_check(asset=AssetKey(keys.DOCUMENTS), partitions_def=shards_partitions, description="Schema, unique ids, positive token counts, row numbers 0..n-1.")
def documents_valid(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> AssetCheckResult:
    storage = settings.storage()
    path = layout.documents(context.partition_key)
    schema = pq.read_schema(storage.path(path), filesystem=storage.fs)
    missing = [c for c in REQUIRED_DOCUMENT_COLUMNS if c not in schema.names]
    if missing:
        return AssetCheckResult(passed=False, metadata={"missing_columns": missing})
    t = storage.read_parquet(path, columns=["id", "n_tokens", "row"])
    n = t.num_rows
    unique_ids = pc.count_distinct(t["id"]).as_py() if n else 0
    rows_ok = bool(np.array_equal(t["row"].to_numpy(), np.arange(n)))
    tokens_ok = bool(n == 0 or pc.min(t["n_tokens"]).as_py() > 0)
    return AssetCheckResult(
        passed=unique_ids == n and rows_ok and tokens_ok,
        metadata={"documents": n, "unique_ids": unique_ids, "rows_in_order": rows_ok, "tokens_positive": tokens_ok},
    )
