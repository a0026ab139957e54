"""Materialize part of the graph cheaply: `documents` + `quality_heuristic` of one tiny shard."""

from __future__ import annotations

from dagster import DagsterInstance, materialize

from quadmix_assets.defs.corpus.documents import documents
from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.defs.quality.scores import QUALITY_ASSETS
from quadmix_assets.dagster_support.resources import QuadmixSettings


def materialize_one_shard(settings: QuadmixSettings, instance: DagsterInstance) -> str:
    """Runs the two assets for the corpus's only shard; returns the shard key."""
    (shard,) = settings.shards()
    instance.add_dynamic_partitions(shards_partitions.name, [shard.key])
    result = materialize(
        [documents, QUALITY_ASSETS["heuristic"]],
        partition_key=shard.key,
        instance=instance,
        resources={"settings": settings},
    )
    assert result.success
    return shard.key
