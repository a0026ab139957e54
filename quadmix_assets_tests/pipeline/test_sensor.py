"""The shard sensor: new files become partitions and runs; unchanged files do not; changed content does."""

from __future__ import annotations

import gzip
import json

from dagster import DagsterInstance, build_sensor_context

from quadmix_assets.defs.automation import shard_sensor
from quadmix_assets.defs.resources import QuadmixSettings


def _write(path, docs):
    with gzip.open(path, "wt") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")


def test_sensor_adds_new_and_changed_shards(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write(corpus / "a.jsonl.gz", [{"id": "1", "text": "one"}])
    settings = QuadmixSettings.from_env(corpus_glob=str(corpus / "*.jsonl.gz"), storage_root=str(tmp_path / "s"))
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(instance=instance, resources={"settings": settings})
        result = shard_sensor(ctx)
        assert [r.partition_key for r in result.run_requests] == ["a"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["a"]
        instance.add_dynamic_partitions("shards", ["a"])
        cursor = result.cursor

        # nothing new: skip
        ctx = build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
        skipped = shard_sensor(ctx)
        assert not skipped.run_requests and skipped.skip_reason is not None

        # a new file and a changed one
        _write(corpus / "b.jsonl.gz", [{"id": "2", "text": "two"}])
        _write(corpus / "a.jsonl.gz", [{"id": "1", "text": "one, edited"}])
        ctx = build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
        result = shard_sensor(ctx)
        assert sorted(r.partition_key for r in result.run_requests) == ["a", "b"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["b"]


def test_sensor_trusts_the_event_log_for_shards_already_materialized(demo_run):
    """After `quadmix run`, a first sensor tick (empty cursor) requests nothing for unchanged shards."""
    settings, instance, summary, _ = demo_run
    ctx = build_sensor_context(instance=instance, resources={"settings": settings})
    result = shard_sensor(ctx)
    assert not result.run_requests and result.skip_reason is not None, result
    assert set(json.loads(result.cursor)) == {"shard-00000", "shard-00001"}  # hashes remembered
