"""What produced an output: recorded in every file (Parquet schema metadata) and in Dagster metadata."""

from __future__ import annotations

from typing import Any

from dagster import AssetExecutionContext

from quadmix_assets import __version__


def provenance(
    context: AssetExecutionContext,
    step_version: str,
    *,
    models: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    partition: str | None = None,
) -> dict[str, Any]:
    """Code version, model versions, parameter config and input data versions of one output; ``partition``:
    the output's partition in a run over several (default: the run's one partition, if any).

    Nothing time- or host-dependent goes in, so the same inputs give the same bytes.
    """
    return {
        "producer": context.assets_def.key.to_user_string(),
        "partition": partition if partition is not None else (context.partition_key if context.has_partition_key else None),
        "code_version": f"quadmix=={__version__};{step_version}",
        "models": models or {},
        "params": params or {},
        "inputs": inputs or {},
    }
