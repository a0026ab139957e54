"""One writer per storage root: the lock ``quadmix run`` holds while it works.

A local root gets ``.quadmix-run.lock`` with an exclusive ``flock``: the kernel releases it when the holder
exits or is killed (``kill -9`` included), so a crash never leaves a stale lock, and the file's content
(host, pid, start time) only names the holder in the error message. A second ``quadmix run`` on the same
root refuses at once with :class:`StorageLocked` instead of removing the first one's temporary files and
writing the same outputs beside it. Object stores (``s3://``...) have no such lock; there the caller is told
that nothing is locked.
"""

from __future__ import annotations

import json
import os
import socket
import time

from quadmix_assets.storage.root import StorageRoot

LOCK_NAME = ".quadmix-run.lock"


class StorageLocked(RuntimeError):
    """Another process holds the storage root's lock."""


class RunLock:
    """Exclusive lock on a local storage root; ``acquire()`` raises :class:`StorageLocked` when taken."""

    def __init__(self, storage: StorageRoot, what: str = "quadmix run"):
        self.storage = storage
        self.what = what
        self.path = storage.path(LOCK_NAME) if storage.is_local else None
        self._fd: int | None = None

    @property
    def supported(self) -> bool:
        return self.path is not None

    def acquire(self) -> None:
        import fcntl

        if self.path is None or self._fd is not None:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StorageLocked(
                f"storage {self.storage.url} is in use by another {self.what} ({holder}); wait for it to finish, "
                "or use another --storage"
            ) from None
        info = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
