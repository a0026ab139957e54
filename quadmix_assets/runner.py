"""``quadmix run``: execute the loop's steps into a persistent Dagster instance, in this process or in
worker processes, and report them.

What runs next is never decided here: each step comes from the loop's policy
(:mod:`quadmix_assets.loop.policy`, read through :func:`quadmix_assets.defs.operations.loop.plan`), the same decisions
the ``quadmix_loop`` sensor takes under the Dagster daemon. Each shard and each mixture is a run of its
partitioned job (several consecutive mixtures may share one run), so a bad shard fails alone and the
others go on; the UI shows every run. The partitions of a step run ``jobs`` at a time in worker processes
(:mod:`quadmix_assets.run_pool`; default: one per core), reported in partition order.

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

from quadmix_assets.defs.operations.loop import partition_run_args, plan_runs  # noqa: F401 - how a step's partitions become runs
from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.definitions import build_definitions
from quadmix_assets.scoring.criteria import teacher_criteria
from quadmix_assets.storage import StorageNotWritable, layout
from quadmix_assets.storage.lock import HOLDER_TAG, RunLock, StorageLocked
from quadmix_assets.run_support import QUIET, RUNNER_TAG  # noqa: F401 - QUIET: the run config of every run, re-exported
from quadmix_assets.run_support import failure_message as _failure_message
from quadmix_assets.run_support import process_token as _process_token



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
    optimum: str | None = None  # mixture id of the exported mixture (the search optimum, or the best measured config)
    optimum_blocked: str | None = None  # why the search did not promote an optimum
    selected_as: str = ""  # why the exported mixture was selected (loop.policy's label)
    export_why: str = ""  # the export rule's comparison in words (loop.policy.compare_to_best)
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
        """Everything succeeded: every shard used, every mixture and stage done, a mixture exported."""
        return bool(self.mixtures_ok) and not self.partial and bool(self.export)

    def exit_code(self, allow_partial: bool = False) -> int:
        """0 when everything succeeded; with ``allow_partial`` also when some mixture was made despite
        failures; else 1."""
        if self.ok or (allow_partial and self.mixtures_ok and not self.stages_failed):
            return 0
        return 1

    def check_warnings(self) -> list[str]:
        """The failed checks of WARN severity, each ``check[partition]: WARN``."""
        return [f for f in self.checks_failed if f.endswith(": WARN")]

    def warnings_by_check(self) -> dict[str, list[str]]:
        """check name -> the partitions (mixtures, shards) it warned about, in the order they were counted
        (``-`` for an unpartitioned check)."""
        out: dict[str, list[str]] = {}
        for f in self.check_warnings():
            head = f[: -len(": WARN")]
            name, _, partition = head.partition("[")
            out.setdefault(name, []).append(partition[:-1] if partition else "-")
        return out

    def failure_lines(self) -> list[str]:
        """One user-facing line per failure (what, where, why)."""
        out = [f"stage {k} FAILED: {v}" for k, v in self.stages_failed.items()]
        out += [f"shard {k} FAILED: {v}" for k, v in self.shards_failed.items()]
        out += [f"shard {k} LEFT OUT: {v}" for k, v in self.shards_left_out.items() if k not in self.shards_failed]
        out += [f"mixture {k} FAILED: {v}" for k, v in self.mixtures_failed.items()]
        out += [f"proxy {k} FAILED: {v}" for k, v in self.proxies_failed.items()]
        if not self.mixtures_ok and not self.stages_failed:
            out.append("no mixture was made")
        elif not self.export and not self.stages_failed:
            out.append(f"nothing was exported: {self.optimum_blocked or 'the loop did not reach the export'}")
        return out


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


def _metadata(result, asset_name: str) -> dict:
    for mat in result.get_asset_materialization_events():
        m = mat.materialization
        if m.asset_key.path[-1] == asset_name:
            return {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return {}


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
    submit: bool = False,
) -> RunSummary:
    """Materialize the whole graph; never raises for a failed shard, mixture or stage: the summary says
    what failed (``summary.failure_lines()``) and ``summary.exit_code()`` what ``quadmix run`` returns.
    With ``resume`` (the default) jobs and partitions whose outputs are current are skipped. ``jobs``:
    partitions of a stage run at once (default: one per core; 1 runs everything in this process). ``submit``:
    execute nothing here; every run goes to the instance's run launcher (:class:`Submitter`) and is followed."""
    from quadmix_assets.proxy.parallel import default_workers

    summary = RunSummary()
    start = time.perf_counter()
    lock = RunLock(settings.storage(), token=_process_token(os.getpid()))
    try:
        with contextlib.ExitStack() as stack:
            _run(settings, instance, summary, log, lock, resume, default_workers() if jobs is None else max(1, int(jobs)), stack,
                 submit)
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
        + (f" ({len(summary.check_warnings())} warnings)" if summary.check_warnings() else "")
        + (f"; {_exported_what(summary)} {summary.optimum} exported to {summary.export.get('path')}" if summary.export else "")
    )
    for check_name, where in summary.warnings_by_check().items():
        if where == ["-"]:  # an unpartitioned check: no partition to name; its description says why
            log(f"  warning of {check_name} (not partitioned; the check's description in the UI says why)")
        else:
            log(f"  warnings of {check_name} ({len(where)}): {', '.join(where)}")
    sys.stdout.flush()
    return summary


def distilled_students() -> list[tuple[str, str]]:
    """(criterion, student asset) of every teacher criterion in the registry: what the distill stage
    (``distill_job``) trains and reports, in registry order."""
    return [(c.name, c.student) for c in teacher_criteria()]


#: what a failed one-run stage means, in the run's summary
_STOP_TEXT = {"models": "training the classifiers failed", "distill": "distilling the transformer criteria failed",
              "normaliser": "normaliser / mixture configs failed", "proxy setup": "target sets / tokenizer failed"}


def _run(settings: QuadmixSettings, instance: DagsterInstance, summary: RunSummary, log, lock: RunLock,
         resume: bool, jobs: int, stack: contextlib.ExitStack, submit: bool = False) -> None:
    """Execute the loop's steps (:func:`quadmix_assets.defs.operations.loop.plan`, the decisions of
    :mod:`quadmix_assets.loop.policy`) until it is finished: here only how a step runs (this process or the
    partition pool's workers) and what is printed; what runs next is the policy's."""
    from quadmix_assets.defs.operations.loop import LoopFacts, add_step_partitions, plan, refresh_policy
    from quadmix_assets.loop.policy import Finished
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
    removed = storage.clean_temp()
    summary.temp_files_removed = len(removed)
    if removed:
        log(f"quadmix: removed {len(removed)} leftover temporary file(s) of interrupted writes under {storage.url}")
    summary.stale_runs_failed = fail_killed_runs(instance)
    if summary.stale_runs_failed:
        log(f"quadmix: marked {len(summary.stale_runs_failed)} run(s) of a killed quadmix run as failed")
    policy = refresh_policy(preset=settings.run_preset())
    defs = build_definitions(settings)
    failed: dict[tuple[str, str | None], str] = {}
    fresh: set[tuple[str, str | None]] = set()

    def facts() -> LoopFacts:
        return LoopFacts(instance, defs, settings, failed=failed, resume=resume, fresh=fresh)

    first = facts()
    # HOLDER_TAG: this process's runs (and its workers') write under the storage lock it holds
    runner_tags = {RUNNER_TAG: _process_token(os.getpid()), HOLDER_TAG: lock.token, **first.run_tags()}
    known = set(instance.get_dynamic_partitions(shards_partitions.name))
    new = [k for k in first.shards() if k not in known]
    if new:
        instance.add_dynamic_partitions(shards_partitions.name, new)
    preset = settings.run_preset()
    log(f"quadmix: {len(first.refs)} shard(s) from {settings.corpus_glob}")
    log(f"         storage {settings.storage_root}, preset {preset.name} (K={preset.n_configs}), instance {instance.root_directory}")
    pool = stack.enter_context(PartitionPool(settings, instance, runner_tags, jobs))
    submitter = stack.enter_context(Submitter(settings, instance, log)) if submit else None
    if submitter is not None:  # runs launched elsewhere: not this process's to mark failed when it dies
        runner_tags.pop(RUNNER_TAG)
    out = _Reporter(summary, log, storage, resume)

    def count_checks(result, partition_key: str | None) -> None:
        for evaluation in result.get_asset_check_evaluations():
            summary.checks_run += 1
            if not evaluation.passed:
                # a per-mixture check names its own partition; else the run's (key or range)
                partition = getattr(evaluation, "partition", None) or partition_key
                where = f"[{partition}]" if partition else ""
                severity = evaluation.severity.value
                summary.checks_failed.append(f"{evaluation.check_name}{where}: {severity}")
                if severity == "ERROR":
                    metadata = {k: getattr(v, "value", getattr(v, "data", v)) for k, v in evaluation.metadata.items()}
                    log(f"  check {evaluation.check_name}{where} FAILED: {metadata}")

    def execute(job_name: str, keys: list, tags: dict | None = None):
        """One Dagster run of ``job_name`` over ``keys`` in this process; its result per key."""
        from quadmix_assets.run_pool import Outcome

        t = time.perf_counter()
        key, range_tags = partition_run_args(keys)
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, partition_key=key, raise_on_error=False, run_config=QUIET,
            tags={**runner_tags, **range_tags, **(tags or {})},
        )
        count_checks(result, key if len(keys) == 1 else f"{keys[0]}..{keys[-1]}")
        if len(keys) == 1:
            return {keys[0]: result}
        outcome = Outcome.of(result, time.perf_counter() - t)
        return {k: outcome.partition(k, len(keys)) for k in keys}

    def run_step(step) -> dict:
        """Every run of the step (ranges of partitions over the pool's workers where there are several)."""
        from quadmix_assets.defs.operations.loop import step_runs
        from quadmix_assets.dagster_support.partitions import mixtures_partitions

        ordered = list(instance.get_dynamic_partitions(mixtures_partitions.name))
        workers = pool.jobs if pool.usable and step.job != "proxy_job" else 1
        runs = step_runs(step, ordered, workers)
        results: dict = {}
        if submitter is not None:
            t = time.perf_counter()
            for keys, outcome in submitter.run_all(step.job, runs, {**runner_tags, **step.tags}):
                count_checks(outcome, keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}")
                done = {keys[0]: outcome} if len(keys) == 1 else {k: outcome.partition(k, len(keys)) for k in keys}
                results.update(done)
                if step.job == "proxy_job":
                    out.proxy_run(step, keys, done, 1, 1, t)
            return results
        if pool.usable and len(runs) > 1 and step.job != "proxy_job":
            for keys, outcome in pool.map(step.job, [k if len(k) > 1 else k[0] for k in runs]):
                keys = [keys] if isinstance(keys, str) else list(keys)
                count_checks(outcome, keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}")
                done = {keys[0]: outcome} if len(keys) == 1 else {k: outcome.partition(k, len(keys)) for k in keys}
                results.update(done)
                out.ran(facts(), step, done, time.perf_counter())  # reported as each run ends, in order
            return results
        for i, keys in enumerate(runs, 1):
            t = time.perf_counter()
            done = execute(step.job, keys, step.tags)
            results.update(done)
            if step.job == "proxy_job":
                out.proxy_run(step, keys, done, i, len(runs), t)
            elif step.partitioned:  # a line per partition as soon as it is done, not when the stage is
                out.ran(facts(), step, done, t)
        return results

    last = None
    while True:
        f = facts()
        step = plan(f, policy)
        out.skipped_stages(f, step)
        if isinstance(step, Finished):
            break
        if last == (step.job, step.keys):  # the policy asked for what just ran and succeeded: never loop forever
            raise _StageFailed(step.stage, f"{step.job} ran but its outputs are still not current ({f.status(step.job, step.keys[0]).why})")
        last = (step.job, step.keys)
        add_step_partitions(instance, step)
        for key in step.keys:  # outputs redone because their stored files are damaged: say which file, and why
            why = f.status(step.job, key).why or ""
            if " stored file " in why or why.endswith(" is gone"):
                log(f"[{step.stage}] {key or step.job}: redone: {why}")
        t = time.perf_counter()
        results = run_step(step)
        for key, result in results.items():
            fresh.add((step.job, key))
            if not result.success:
                failed[(step.job, key)] = _failure_message(result)
        if any(not r.success for r in results.values()):
            last = None
        if not (step.partitioned and step.job != "proxy_job" and submitter is None):
            out.ran(f, step, results, t)  # partitioned steps were reported run by run
    out.finished(f, step)


class Submitter:
    """``quadmix run --submit``: each run of a step is submitted to the instance's run launcher through the
    code location of ``workspace.yaml`` (as ``dagster job launch`` does), and followed until it ends. Where
    the instance is a deployment's (its ``dagster.yaml``: PostgreSQL, the ``K8sRunLauncher``), every run and,
    with ``QUADMIX_EXECUTOR=k8s``, every step is a pod; this process only decides and reports. The code
    location gets these settings through the environment (:func:`~quadmix_assets.dagster_support.resources.launch_environment`),
    so the runs compute what this process's facts expect."""

    POLL_S = 1.0

    def __init__(self, settings: QuadmixSettings, instance: DagsterInstance, log):
        self.settings, self.instance, self.log = settings, instance, log
        self._stack = contextlib.ExitStack()
        self.workspace = None

    def __enter__(self) -> Submitter:
        from dagster import __version__ as dagster_version
        from dagster._cli.workspace.cli_target import get_workspace_from_cli_opts
        from dagster_shared.cli import WorkspaceOpts

        from quadmix_assets import settings as env
        from quadmix_assets.dagster_support.resources import launch_environment

        os.environ.update(launch_environment(self.settings))  # the code server and the runs it starts read them
        opts = WorkspaceOpts(workspace=[str(env.REPO_ROOT / "workspace.yaml")])
        self.workspace = self._stack.enter_context(get_workspace_from_cli_opts(self.instance, dagster_version, opts))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def submit(self, job_name: str, keys: list, tags: dict) -> str:
        from dagster._cli.job import _create_run
        from dagster._cli.workspace.cli_target import (
            get_code_location_from_workspace,
            get_remote_job_from_remote_repo,
            get_remote_repository_from_code_location,
        )

        partition, range_tags = partition_run_args(keys)
        run_tags = {**tags, **range_tags, **({"dagster/partition": partition} if partition else {})}
        location = get_code_location_from_workspace(self.workspace, None)
        repo = get_remote_repository_from_code_location(location, None)
        job = get_remote_job_from_remote_repo(repo, job_name)
        run = _create_run(instance=self.instance, code_location=location, remote_repo=repo, remote_job=job,
                          run_config=QUIET, tags=run_tags, op_selection=None, run_id=None)
        # straight to the run launcher (a run coordinator's queue would wait for a daemon this needs not)
        return self.instance.launch_run(run.run_id, self.workspace).run_id

    def run_all(self, job_name: str, runs: list, tags: dict):
        """Submit every run of a step at once (the launcher and the storage lock decide how many go side by
        side), then yield ``(keys, outcome)`` of each as it ends, in order."""
        from dagster import DagsterRunStatus

        ids = [(keys, self.submit(job_name, keys, tags), time.perf_counter()) for keys in runs]
        ended = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        for keys, run_id, t in ids:
            while (run := self.instance.get_run_by_id(run_id)).status not in ended:
                time.sleep(self.POLL_S)
            yield keys, _launched_outcome(self.instance, run, time.perf_counter() - t)


def _launched_outcome(instance: DagsterInstance, run, seconds: float):
    """A run that ran elsewhere, as the outcome the reporter reads (from its events in the instance)."""
    from types import SimpleNamespace

    from dagster import DagsterEventType, DagsterRunStatus

    from quadmix_assets.run_pool import Outcome

    events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event is not None]
    ok = run.status == DagsterRunStatus.SUCCESS
    failure = "" if ok else _failure_message(SimpleNamespace(all_events=events))
    if not ok and run.status == DagsterRunStatus.CANCELED:
        failure = f"run {run.run_id[:8]} was canceled"
    mats = [e.event_specific_data.materialization for e in events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION]
    checks = [e.event_specific_data for e in events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
    return Outcome(ok, failure, mats, checks, seconds)


class _Reporter:
    """What ``quadmix run`` prints and counts in its summary: one line per partition or stage, the same for a
    step that ran and for outputs that were current and skipped."""

    def __init__(self, summary: RunSummary, log, storage, resume: bool):
        self.summary, self.log, self.storage, self.resume = summary, log, storage, resume
        self.reported: set = set()  # (job, key) reported in this invocation
        self.stage_keys: dict[str, list] = {}
        self._specs: dict[str, dict] = {}  # the mixture catalog's specs by id, read again when one is missing

    # --- labels ------------------------------------------------------------------------------------
    def _mixture_label(self, keys) -> str:
        from quadmix_assets.mixing.store import all_spec_dicts, round_of

        if any(k not in self._specs for k in keys):  # a new round's or the optimum's specs: read the catalog again
            self._specs = {d["mixture_id"]: d for d in all_spec_dicts(self.storage)}
        entries = self._specs
        origins = {entries[k].get("origin") for k in keys if k in entries}
        if origins == {"search"}:
            return "optimum"
        rounds = {round_of(entries[k]) for k in keys if k in entries}
        if len(rounds) == 1 and (r := rounds.pop()) is not None and r >= 2:
            return f"round {r}"
        return ""

    # --- stages that were current --------------------------------------------------------------------
    def skipped_stages(self, facts, step) -> None:
        """Report the outputs of the stages before ``step`` that are current and not yet reported."""
        from quadmix_assets.loop.policy import STAGES, ok_mixtures, ok_shards

        upto = next((i for i, (_, job, _) in enumerate(STAGES) if getattr(step, "job", None) == job), len(STAGES))
        for stage, job, over in STAGES[:upto]:
            if over is None:
                keys = [None]
            elif over == "shards":
                keys = facts.shards()
            elif over == "scored shards":
                keys = ok_shards(facts)
            elif over == "mixtures":
                keys = facts.mixtures()
            else:
                keys = ok_mixtures(facts)
            todo = [k for k in keys if (job, k) not in self.reported and facts.status(job, k).current]
            if not todo:
                continue
            if job == "mixture_job":
                for label, group in self._by_label(todo):
                    self._report(facts, stage if not label else f"{label} mixture", job, group, {}, None)
            elif job == "proxy_job":
                self.reported.update((job, k) for k in todo)
                self._count_skips(job, len(todo), len(todo))
                self.log(f"[{stage}] resume: {len(todo)} of {len(todo)} proxies current, skipped")
            else:
                self._report(facts, stage, job, todo, {}, None)

    def _by_label(self, keys):
        groups: dict[str, list] = {}
        for k in keys:
            groups.setdefault(self._mixture_label([k]), []).append(k)
        return list(groups.items())

    def _count_skips(self, job: str, skipped: int, of: int) -> None:
        if self.resume:
            counts = self.summary.skipped.setdefault(job, [0, 0])
            counts[0] += skipped
            counts[1] += of

    # --- a step that ran -------------------------------------------------------------------------------
    def ran(self, facts, step, results: dict, t: float) -> None:
        from quadmix_assets.loop.policy import ok_shards

        job = step.job
        # the step's other partitions are running or still to run (in other runs of the step): never "skipped"
        running = frozenset(step.keys) - frozenset(results) if step.partitioned else frozenset()
        if job == "shard_fast_job":
            self._report(facts, "shard", job, facts.shards(), results, t, running)
        elif job == "shard_model_job":
            self._report(facts, "transformer scores", job, ok_shards(facts), results, t, running)
        elif job == "mixture_job":
            label = self._mixture_label(step.keys)
            in_step = frozenset(step.keys)
            keys = [k for k in facts.mixtures() if k in in_step or ((job, k) not in self.reported
                                                                   and facts.status(job, k).current
                                                                   and self._mixture_label([k]) == label)]
            self._report(facts, f"{label} mixture" if label else "mixture", job, keys, results, t, running)
        elif job == "proxy_job":
            self.reported.update((job, k) for k in results)  # reported run by run (proxy_run)
            self._count_skips(job, 0, len(results))
        elif job in ("regressor_job", "rounds_job", "search_job", "export_job"):
            self._optimisation(facts, step, results[None if job != "export_job" else step.keys[0]], t)
        else:
            self._report(facts, {"models_job": "models", "distill_job": "distill", "refresh_job": "normaliser",
                                 "proxy_setup_job": "targets", "noise_job": "noise"}[job], job, [None], results, t)

    def _report(self, facts, stage: str, job: str, keys: list, results: dict, t: float | None,
                running: frozenset = frozenset()) -> None:
        """One line per partition (``[stage i/n] key: ...``) or for the stage, ran or reused; the partitions
        in ``running`` are reported when their own run ends."""
        from quadmix_assets.resume import Reused

        n_skipped = 0
        for i, key in enumerate(keys, 1):
            if (job, key) in self.reported or key in running:
                continue
            if key in results:
                result = results[key]
            else:
                st = facts.status(job, key)
                if not st.current:
                    continue
                result = Reused(facts.records(job, key))
                n_skipped += 1
            self.reported.add((job, key))
            self._line(stage, job, key, i, len(keys), result, t)
            t = time.perf_counter()
        considered = sum(1 for k in keys if k in results) + n_skipped
        self._count_skips(job, n_skipped, considered)
        if self.resume and job in ("shard_fast_job", "shard_model_job", "mixture_job"):
            skipped, of = self.summary.skipped.get(job, (0, 0))
            if skipped:
                self.log(f"[{stage.split(' mixture')[0] if stage.endswith(' mixture') else stage}] resume: {skipped} of {of} {job} "
                         "partition(s) so far current, skipped")

    def _line(self, stage: str, job: str, key, i: int, n: int, result, t: float | None) -> None:
        took = _took(result, t if t is not None else time.perf_counter())
        s, log = self.summary, self.log
        if not result.success:
            msg = _failure_message(result)
            where = {"shard_fast_job": "shard", "shard_model_job": "shard", "mixture_job": "mixture"}.get(job)
            if where == "shard":
                s.shards_failed.setdefault(key, msg)
            elif where == "mixture":
                s.mixtures_failed[key] = msg
            log(f"[{stage} {i}/{n}] {key}: FAILED: {msg}" if key is not None else f"[{stage}] FAILED: {msg}")
            return
        if job in ("shard_fast_job", "shard_model_job"):
            md = _metadata(result, "documents")
            what = f"{md.get('documents')} docs, {md.get('quarantined')} quarantined" if md else "scored"
            log(f"[{stage} {i}/{n}] {key}: {what} ({took})")
        elif job == "mixture_job":
            md = _metadata(result, "mixture_manifest")
            s.shards_left_out.update(_left_out(_metadata(result, "mixture_scores")))
            log(f"[{stage} {i}/{n}] {key} {md.get('name')}: {md.get('documents_selected')} docs, {md.get('tokens_after')} tokens ({took})")
        elif job == "models_job":
            dom = _metadata(result, "domain_classifier")
            log(f"[models] domain classifier test accuracy {dom.get('test_accuracy', float('nan')):.3f}, DCLM classifier ready ({took})")
        elif job == "distill_job":
            parts = []
            for criterion, student in distilled_students():
                md = _metadata(result, student)
                s.shards_left_out.update(_left_out(md))
                if md.get("mode") == "distill":
                    parts.append(f"{criterion}: teacher {md.get('teacher_docs_per_s', 0):.1f} docs/s on {md.get('sample_docs')} docs, "
                                 f"teacher-student rho {md.get('teacher_student_spearman_heldout', float('nan')):.2f}")
                else:
                    parts.append(f"{criterion}: direct")
            log(f"[distill] {'; '.join(parts)} ({took})")
        elif job == "refresh_job":
            norm = _metadata(result, "quality_normaliser")
            s.shards_left_out.update(_left_out(norm))
            if s.shards_left_out:
                log(f"[normaliser] shard(s) left out: {s.shards_left_out}")
            ev = _metadata(result, "criteria_evaluation")
            aucs = ", ".join(f"{k[8:]} {v:.3f}" for k, v in ev.items() if k.startswith("roc_auc_"))
            log(f"[normaliser] version {norm.get('normaliser_version')} over {norm.get('documents')} docs; ROC-AUC vs human votes: {aucs} ({took})")
            for warning in ev.get("card_warnings") or []:  # the criterion cards' check (defs/quality/evaluation.py)
                log(f"[criteria] WARNING {warning}")
            cfg = _metadata(result, "mixture_configs")  # alpha's columns (docs/criteria.md, "Which criteria form alpha")
            if cfg.get("alpha_criteria"):
                log(f"[alpha] columns: {', '.join(cfg['alpha_criteria'])}")
            for criterion, why in (cfg.get("criteria_left_out") or {}).items():
                log(f"[alpha] {criterion} left out of alpha (scored and carded, never mixed): {why}")
            for warning in cfg.get("alpha_warnings") or []:  # a column of alpha whose student lost its teacher
                if warning not in (ev.get("card_warnings") or []):
                    log(f"[alpha] WARNING {warning}")
        elif job == "proxy_setup_job":
            tg, tk = _metadata(result, "target_sets"), _metadata(result, "proxy_tokenizer")
            s.shards_left_out.update(_left_out(tk))
            log(f"[targets] {tg.get('sets')} sets, {tg.get('target_examples')} target / {tg.get('heldout_examples')} held-out examples; "
                f"tokenizer vocab {tk.get('vocab_size')} ({took})")
            if tg.get("objective_weights"):
                fmt = lambda w: ", ".join(f"{k} x{v:g}" for k, v in w.items())  # noqa: E731
                log(f"[targets] objective (weighted mean loss): {fmt(tg['objective_weights'])}; judge: {fmt(tg.get('judge_weights') or {})}")
            if tg.get("duplicates_dropped"):
                log(f"[targets] exact duplicates dropped per set: {tg['duplicates_dropped']}")
            if tg.get("corpus_leaks"):
                log(f"[targets] WARNING target examples also in the corpus (kept; docs/objective.md): {tg['corpus_leaks']}")
        elif job == "noise_job":
            noise = _metadata(result, "proxy_noise")
            log(f"[noise] {noise.get('configs_repeated')} configs retrained under a second seed: repeat Spearman "
                f"{noise.get('repeat_spearman', float('nan')):.3f}, noise SD {noise.get('noise_sd', float('nan')):.4f} vs SD across "
                f"configs {noise.get('loss_sd_across_configs', float('nan')):.4f} ({took})")

    def proxy_run(self, step, keys: list, done: dict, i: int, n: int, t: float) -> None:
        label = self._mixture_label(keys)
        stage = {"": "proxies", "optimum": "optimum proxy"}.get(label, f"{label} proxies")
        result = done[keys[0]]
        if not result.success:
            self.log(f"[{stage} {i}/{n}] {len(keys)} proxies FAILED: {_failure_message(result)}")
            return
        losses, speed = [], 0.0
        for key in keys:  # each partition's own materialization names its proxy's result
            md = _metadata(done[key], "proxy_run")
            speed = speed or md.get("tokens_per_s", 0)
            r = (md.get("results") or {}).get(key) or {}
            if r.get("target_loss") is not None:
                losses.append(r["target_loss"])
        span = f"target loss {min(losses):.4f}..{max(losses):.4f}" if losses else "no finite proxy"
        self.log(f"[{stage} {i}/{n}] {len(keys)} proxies, {speed:,.0f} tokens/s, {span} ({time.perf_counter() - t:.1f}s)")

    def _optimisation(self, facts, step, result, t: float) -> None:
        s, log = self.summary, self.log
        took = _took(result, t)
        if not result.success:
            log(f"[{step.stage}] {step.job} FAILED: {_failure_message(result)}")
            return
        if step.job == "regressor_job":
            _log_regressor(_metadata(result, "mixture_regressor"), log)
        elif step.job == "rounds_job":
            md = _metadata(result, "mixture_rounds")
            if md.get("proposed"):
                log(f"[round {md.get('round')}] {md.get('proposed')} configs proposed (best predicted loss "
                    f"{md.get('best_predicted_loss', float('nan')):.4f}, best measured {md.get('best_measured_loss', float('nan')):.4f}) ({took})")
            else:
                log(f"[rounds] no new round: {md.get('why')}")
        elif step.job == "search_job":
            s.regressor = _metadata(result, "mixture_regressor")
            _log_regressor(s.regressor, log)
            search = _metadata(result, "mixture_search")
            if search:
                log(f"[search] {search['searched_configs']:,} configs ranked, optimum {search['mixture_id']} ({search['name']}), "
                    f"predicted target loss {search['predicted_loss_of_optimum']:.4f} ({took})")
        elif step.job == "export_job":
            s.export = _metadata(result, "mixture_export")
            self._count_skips("export_job", 0, 1)

    # --- the end ---------------------------------------------------------------------------------------
    def finished(self, facts, done) -> None:
        """The summary of a finished loop: what is ok, failed, the optimum, its export and rank."""
        from quadmix_assets.loop.policy import SEARCH_OPTIMUM, ok_mixtures
        from quadmix_assets.proxy.optimise import measured_rank

        s, log = self.summary, self.log
        for stage, why in done.stopped.items():
            if stage in _STOP_TEXT:
                raise _StageFailed(stage, f"{_STOP_TEXT[stage]}: {why}")
        shards = facts.shards()
        for (job, key), why in facts.failures().items():
            if job in ("shard_fast_job", "shard_model_job"):
                s.shards_failed.setdefault(key, why)
            elif job == "mixture_job":
                s.mixtures_failed.setdefault(key, why)
        s.shards_ok = [k for k in shards if k not in s.shards_failed]
        s.mixtures_ok = ok_mixtures(facts)
        for key in s.mixtures_ok:
            st = facts.status("proxy_job", key)
            if (why := facts.failures().get(("proxy_job", key))) is not None:
                s.proxies_failed[key] = why
            elif st.current:
                results = _metadata(Reused_of(facts, "proxy_job", key), "proxy_run").get("results") or {}
                status = (results.get(key) or {}).get("status", "no recorded status")
                (s.proxies_ok.append(key) if status == "ok" else s.proxies_failed.__setitem__(key, status))
        if not s.regressor:
            s.regressor = _metadata(Reused_of(facts, "regressor_job", None), "mixture_regressor")
        if done.export is None:
            if "search" in done.stopped:
                s.optimum_blocked = done.stopped["search"]
                log(f"[search] {s.optimum_blocked}")
            return
        s.optimum, s.selected_as = done.export, done.selected_as
        s.export_why = next((n for n in done.notes if n), "")
        found = facts.search_result() or {}
        if done.selected_as != SEARCH_OPTIMUM:
            s.optimum_blocked = f"{done.selected_as}; exporting it instead of the search's pick"
            log(f"[search] {s.optimum_blocked}: {done.export}")
            searched = found.get("mixture_id")
            if searched and searched != done.export:  # the optimum was measured and lost: its own rank, said once
                r = measured_rank(self.storage, searched)
                if r:
                    log(f"[optimum] the search optimum {searched} (not exported): proxy target loss {r['loss']:.4f}, rank "
                        f"{r['rank']} of {r['of']} measured configs (best measured {r['best_measured']:.4f}, median "
                        f"{r['median_measured']:.4f})")
        elif s.export_why:
            log(f"[export] {s.export_why}: the search optimum is exported")
        if not s.export:
            s.export = _metadata(Reused_of(facts, "export_job", done.export), "mixture_export")
            self._count_skips("export_job", 1, 1)
            log(f"[export] {done.export} current, skipped")
        s.optimum_rank = measured_rank(self.storage, s.optimum)
        _report_optimum(self.storage, s, log)
        log(f"[export] {s.export.get('occurrences')} documents (with copies), {s.export.get('tokens')} tokens "
            f"({s.export.get('token_dtype')}) -> {s.export.get('path')}")


def Reused_of(facts, job: str, key):  # noqa: N802 - reads like the class it builds
    """The recorded outputs of a current job (partition) as a result (empty when it is not current)."""
    from quadmix_assets.resume import Reused

    return Reused(facts.records(job, key) if facts.status(job, key).current else [])


def _exported_what(summary: RunSummary) -> str:
    """What the exported mixture is, in the run's last line: the search optimum or the best measured config."""
    from quadmix_assets.loop.policy import BEST_MEASURED, SEARCH_OPTIMUM

    if summary.selected_as == SEARCH_OPTIMUM or not summary.selected_as:
        return "optimum"
    return BEST_MEASURED if summary.selected_as.startswith(BEST_MEASURED) else f"mixture ({summary.selected_as})"


def _took(result, t: float) -> str:
    """How long a run took: its own time when a worker ran it, else the time since ``t``."""
    from quadmix_assets.resume import Reused
    from quadmix_assets.run_pool import Outcome

    if isinstance(result, Reused):
        return "current, skipped"
    if isinstance(result, Outcome) and result.run_of > 1:
        return f"{result.seconds:.1f}s for the {result.run_of} in its run"
    return f"{result.seconds if isinstance(result, Outcome) else time.perf_counter() - t:.1f}s"


def _log_regressor(reg: dict, log) -> None:
    if reg:
        log(f"[regressor] {reg.get('configs')} configs (rounds {reg.get('rounds')}): {reg.get('chosen')} chosen by repeated "
            f"5-fold CV, Spearman {reg.get('cv_spearman', float('nan')):.3f} ± {reg.get('cv_spearman_sd', float('nan')):.3f}, "
            f"MAE {reg.get('cv_mae', float('nan')):.4f} vs constant {reg.get('cv_mae_constant_predictor', float('nan')):.4f}; "
            f"noise ceiling (repeat Spearman) {reg.get('noise_ceiling_repeat_spearman', float('nan')):.3f}")


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
    what = "[optimum]" if _exported_what(summary) == "optimum" else f"[export] the {_exported_what(summary)}'s"
    log(f"{what} proxy target loss {r['loss']:.4f}: rank {r['rank']} of {r['of']} measured configs (top "
        f"{r['percentile']:.0%}; best measured {r['best_measured']:.4f}, median {r['median_measured']:.4f}); baselines {_json.dumps(base)}")
