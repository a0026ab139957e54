"""One writer per storage root: the lock ``quadmix run`` holds while it works, and every run that writes.

A local root gets ``.quadmix-run.lock`` with an exclusive ``flock``: the kernel releases it when the holder
exits or is killed (``kill -9`` included), so a crash never leaves a stale lock, and the file's content
(host, pid, start time) only names the holder in the error message. A second ``quadmix run`` on the same
root refuses at once with :class:`StorageLocked` instead of removing the first one's temporary files and
writing the same outputs beside it. An object store (``s3://``...) has no ``flock``: there the lock is a lease
object, ``.quadmix-lease.json``, created only if absent (S3's conditional ``If-None-Match: *`` write), naming
its holder and an expiry that the holder renews every third of ``QUADMIX_LEASE_TTL_S`` (default 120 s); a
lease whose holder stopped renewing (killed) expires and is taken over (:class:`ObjectLease`).

Every Dagster run that writes under the root takes the same lock for its duration (:func:`writer_lease`,
from the settings resource), unless it belongs to the holder: ``quadmix run`` tags the runs it executes
with its token (:data:`HOLDER_TAG`), so its own runs and worker processes write while it holds the lock,
and nobody else does. A run from the UI, the daemon or ``dagster asset materialize`` is refused at once
while a ``quadmix run`` holds the root, naming it; while another run holds it, it waits (runs the
daemon launches side by side take turns).
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

    def __init__(self, storage: StorageRoot, what: str = "quadmix run", token: str = ""):
        self.storage = storage
        self.what = what
        self.token = token
        self.path = storage.path(LOCK_NAME) if storage.is_local else None
        self._fd: int | None = None
        self._lease = None if storage.is_local else ObjectLease(storage, what, token)

    @property
    def supported(self) -> bool:
        return True

    def acquire(self, wait_s: float = 0.0, allow: str | None = None) -> bool:
        if self._lease is not None:
            return self._lease.acquire(wait_s, allow)
        return self._acquire_flock(wait_s, allow)

    def _acquire_flock(self, wait_s: float = 0.0, allow: str | None = None) -> bool:
        """Take the lock (True); raise :class:`StorageLocked` naming the holder when it is taken. ``allow``:
        a holder token for which a taken lock is no refusal (False: held by that holder, not taken here).
        ``wait_s``: how long to wait while another *run* holds it (a ``quadmix run`` is refused at once)."""
        import fcntl

        if self.path is None or self._fd is not None:
            return False
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                info = _holder_info(fd)
                if allow and info.get("token") == allow:
                    os.close(fd)
                    return False
                if info.get("what") == "quadmix run" or time.monotonic() >= deadline:
                    os.close(fd)
                    raise StorageLocked(
                        f"storage {self.storage.url} is in use by {_who(info)} ({_describe(info)}); "
                        "wait for it to finish, or use another --storage"
                    ) from None
                time.sleep(0.5)
        info = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "what": self.what, "token": self.token,
                           "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        if self._lease is not None:
            self._lease.release()
            return
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


LEASE_NAME = ".quadmix-lease.json"
#: seconds a lease lives without renewal (``QUADMIX_LEASE_TTL_S``); its holder renews it every third of that
LEASE_TTL_S = 120.0


class ObjectLease:
    """The storage lock on an object store: a lease object created only where none exists (atomic on S3:
    ``If-None-Match: *``), naming its holder, renewed by a thread of the holder until released. A lease
    past its expiry, or held by a process of this host that is gone, is deleted and taken over."""

    def __init__(self, storage: StorageRoot, what: str, token: str):
        import threading

        self.storage, self.what, self.token = storage, what, token
        self.path = storage.path(LEASE_NAME)
        self.ttl = float(os.environ.get("QUADMIX_LEASE_TTL_S") or LEASE_TTL_S)
        self._held = False
        self._stop = threading.Event()
        self._thread = None

    def _body(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "what": self.what, "token": self.token,
                           "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "expires": time.time() + self.ttl}).encode()

    def _read(self) -> dict:
        try:
            return json.loads(self.storage.fs.cat_file(self.path).decode() or "{}")
        except FileNotFoundError:
            return {}
        except ValueError:  # a torn or foreign object: treat as expired
            return {"expires": 0}

    def _gone(self, info: dict) -> bool:
        """The holder stopped renewing (expired), or is a process of this host that no longer runs."""
        if float(info.get("expires") or 0) < time.time():
            return True
        if info.get("host") == socket.gethostname() and info.get("pid"):
            try:
                os.kill(int(info["pid"]), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, ValueError):
                pass
        return False

    def acquire(self, wait_s: float = 0.0, allow: str | None = None) -> bool:
        if self._held:
            return False
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.storage.fs.pipe_file(self.path, self._body(), mode="create")
                break
            except FileExistsError:
                pass
            except OSError as exc:  # S3: 412 Precondition Failed when the object appeared meanwhile
                if "412" not in str(exc) and "PreconditionFailed" not in str(exc):
                    raise
            info = self._read()
            if not info:
                continue  # released between the two calls
            if allow and info.get("token") == allow:
                return False
            if self._gone(info):
                self.storage.fs.rm_file(self.path)
                continue
            if info.get("what") == "quadmix run" or time.monotonic() >= deadline:
                expires = time.strftime("%H:%M:%SZ", time.gmtime(float(info.get("expires") or 0)))
                raise StorageLocked(f"storage {self.storage.url} is in use by {_who(info)} ({_describe(info)}; its lease "
                                    f"expires at {expires} unless renewed); wait for it to finish, or use another --storage")
            time.sleep(0.5)
        self._held = True
        self._start_renewing()
        return True

    def _start_renewing(self) -> None:
        import threading

        self._stop.clear()

        def renew() -> None:
            while not self._stop.wait(self.ttl / 3):
                try:
                    self.storage.fs.pipe_file(self.path, self._body())
                except Exception:  # noqa: BLE001 - a missed renewal; the next one may succeed before expiry
                    continue

        self._thread = threading.Thread(target=renew, name="quadmix-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._read().get("token") == self.token:
            self.storage.fs.rm_file(self.path)


def _holder_info(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _who(info: dict) -> str:
    what = info.get("what") or "another writer"
    return f"another {what}" if what == "quadmix run" else what


def _describe(info: dict) -> str:
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"


#: run tag: the token of the ``quadmix run`` whose lock a run writes under
HOLDER_TAG = "quadmix/storage_holder"
#: how long a run waits for another run's lock, in seconds (``QUADMIX_LOCK_WAIT_S``)
LOCK_WAIT_S = 3600.0


def writer_lease(storage: StorageRoot, run_tags: dict | None, run_id: str = "") -> RunLock | None:
    """The lock a run must hold to write under ``storage``: None when its ``quadmix run`` holds it (the
    run's :data:`HOLDER_TAG` names the holder) or the root cannot be locked; else the lock, taken (the
    caller releases it when the run ends). Raises :class:`StorageLocked` when a ``quadmix run`` holds it,
    or another run held it for longer than ``QUADMIX_LOCK_WAIT_S`` (default :data:`LOCK_WAIT_S`)."""
    lock = RunLock(storage, what=f"Dagster run {run_id[:8]}".strip(), token=run_id)
    if not lock.supported:
        return None
    wait_s = float(os.environ.get("QUADMIX_LOCK_WAIT_S") or LOCK_WAIT_S)
    return lock if lock.acquire(wait_s=wait_s, allow=(run_tags or {}).get(HOLDER_TAG)) else None
