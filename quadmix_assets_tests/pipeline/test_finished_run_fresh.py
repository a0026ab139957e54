"""A finished run looks finished: right after `quadmix run` ends, Dagster's own stale-status resolver (the
one behind the UI's "stale" badge) finds no asset (or partition) the run itself left stale."""

from __future__ import annotations

from dagster import AssetKey
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

from quadmix_assets.definitions import build_definitions


def _resolver(instance, graph) -> CachingStaleStatusResolver:
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def stale_assets(instance, settings) -> dict[str, list[str]]:
    """``asset[partition] -> its stale causes`` for every materialized asset (partition) that is not FRESH."""
    graph = build_definitions(settings).resolve_asset_graph()
    resolver = _resolver(instance, graph)
    out: dict[str, list[str]] = {}
    for key in sorted(graph.materializable_asset_keys, key=AssetKey.to_user_string):
        node = graph.get(key)
        partitions = [None]
        if node.partitions_def is not None:
            partitions = list(instance.get_dynamic_partitions(node.partitions_def.name))
        for partition in partitions:
            status = resolver.get_status(key, partition)
            if status == StaleStatus.STALE:
                causes = resolver.get_stale_causes(key, partition)
                name = key.to_user_string() + (f"[{partition}]" if partition else "")
                out[name] = [f"{c.key.asset_key.to_user_string()}"
                             f"{'[' + c.key.partition_key + ']' if c.key.partition_key else ''} {c.reason}"
                             + (f" ({c.dependency.asset_key.to_user_string()}"
                                f"{'[' + c.dependency.partition_key + ']' if c.dependency and c.dependency.partition_key else ''})"
                                if c.dependency else "")
                             for c in causes]
    return out


def test_no_stale_badge_after_a_finished_run(demo_run):
    settings, instance, summary, lines = demo_run
    assert summary.ok and summary.export, lines
    assert stale_assets(instance, settings) == {}
