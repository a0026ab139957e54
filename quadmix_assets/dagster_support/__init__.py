"""Dagster-aware helpers that are not assets, used by the asset modules under ``quadmix_assets/defs/``:
the settings resource (``resources``), pod tags and pools (``k8s``), partitions, provenance, table and
file metadata (``table_metadata``, ``file_records``, ``partition_metadata``), which shards a fan-in may
use (``current``), automation conditions (``conditions``), the per-shard attribute step
(``shard_attributes``), per-partition check results (``check_results``) and stored models (``models``).

Nothing here defines an asset, a check, a job or a sensor: the defs folder loader never looks here.
"""
