"""Wiring of :mod:`quadmix_assets.storage.current` into the fan-in assets: the instance says which shard
runs failed (or never finished), the library checks fingerprints and alignment."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetKey, AssetPartitionStatus, MetadataValue

from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring.criteria import criteria
from quadmix_assets.storage.current import ShardSelection, current_shards

#: attributes every shard needs before the normaliser and the mixtures may use it
SCORED_ATTRIBUTES: tuple[str, ...] = ("domain", *(c.attribute for c in criteria()))
DOCUMENTS_ASSET = "documents"
#: every per-shard asset (their latest runs must not have failed)
PER_SHARD_ASSETS: tuple[str, ...] = (DOCUMENTS_ASSET, "domain_labels", *(c.attribute for c in criteria()))


def failed_shard_runs(instance, keys: list[str], assets: Sequence[str]) -> dict[str, str]:
    """Shard keys whose latest run of one of ``assets`` failed or never finished, with what happened."""
    failed: dict[str, str] = {}
    if not keys:
        return failed
    known = set(instance.get_dynamic_partitions(shards_partitions.name))
    keys = [k for k in keys if k in known]
    for name in assets:
        status = instance.get_status_by_partition(AssetKey(name), keys, shards_partitions) or {}
        for key, st in status.items():
            if key in failed:
                continue
            if st == AssetPartitionStatus.FAILED:
                failed[key] = f"{name} failed"
            elif st == AssetPartitionStatus.IN_PROGRESS:
                failed[key] = f"{name} has not finished (in progress, or a killed run)"
    return failed


def select_shards(context, settings: QuadmixSettings, attributes: Sequence[str] = (),
                  assets: Sequence[str] = (DOCUMENTS_ASSET,)) -> ShardSelection:
    """The current corpus' shards this fan-in may use; logs a warning listing the ones left out."""
    refs = settings.shards()
    failed = failed_shard_runs(context.instance, [r.key for r in refs], assets)
    selection = current_shards(settings.storage(), refs, attributes, failed=failed)
    if selection.left_out:
        context.log.warning(
            f"{context.assets_def.key.to_user_string()} leaves out {len(selection.left_out)} shard(s): {selection.left_out}"
        )
    return selection


def left_out_metadata(selection: ShardSelection) -> dict:
    return {"shards_left_out": MetadataValue.json(selection.left_out), "shards_left_out_count": len(selection.left_out)}
