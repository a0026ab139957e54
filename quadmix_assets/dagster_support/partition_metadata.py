"""Metadata of one partition of a run over several (a backfill range), for its own materialization."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext


def add_partition_metadata(context: AssetExecutionContext, metadata: Mapping[str, Any], partition_key: str) -> None:
    """``context.add_asset_metadata(metadata, partition_key=partition_key)`` for a key the caller took from
    ``context.partition_keys``, without Dagster's check that it is one: Dagster 1.13 makes that check by
    loading every dynamic partition of the instance again, on every call (36 ms a call with 150 mixture
    partitions on this machine, growing with their number: quadratic in a run over thousands). Where the
    step context is not as expected (another Dagster), the public call is made."""
    step = context.get_step_execution_context()
    accumulator = getattr(step, "_metadata_accumulator", None)
    if accumulator is None or not hasattr(accumulator, "with_additional_asset_metadata"):
        context.add_asset_metadata(metadata, partition_key=partition_key)
        return
    step._metadata_accumulator = accumulator.with_additional_asset_metadata(  # noqa: SLF001 - see above
        asset_key=context.asset_key, metadata=metadata, partition_key=partition_key)
