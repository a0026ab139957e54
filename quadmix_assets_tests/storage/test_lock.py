"""One `quadmix run` per storage root: a second holder is refused with a message naming the first; a holder
killed with SIGKILL leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from quadmix_assets.storage import StorageRoot
from quadmix_assets.storage.lock import LOCK_NAME, RunLock, StorageLocked

HOLD = """
import sys, time
from quadmix_assets.storage import StorageRoot
from quadmix_assets.storage.lock import RunLock
RunLock(StorageRoot(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(root) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path):
    root = StorageRoot(str(tmp_path / "storage"))
    proc = _holder(tmp_path / "storage")
    try:
        with pytest.raises(StorageLocked, match=rf"in use by another quadmix run \(pid {proc.pid} on .*\); wait for it"):
            RunLock(root).acquire()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 10
    lock = RunLock(root)
    while True:  # the kernel drops the flock with the process
        try:
            lock.acquire()
            break
        except StorageLocked:
            assert time.time() < deadline, "the killed holder's lock was not released"
            time.sleep(0.1)
    try:
        with pytest.raises(StorageLocked):
            RunLock(root).acquire()
    finally:
        lock.release()
    with RunLock(root):  # released: free again, and the file no longer names a holder
        pass
    assert (tmp_path / "storage" / LOCK_NAME).read_bytes() == b""


def test_object_store_roots_are_not_locked():
    lock = RunLock(StorageRoot("memory://quadmix-lock-test"))
    assert not lock.supported
    lock.acquire()  # a no-op, and the caller warns
    lock.release()
