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


def test_an_object_store_root_is_locked_by_a_lease_its_holder_renews(monkeypatch):
    import json
    import time

    from quadmix_assets.storage.lock import LEASE_NAME

    monkeypatch.setenv("QUADMIX_LEASE_TTL_S", "0.6")
    root = StorageRoot("memory://quadmix-lease-test/a")
    first = RunLock(root, token="host:1:1")
    assert first.supported and first.acquire()
    try:
        time.sleep(1.5)  # past two lifetimes: renewed by its holder, so still held
        with pytest.raises(StorageLocked, match=r"in use by another quadmix run \(pid \d+ on .*lease expires at"):
            RunLock(root, what="Dagster run 0badc0de").acquire(wait_s=0.5)
        assert RunLock(root).acquire(allow="host:1:1") is False  # the holder's own runs write under it
    finally:
        first.release()
    assert not root.exists(LEASE_NAME)  # released: gone
    second = RunLock(root, token="t2")
    assert second.acquire()
    second.release()


def test_a_lease_whose_holder_stopped_renewing_is_taken_over():
    import json
    import socket
    import time

    from quadmix_assets.storage.lock import LEASE_NAME

    root = StorageRoot("memory://quadmix-lease-test/b")
    expired = {"host": "elsewhere", "pid": 1, "what": "quadmix run", "token": "old", "expires": time.time() - 1}
    root.fs.pipe_file(root.path(LEASE_NAME), json.dumps(expired).encode())
    lock = RunLock(root, token="new")
    assert lock.acquire()  # the killed holder's lease had expired
    lock.release()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive_but_gone = {"host": socket.gethostname(), "pid": dead.pid, "what": "quadmix run", "token": "old",
                      "expires": time.time() + 600}
    root.fs.pipe_file(root.path(LEASE_NAME), json.dumps(alive_but_gone).encode())
    lock = RunLock(root, token="new")
    assert lock.acquire()  # a holder of this host that no longer runs: taken over at once
    lock.release()
