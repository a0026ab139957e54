"""Every file an asset writes under the storage root, recorded in its own materialization.

The record is one metadata entry, ``quadmix/files``: relative path -> ``{"size": ..., "sha256": ...}``
(:class:`quadmix_assets.storage.records.FileRecord`), from which a resumed run tells a damaged file from a
current one (:mod:`quadmix_assets.resume`). No asset does anything for it: :meth:`QuadmixSettings.storage`
hands every asset step a :class:`~quadmix_assets.storage.StorageRoot` that reports each file it has put in
place to the step's :class:`StepFiles`, which adds it to the step's materialization metadata at once
(whichever ``StorageRoot`` of the step wrote it, and from any thread). Outside an asset step (the CLI, a
sensor, an asset check) nothing is recorded.

A run over several partitions (a backfill range of mixtures: ``proxy_run``, ``mixture_scores``,
``mixture_manifest``) gives each partition its own record: a file belongs to the partition whose key is one
of the folders of its path (the layout puts every per-mixture file under ``mixtures/<id>/`` or
``proxies/<id>/``); a file naming none of them belongs to every partition of the run.

Each addition copies the record so far (Dagster checks a JSON value by copying it), which is quadratic in
the files of one materialization: 3 s for 2,000 files. An asset writing hundreds of files (the normaliser,
one rank file per shard) says so with :func:`files_recorded_at_end`, and its record is added once.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dagster import AssetExecutionContext, DagsterInvariantViolationError, MetadataValue

from quadmix_assets.dagster_support.partition_metadata import add_partition_metadata
from quadmix_assets.storage.records import FileRecord

#: the metadata entry holding a materialization's written files
FILES_KEY = "quadmix/files"

F = TypeVar("F", bound=Callable[..., Any])


class StepFiles:
    """The files one asset step has written, by partition of its run; see the module docstring."""

    def __init__(self, context: AssetExecutionContext):
        self.context = context
        self.lock = threading.Lock()
        self.deferred = False
        self.common: dict[str, dict] = {}  # files of the run as a whole (every partition's)
        self.own: dict[str, dict[str, dict]] = {}  # partition -> its own files, in a run over several
        self.partitions: frozenset[str] = self._run_partitions(context)

    @staticmethod
    def _run_partitions(context: AssetExecutionContext) -> frozenset[str]:
        """The partition keys of a run over several (read once: each read loads every dynamic partition)."""
        if not context.has_partition_key_range:
            return frozenset()
        keys = context.partition_key_range
        return frozenset() if keys.start == keys.end else frozenset(context.partition_keys)

    def partition_of(self, relpath: str) -> str | None:
        """The run's partition whose key is a folder of ``relpath`` (None: the run's, or no partitions)."""
        if not self.partitions:
            return None
        named = self.partitions.intersection(relpath.split("/")[:-1])
        return next(iter(named)) if len(named) == 1 else None

    def record(self, relpath: str, size: int, sha256: str, shared: bool = False) -> None:
        """A file now in place (a :class:`~quadmix_assets.storage.StorageRoot` ``on_write`` callback)."""
        entry = FileRecord(size=size, sha256=sha256, shared=shared).to_json()
        with self.lock:
            partition = self.partition_of(relpath)
            if partition is None:
                self.common[relpath] = entry
                for files in self.own.values():  # a partition's own entry replaces the run's: keep it whole
                    files.pop(relpath, None)
            else:
                self.own.setdefault(partition, {})[relpath] = entry
            if not self.deferred:
                self._emit(None if partition is None else [partition])

    def flush(self) -> None:
        """Put the whole record into the step's metadata now."""
        with self.lock:
            self._emit(None)

    def _emit(self, partitions: list[str] | None) -> None:
        """Add the record to the metadata: of ``partitions`` only, or (None) of the run and of every
        partition with files of its own."""
        if partitions is None:
            if self.common or not self.own:
                self.context.add_asset_metadata({FILES_KEY: MetadataValue.json(self.common)})
            partitions = list(self.own)
        for key in partitions:
            add_partition_metadata(self.context, {FILES_KEY: MetadataValue.json(self.common | self.own[key])}, key)


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STEPS_LOCK = threading.Lock()


def step_files() -> StepFiles | None:
    """The record of the asset step running in this thread (one per step, made on first use); None
    outside an asset step (a sensor, an asset check, the CLI, a test calling library code)."""
    try:
        context = AssetExecutionContext.get()
    except DagsterInvariantViolationError:
        return None
    if not getattr(context, "has_assets_def", False):
        return None
    step = context.get_step_execution_context()
    with _STEPS_LOCK:
        files = _STEPS.get(step)
        if files is None:
            files = _STEPS[step] = StepFiles(context)
        return files


def files_recorded_at_end(fn: F) -> F:
    """For an asset writing hundreds of files: its record goes into the metadata once, when it returns,
    instead of after every write (see the module docstring). Put it under ``@asset``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        files = step_files()
        if files is None:
            return fn(*args, **kwargs)
        files.deferred = True
        try:
            return fn(*args, **kwargs)
        finally:
            files.deferred = False
            files.flush()

    return wrapper  # type: ignore[return-value]


def recorded_files(metadata: Mapping[str, Any]) -> dict[str, FileRecord] | None:
    """The files a materialization recorded (its metadata), or None for one made before they were."""
    value = getattr(metadata.get(FILES_KEY), "value", None)
    if not isinstance(value, Mapping):
        return None
    return {rel: FileRecord.from_json(doc) for rel, doc in value.items()}
