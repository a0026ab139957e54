"""Corpus refreshes: the automation conditions (the nightly refresh among them) and the shard sensor,
over a copy of the demo run's state (storage and instance copied to tmp; the shared demo run is never
written).

The conditions are evaluated with ``dagster.evaluate_automation_conditions`` tick by tick (the cursor
carried between ticks, as the daemon does; the refresh's cron tick is reached by evaluating at a later
time); the last test runs the acceptance check for real: a third shard dropped into the corpus folder
while ``dagster dev`` runs is labelled and scored, and the next refresh refits the normaliser and
automation re-draws every mixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from quadmix_assets_tests.pipeline.conftest import evaluate_sensor
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunsFilter,
    evaluate_automation_conditions,
)

from quadmix_assets import definitions as qdefs
from quadmix_assets.defs.operations.automation import shard_sensor
from quadmix_assets.dagster_support.partitions import mixtures_partitions, shards_partitions

from .conftest import CORPUS, make_settings

REPO = Path(__file__).resolve().parents[2]
NEW_SHARD = "shard-00002"
NORMALISER = AssetKey("quality_normaliser")


def copy_demo(demo_run, dest: Path):
    """An independent copy of the demo run: corpus folder, storage root and instance home."""
    settings, instance, _, _ = demo_run
    shutil.copytree(Path(settings.corpus_glob).parent, dest / "corpus")
    shutil.copytree(settings.storage_root, dest / "storage")
    shutil.copytree(instance.root_directory, dest / "home")
    return make_settings(str(dest / "corpus" / "*.jsonl.gz"), dest / "storage"), dest / "home"


@pytest.fixture
def state(demo_run, tmp_path):
    """(settings, instance, defs) over a fresh copy of the demo run."""
    settings, home = copy_demo(demo_run, tmp_path)
    instance = DagsterInstance.local_temp(str(home))
    yield settings, instance, qdefs.build_definitions(settings)
    instance.dispose()


def requested(result) -> dict[str, set]:
    """asset name -> requested partition keys (None for an unpartitioned asset), non-empty only."""
    out = {}
    for r in result.results:
        if isinstance(r.key, AssetKey) and result.get_num_requested(r.key):
            out[r.key.to_user_string()] = set(result.get_requested_partitions(r.key))
    return out


def with_code_version(defs_settings, name: str, version: str) -> Definitions:
    """The definitions with one asset's code version changed (as a new release of its code would)."""
    assets = [
        a.map_asset_specs(lambda s: s.replace_attributes(code_version=version)) if a.key.to_user_string() == name else a
        for a in qdefs.ASSETS
    ]
    return Definitions(assets=assets, resources={"settings": defs_settings})


def mixture_keys(instance) -> set[str]:
    return set(instance.get_dynamic_partitions(mixtures_partitions.name))


def run_job(defs, instance, job: str, **kw):
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kw)
    assert result.success, job
    return result


def test_nothing_is_requested_when_nothing_changed(state):
    """Starting the daemon over a finished run requests nothing, on the first tick or later ones."""
    settings, instance, defs = state
    result = evaluate_automation_conditions(defs=defs, instance=instance)
    assert requested(result) == {}
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert requested(result) == {}


def test_a_refitted_normaliser_rescores_every_mixture_and_trains_no_proxy(state):
    settings, instance, defs = state
    cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor
    run_job(defs, instance, "refresh_job", asset_selection=[NORMALISER])  # what the refresh schedule runs
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    mixtures = mixture_keys(instance)
    assert len(mixtures) >= 5
    # scores and manifest of every mixture; nothing expensive (proxies, regressor, search, export, models)
    assert requested(result) == {"mixture_scores": mixtures, "mixture_manifest": mixtures}
    # requested once: the next tick does not ask again
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert requested(result) == {}


def test_a_new_code_version_reruns_that_asset_and_what_it_feeds_cheaply(state):
    settings, instance, defs = state
    cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor  # records the code versions
    result = evaluate_automation_conditions(
        defs=with_code_version(settings, "mixture_manifest", "mixture-manifest-v999"), instance=instance, cursor=cursor
    )
    assert requested(result) == {"mixture_manifest": mixture_keys(instance)}

    result = evaluate_automation_conditions(
        defs=with_code_version(settings, "quality_heuristic", "quality-heuristic-v999"), instance=instance, cursor=cursor
    )
    shards = set(instance.get_dynamic_partitions(shards_partitions.name))
    # every shard re-scored (the criteria evaluation follows once the new scores land, as after a new
    # shard; the mixtures wait for the normaliser's refresh)
    assert requested(result) == {"quality_heuristic": shards}


def next_refresh(after: datetime) -> datetime:
    """A minute past a tick of the refresh cron (03:00 UTC) that comes after ``after``."""
    return (after + timedelta(days=1)).replace(hour=3, minute=1, second=0, microsecond=0)


def test_refresh_at_the_cron_tick_runs_only_what_is_stale(state):
    settings, instance, defs = state
    now = datetime.now(timezone.utc)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)  # the daemon starts
    t = next_refresh(now)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t, cursor=result.cursor)
    assert requested(result) == {}  # the refresh tick, nothing stale

    # new shard data, while a run writing another shard is in flight: wait (a refit now would leave its shard out)
    instance.report_runless_asset_event(AssetMaterialization("quality_heuristic", partition="shard-00000"))
    run = instance.create_run_for_job(
        job_def=defs.resolve_job_def("shard_job"), tags={"dagster/partition": "shard-00001"}, status=DagsterRunStatus.STARTED
    )
    t = next_refresh(t)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t, cursor=result.cursor)
    assert requested(result) == {}
    instance.delete_run(run.run_id)
    # between ticks the stale normaliser waits for the cron (the criteria evaluation, automation's own, goes now)
    t += timedelta(minutes=1)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t, cursor=result.cursor)
    assert requested(result) == {"criteria_evaluation": {None}}
    # the next tick: the normaliser, once; the configs are not stale
    t = next_refresh(t)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t, cursor=result.cursor)
    assert requested(result) == {"quality_normaliser": {None}}
    t += timedelta(minutes=1)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t, cursor=result.cursor)
    assert requested(result) == {}

    # a new code version of the configs makes them stale: refitted at the next tick, not before
    newer = with_code_version(settings, "mixture_configs", "mixture-configs-v999")
    t += timedelta(minutes=1)
    result = evaluate_automation_conditions(defs=newer, instance=instance, evaluation_time=t, cursor=result.cursor)
    assert requested(result) == {}
    t = next_refresh(t)
    result = evaluate_automation_conditions(defs=newer, instance=instance, evaluation_time=t, cursor=result.cursor)
    assert requested(result) == {"mixture_configs": {None}}


def test_new_shard_in_process_labelled_scored_then_refresh_rescores_mixtures(state):
    """The acceptance chain, tick by tick in-process: sensor -> shard_job -> automation (criteria only)
    -> the refresh tick (normaliser only) -> automation (every mixture)."""
    settings, instance, defs = state
    cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor
    shutil.copy(CORPUS / f"{NEW_SHARD}.jsonl.gz", Path(settings.corpus_glob).parent / f"{NEW_SHARD}.jsonl.gz")

    sensor_result = evaluate_sensor(shard_sensor, instance=instance, resources={"settings": settings})
    assert [r.partition_key for r in sensor_result.run_requests] == [NEW_SHARD]
    instance.add_dynamic_partitions(shards_partitions.name, [NEW_SHARD])
    # a partition added, its run not finished yet: automation leaves the new shard to the sensor's run
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert requested(result) == {}
    run_job(defs, instance, "shard_job", partition_key=NEW_SHARD)

    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert requested(result) == {"criteria_evaluation": {None}}  # mixtures wait for the normaliser

    t = next_refresh(datetime.now(timezone.utc))
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t, cursor=result.cursor)
    assert requested(result) == {"quality_normaliser": {None}}
    run_job(defs, instance, "refresh_job", asset_selection=[NORMALISER])
    md = instance.fetch_materializations(AssetRecordsFilter(asset_key=NORMALISER), limit=1).records[0].asset_materialization.metadata
    assert md["shards"].value == 3

    t += timedelta(minutes=1)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t, cursor=result.cursor)
    mixtures = mixture_keys(instance)
    assert requested(result) == {"mixture_scores": mixtures, "mixture_manifest": mixtures}


# --- the acceptance check, for real: `dagster dev` over a copy of the demo run -----------------------

E2E_BUDGET_S = 900  # the whole wait, after the server is up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _wait(what: str, check, deadline: float, log_path: Path, every: float = 2.0):
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
    pytest.fail(f"timed out waiting for {what}; dagster dev log tail:\n{tail}")


def _by_loop(instance, record) -> bool:
    """The materialization was made by a run the ``quadmix_loop`` sensor requested."""
    tags = instance.get_run_by_id(record.event_log_entry.run_id).tags
    return tags.get("dagster/sensor_name") == "quadmix_loop" and "quadmix/loop" in tags


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (webserver, daemon, code server, runs); SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def test_a_shard_dropped_into_the_corpus_under_dagster_dev_is_scored_refreshed_and_exported(demo_run, tmp_path):
    """With `dagster dev` running and no other action: the ``quadmix_loop`` sensor finds a new shard file,
    labels and scores it, refits the normaliser over 3 shards, redraws every mixture and exports the
    exported mixture again from the refreshed corpus; with ``QUADMIX_REOPTIMISE=never`` no proxy is
    trained (the refresh policy's cheap path)."""
    settings, home = copy_demo(demo_run, tmp_path)
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 2\n"
    )
    corpus = Path(settings.corpus_glob).parent
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "QUADMIX_CORPUS": settings.corpus_glob,
        "QUADMIX_STORAGE": settings.storage_root,
        "QUADMIX_DATA_DIR": settings.data_dir,
        "QUADMIX_PRESET": "test",
        "QUADMIX_EXECUTOR": "in_process",  # one process per run, not per step: 2 cores
        "QUADMIX_LOOP_INTERVAL": "5",
        "QUADMIX_REOPTIMISE": "never",
        "TQDM_DISABLE": "1",
    }
    env.pop("QUADMIX_CONFIGS", None)
    log_path = tmp_path / "dagster_dev.log"
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    instance = None
    try:
        _wait("the webserver", lambda: proc.poll() is None and _server_up(port), time.time() + 240, log_path)
        instance = DagsterInstance.local_temp(str(home))
        proxies_before = len(instance.fetch_materializations(AssetKey("proxy_run"), limit=1000).records)
        normaliser_before = instance.fetch_materializations(NORMALISER, limit=1).records[0].storage_id
        exported = instance.get_dynamic_partitions("exports")
        # the only action: a new shard file appears in the corpus folder (renamed into place, as a
        # finished upload or `mv` does)
        part = corpus / f".{NEW_SHARD}.part"
        shutil.copy(CORPUS / f"{NEW_SHARD}.jsonl.gz", part)
        os.replace(part, corpus / f"{NEW_SHARD}.jsonl.gz")
        t0 = time.time()
        deadline = t0 + E2E_BUDGET_S
        marks = {"server_up_s": round(t0 - started)}

        _wait("the shards partition", lambda: NEW_SHARD in instance.get_dynamic_partitions(shards_partitions.name), deadline, log_path)
        marks["partition_s"] = round(time.time() - t0)

        def scored():
            failed = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
            if failed:
                pytest.fail(f"run {failed[0].dagster_run.job_name} failed:\n{log_path.read_text(errors='replace')[-4000:]}")
            return all(instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[NEW_SHARD]),
                                                       limit=1).records
                       for name in ("documents", "domain_labels", "quality_dclm", "quality_heuristic", "quality_langid",
                                    "quality_edu", "quality_askllm"))

        _wait(f"{NEW_SHARD} to be labelled and scored", scored, deadline, log_path)
        marks["shard_scored_s"] = round(time.time() - t0)

        def refitted():
            records = instance.fetch_materializations(AssetRecordsFilter(asset_key=NORMALISER, after_storage_id=normaliser_before), limit=5).records
            return next((r for r in records if r.asset_materialization.metadata["shards"].value == 3), None)

        normaliser = _wait("the loop to refit the normaliser over 3 shards", refitted, deadline, log_path)
        marks["normaliser_s"] = round(time.time() - t0)
        assert _by_loop(instance, normaliser)

        mixtures = mixture_keys(instance)

        def redrawn():
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey("mixture_manifest"), after_storage_id=normaliser.storage_id), limit=1000
            ).records
            return records if {r.partition_key for r in records} >= mixtures else None

        manifests = _wait(f"the loop to redraw all {len(mixtures)} mixtures", redrawn, deadline, log_path, every=5)
        marks["mixtures_s"] = round(time.time() - t0)
        assert all(_by_loop(instance, r) for r in manifests)

        def re_exported():
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey("mixture_export"), after_storage_id=normaliser.storage_id), limit=5
            ).records
            return records[0] if records else None

        export = _wait("the loop to export the refreshed mixture", re_exported, deadline, log_path, every=5)
        marks["export_s"] = round(time.time() - t0)
        assert _by_loop(instance, export) and export.partition_key in exported
        doc = settings.storage().read_json(f"exports/{export.partition_key}/manifest.json")
        assert NEW_SHARD in doc["inputs"]["documents"]  # drawn from the refreshed corpus
        # the cheap path: no proxy trained, and the loop says it is finished
        assert len(instance.fetch_materializations(AssetKey("proxy_run"), limit=1000).records) == proxies_before
        print(f"dagster dev acceptance timings: {marks}")
    finally:
        if instance is not None:
            instance.dispose()
        _stop(proc)
