"""Resume reads each asset's materialization history once (``resume.MaterializationHistory``) instead of a
query per partition and per dependency partition (a plan over a finished demo: 49 s -> 4 s). It must answer
exactly as Dagster does: on a finished two-shard run, for every asset and partition, the same latest record,
the same record before or after any other record's storage id, and the same stale status and causes as
Dagster's own ``CachingStaleStatusResolver``."""

from __future__ import annotations

from dagster import AssetRecordsFilter
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver
from dagster._time import get_current_datetime

from quadmix_assets.definitions import build_definitions
from quadmix_assets.resume import MaterializationHistory, _HistoryStaleStatusResolver


def _partitions(instance, node) -> list:
    if node.partitions_def is None:
        return [None]
    return list(node.partitions_def.get_partition_keys(dynamic_partitions_store=instance))


def test_history_answers_as_the_instance_and_dagsters_resolver_do(demo_run):
    settings, instance, summary, _ = demo_run
    assert summary.exit_code() == 0
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    history = MaterializationHistory(instance)

    def view():
        return AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                              instance=instance, asset_graph=graph)

    plain = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view())
    fast = _HistoryStaleStatusResolver(history, instance=instance, asset_graph=graph, loading_context=view())
    asked = statuses = 0
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        all_ids = [r.storage_id for r in instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000).records]
        for partition in _partitions(instance, node):
            latest = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1).records
            got = history.latest(key, partition)
            assert (got.storage_id if got else None) == (latest[0].storage_id if latest else None), (key, partition)
            for cursor in all_ids[:: max(1, len(all_ids) // 7)]:  # before and after other records of the asset
                for kw, filt in (({"before": cursor}, {"before_storage_id": cursor}), ({"after": cursor}, {"after_storage_id": cursor})):
                    want = instance.fetch_materializations(AssetRecordsFilter(
                        asset_key=key, asset_partitions=[partition] if partition else None, **filt), limit=1).records
                    got = history.latest(key, partition, **kw)
                    assert (got.storage_id if got else None) == (want[0].storage_id if want else None), (key, partition, kw)
                    asked += 1
            if latest:
                assert fast.get_status(key, partition) == plain.get_status(key, partition), (key, partition)
                assert ([(c.key, c.category, c.reason) for c in fast.get_stale_causes(key, partition)]
                        == [(c.key, c.category, c.reason) for c in plain.get_stale_causes(key, partition)]), (key, partition)
                statuses += 1
    assert asked > 100 and statuses > 50  # the run made many assets and partitions: the comparison covered them
