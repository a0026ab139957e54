"""Resume for ``quadmix run``: which runs of a job it may skip because their outputs are already current.

A job's partition (or an unpartitioned job) is *current* when every asset the job materializes has

- a latest materialization, made by a ``quadmix run`` with the same settings (the run's
  ``quadmix/settings`` tag: a hash of every setting and of the resolved preset, which Dagster's code
  versions do not see) and, for a job that reads every shard (``fan_in``), over the same shard list
  (``quadmix/corpus``: Dagster sees a new shard as a new upstream partition, but not a removed one),
- for the export, the same export settings (:data:`EXPORT_FIELDS`: the export tokenizer), which the
  settings hash leaves out: the export's materialization records their own hash
  (:data:`EXPORT_SETTINGS_KEY`), so another export tokenizer makes the export alone not current,
- Dagster's stale status ``FRESH``: the same code version as now and the same input data versions as the
  current data versions of its parents (Dagster's own ``CachingStaleStatusResolver``, the one the UI's
  "stale" badge and ``stale_assets_only`` sensors use),
- for a partition, no failed or in-progress run since (Dagster's partition status),
- every file it wrote still the file it wrote: each materialization records the size and sha256 of every
  file its asset wrote under the storage root (``quadmix/files``, :mod:`quadmix_assets.dagster_support.file_records`);
  a file missing, of another size, or (hashed when it may have changed:
  :mod:`quadmix_assets.storage.records`) of other content makes the job not current, and the reason names
  the file. The instance says what was written; only the files say what is there now. A materialization
  made before files were recorded keeps the older check: its output file (the ``path`` metadata of a local
  storage root) still there. And
- whatever the caller adds (``extra``), asked last: the runner checks that a shard's documents were read
  from the corpus file's current bytes (its fingerprint), which no Dagster asset represents. A damaged
  stored documents file is reported as that file (above), never as a changed corpus file.

Everything else is redone. Nothing here writes: the decision is read from the instance and the files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from types import SimpleNamespace

from dagster import AssetKey, AssetPartitionStatus, AssetRecordsFilter, DagsterInstance, EnvVar
from dagster._core.definitions.data_version import CachingStaleStatusResolver, extract_data_version_from_entry

from quadmix_assets import __version__
from quadmix_assets.dagster_support.file_records import recorded_files
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.storage import StorageRoot, content_hash
from quadmix_assets.storage.records import find_damage

#: run tag naming the settings a run was made with (see :func:`settings_fingerprint`)
SETTINGS_TAG = "quadmix/settings"
#: run tag naming the corpus' shard list a run saw (see :func:`corpus_fingerprint`)
CORPUS_TAG = "quadmix/corpus"


def corpus_fingerprint(refs) -> str:
    """Hash of the corpus' shard keys and file names: a fan-in made over another set of shards (one added
    or removed) is not current. Content changes need no hash here: a changed shard's documents are redone
    and their new data version makes every fan-in over them stale."""
    return content_hash(sorted((r.key, r.name) for r in refs), length=24)


#: settings that say where things are, not what is computed: left out of the settings hash. Where the
#: outputs are is checked by their recorded files (under whichever root is checked), which shards by the
#: corpus hash and each shard's content fingerprint; so a storage root and instance copied or moved
#: elsewhere stay current, and a root lacking the files is redone
LOCATION_FIELDS = ("storage_root", "corpus_glob")

#: settings only the export reads: left out of the settings hash and hashed on their own
#: (:func:`export_fingerprint`), so changing them redoes the export and nothing else
EXPORT_FIELDS = ("export_tokenizer",)
#: the ``mixture_export`` materialization's metadata entry holding :func:`export_fingerprint` of its settings
EXPORT_SETTINGS_KEY = "quadmix/export_settings"
#: the asset whose materializations are checked against the export settings
EXPORT_ASSET = "mixture_export"


def settings_fingerprint(settings) -> str:
    """Hash of every field of the settings resource but its locations and the export's own settings, the
    resolved preset and the package version."""
    fields = {k: getattr(settings, k) for k in type(settings).model_fields
              if k not in LOCATION_FIELDS and k not in EXPORT_FIELDS}
    if not fields.get("criteria"):  # no per-criterion option set: the hash a run had before the field existed
        fields.pop("criteria", None)
    for key in ("objective", "judge"):  # likewise the user's objective and judge (docs/objective.md)
        if not fields.get(key):
            fields.pop(key, None)
        else:
            fields[key] = [e.model_dump() if hasattr(e, "model_dump") else dict(e) for e in fields[key]]
    preset = settings.run_preset().to_dict()  # flat: a criterion's preset options as <criterion>_<option>
    return content_hash({"settings": fields, "preset": preset, "quadmix": __version__}, length=24)


def export_fingerprint(settings) -> str:
    """Hash of the settings only the export reads (:data:`EXPORT_FIELDS`): the export's version input
    besides its code version and its parents' data versions. A tokenizer given by path is hashed by its
    name; a changed file under the same name is not seen (give it a new name, or ``--no-resume``)."""
    return content_hash({"export": {k: getattr(settings, k) for k in EXPORT_FIELDS}}, length=24)


class Reused:
    """Stands in for an ``execute_in_process`` result when a job is skipped: successful, no checks run,
    the materializations are the latest recorded ones (so callers read the same metadata)."""

    success = True
    skipped = True

    def __init__(self, records: Iterable):
        self._events = [SimpleNamespace(materialization=r.asset_materialization) for r in records]

    def get_asset_materialization_events(self):
        return self._events

    def get_asset_check_evaluations(self):
        return []


def definitions_storage(defs) -> StorageRoot | None:
    """The storage root of the definitions' ``settings`` resource when it names one (the runner's
    definitions, built from its settings); None where the location is read when a run starts (an
    ``EnvVar``), is refused by the deployment's policy, or there is no such resource."""
    settings = (getattr(defs, "resources", None) or {}).get("settings")
    root = getattr(settings, "storage_root", None)
    if not isinstance(settings, QuadmixSettings) or not isinstance(root, str) or isinstance(root, EnvVar):
        return None
    try:
        return settings.storage()
    except Exception:  # noqa: BLE001 - no storage to check: the older checks still apply
        return None


def definitions_export_hash(defs) -> str | None:
    """:func:`export_fingerprint` of the definitions' ``settings`` resource when it is one (the runner's
    definitions); None where there is none to read."""
    settings = (getattr(defs, "resources", None) or {}).get("settings")
    if not isinstance(settings, QuadmixSettings) or any(isinstance(getattr(settings, k), EnvVar) for k in EXPORT_FIELDS):
        return None
    return export_fingerprint(settings)


class MaterializationHistory:
    """Every materialization record of an asset, read from the instance once (in pages) the first time the
    asset is asked about, by partition and in storage order: the latest record of a partition, or the latest
    before or after an event, without a query each. A ``Currency`` asks these questions once per partition
    and per dependency of each partition it checks (hundreds of mixtures over tens of shards: thousands of
    single-row queries otherwise). Valid while nothing is materialized; a ``Currency`` is made per plan."""

    PAGE = 5000

    def __init__(self, instance: DagsterInstance):
        self.instance = instance
        self._by_partition: dict[AssetKey, dict[str | None, list]] = {}

    def _records(self, key: AssetKey) -> dict[str | None, list]:
        if key not in self._by_partition:
            by: dict[str | None, list] = {}
            cursor = None
            while True:
                result = self.instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=self.PAGE,
                                                              cursor=cursor, ascending=True)
                for record in result.records:
                    by.setdefault(record.asset_materialization.partition, []).append(record)
                if not result.has_more:
                    break
                cursor = result.cursor
            self._by_partition[key] = by
        return self._by_partition[key]

    def latest(self, key: AssetKey, partition: str | None, before: int | None = None, after: int | None = None):
        """The latest record of ``key`` (``partition``; any partition's when None) with a storage id below
        ``before`` and above ``after``, as ``instance.fetch_materializations(..., limit=1)`` gives it."""
        by = self._records(key)
        records = by.get(partition, []) if partition is not None else sorted(
            (r for rs in by.values() for r in rs), key=lambda r: r.storage_id)
        for record in reversed(records):
            if before is not None and record.storage_id >= before:
                continue
            if after is not None and record.storage_id <= after:
                break
            return record
        return None


class _HistoryStaleStatusResolver(CachingStaleStatusResolver):
    """Dagster's ``CachingStaleStatusResolver``, whose "was this dependency partition updated since"
    question is answered from a :class:`MaterializationHistory` (the same records, read once) instead of two
    queries per dependency partition; everything else is Dagster's own logic."""

    def __init__(self, history: MaterializationHistory, **kwargs):
        super().__init__(**kwargs)
        self._history = history

    def _get_latest_data_version_record(self, key):
        if self.asset_graph.get(key.asset_key).is_external:
            return super()._get_latest_data_version_record(key=key)
        return self._history.latest(key.asset_key, key.partition_key)

    def _is_dep_updated(self, provenance, dep_key) -> bool:
        dep_asset = self.asset_graph.get(dep_key.asset_key)
        if dep_key.partition_key is None or dep_asset.is_external:
            return super()._is_dep_updated(provenance, dep_key)
        # as CachingStaleStatusResolver._is_dep_updated (dagster 1.13), from the history
        cursor = provenance.input_storage_ids[dep_key.asset_key]
        updated = self._history.latest(dep_key.asset_key, dep_key.partition_key, after=cursor)
        if updated is None:
            return False
        previous = self._history.latest(dep_key.asset_key, dep_key.partition_key, before=cursor + 1 if cursor else None)
        previous_version = extract_data_version_from_entry(previous.event_log_entry) if previous else None
        return self._data_versions_differ(previous_version, extract_data_version_from_entry(updated.event_log_entry))


class Currency:
    """Decides per job (and partition) whether its outputs are current; one per stage of the runner.

    The stale-status resolver caches what it reads, so make a new ``Currency`` after running anything its
    answers depend on (the runner makes one per stage: a stage's partitions do not depend on each other).

    ``storage``: the storage root the recorded files are checked under (local or fsspec); default: the
    one the definitions' ``settings`` resource names (:func:`definitions_storage`). Without one, only the
    older ``path`` check is made.
    """

    def __init__(self, instance: DagsterInstance, defs, settings_hash: str, corpus_hash: str | None = None,
                 storage: StorageRoot | None = None, export_hash: str | None = None):
        from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
        from dagster._time import get_current_datetime

        self.instance = instance
        self.defs = defs
        self.settings_hash = settings_hash
        self.corpus_hash = corpus_hash
        # the export settings' hash (:func:`export_fingerprint`); None: the definitions' settings resource's
        self.export_hash = export_hash if export_hash is not None else definitions_export_hash(defs)
        self.storage = storage if storage is not None else definitions_storage(defs)
        graph = defs.resolve_asset_graph()
        self.graph = graph
        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
            instance=instance, asset_graph=graph,
        )
        self._history = MaterializationHistory(instance)
        self.resolver = _HistoryStaleStatusResolver(self._history, instance=instance, asset_graph=graph, loading_context=view)
        self._run_tags: dict[str, dict] = {}
        self._partition_status: dict[AssetKey, dict] = {}

    def job_assets(self, job_name: str) -> list[AssetKey]:
        keys = self.defs.resolve_job_def(job_name).asset_layer.selected_asset_keys
        return sorted(keys, key=lambda k: k.to_user_string())

    def _latest(self, key: AssetKey, partition: str | None):
        return self._history.latest(key, partition)

    def _status_of(self, key: AssetKey, partition: str, partitions_def) -> AssetPartitionStatus | None:
        """The partition's status (failed, in progress, materialized); read once per asset for every partition."""
        if key not in self._partition_status:
            keys = list(partitions_def.get_partition_keys(dynamic_partitions_store=self.instance))
            self._partition_status[key] = dict(self.instance.get_status_by_partition(key, keys, partitions_def) or {})
        return self._partition_status[key].get(partition)

    def _tags(self, run_id: str) -> dict:
        if run_id not in self._run_tags:
            run = self.instance.get_run_by_id(run_id)
            self._run_tags[run_id] = dict(run.tags) if run is not None else {}
        return self._run_tags[run_id]

    def check(self, job_name: str, partition: str | None = None,
              extra: Callable[[AssetKey, object], str | None] | None = None, fan_in: bool = True) -> tuple[str | None, list]:
        """``(None, records)`` when the job (partition) is current, with the latest materialization record of
        every asset it makes; else ``(why not, [])``. ``fan_in``: the job reads every shard (all but the
        per-shard jobs and the models), so it must have seen the same shard list."""
        from dagster._core.definitions.data_version import StaleStatus

        records = []
        for key in self.job_assets(job_name):
            name = key.to_user_string()
            record = self._latest(key, partition)
            if record is None:
                return f"{name} was never materialized", []
            tags = self._tags(record.run_id)
            if tags.get(SETTINGS_TAG) != self.settings_hash:
                return f"{name} was made with other settings (or outside quadmix run)", []
            if fan_in and self.corpus_hash is not None and tags.get(CORPUS_TAG) != self.corpus_hash:
                return f"{name} was made over another set of shards", []
            if name == EXPORT_ASSET and self.export_hash is not None:
                made_with = getattr(record.asset_materialization.metadata.get(EXPORT_SETTINGS_KEY), "value", None)
                if made_with != self.export_hash:
                    return f"{name} was made with other export settings (export tokenizer)", []
            status = self.resolver.get_status(key, partition)
            if status != StaleStatus.FRESH:
                causes = self.resolver.get_stale_causes(key, partition)
                why = "; ".join(f"{c.key.asset_key.to_user_string()} {c.reason}" for c in causes[:3]) or status.value
                return f"{name} is {status.value.lower()}: {why}", []
            node = self.graph.get(key)
            if partition is not None and node.partitions_def is not None:
                st = self._status_of(key, partition, node.partitions_def)
                if st in (AssetPartitionStatus.FAILED, AssetPartitionStatus.IN_PROGRESS):
                    return f"{name}'s latest run {st.value.lower().replace('_', ' ')}", []
            mat = record.asset_materialization
            if why := self._files_damaged(name, mat, record.timestamp):
                return why, []
            if extra is not None and (why := extra(key, mat)):
                return f"{name}: {why}", []
            records.append(record)
        return None, records

    def _files_damaged(self, name: str, mat, written_at: float) -> str | None:
        """Why the files this materialization wrote are not what it wrote (None: they are): every recorded
        file checked under the storage root; for a materialization without a record (made before files
        were recorded) or without a storage root to check, its local ``path`` must still exist."""
        files = recorded_files(mat.metadata)
        if files is not None and self.storage is not None:
            damage = find_damage(self.storage, files, written_at)
            return None if damage is None else f"{name}: stored file {damage[0]} {damage[1]}"
        path = getattr(mat.metadata.get("path"), "value", None)
        if isinstance(path, str) and "://" not in path and not os.path.exists(path):
            return f"{name}'s output {path} is gone"
        return None
