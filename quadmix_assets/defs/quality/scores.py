"""Stage 2b: every quality criterion's per-shard scoring asset, generated from the criterion registry
(:mod:`quadmix_assets.scoring.criteria`) by one factory (the models they need: ``defs/quality/model_scorers.py``).

``quality_<criterion>`` scores one shard with the criterion's scorer (a plain scorer, or for a teacher
criterion the teacher itself in 'direct' mode and its distilled student otherwise) and writes
``attributes/quality_<criterion>/<shard>.parquet``: the raw score (float32) plus any extra columns.
"""

import time
from typing import Any

import numpy as np
import pyarrow as pa
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, asset

from quadmix_assets import keys
from quadmix_assets.dagster_support import conditions
from quadmix_assets.dagster_support.k8s import pod_tags, step_pool
from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.shard_attributes import score_shard
from quadmix_assets.dagster_support.table_metadata import uri_metadata
from quadmix_assets.reporting.numbers import round_sig
from quadmix_assets.scoring.criteria import Criterion, criteria


def score_table(values: np.ndarray, columns: pa.Table | None = None) -> pa.Table:
    """The attribute table of one batch: ``score`` (float32) and the scorer's extra columns."""
    table = pa.table({"score": pa.array(np.asarray(values, dtype=np.float32))})
    if columns is not None:
        for name in columns.column_names:
            table = table.append_column(name, columns[name])
    return table


def quality_asset(criterion: Criterion) -> AssetsDefinition:
    """The per-shard scoring asset ``quality_<name>`` of one registered criterion."""
    c = criterion
    teacher = c.teacher is not None

    @asset(
        name=c.attribute,
        partitions_def=shards_partitions,
        group_name="quality",
        code_version=c.version,
        automation_condition=conditions.SHARD_ATTRIBUTE,
        deps=[AssetKey(keys.DOCUMENTS), *(AssetKey(m) for m in c.models), *((AssetKey(c.student),) if teacher else ())],
        kinds={"parquet"},
        op_tags=pod_tags("gpu" if c.accelerator else "shard"),
        pool=step_pool("gpu" if c.accelerator else "shard"),
        description=c.description + c.note,
    )
    def _quality(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
        storage = settings.storage()
        score, models = c.make_scorer(settings, storage)
        mode = settings.config().teacher(c.name).mode if teacher else None
        totals: dict[str, Any] = {"docs": 0, "tokens": 0, "seconds": 0.0}

        def scorer(texts: list[str]) -> pa.Table:
            start = time.perf_counter()
            scored = score(texts)
            totals["docs"] += len(texts)
            totals["seconds"] += time.perf_counter() - start
            if scored.stats is not None:
                totals["tokens"] += scored.stats.tokens
            return score_table(scored.values, scored.columns)

        result = score_shard(
            context,
            settings,
            attribute=c.attribute,
            step_version=c.version,
            scorer=scorer,
            models=models,
            params={"mode": mode} if teacher else None,
            summary_column="score",
        )
        if not teacher:
            return result
        metadata = dict(result.metadata)
        metadata["mode"] = mode
        if totals["seconds"]:
            metadata["docs_per_s"] = round_sig(totals["docs"] / totals["seconds"])
            if totals["tokens"]:
                metadata["tokens_per_s"] = round_sig(totals["tokens"] / totals["seconds"])
        return MaterializeResult(metadata=metadata, data_version=result.data_version)

    return _quality


#: the per-shard raw-score asset of every registered criterion, in registry (alpha column) order
QUALITY_ASSETS: dict[str, AssetsDefinition] = {c.name: quality_asset(c) for c in criteria()}
