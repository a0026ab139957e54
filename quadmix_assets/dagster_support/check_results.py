"""Per-partition results of a check run over several partitions (mixtures): each recorded against its
own partition, with the materialization it judged."""

from dagster import AssetCheckEvaluation, AssetCheckExecutionContext, AssetCheckSeverity, AssetRecordsFilter, DagsterEventType
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData


def latest_targets(instance, asset_key, keys: list[str]) -> dict:
    """The latest materialization of each partition in ``keys`` (what its check judged), as the pointer
    Dagster records with a check evaluation: two queries for the whole run, not one per partition."""
    ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key, DagsterEventType.ASSET_MATERIALIZATION, set(keys))
    if not ids:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, storage_ids=sorted(ids.values())), limit=len(ids)).records
    return {r.partition_key: AssetCheckEvaluationTargetMaterializationData(
        storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp) for r in records}


def record_per_partition(context: AssetCheckExecutionContext, judged: dict[str, tuple[bool, bool, dict]]) -> None:
    """One evaluation per mixture partition of the run, recorded against that partition: ``judged[key] =
    (passed, error, metadata)``; ERROR severity where ``error``, else WARN. Dagster's own result of a check
    run over a range of partitions names no partition (the UI then shows every partition of the range as
    skipped), so each is logged as an ``AssetCheckEvaluation`` with its ``partition`` and the
    materialization it judged, and the check returns nothing else."""
    spec = next(iter(context.check_specs))
    targets = latest_targets(context.instance, spec.asset_key, list(judged))
    for key, (passed, error, metadata) in judged.items():
        context.op_execution_context.log_event(AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=bool(passed),
            severity=AssetCheckSeverity.ERROR if error else AssetCheckSeverity.WARN,
            metadata=metadata,
            target_materialization_data=targets.get(key),
            blocking=spec.blocking,
            partition=key,
        ))
