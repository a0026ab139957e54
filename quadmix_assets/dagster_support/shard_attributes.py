"""The shared body of every per-shard labeller/scorer asset: read texts, score, write aligned columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from dagster import AssetExecutionContext, DataVersion, Failure, MaterializeResult, MetadataValue

from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import table_metadata, uri_metadata
from quadmix_assets.storage import content_hash, layout

BATCH_DOCS = 8192


def score_shard(
    context: AssetExecutionContext,
    settings: QuadmixSettings,
    *,
    attribute: str,
    step_version: str,
    scorer: Callable[[list[str]], pa.Table],
    models: dict[str, Any],
    params: dict[str, Any] | None = None,
    summary_column: str | None = None,
) -> MaterializeResult:
    """Score one shard's texts in batches and write ``attributes/<attribute>/<shard>.parquet``.

    The output has exactly one row per document, in document order (checked before writing).
    """
    shard = context.partition_key
    storage = settings.storage()
    docs_path = layout.documents(shard)
    if not storage.exists(docs_path):
        raise Failure(f"documents of shard {shard!r} are missing: materialize `documents` first")
    docs_prov = storage.provenance(docs_path)
    dataset = storage.dataset([docs_path])
    parts = []
    n_docs = 0
    for batch in dataset.to_batches(columns=["text"], batch_size=BATCH_DOCS):
        texts = batch.column(0).to_pylist()
        n_docs += len(texts)
        parts.append(scorer(texts))
    table = pa.concat_tables(parts) if parts else scorer([])
    if table.num_rows != n_docs:
        raise Failure(f"{attribute} produced {table.num_rows} rows for {n_docs} documents of {shard}")
    prov = provenance(
        context,
        step_version,
        models=models,
        params=params,
        inputs={"documents": docs_path, "documents_fingerprint": docs_prov.get("inputs", {}).get("fingerprint")},
    )
    uri = storage.write_parquet(layout.attribute(attribute, shard), table, prov)
    metadata: dict[str, Any] = {"path": MetadataValue.path(uri), "rows": table.num_rows, **uri_metadata(uri),
                                **table_metadata(table)}
    if summary_column and table.num_rows:
        col = table[summary_column].to_numpy(zero_copy_only=False).astype(np.float64)
        finite = col[np.isfinite(col)]
        metadata.update(
            {
                "mean": float(finite.mean()) if finite.size else float("nan"),
                "p10": float(np.quantile(finite, 0.1)) if finite.size else float("nan"),
                "p50": float(np.quantile(finite, 0.5)) if finite.size else float("nan"),
                "p90": float(np.quantile(finite, 0.9)) if finite.size else float("nan"),
                "non_finite": int(col.size - finite.size),
            }
        )
    return MaterializeResult(metadata=metadata, data_version=DataVersion(content_hash(prov)))
