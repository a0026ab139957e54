"""Worker processes that die with their parent: every process pool of quadmix is made here, or its workers
call :func:`die_with_parent` first (the partition pool, :mod:`quadmix_assets.run_pool`).

Why: a ``ProcessPoolExecutor`` ends its workers on a clean shutdown, but a parent killed with SIGKILL (an
out-of-memory kill, ``kill -9``, a scheduler's hard stop) runs no shutdown, and its workers go on training
proxies or writing files for minutes with nobody to read their results (measured: two proxy workers
alive 2.5 minutes after ``kill -9`` of ``quadmix run``). With ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` Linux
kills each worker when its parent goes, however it goes; a pool inside a pool's worker dies in a chain.

The signal fires when the parent *thread* that started the worker ends, not only the process. A
``ProcessPoolExecutor`` starts a spawned worker from the thread that calls ``submit`` (Python 3.9+; the
manager thread starts one only to replace a worker that exits under ``max_tasks_per_child``, unused here).
Each pool here is made, used and shut down within one call, so its workers cannot outlive the thread;
a pool kept across calls must be used from the thread that made it, or from one that lives as long.

Elsewhere than Linux (no ``prctl``) nothing changes: the pool's own shutdown still ends its workers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from quadmix_assets import libc

__all__ = ["die_with_parent", "process_pool"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a worker process: be killed (SIGKILL) when the parent that started it ends. If the parent ended
    before this took effect, exit now. The parent is the one multiprocessing recorded when it started the
    worker, not "anything but pid 1": a worker reparented to a subreaper is caught, and a parent that *is*
    pid 1 (``quadmix run`` or a Dagster run worker as a container's first process) keeps its workers."""
    prctl = libc.function("prctl")
    if prctl is None:  # not Linux: the pool's shutdown still ends the workers
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        orphaned = os.getppid() != parent.pid
    else:  # not started by multiprocessing: init (or a subreaper) adopts an orphan
        orphaned = os.getppid() == 1
    if orphaned:
        os._exit(1)


def _init_worker(initializer: Callable[..., object] | None, initargs: tuple) -> None:
    die_with_parent()
    if initializer is not None:
        initializer(*initargs)


def process_pool(max_workers: int, *, initializer: Callable[..., object] | None = None,
                 initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``max_workers`` spawned workers (a fresh interpreter each: torch, DuckDB
    and Dagster state are not fork-safe) that die with this process (:func:`die_with_parent`), then run
    ``initializer(*initargs)``. Use it in a ``with`` block in the thread that submits the work."""
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(initializer, tuple(initargs)))
