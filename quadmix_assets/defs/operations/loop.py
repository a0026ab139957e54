"""The loop in Dagster: the facts the loop's policy (:mod:`quadmix_assets.loop.policy`) decides on, read
from the instance and the storage root, and the ``quadmix_loop`` sensor that turns its decisions into runs.

``quadmix run`` and the sensor read the same facts and ask the same policy, so they take the same
decisions on the same inputs; they differ only in how a step is executed (``quadmix run``: in its own
process or worker processes; the sensor: through the instance's run launcher, so on Kubernetes every step
is a pod) and in how a failed partition is treated (``quadmix run`` retries what failed before it
started; the sensor leaves a failed partition out until a run of it succeeds, rather than retrying it
every tick).

The sensor requests the next step only when no run is queued or in progress in the instance (the loop
waits for the shard sensor's and the automation sensor's runs too, so two writers never work on the same
storage root at once), at most every ``QUADMIX_LOOP_INTERVAL`` seconds (default 30). The refresh policy
(``QUADMIX_REOPTIMISE``: ``share`` (default), ``always`` or ``never``; ``QUADMIX_REOPTIMISE_SHARE``, default
0.25) says when a corpus refresh retrains the proxies; see :class:`~quadmix_assets.loop.policy.RefreshPolicy`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from collections.abc import Callable

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from quadmix_assets.defs.operations.automation import (
    distill_job,
    export_job,
    mixture_job,
    models_job,
    noise_job,
    proxy_job,
    proxy_setup_job,
    refresh_job,
    regressor_job,
    rounds_job,
    search_job,
    shard_fast_job,
    shard_model_job,
)
from quadmix_assets.dagster_support.partitions import exports_partitions, mixtures_partitions, shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.loop.policy import SELECTED_AS_TAG, Finished, RefreshPolicy, State, Status, Step, next_step
from quadmix_assets.resume import CORPUS_TAG, SETTINGS_TAG, Currency, corpus_fingerprint, export_fingerprint, settings_fingerprint
from quadmix_assets.storage import layout

#: tag on every run the loop requests: the settings hash it was decided under
LOOP_TAG = "quadmix/loop"
LOOP_INTERVAL_S = int(os.environ.get("QUADMIX_LOOP_INTERVAL", "30"))
#: jobs whose outputs depend on one shard (or none), not on the corpus' shard list
PER_SHARD_JOBS = ("models_job", "shard_fast_job", "shard_model_job")
_IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
              DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
_PARTITIONS = {"shards": shards_partitions, "mixtures": mixtures_partitions, "exports": exports_partitions}
LOOP_JOBS = [models_job, shard_fast_job, distill_job, shard_model_job, refresh_job, mixture_job, proxy_setup_job,
             proxy_job, noise_job, regressor_job, rounds_job, search_job, export_job]


_FINGERPRINTS: dict[str, tuple[str, str]] = {}


def corpus_file_fingerprint(path: str) -> str:
    """The content hash of a corpus file, hashed again only when its size or mtime changed (the loop asks
    on every step and every sensor tick; a bulk `touch` costs one hash per file)."""
    import fsspec

    from quadmix_assets.corpus.shards import file_fingerprint

    fs, p = fsspec.core.url_to_fs(path)
    info = fs.info(p)
    stamp = f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or info.get('ETag') or ''}"
    cached = _FINGERPRINTS.get(path)
    if cached is None or cached[0] != stamp:
        cached = _FINGERPRINTS[path] = (stamp, file_fingerprint(path))
    return cached[1]


def refresh_policy(environ: dict | None = None, preset=None) -> RefreshPolicy:
    """The refresh policy from ``QUADMIX_REOPTIMISE`` / ``QUADMIX_REOPTIMISE_SHARE``, and the export margin
    from the run ``preset`` (its ``export_margin_noise``; the policy's default without a preset)."""
    e = os.environ if environ is None else environ
    mode = (e.get("QUADMIX_REOPTIMISE") or "share").strip().lower()
    if mode not in ("share", "always", "never"):
        raise ValueError(f"QUADMIX_REOPTIMISE={mode!r}: expected share, always or never")
    policy = RefreshPolicy(reoptimise=mode, reoptimise_new_share=float(e.get("QUADMIX_REOPTIMISE_SHARE") or 0.25))
    return policy if preset is None else replace(policy, export_margin_noise=preset.export_margin_noise)


class RepositoryDefs:
    """A code location's repository (as a sensor sees it) answering what :class:`Currency` asks of a
    ``Definitions`` object."""

    def __init__(self, repository):
        self.repository = repository

    def resolve_job_def(self, name: str):
        return self.repository.get_job(name)

    def resolve_asset_graph(self):
        return self.repository.asset_graph


class LoopFacts:
    """The facts of one storage root and instance, as the policy reads them (one snapshot: make a new one
    after running anything).

    ``failed``: ``(job, key) -> why`` of the runs to treat as failed (``quadmix run``: those that failed
    in this invocation); None treats a partition whose latest run failed, or a one-run job whose latest
    run failed, as failed (the sensor). ``fresh``: the ``(job, key)`` made in this invocation; with
    ``resume=False`` nothing else counts as current."""

    def __init__(self, instance, defs, settings: QuadmixSettings, *, failed: dict | None = None,
                 resume: bool = True, fresh: set | None = None):
        self.instance, self.defs, self.settings = instance, defs, settings
        self.storage = settings.storage()
        self.preset = settings.run_preset()
        self.search_rounds = int(self.preset.search_rounds)
        self.refs = settings.shards()
        self.settings_hash = settings_fingerprint(settings)
        self.corpus_hash = corpus_fingerprint(self.refs)
        # the recorded files are checked under this root: damaged or missing outputs are redone
        self.currency = Currency(instance, defs, self.settings_hash, self.corpus_hash, storage=self.storage,
                                 export_hash=export_fingerprint(settings))
        self._failed, self._resume, self._fresh = failed, resume, fresh if fresh is not None else set()
        self._status: dict = {}
        self._records: dict = {}
        self._cache: dict = {}

    # --- the run tags that make a run's outputs count as current for these settings -----------------
    def run_tags(self) -> dict[str, str]:
        return {SETTINGS_TAG: self.settings_hash, CORPUS_TAG: self.corpus_hash, LOOP_TAG: self.settings_hash}

    # --- Facts -------------------------------------------------------------------------------------
    def shards(self) -> list[str]:
        return [r.key for r in self.refs]

    def _extra(self, job: str, key: str | None) -> Callable | None:
        """A shard's fast scores are current only if its documents were read from the corpus file's
        current bytes (no Dagster asset represents the file)."""
        if job not in ("shard_fast_job",) or key is None:
            return None
        path = {r.key: r.path for r in self.refs}.get(key)

        def same_corpus_file(asset_key: AssetKey, mat) -> str | None:
            if asset_key.path[-1] != "documents" or path is None:
                return None
            recorded = getattr(mat.metadata.get("fingerprint"), "value", None)
            return None if recorded == corpus_file_fingerprint(path) else "the corpus file changed since it was read"
        return same_corpus_file

    def status(self, job: str, key: str | None = None) -> Status:
        if (job, key) not in self._status:
            self._status[(job, key)] = self._read_status(job, key)
        return self._status[(job, key)]

    def _read_status(self, job: str, key: str | None) -> Status:
        if self._failed is not None and (job, key) in self._failed:
            return Status(State.FAILED, self._failed[(job, key)])
        if not self._resume and (job, key) not in self._fresh:
            return Status(State.MISSING, "--no-resume")
        if self._failed is None and key is None and (why := self._latest_run_failed(job)):
            return Status(State.FAILED, why)
        why, records = self.currency.check(job, key, self._extra(job, key), fan_in=job not in PER_SHARD_JOBS)
        if why is None:
            self._records[(job, key)] = records
            return Status(State.CURRENT)
        if "latest run failed" in why and self._failed is None:
            return Status(State.FAILED, why)
        if " is stale" in why or "another set of shards" in why:
            return Status(State.STALE, why)
        return Status(State.MISSING, why)

    def stale_because(self, job: str) -> list[tuple[str, str | None]]:
        """Why Dagster's own stale-status resolver (the UI's "stale" badge) sees an asset of the one-run
        ``job`` as stale: per cause, the dependency and its partition (``("proxy_run", "<mixture>")``), or
        the cause's reason and None for one that names no dependency (a new code version). Empty: fresh."""
        from dagster._core.definitions.data_version import StaleStatus

        resolver = self.currency.resolver
        causes: list[tuple[str, str | None]] = []
        for key in self.currency.job_assets(job):
            if resolver.get_status(key) != StaleStatus.STALE:
                continue
            for cause in resolver.get_stale_causes(key):
                dep = cause.dependency
                causes.append((dep.asset_key.to_user_string(), dep.partition_key) if dep is not None else (cause.reason, None))
        return causes

    def records(self, job: str, key: str | None = None) -> list:
        """The latest materialization records of a current job (partition): what its outputs said."""
        return self._records.get((job, key), []) if self.status(job, key).current else []

    def failures(self) -> dict:
        """``(job, key) -> why`` of the runs treated as failed (``quadmix run``: in this invocation)."""
        return dict(self._failed or {})

    def _latest_run_failed(self, job: str) -> str | None:
        runs = self.instance.get_runs(filters=RunsFilter(job_name=job, tags={LOOP_TAG: self.settings_hash}), limit=1)
        if runs and runs[0].status == DagsterRunStatus.FAILURE:
            return f"its latest run {runs[0].run_id[:8]} failed"
        return None

    def _memo(self, name: str, fn):
        if name not in self._cache:
            self._cache[name] = fn()
        return self._cache[name]

    def mixtures(self) -> list[str]:
        from quadmix_assets.mixing.store import all_spec_dicts

        if not self.storage.exists(layout.mixture_configs()):
            return []
        return self._memo("mixtures", lambda: [d["mixture_id"] for d in all_spec_dicts(self.storage)])

    def last_round(self) -> int:
        from quadmix_assets.mixing.store import last_round

        return last_round(self.storage) if self.storage.exists(layout.mixture_configs()) else 0

    def _training(self):
        from quadmix_assets.proxy.optimise import training_set

        return self._memo("training", lambda: training_set(self.storage))

    def training_ids(self) -> list[str]:
        return [s.mixture_id for s in self._training().specs]

    def _json(self, rel: str) -> dict | None:
        return self._memo(rel, lambda: self.storage.read_json(rel) if self.storage.exists(rel) else None)

    def regressor(self) -> dict | None:
        return self._json(layout.regressor_report())

    def rounds_decision(self) -> dict | None:
        return self._json(layout.rounds_decision())

    def search_result(self) -> dict | None:
        return self._json(layout.search_result())

    def proxy_loss(self, mixture_id: str) -> float | None:
        from quadmix_assets.proxy.runs import stored_loss

        return stored_loss(self.storage, mixture_id)

    def best_measured(self) -> tuple[str | None, float | None]:
        import numpy as np

        ts = self._training()
        if not len(ts.y):
            return None, None
        i = int(np.argmin(ts.y))
        return ts.specs[i].mixture_id, float(ts.y[i])

    def noise_sd(self) -> float | None:
        noise = self._json(layout.proxy_noise()) or {}
        return noise.get("noise_sd")

    def previous_export(self) -> tuple[str, str] | None:
        """The latest export's mixture and why it was selected (current or not)."""
        records = self.instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey("mixture_export")), limit=1).records
        if not records:
            return None
        mat = records[0].asset_materialization
        selected = getattr(mat.metadata.get("selected_as"), "value", None)
        return (mat.partition, selected) if mat.partition and selected else None

    def new_share(self) -> float:
        """Share of the scored documents in shards the latest export was not drawn from (1.0: no export)."""
        prev = self.previous_export()
        if prev is None:
            return 1.0
        rel = f"{layout.export_dir(prev[0])}/manifest.json"
        seen = set((self.storage.read_json(rel).get("inputs") or {}).get("documents") or {}) if self.storage.exists(rel) else set()
        rows = {k: self.storage.parquet_rows(layout.documents(k)) for k in self.shards() if self.storage.exists(layout.documents(k))}
        total = sum(rows.values())
        return sum(n for k, n in rows.items() if k not in seen) / total if total else 0.0

    def exported_as(self, mixture_id: str) -> str | None:
        st = self.status("export_job", mixture_id)
        if not st.current:
            return None
        prev = self.previous_export()
        return prev[1] if prev is not None and prev[0] == mixture_id else None


def plan(facts: LoopFacts, policy: RefreshPolicy | None = None) -> Step | Finished:
    """The loop's next step on these facts (:func:`~quadmix_assets.loop.policy.next_step`)."""
    return next_step(facts, policy or refresh_policy(preset=facts.preset))


def plan_runs(ordered: list[str], todo: list[str], size: int, workers: int) -> list[list[str]]:
    """The Dagster runs for the partitions ``todo``: ranges of consecutive keys in the instance's order
    ``ordered``, at most ``size`` per run and no more than an equal share per worker, so every worker
    gets a run."""
    if not todo:
        return []
    per_run = max(1, min(size, -(-len(todo) // max(1, workers))))
    wanted, known = set(todo), set(ordered)
    out, cur = [], []
    for key in ordered:
        if key in wanted and len(cur) < per_run:
            cur.append(key)
            continue
        if cur:
            out.append(cur)
        cur = [key] if key in wanted else []
    if cur:
        out.append(cur)
    return out + [[k] for k in todo if k not in known]  # a key the instance does not know: Dagster's error names it


def step_runs(step: Step, ordered: list[str], workers: int = 1) -> list[list[str | None]]:
    """The Dagster runs of a step: the one run of an unpartitioned job, one run per partition, or for a
    step with ``group > 1`` ranges of consecutive partitions (:func:`plan_runs`)."""
    if not step.partitioned:
        return [[None]]
    if step.group <= 1:
        return [[k] for k in step.keys]
    return plan_runs(ordered, list(step.keys), step.group, workers)


def partition_run_args(partitions: str | list | tuple | None) -> tuple[str | None, dict]:
    """``(partition_key, tags)`` of one run: one key as the run's partition, several consecutive keys (in
    the instance's order) as a backfill-style run over their range."""
    if partitions is None or isinstance(partitions, str):
        return partitions, {}
    keys = list(partitions)
    if len(keys) == 1:
        return keys[0], {}
    return None, {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


def add_step_partitions(instance, step: Step) -> None:
    from quadmix_assets.dagster_support.partitions import add_partitions

    for name, keys in step.add_partitions.items():
        add_partitions(instance, _PARTITIONS[name], keys)


@sensor(
    name="quadmix_loop",
    jobs=LOOP_JOBS,
    minimum_interval_seconds=LOOP_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="The optimisation loop (quadmix_assets/loop/policy.py): models, shards, distillation, normaliser, "
    "mixtures, proxies, noise, search rounds, search and export, each requested when the one before it is done "
    "and no run is queued or in progress; the same decisions `quadmix run` takes. After a corpus refresh the "
    "exported mixture is redrawn and exported again; proxies are retrained as QUADMIX_REOPTIMISE says.",
)
def loop_sensor(context: SensorEvaluationContext, settings: QuadmixSettings):
    from quadmix_assets.proxy.parallel import default_workers

    busy = context.instance.get_runs(filters=RunsFilter(statuses=_IN_FLIGHT), limit=1)
    if busy:
        return SkipReason(f"waiting for run {busy[0].run_id[:8]} ({busy[0].job_name}) to finish")
    facts = LoopFacts(context.instance, RepositoryDefs(context.repository_def), settings)
    new_shards = [k for k in facts.shards() if k not in set(context.instance.get_dynamic_partitions(shards_partitions.name))]
    if new_shards:
        context.instance.add_dynamic_partitions(shards_partitions.name, new_shards)
    step = plan(facts)
    if isinstance(step, Finished):
        what = f"exported {step.export} ({step.selected_as})" if step.export else f"stopped: {step.stopped}"
        return SkipReason(f"the loop is finished: {what}")
    add_step_partitions(context.instance, step)
    ordered = list(context.instance.get_dynamic_partitions(mixtures_partitions.name))
    requests = []
    for keys in step_runs(step, ordered, workers=1 if step.job == "proxy_job" else default_workers()):
        partition, range_tags = partition_run_args(keys)
        requests.append(RunRequest(job_name=step.job, partition_key=partition,
                                   tags={**facts.run_tags(), **step.tags, **range_tags}))
    context.log.info(f"loop: {step.stage} -> {step.job} x {len(requests)} run(s) {step.why}")
    return SensorResult(run_requests=requests)
