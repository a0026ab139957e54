"""Partitions of one stage side by side: a pool of worker processes, each opening the runner's Dagster
instance (by its :class:`~dagster._core.instance.ref.InstanceRef`) and executing one partition run at a time
with ``execute_in_process``, as the runner does in its own process.

Why processes and not Dagster's multiprocess executor: that executor runs the *steps* of one run in
parallel, while the runner's stages are many one-partition runs of a one- or two-step job (a shard's
scores, a mixture's scores and manifest). Each run stays a run of its own (the UI, lineage, resume and a
failure that stays with its partition are unchanged); only where it executes changes.

What a worker returns (:class:`Outcome`) reads like an ``execute_in_process`` result for the runner:
``success``, the materializations and the check evaluations, plus the failure message already written
(the events it is written from stay in the worker). Workers are spawned, not forked (the instance and
its storage connections are not fork-safe), keep the parent's thread settings (so scores are computed
with the same thread counts as in one process, and come out the same bytes), and die with the parent
(``PR_SET_PDEATHSIG``): a killed ``quadmix run`` leaves no worker writing behind it. A worker imports the
code location afresh, so a criterion must be registered at import (as the registry's own are), not by the
calling process at run time; run with ``jobs=1`` otherwise.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from quadmix_assets.run_support import QUIET, RUNNER_TAG, failure_message, process_token
from quadmix_assets.worker_pool import die_with_parent as _die_with_parent

__all__ = ["Outcome", "PartitionPool"]

_WORKER: dict = {}


@dataclass
class Outcome:
    """One partition run done in a worker, shaped like the parts of a run result the runner reads."""

    success: bool
    failure: str = ""
    materializations: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    seconds: float = 0.0

    run_of: int = 1  # partitions in the Dagster run this came from

    @classmethod
    def of(cls, result, seconds: float) -> Outcome:
        """The parts the runner reads of an ``execute_in_process`` result."""
        return cls(
            success=result.success,
            failure="" if result.success else failure_message(result),
            materializations=[e.materialization for e in result.get_asset_materialization_events()],
            checks=list(result.get_asset_check_evaluations()),
            seconds=seconds,
        )

    def partition(self, key: str, run_of: int) -> Outcome:
        """This outcome as seen by one partition of its run: its own materializations (the run's checks
        are counted once, for the run)."""
        return Outcome(self.success, self.failure, [m for m in self.materializations if m.partition == key], [],
                       self.seconds, run_of)

    def get_asset_materialization_events(self):
        from types import SimpleNamespace

        return [SimpleNamespace(materialization=m) for m in self.materializations]

    def get_asset_check_evaluations(self):
        return list(self.checks)


def _init_worker(fields: dict, instance_ref, tags: dict, verbose: bool) -> None:
    _die_with_parent()
    os.environ.setdefault("TQDM_DISABLE", "1")
    from dagster import DagsterInstance

    from quadmix_assets import errors
    from quadmix_assets.definitions import build_definitions
    from quadmix_assets.dagster_support.resources import QuadmixSettings

    errors.set_verbose(verbose)
    _WORKER["instance"] = DagsterInstance.from_ref(instance_ref)
    _WORKER["defs"] = build_definitions(QuadmixSettings(**fields))
    # the worker's own token: a run of a worker that outlives a killed runner is not mistaken for a dead one
    _WORKER["tags"] = {**tags, RUNNER_TAG: process_token(os.getpid())}


def _ready() -> int:
    return os.getpid()


def _run_partition(job_name: str, partitions: str | Sequence[str] | None) -> Outcome:
    from quadmix_assets.defs.operations.loop import partition_run_args

    t = time.perf_counter()
    try:
        job = _WORKER["defs"].resolve_job_def(job_name)
        key, tags = partition_run_args(partitions)
        result = job.execute_in_process(
            instance=_WORKER["instance"], partition_key=key, raise_on_error=False, run_config=QUIET,
            tags={**_WORKER["tags"], **tags},
        )
    except Exception as exc:  # noqa: BLE001 - reported as this partition's failure, like a failed step
        return Outcome(False, f"the run could not start: {type(exc).__name__}: {exc}", seconds=time.perf_counter() - t)
    return Outcome.of(result, time.perf_counter() - t)


class PartitionPool:
    """Worker processes for one ``quadmix run``; started on the first :meth:`map`, ended by :meth:`close`."""

    def __init__(self, settings, instance, tags: dict, jobs: int):
        self.settings, self.instance, self.tags, self.jobs = settings, instance, dict(tags), int(jobs)
        self._pool: ProcessPoolExecutor | None = None

    def fields(self) -> dict:
        """The settings as plain values (a Dagster resource object does not survive pickling)."""
        return {name: getattr(self.settings, name) for name in type(self.settings).model_fields}

    @property
    def usable(self) -> bool:
        """More than one job, and an instance other processes can open (not an in-memory one)."""
        return self.jobs > 1 and not self.instance.is_ephemeral

    def _executor(self) -> ProcessPoolExecutor:
        from quadmix_assets import errors

        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                initargs=(self.fields(), self.instance.get_ref(), self.tags, errors.verbose()),
            )
        return self._pool

    def start(self) -> None:
        """Start every worker now (spawn, imports, code location) and wait until each has."""
        pool = self._executor()
        for future in [pool.submit(_ready) for _ in range(self.jobs)]:
            future.result()

    def map(self, job_name: str, keys: Sequence[str | Sequence[str]]) -> Iterator[tuple[str | Sequence[str], Outcome]]:
        """Run ``job_name`` for every partition key (or every run of consecutive keys, one Dagster run over
        their range); yields ``(key, outcome)`` in the order of ``keys``."""
        pool = self._executor()
        futures: list[tuple[str, Future]] = [(k, pool.submit(_run_partition, job_name, k)) for k in keys]
        try:
            for key, future in futures:
                try:
                    yield key, future.result()
                except Exception as exc:  # noqa: BLE001 - a worker that died (killed, out of memory)
                    yield key, Outcome(False, f"its worker process failed: {type(exc).__name__}: {exc}")
        finally:
            for _, future in futures:
                future.cancel()

    def __enter__(self) -> PartitionPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
