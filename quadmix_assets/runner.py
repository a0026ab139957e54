"""Materialize the whole graph in-process, stage by stage, into a persistent Dagster instance.

Stages: models -> every shard (documents, domain labels, quality scores) -> normaliser, criteria
evaluation and mixture configs -> every mixture (scores, manifest). Each shard and each mixture is one
run of its partitioned job, so a bad shard fails alone and the others go on; the UI shows every run.
The partitions of a stage run ``jobs`` at a time in worker processes (:mod:`quadmix_assets.run_pool`;
default: one per core), reported in partition order.

Resume (on unless ``resume=False``, ``quadmix run --no-resume``): a job, or a job's partition, whose outputs
are current (:mod:`quadmix_assets.resume`: same settings, Dagster's stale status FRESH, no failed run since)
is skipped and its recorded metadata reused, so a run started again after a crash redoes only what was not
finished. Only one ``quadmix run`` works on a storage root at a time (:mod:`quadmix_assets.storage.lock`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import DagsterInstance

from quadmix_assets.defs.partitions import add_partitions, exports_partitions, shards_partitions
from quadmix_assets.defs.mixtures import MIXTURE_BATCH
from quadmix_assets.defs.proxies import MAX_GROUP as MAX_PROXY_RUN
from quadmix_assets.corpus.shards import file_fingerprint
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.definitions import build_definitions
from quadmix_assets.resume import CORPUS_TAG, SETTINGS_TAG, Currency, Reused, corpus_fingerprint, settings_fingerprint
from quadmix_assets.scoring.criteria import teacher_criteria
from quadmix_assets.storage import StorageNotWritable, layout
from quadmix_assets.storage.lock import RunLock, StorageLocked


# Dagster's console logger at WARNING: warnings (quarantined records, left-out shards) and errors show,
# per-step debug lines do not; every event is still in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


#: tag on every run ``quadmix run`` executes: "host:pid:process start", to tell a killed run from a live one
RUNNER_TAG = "quadmix/runner"
_UNFINISHED = ("NOT_STARTED", "STARTING", "STARTED")


@dataclass
class RunSummary:
    shards_ok: list[str] = field(default_factory=list)
    shards_failed: dict[str, str] = field(default_factory=dict)
    shards_left_out: dict[str, str] = field(default_factory=dict)  # shard -> why a fan-in did not use it
    stages_failed: dict[str, str] = field(default_factory=dict)  # stage -> message (the run stopped there)
    stale_runs_failed: list[str] = field(default_factory=list)  # run ids of killed runs marked failed at start
    temp_files_removed: int = 0
    mixtures_ok: list[str] = field(default_factory=list)
    mixtures_failed: dict[str, str] = field(default_factory=dict)
    checks_run: int = 0
    checks_failed: list[str] = field(default_factory=list)  # "check[partition]: severity"
    proxies_ok: list[str] = field(default_factory=list)
    proxies_failed: dict[str, str] = field(default_factory=dict)
    regressor: dict = field(default_factory=dict)  # regressor metadata (spearman_heldout, cv_spearman, ...)
    optimum: str | None = None  # mixture id of the search result
    optimum_blocked: str | None = None  # why the search did not promote an optimum
    optimum_rank: dict = field(default_factory=dict)  # the optimum's measured rank among all measured configs
    export: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)  # job -> [runs skipped as current, runs considered] (resume)
    seconds: float = 0.0

    @property
    def partial(self) -> bool:
        """Something failed or was left out (a shard, a mixture, a proxy, a stage)."""
        return bool(self.shards_failed or self.shards_left_out or self.mixtures_failed or self.proxies_failed
                    or self.stages_failed)

    @property
    def ok(self) -> bool:
        """Everything succeeded: every shard used, every mixture and stage done."""
        return bool(self.mixtures_ok) and not self.partial

    def exit_code(self, allow_partial: bool = False) -> int:
        """0 when everything succeeded; with ``allow_partial`` also when some mixture was made despite
        failures; else 1."""
        if self.ok or (allow_partial and self.mixtures_ok and not self.stages_failed):
            return 0
        return 1

    def failure_lines(self) -> list[str]:
        """One user-facing line per failure (what, where, why)."""
        out = [f"stage {k} FAILED: {v}" for k, v in self.stages_failed.items()]
        out += [f"shard {k} FAILED: {v}" for k, v in self.shards_failed.items()]
        out += [f"shard {k} LEFT OUT: {v}" for k, v in self.shards_left_out.items() if k not in self.shards_failed]
        out += [f"mixture {k} FAILED: {v}" for k, v in self.mixtures_failed.items()]
        out += [f"proxy {k} FAILED: {v}" for k, v in self.proxies_failed.items()]
        if not self.mixtures_ok and not self.stages_failed:
            out.append("no mixture was made")
        return out


def _error_text(error) -> str:
    return error.message.strip().splitlines()[0] if error is not None and error.message.strip() else ""


def _failure_message(result) -> str:
    """Why the first failed step failed and what to do, in plain language (:mod:`quadmix_assets.errors`): a
    ``Failure``'s description, else the user code's outermost exception under Dagster's wrappers (a
    ``ShardError`` naming the file, not the zlib error it was raised from); with ``--verbose`` also the
    exception class and the stack. A run done in a worker (:class:`~quadmix_assets.run_pool.Outcome`)
    brings its message written there."""
    from quadmix_assets import errors

    if getattr(result, "failure", ""):
        return result.failure

    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            user = getattr(data, "user_failure_data", None) if data else None
            if user is not None and getattr(user, "description", None):
                return user.description.strip().splitlines()[0]
            error = data.error if data else None
            while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause  # Dagster's wrappers around the user code's exception
            if error is None:
                return errors.plain(None, "a step failed without an error message", ())
            text = errors.explain_error(error.cls_name, error.message)
            if errors.verbose() and error.stack:
                text += "\n" + "".join(error.stack).rstrip()
            return text
    for event in result.all_events:  # a run that failed before any step (a resource refusing its config, a key)
        error = getattr(event.event_specific_data, "error", None) if event.is_failure else None
        while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
            error = error.cause
        if error is not None and error.message.strip():
            return "the run failed before any step ran: " + errors.explain_error(error.cls_name, error.message)
    return errors.plain(None, "the run failed before any step ran", ())


def _process_token(pid: int) -> str:
    """``host:pid:start`` of a process (start = its start time in clock ticks on Linux, else empty)."""
    start = ""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            start = f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        pass
    return f"{socket.gethostname()}:{pid}:{start}"


def _alive(token: str) -> bool | None:
    """Whether the runner process named by ``token`` still runs (None: another host, cannot tell)."""
    try:
        host, pid, start = token.rsplit(":", 2)
        pid_i = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid_i, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _process_token(pid_i) == token


def fail_killed_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed the runs a killed ``quadmix run`` left unfinished (STARTED forever otherwise), so their
    partitions show as failed, not in progress. Runs of live processes and of other launchers are left."""
    from dagster import DagsterRunStatus, RunsFilter

    statuses = [DagsterRunStatus[s] for s in _UNFINISHED]
    marked = []
    for run in instance.get_runs(filters=RunsFilter(statuses=statuses)):
        token = run.tags.get(RUNNER_TAG)
        if token and _alive(token) is False:
            instance.report_run_failed(run, message=f"the quadmix run process ({token}) was killed before this run finished")
            marked.append(run.run_id)
    return marked


def partition_run_args(partitions: str | list[str] | tuple | None) -> tuple[str | None, dict]:
    """``(partition_key, tags)`` for ``execute_in_process``: one key as Dagster's partition, several
    consecutive keys (in the instance's order) as a backfill-style run over their range."""
    if partitions is None or isinstance(partitions, str):
        return partitions, {}
    keys = list(partitions)
    if len(keys) == 1:
        return keys[0], {}
    return None, {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


def _metadata(result, asset_name: str) -> dict:
    for mat in result.get_asset_materialization_events():
        m = mat.materialization
        if m.asset_key.path[-1] == asset_name:
            return {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return {}


#: jobs whose outputs depend on one shard (or none), not on the corpus' shard list
PER_SHARD_JOBS = ("models_job", "shard_fast_job", "shard_model_job")


class _StageFailed(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage, self.message = stage, message


def _left_out(md: dict) -> dict[str, str]:
    value = md.get("shards_left_out")
    value = getattr(value, "data", value)
    return dict(value) if isinstance(value, dict) else {}


def run_pipeline(
    settings: QuadmixSettings,
    instance: DagsterInstance,
    log: Callable[[str], None] = lambda s: print(s, flush=True),
    resume: bool = True,
    jobs: int | None = None,
) -> RunSummary:
    """Materialize the whole graph; never raises for a failed shard, mixture or stage: the summary says
    what failed (``summary.failure_lines()``) and ``summary.exit_code()`` what ``quadmix run`` returns.
    With ``resume`` (the default) jobs and partitions whose outputs are current are skipped. ``jobs``:
    partitions of a stage run at once (default: one per core; 1 runs everything in this process)."""
    from quadmix_assets.proxy.parallel import default_workers

    summary = RunSummary()
    start = time.perf_counter()
    lock = RunLock(settings.storage())
    try:
        with contextlib.ExitStack() as stack:
            _run(settings, instance, summary, log, lock, resume, default_workers() if jobs is None else max(1, int(jobs)), stack)
    except _StageFailed as exc:
        summary.stages_failed[exc.stage] = exc.message
        log(f"[{exc.stage}] FAILED: {exc.message}")
    finally:
        lock.release()
    summary.seconds = time.perf_counter() - start
    if resume and summary.skipped:
        log("resume: skipped as current " + ", ".join(f"{job} {n}/{of}" for job, (n, of) in summary.skipped.items()))
    log(
        f"done in {summary.seconds:.0f}s: {len(summary.shards_ok)} shard(s) ok, {len(summary.shards_failed)} failed"
        + (f", {len(summary.shards_left_out)} left out" if summary.shards_left_out else "")
        + f"; {len(summary.mixtures_ok)} mixture(s) ok, {len(summary.mixtures_failed)} failed; "
        f"{summary.checks_run - len(summary.checks_failed)}/{summary.checks_run} asset checks passed"
        + (f" ({sum(f.endswith('WARN') for f in summary.checks_failed)} warnings, see the UI)" if summary.checks_failed else "")
        + (f"; optimum {summary.optimum} exported to {summary.export.get('path')}" if summary.export else "")
    )
    sys.stdout.flush()
    return summary


def distilled_students() -> list[tuple[str, str]]:
    """(criterion, student asset) of every teacher criterion in the registry: what the distill stage
    (``distill_job``) trains and reports, in registry order."""
    return [(c.name, c.student) for c in teacher_criteria()]


def _run(settings: QuadmixSettings, instance: DagsterInstance, summary: RunSummary, log, lock: RunLock,
         resume: bool, jobs: int, stack: contextlib.ExitStack) -> None:
    from quadmix_assets.run_pool import PartitionPool

    os.environ.setdefault("TQDM_DISABLE", "1")  # model loaders' progress bars; the runner prints progress
    storage = settings.storage()
    try:  # before any work: a read-only or full storage is reported now, not after minutes of training
        storage.check_writable()
    except StorageNotWritable as exc:
        raise _StageFailed("storage", str(exc)) from exc
    try:  # before touching anything: another run's temporary files are not leftovers
        lock.acquire()
    except StorageLocked as exc:
        raise _StageFailed("storage", str(exc)) from exc
    if not lock.supported:
        log(f"quadmix: warning: {storage.url} cannot be locked; run one quadmix run at a time on it")
    removed = storage.clean_temp()
    summary.temp_files_removed = len(removed)
    if removed:
        log(f"quadmix: removed {len(removed)} leftover temporary file(s) of interrupted writes under {storage.url}")
    summary.stale_runs_failed = fail_killed_runs(instance)
    if summary.stale_runs_failed:
        log(f"quadmix: marked {len(summary.stale_runs_failed)} run(s) of a killed quadmix run as failed")
    settings_hash = settings_fingerprint(settings)
    defs = build_definitions(settings)
    refs = settings.shards()
    corpus_hash = corpus_fingerprint(refs)
    runner_tags = {RUNNER_TAG: _process_token(os.getpid()), SETTINGS_TAG: settings_hash, CORPUS_TAG: corpus_hash}
    known = set(instance.get_dynamic_partitions(shards_partitions.name))
    new = [r.key for r in refs if r.key not in known]
    if new:
        instance.add_dynamic_partitions(shards_partitions.name, new)
    preset = settings.run_preset()
    log(f"quadmix: {len(refs)} shard(s) from {settings.corpus_glob}")
    log(f"         storage {settings.storage_root}, preset {preset.name} (K={preset.n_configs}), instance {instance.root_directory}")

    def count_checks(result, partition_key: str | None) -> None:
        for evaluation in result.get_asset_check_evaluations():
            summary.checks_run += 1
            if not evaluation.passed:
                where = f"[{partition_key}]" if partition_key else ""
                severity = evaluation.severity.value
                summary.checks_failed.append(f"{evaluation.check_name}{where}: {severity}")
                if severity == "ERROR":
                    metadata = {k: getattr(v, "value", getattr(v, "data", v)) for k, v in evaluation.metadata.items()}
                    log(f"  check {evaluation.check_name}{where} FAILED: {metadata}")

    def execute(job_name: str, partition_key: str | None = None, tags: dict | None = None, count: bool = True):
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            instance=instance, partition_key=partition_key, raise_on_error=False, run_config=QUIET,
            tags={**runner_tags, **(tags or {})},
        )
        if count:
            count_checks(result, partition_key)
        return result

    def currency() -> Currency | None:
        """What is current now (one per stage: the resolver caches what it reads)."""
        return Currency(instance, defs, settings_hash, corpus_hash) if resume else None

    def reuse(job_name: str, partition_key: str | None, current: Currency | None, extra) -> Reused | None:
        """When resuming and the job's (partition's) outputs are current: their records, else None."""
        if not resume:
            return None
        counts = summary.skipped.setdefault(job_name, [0, 0])
        counts[1] += 1
        fan_in = job_name not in PER_SHARD_JOBS
        why, records = (current or currency()).check(job_name, partition_key, extra, fan_in=fan_in)
        if why is None:
            counts[0] += 1
            return Reused(records)
        return None

    def step(job_name: str, partition_key: str | None = None, tags: dict | None = None,
             current: Currency | None = None, extra=None):
        """Run the job (partition), or, when resuming and its outputs are current, reuse them."""
        return reuse(job_name, partition_key, current, extra) or execute(job_name, partition_key, tags)

    pool = stack.enter_context(PartitionPool(settings, instance, runner_tags, jobs))

    def steps(job_name: str, keys: list[str], extra=None):
        """:func:`step` for many partitions of one stage: yields ``(key, result)`` in the order of ``keys``,
        each as soon as it and those before it are done; the ones not current run in the pool's workers."""
        current = currency()
        reused = {k: reuse(job_name, k, current, extra(k) if extra else None) for k in keys}
        todo = [k for k in keys if reused[k] is None]
        if len(todo) < 2 or not pool.usable:
            for key in keys:
                yield key, reused[key] or execute(job_name, key)
            return
        ran = pool.map(job_name, todo)
        for key in keys:
            if reused[key] is not None:
                yield key, reused[key]
                continue
            done_key, result = next(ran)
            assert done_key == key
            count_checks(result, key)
            yield key, result

    def in_runs_of(job_name: str, keys: list[str], size: int):
        """:func:`steps` for a stage whose runs may cover several partitions (the mixtures): the partitions
        not current run as ranges of consecutive keys (in the instance's order), at most ``size`` per run and
        spread over the pool's workers; yields ``(key, result)`` in the order of ``keys``, each result
        holding that partition's own materializations."""
        from quadmix_assets.defs.partitions import mixtures_partitions
        from quadmix_assets.run_pool import Outcome

        current = currency()
        reused = {k: reuse(job_name, k, current, None) for k in keys}
        todo = [k for k in keys if reused[k] is None]
        ordered = list(instance.get_dynamic_partitions(mixtures_partitions.name))
        runs = plan_runs(ordered, todo, size, pool.jobs if pool.usable else 1)
        if pool.usable and len(runs) > 1:
            done = pool.map(job_name, runs)
        else:
            def one_by_one():
                for keys_of_run in runs:
                    t = time.perf_counter()
                    key, tags = partition_run_args(keys_of_run)
                    result = execute(job_name, key, tags, count=False)
                    yield keys_of_run, (result if len(keys_of_run) == 1 else Outcome.of(result, time.perf_counter() - t))
            done = one_by_one()
        results: dict[str, object] = {}
        for key in keys:
            if reused[key] is not None:
                yield key, reused[key]
                continue
            while key not in results:
                keys_of_run, result = next(done)
                count_checks(result, keys_of_run[0] if len(keys_of_run) == 1 else f"{keys_of_run[0]}..{keys_of_run[-1]}")
                if len(keys_of_run) == 1:
                    results[keys_of_run[0]] = result
                else:
                    results.update({k: result.partition(k, len(keys_of_run)) for k in keys_of_run})
            yield key, results.pop(key)

    execute.step, execute.steps, execute.currency = step, steps, currency  # the stage helpers get them here
    execute.in_runs_of = in_runs_of

    t = time.perf_counter()
    result = step("models_job")
    if not result.success:
        raise _StageFailed("models", f"training the classifiers failed: {_failure_message(result)}")
    dom = _metadata(result, "domain_classifier")
    log(
        f"[models] domain classifier test accuracy {dom.get('test_accuracy', float('nan')):.3f}, "
        f"DCLM classifier ready ({_took(result, t)})"
    )

    paths = {r.key: r.path for r in refs}

    def same_corpus_file(shard: str):
        """Extra resume condition: the documents were read from the corpus file's current bytes."""
        def check(key, mat) -> str | None:
            if key.path[-1] != "documents":
                return None
            recorded = getattr(mat.metadata.get("fingerprint"), "value", None)
            return None if recorded == file_fingerprint(paths[shard]) else "the corpus file changed since it was read"
        return check

    def per_shard(job_name: str, stage: str, keys: list[str]) -> None:
        t = time.perf_counter()
        for i, (key, result) in enumerate(steps(job_name, keys, extra=same_corpus_file), 1):
            if result.success:
                md = _metadata(result, "documents")
                what = f"{md.get('documents')} docs, {md.get('quarantined')} quarantined" if md else "scored"
                log(f"[{stage} {i}/{len(keys)}] {key}: {what} ({_took(result, t)})")
            else:
                summary.shards_failed[key] = _failure_message(result)
                log(f"[{stage} {i}/{len(keys)}] {key}: FAILED: {summary.shards_failed[key]}")
            t = time.perf_counter()
        _log_skipped(summary, job_name, stage, log)

    per_shard("shard_fast_job", "shard", [r.key for r in refs])
    ok_keys = [r.key for r in refs if r.key not in summary.shards_failed]

    t = time.perf_counter()
    result = step("distill_job")
    if not result.success:
        raise _StageFailed("distill", f"distilling the transformer criteria failed: {_failure_message(result)}")
    parts = []
    for criterion, student in distilled_students():
        md = _metadata(result, student)
        summary.shards_left_out.update(_left_out(md))
        if md.get("mode") == "distill":
            parts.append(
                f"{criterion}: teacher {md.get('teacher_docs_per_s', 0):.1f} docs/s on {md.get('sample_docs')} docs, "
                f"teacher-student rho {md.get('teacher_student_spearman_heldout', float('nan')):.2f}"
            )
        else:
            parts.append(f"{criterion}: direct")
    log(f"[distill] {'; '.join(parts)} ({_took(result, t)})")
    per_shard("shard_model_job", "transformer scores", ok_keys)
    summary.shards_ok = [k for k in ok_keys if k not in summary.shards_failed]

    t = time.perf_counter()
    result = step("refresh_job")
    if not result.success:
        raise _StageFailed("normaliser", f"normaliser / mixture configs failed: {_failure_message(result)}")
    norm = _metadata(result, "quality_normaliser")
    summary.shards_left_out.update(_left_out(norm))
    if summary.shards_left_out:
        log(f"[normaliser] shard(s) left out: {summary.shards_left_out}")
    ev = _metadata(result, "criteria_evaluation")
    aucs = ", ".join(f"{k[8:]} {v:.3f}" for k, v in ev.items() if k.startswith("roc_auc_"))
    log(f"[normaliser] version {norm.get('normaliser_version')} over {norm.get('documents')} docs; ROC-AUC vs human votes: {aucs} ({_took(result, t)})")

    configs = storage.read_json(layout.mixture_configs())["configs"]
    _mixtures([c["mixture_id"] for c in configs], summary, execute, log, "mixture")
    if summary.mixtures_ok:
        _optimise(settings, instance, summary, execute, log)


def _log_skipped(summary: RunSummary, job_name: str, stage: str, log) -> None:
    """One line per stage when resuming: how many of its runs so far were current and skipped."""
    skipped, of = summary.skipped.get(job_name, (0, 0))
    if skipped:
        log(f"[{stage}] resume: {skipped} of {of} {job_name} partition(s) so far current, skipped")


def _took(result, t: float) -> str:
    """How long a run took: its own time when a worker ran it, else the time since ``t``."""
    from quadmix_assets.run_pool import Outcome

    if isinstance(result, Reused):
        return "current, skipped"
    if isinstance(result, Outcome) and result.run_of > 1:
        return f"{result.seconds:.1f}s for the {result.run_of} in its run"
    return f"{result.seconds if isinstance(result, Outcome) else time.perf_counter() - t:.1f}s"


def _contiguous_ranges(ordered: list[str], wanted: set[str], size: int) -> list[list[str]]:
    """Runs of at most ``size`` consecutive partition keys (in the instance's order) that are all wanted:
    one backfill-style run each, so their proxies train stacked."""
    out, cur = [], []
    for key in ordered:
        if key in wanted and len(cur) < size:
            cur.append(key)
            continue
        if cur:
            out.append(cur)
        cur = [key] if key in wanted else []
    if cur:
        out.append(cur)
    return out


def plan_runs(ordered: list[str], todo: list[str], size: int, workers: int) -> list[list[str]]:
    """The Dagster runs for the partitions ``todo``: ranges of consecutive keys in the instance's order
    ``ordered``, at most ``size`` per run and no more than an equal share per worker, so every worker
    gets a run."""
    if not todo:
        return []
    per_run = max(1, min(size, -(-len(todo) // max(1, workers))))
    known = set(ordered)
    # a key the instance does not know runs alone, and Dagster's own error names it
    return _contiguous_ranges(ordered, set(todo), per_run) + [[k] for k in todo if k not in known]


def _train_proxies(keys: list[str], instance, summary: RunSummary, execute, log, group_size: int, stage: str) -> None:
    from quadmix_assets.defs.partitions import mixtures_partitions

    current = execute.currency()
    if current is not None:  # resume: proxies already trained on their current mixture are reused
        todo = []
        counts = summary.skipped.setdefault("proxy_job", [0, 0])
        for key in keys:
            counts[1] += 1
            why, records = current.check("proxy_job", key)
            if why is not None:
                todo.append(key)
                continue
            counts[0] += 1
            results = getattr(records[0].asset_materialization.metadata.get("results"), "value", None) or {}
            status = (results.get(key) or {}).get("status", "no recorded status")
            (summary.proxies_ok.append(key) if status == "ok" else summary.proxies_failed.__setitem__(key, status))
        if len(todo) < len(keys):
            log(f"[{stage}] resume: {len(keys) - len(todo)} of {len(keys)} proxies current, skipped")
        keys = todo
    ordered = list(instance.get_dynamic_partitions(mixtures_partitions.name))
    groups = _contiguous_ranges(ordered, set(keys), group_size)
    for i, group in enumerate(groups, 1):
        t = time.perf_counter()
        key, tags = partition_run_args(group)
        result = execute("proxy_job", key, tags)
        if not result.success:
            msg = _failure_message(result)
            summary.proxies_failed.update({k: msg for k in group})
            log(f"[{stage} {i}/{len(groups)}] {len(group)} proxies FAILED: {msg}")
            continue
        md = _metadata(result, "proxy_run")
        for key, r in md.get("results", {}).items():
            (summary.proxies_ok.append(key) if r["status"] == "ok" else summary.proxies_failed.__setitem__(key, r["status"]))
        losses = [r["target_loss"] for r in md.get("results", {}).values() if r["target_loss"] is not None]
        span = f"target loss {min(losses):.4f}..{max(losses):.4f}" if losses else "no finite proxy"
        log(f"[{stage} {i}/{len(groups)}] {len(group)} proxies, {md.get('tokens_per_s', 0):,.0f} tokens/s, {span} "
            f"({time.perf_counter() - t:.1f}s)")


def _new_partitions(instance, before: set[str]) -> list[str]:
    from quadmix_assets.defs.partitions import mixtures_partitions

    return [k for k in instance.get_dynamic_partitions(mixtures_partitions.name) if k not in before]


def _mixtures(keys: list[str], summary: RunSummary, execute, log, stage: str) -> list[str]:
    ok = []
    t = time.perf_counter()
    for i, (key, result) in enumerate(execute.in_runs_of("mixture_job", keys, MIXTURE_BATCH), 1):
        if result.success:
            md = _metadata(result, "mixture_manifest")
            summary.mixtures_ok.append(key)
            summary.shards_left_out.update(_left_out(_metadata(result, "mixture_scores")))
            ok.append(key)
            log(f"[{stage} {i}/{len(keys)}] {key} {md.get('name')}: {md.get('documents_selected')} docs, "
                f"{md.get('tokens_after')} tokens ({_took(result, t)})")
        else:
            summary.mixtures_failed[key] = _failure_message(result)
            log(f"[{stage} {i}/{len(keys)}] {key}: FAILED: {summary.mixtures_failed[key]}")
        t = time.perf_counter()
    _log_skipped(summary, "mixture_job", stage, log)
    return ok


def _round_keys(storage, round_no: int) -> list[str]:
    """Mixture ids registered for search round ``round_no`` (in registration order)."""
    from quadmix_assets.mixing.catalog import all_spec_dicts, round_of

    return [d["mixture_id"] for d in all_spec_dicts(storage) if round_of(d) == round_no]


def _log_regressor(reg: dict, log) -> None:
    if reg:
        log(f"[regressor] {reg.get('configs')} configs (rounds {reg.get('rounds')}): {reg.get('chosen')} chosen by repeated "
            f"5-fold CV, Spearman {reg.get('cv_spearman', float('nan')):.3f} ± {reg.get('cv_spearman_sd', float('nan')):.3f}, "
            f"MAE {reg.get('cv_mae', float('nan')):.4f} vs constant {reg.get('cv_mae_constant_predictor', float('nan')):.4f}; "
            f"noise ceiling (repeat Spearman) {reg.get('noise_ceiling_repeat_spearman', float('nan')):.3f}")


def _optimise(settings: QuadmixSettings, instance, summary: RunSummary, execute, log) -> None:
    """Proxies on every mixture, the noise ceiling, the search rounds (regressor -> proposals -> their
    mixtures and proxies), the final regressor and search, and the optimum's mixture, proxy and export. When
    the regressor is not trustworthy the best *measured* config is exported instead, labelled as such."""
    from quadmix_assets.defs.export import SELECTED_AS_TAG
    from quadmix_assets.proxy.optimise import best_measured, measured_rank

    preset = settings.run_preset()
    storage = settings.storage()
    t = time.perf_counter()
    result = execute.step("proxy_setup_job")
    if not result.success:
        raise _StageFailed("proxy setup", f"target sets / tokenizer failed: {_failure_message(result)}")
    tg = _metadata(result, "target_sets")
    tk = _metadata(result, "proxy_tokenizer")
    summary.shards_left_out.update(_left_out(tk))
    log(f"[targets] {tg.get('sets')} sets, {tg.get('target_examples')} target / {tg.get('heldout_examples')} held-out examples; "
        f"tokenizer vocab {tk.get('vocab_size')} ({_took(result, t)})")
    _train_proxies(summary.mixtures_ok, instance, summary, execute, log, MAX_PROXY_RUN, "proxies")

    t = time.perf_counter()
    result = execute.step("noise_job")
    noise = _metadata(result, "proxy_noise")
    if result.success:
        log(f"[noise] {noise.get('configs_repeated')} configs retrained under a second seed: repeat Spearman "
            f"{noise.get('repeat_spearman', float('nan')):.3f}, noise SD {noise.get('noise_sd', float('nan')):.4f} vs SD across "
            f"configs {noise.get('loss_sd_across_configs', float('nan')):.4f} ({_took(result, t)})")
    else:
        log(f"[noise] FAILED: {_failure_message(result)} (the regressor is judged against the preset's fixed floor)")

    from quadmix_assets.defs.partitions import add_partitions, mixtures_partitions

    for round_no in range(2, preset.search_rounds + 1):
        t = time.perf_counter()
        result = execute.step("regressor_job")
        if not result.success:
            log(f"[rounds] regressor FAILED: {_failure_message(result)}")
            break
        _log_regressor(_metadata(result, "mixture_regressor"), log)
        before = set(instance.get_dynamic_partitions(mixtures_partitions.name))
        result = execute.step("rounds_job")
        md = _metadata(result, "mixture_rounds")
        if not result.success:
            log(f"[rounds] no new round: {_failure_message(result)}")
            break
        if md.get("proposed"):
            # a reused round: its partitions were registered by the run that made it
            keys = list(md.get("mixtures") or []) if isinstance(result, Reused) else _new_partitions(instance, before)
            log(f"[round {md.get('round')}] {md.get('proposed')} configs proposed (best predicted loss "
                f"{md.get('best_predicted_loss', float('nan')):.4f}, best measured {md.get('best_measured_loss', float('nan')):.4f}) "
                f"({_took(result, t)})")
        else:
            # the round may exist already (an earlier, interrupted run proposed it): finish it
            keys = _round_keys(storage, round_no)
            if not keys:
                log(f"[rounds] no new round: {md.get('why')}")
                break
            add_partitions(instance, mixtures_partitions, [k for k in keys if k not in before])
            log(f"[round {round_no}] {len(keys)} configs proposed by an earlier run")
        ok = _mixtures(keys, summary, execute, log, f"round {round_no} mixture")
        _train_proxies(ok, instance, summary, execute, log, MAX_PROXY_RUN, f"round {round_no} proxies")

    t = time.perf_counter()
    result = execute.step("search_job")
    summary.regressor = _metadata(result, "mixture_regressor")
    _log_regressor(summary.regressor, log)
    search = _metadata(result, "mixture_search")
    selected_as = "search optimum"
    if search:
        summary.optimum = search["mixture_id"]
        log(f"[search] {search['searched_configs']:,} configs ranked, optimum {summary.optimum} ({search['name']}), "
            f"predicted target loss {search['predicted_loss_of_optimum']:.4f} ({time.perf_counter() - t:.1f}s)")
        t = time.perf_counter()
        ok = _mixtures([summary.optimum], summary, execute, log, "optimum mixture")
        if not ok:
            return
        _train_proxies([summary.optimum], instance, summary, execute, log, 1, "optimum proxy")
    else:
        gate = summary.regressor.get("gate") or (_failure_message(result) if not result.success else "the search did not run")
        best, loss = best_measured(storage)
        if best is None:
            summary.optimum_blocked = f"no optimum and no measured config to fall back on ({gate})"
            log(f"[search] {summary.optimum_blocked}")
            return
        summary.optimum_blocked = (f"the regressor's pick was not promoted because its {gate}; exporting the best measured "
                                   f"config instead")
        summary.optimum = best
        selected_as = f"best measured config (proxy loss {loss:.4g}); regressor not promoted: {gate}"
        log(f"[search] {summary.optimum_blocked}: {best} (proxy target loss {loss:.4f})")
        t = time.perf_counter()
    summary.optimum_rank = measured_rank(storage, summary.optimum)
    add_partitions(instance, exports_partitions, [summary.optimum])  # promoted for export (search registers its own)
    result = execute.step("export_job", summary.optimum, tags={SELECTED_AS_TAG: selected_as})
    if not result.success:
        summary.mixtures_failed[summary.optimum] = f"export: {_failure_message(result)}"
        log(f"[export] FAILED: {summary.mixtures_failed[summary.optimum]}")
        return
    summary.export = _metadata(result, "mixture_export")
    _report_optimum(storage, summary, log)
    log(f"[export] {summary.export.get('occurrences')} documents (with copies), {summary.export.get('tokens')} tokens "
        f"({summary.export.get('token_dtype')}) -> {summary.export.get('path')} ({_took(result, t)})")


def _report_optimum(storage, summary: RunSummary, log) -> None:
    """One line: the optimum's proxy target loss, its rank among every measured config, the baselines."""
    import json as _json

    r = summary.optimum_rank
    if not r:
        return
    base = {}
    for key in summary.proxies_ok:
        path = layout.proxy_run(key)
        if storage.exists(path):
            run = storage.read_json(path)
            if run.get("origin") == "baseline" and run.get("target_loss") is not None:
                base[run["name"]] = round(run["target_loss"], 4)
    log(f"[optimum] proxy target loss {r['loss']:.4f}: rank {r['rank']} of {r['of']} measured configs (top "
        f"{r['percentile']:.0%}; best measured {r['best_measured']:.4f}, median {r['median_measured']:.4f}); baselines {_json.dumps(base)}")
