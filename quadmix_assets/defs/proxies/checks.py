"""The proxy check of each mixture (partitioned; a backfill range records each mixture's own result)."""

from dagster import AssetCheckExecutionContext, AssetKey, asset_check

from quadmix_assets import keys
from quadmix_assets.dagster_support.check_results import record_per_partition
from quadmix_assets.dagster_support.partitions import mixtures_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.storage import layout


@asset_check(
    asset=AssetKey(keys.PROXY_RUN),
    partitions_def=mixtures_partitions,
    description="The proxy trained to the end with finite losses on every target set (failed runs are left "
    "out of the regressor); run over a backfill range it judges each mixture of the range and records each "
    "mixture's own result.",
)
def proxy_loss_finite(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> None:
    storage = settings.storage()
    judged = {}
    for key in context.partition_keys:
        status = storage.read_json(layout.proxy_run(key))["status"]
        judged[key] = (status == "ok", True, {"status": status})
    record_per_partition(context, judged)
