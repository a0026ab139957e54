"""One writer per storage root, whoever writes (issue: stored data is verified): every Dagster run that
writes under a root holds its lock for the run, unless it belongs to the ``quadmix run`` holding it. A run
from the UI, the daemon or ``dagster asset materialize`` is refused while a ``quadmix run`` works on the
root, naming it, and nothing is written; runs that are not ``quadmix run``'s take turns."""

from __future__ import annotations

import threading
import time

from dagster import Definitions, asset, define_asset_job

from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.storage import StorageRoot
from quadmix_assets.storage.lock import HOLDER_TAG, LOCK_NAME, RunLock


@asset
def victim(settings: QuadmixSettings) -> None:
    """Writes one file, and says whether the root's lock was held while it did."""
    storage = settings.storage()
    probe = RunLock(StorageRoot(settings.storage_root), what="probe")
    held = False
    try:
        probe.acquire()
        probe.release()
    except Exception:  # noqa: BLE001 - taken: by this run, as it should be
        held = True
    storage.write_json("victim.json", {"lock_held_while_writing": held})


def _job(root):
    settings = QuadmixSettings(corpus_glob=str(root / "corpus" / "*.jsonl"), storage_root=str(root / "storage"), data_dir=str(root))
    defs = Definitions(assets=[victim], jobs=[define_asset_job("victim_job", [victim])], resources={"settings": settings})
    return defs.resolve_job_def("victim_job")


def test_a_run_is_refused_while_quadmix_run_holds_the_root_and_nothing_is_written(tmp_path):
    job = _job(tmp_path)
    storage = StorageRoot(str(tmp_path / "storage"))
    runner = RunLock(storage, token="host:123:456")  # what `quadmix run` holds while it works
    runner.acquire()
    try:
        result = job.execute_in_process(raise_on_error=False)
        assert not result.success
        error = str(result.all_events)
        assert "is in use by another quadmix run" in error and "wait for it to finish" in error
        assert not storage.exists("victim.json")
        # the runner's own runs (tagged with its token) write under its lock
        result = job.execute_in_process(tags={HOLDER_TAG: "host:123:456"})
        assert result.success and storage.read_json("victim.json") == {"lock_held_while_writing": True}
    finally:
        runner.release()


def test_a_run_holds_the_root_while_it_writes_and_releases_it(tmp_path):
    job = _job(tmp_path)
    storage = StorageRoot(str(tmp_path / "storage"))
    assert job.execute_in_process().success
    assert storage.read_json("victim.json") == {"lock_held_while_writing": True}
    again = RunLock(storage)  # released when the run ended: a quadmix run can take it now
    again.acquire()
    again.release()
    assert (tmp_path / "storage" / LOCK_NAME).exists()


def test_runs_that_are_not_quadmix_run_take_turns(tmp_path, monkeypatch):
    monkeypatch.setenv("QUADMIX_LOCK_WAIT_S", "60")
    job = _job(tmp_path)
    storage = StorageRoot(str(tmp_path / "storage"))
    other = RunLock(storage, what="Dagster run 0badc0de", token="0badc0de")  # another run, e.g. the daemon's
    other.acquire()
    threading.Timer(1.5, other.release).start()
    t = time.monotonic()
    result = job.execute_in_process()
    assert result.success and time.monotonic() - t >= 1.0  # it waited for the other run, then wrote
    assert storage.read_json("victim.json") == {"lock_held_while_writing": True}
