"""The shard sensor: new files become partitions and runs; unchanged files do not; changed content does."""

from __future__ import annotations

import gzip
import json

from quadmix_assets_tests.pipeline.conftest import evaluate_sensor
from dagster import DagsterInstance

from quadmix_assets.defs.operations.automation import shard_sensor
from quadmix_assets.dagster_support.resources import QuadmixSettings


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
        result = evaluate_sensor(shard_sensor, instance=instance, resources={"settings": settings})
        assert [r.partition_key for r in result.run_requests] == ["a"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["a"]
        instance.add_dynamic_partitions("shards", ["a"])
        cursor = result.cursor

        # nothing new: skip
        skipped = evaluate_sensor(shard_sensor, instance=instance, cursor=cursor, resources={"settings": settings})
        assert not skipped.run_requests and skipped.skip_reason is not None

        # a new file and a changed one
        _write(corpus / "b.jsonl.gz", [{"id": "2", "text": "two"}])
        _write(corpus / "a.jsonl.gz", [{"id": "1", "text": "one, edited"}])
        result = evaluate_sensor(shard_sensor, instance=instance, cursor=cursor, resources={"settings": settings})
        assert sorted(r.partition_key for r in result.run_requests) == ["a", "b"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["b"]


def test_sensor_trusts_the_event_log_for_shards_already_materialized(demo_run):
    """After `quadmix run`, a first sensor tick (empty cursor) requests nothing for unchanged shards."""
    settings, instance, summary, _ = demo_run
    result = evaluate_sensor(shard_sensor, instance=instance, resources={"settings": settings})
    assert not result.run_requests and result.skip_reason is not None, result
    assert set(json.loads(result.cursor)) == {"shard-00000", "shard-00001"}  # hashes remembered


def test_sensor_bounds_work_per_tick_and_a_replayed_tick_is_idempotent(tmp_path, monkeypatch):
    """At most MAX_SHARDS_PER_TICK runs per tick, the rest on the next; a tick evaluated again from the
    same cursor (the daemon restarted before committing it) asks for the same run keys, which Dagster
    deduplicates; a touched file with unchanged content is not run again."""
    import os

    from quadmix_assets.defs.operations import automation

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a", "b", "c"):
        _write(corpus / f"{name}.jsonl.gz", [{"id": name, "text": f"text {name}"}])
    settings = QuadmixSettings.from_env(corpus_glob=str(corpus / "*.jsonl.gz"), storage_root=str(tmp_path / "s"))
    monkeypatch.setattr(automation, "MAX_SHARDS_PER_TICK", 2)
    with DagsterInstance.ephemeral() as instance:
        def tick(cursor=None):
            return evaluate_sensor(shard_sensor, instance=instance, cursor=cursor, resources={"settings": settings})

        first = tick()
        assert [r.partition_key for r in first.run_requests] == ["a", "b"]
        replay = tick()
        assert [r.run_key for r in replay.run_requests] == [r.run_key for r in first.run_requests]
        instance.add_dynamic_partitions("shards", ["a", "b"])
        second = tick(first.cursor)
        assert [r.partition_key for r in second.run_requests] == ["c"]
        instance.add_dynamic_partitions("shards", ["c"])

        st = os.stat(corpus / "a.jsonl.gz")
        os.utime(corpus / "a.jsonl.gz", (st.st_atime + 10, st.st_mtime + 10))  # touched, same bytes
        third = tick(second.cursor)
        assert not third.run_requests and third.skip_reason is not None
