"""The ``quadmix`` command: ``quadmix run`` materializes the graph in-process; ``quadmix ui`` opens Dagster;
``quadmix lineage`` tells where a mixture came from (read from the instance's event log); ``quadmix show``
shows the documents behind a mixture or a criterion; ``quadmix sql`` queries a stored run with DuckDB."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from quadmix_assets import errors
from quadmix_assets import settings as env
from quadmix_assets.presets import DEFAULT_PRESET, PRESETS

LAST_RUN = "quadmix_last_run.json"
#: seconds ``quadmix ui`` gives ``dagster dev`` to stop its webserver, daemon and code servers after a signal,
#: and then what is left of its processes to end after SIGTERM, before it kills them
UI_GRACE_S = 30.0
UI_LEFTOVER_GRACE_S = 10.0
#: settings of ``quadmix run`` that are not settings fields but reach the UI's runs too (the loop's refresh policy)
RUN_VARIABLES = ("QUADMIX_REOPTIMISE", "QUADMIX_REOPTIMISE_SHARE")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
INSTANCE_YAML = """# written by quadmix: a local, persistent Dagster instance
telemetry:
  enabled: false
# progress lines of long steps (documents/s, ETA) into each run's logs
python_logs:
  python_log_level: INFO
  managed_python_loggers:
    - quadmix_assets.progress
"""


class _CurrentStdout(logging.Handler):
    """Writes to whatever sys.stdout is when a line is logged (not the stream at install time)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


def show_progress_lines() -> None:
    """Print the progress lines of long steps (quadmix_assets.reporting.progress) on stdout, indented."""
    logger = logging.getLogger("quadmix_assets.progress")
    if not any(isinstance(h, _CurrentStdout) for h in logger.handlers):
        handler = _CurrentStdout()
        handler.setFormatter(logging.Formatter("    %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def prepare_dagster_home(path: str | None) -> str:
    home = os.path.abspath(path or env.default_dagster_home())
    os.makedirs(home, exist_ok=True)
    yaml = Path(home) / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = home
    return home


def cmd_run(args: argparse.Namespace) -> int:
    home = prepare_dagster_home(args.dagster_home)
    show_progress_lines()
    from dagster import DagsterInstance

    from quadmix_assets.dagster_support.resources import QuadmixSettings, launch_environment
    from quadmix_assets.runner import run_pipeline

    settings = QuadmixSettings.from_env(
        corpus_glob=args.corpus,
        storage_root=os.path.abspath(args.storage) if args.storage and "://" not in args.storage else args.storage,
        data_dir=args.data_dir,
        preset=args.preset,
        n_configs=args.configs,
        text_field=args.text_field,
        id_field=args.id_field,
        export_tokenizer=args.export_tokenizer,
        **user_targets(args),
        alpha_criteria=args.alpha_criteria,
    )
    check_target_files(*settings.target_sources())  # a bad objective or judge is refused before anything runs
    settings.check_locations()
    if args.reoptimise:  # the loop's refresh policy (quadmix_assets.defs.operations.loop.refresh_policy) reads it
        os.environ["QUADMIX_REOPTIMISE"] = args.reoptimise
    with DagsterInstance.get() as instance:
        summary = run_pipeline(settings, instance, resume=not args.no_resume, jobs=args.jobs, submit=args.submit)
    if summary.shards_ok:  # settings that worked: what `quadmix ui` gives its runs (never a corpus that found nothing)
        last = launch_environment(settings) | {k: os.environ[k] for k in RUN_VARIABLES if os.environ.get(k)}
        (Path(home) / LAST_RUN).write_text(json.dumps(last, indent=2, sort_keys=True))
    return report_failures(summary, args.allow_partial)


def user_targets(args: argparse.Namespace) -> dict:
    """``objective`` / ``judge`` settings from ``--targets FILE`` and the repeated ``--objective`` / ``--judge``
    flags (a flag's sets come after the file's); keys absent when neither is given."""
    from quadmix_assets.proxy.objective import parse_flag, read_targets_file

    out = read_targets_file(args.targets) if getattr(args, "targets", None) else {}
    for key in ("objective", "judge"):
        flags = getattr(args, key, None) or []
        if flags:
            out[key] = list(out.get(key, [])) + [parse_flag(v) for v in flags]
    return out


def check_target_files(*sources) -> None:
    """Refuse (ObjectiveError) a user target file that does not exist, before a run starts."""
    import fsspec

    from quadmix_assets.proxy.objective import ObjectiveError

    for group in sources:
        for src in group:
            if src.path is None:
                continue
            fs, path = fsspec.core.url_to_fs(src.path)
            if not fs.isfile(path):
                raise ObjectiveError(f"target file {src.path!r} ({src.set_name}) does not exist or is not a file")


def add_target_flags(p: argparse.ArgumentParser, objective: bool = True) -> None:
    if objective:
        p.add_argument("--objective", action="append", default=None, metavar="PATH[@WEIGHT]",
                       help="a target set of the proxies' objective: a JSONL / Parquet file with a `text` field (local "
                       "or fsspec URL), or a bundled set's name, with an optional weight (default 1); repeat for each "
                       "set. The objective is the weighted mean of the per-set losses (docs/objective.md)")
    p.add_argument("--judge", action="append", default=None, metavar="PATH[@WEIGHT]",
                   help="a set of the held-out judge of `quadmix compare` (same form; repeat). A set also in the "
                   "objective is split in halves by the sha256 rule; any other is used whole" + (
                       "" if objective else "; at compare time examples in the proxies' target half are dropped"))
    p.add_argument("--targets", default=None, metavar="FILE",
                   help="JSON or YAML file with `objective:` and/or `judge:` lists of {path, weight, name, text_field}")


def report_failures(summary, allow_partial: bool = False, out=None) -> int:
    """Print what failed or was left out (file, reason) and return ``quadmix run``'s exit code: non-zero when
    anything failed, unless ``allow_partial`` accepts a run that still made mixtures."""
    out = out or sys.stderr
    lines = summary.failure_lines()
    code = summary.exit_code(allow_partial)
    if lines:
        head = "quadmix run: partial result accepted (--allow-partial):" if code == 0 else "quadmix run FAILED:"
        print(head, file=out)
        for line in lines:
            print(f"  {line}", file=out)
        if code:
            print("  (exit code 1; pass --allow-partial to accept a partial result)", file=out)
    out.flush()
    return code


def ui_environment(home: str, environ: dict | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """``(environment, last run's settings)`` of the Dagster processes ``quadmix ui`` starts: ``environ``
    (default: this process's) with the settings the last ``quadmix run`` saved in ``<home>/quadmix_last_run.json``
    in place of its own, so every setting of that run (corpus, storage, data folder, preset, K, text and id
    field, export tokenizer, input limits, refresh policy) reaches the runs launched from the UI; a setting
    variable the last run did not set is removed. Without a saved run: ``environ`` as it is."""
    from quadmix_assets.dagster_support.resources import launch_variables

    child = dict(os.environ if environ is None else environ)
    path = Path(home) / LAST_RUN
    if not path.exists():
        return child, {}
    last = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    for var in (*launch_variables(), *RUN_VARIABLES):
        child.pop(var, None)
    child.update(last)
    return child, last


def _session_processes(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid`` (Linux ``/proc``); elsewhere, ``[sid]`` while
    its process group has a member."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(sid, 0)
            return [sid]
        except (ProcessLookupError, PermissionError):
            return []
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # after the name: state, ppid, pgrp, session
            found.append(int(name))
    return found


def _signal_session(sid: int, sig: int) -> None:
    for pid in _session_processes(sid):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.killpg(sid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_session(sid: int, timeout: float) -> bool:
    """True once session ``sid`` has no live process (within ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while _session_processes(sid):
        if time.monotonic() > end:
            return False
        time.sleep(0.2)
    return True


def run_dagster(cmd: list[str], env: dict, cwd: str, grace_s: float = UI_GRACE_S, out=None) -> int:
    """Run ``cmd`` (``dagster dev``) in a session of its own and leave nothing of it behind.

    SIGTERM, SIGINT and SIGHUP to this process are forwarded to ``dagster dev``, which stops its webserver,
    daemon and code servers; after ``grace_s`` seconds it is killed. When it has exited, whatever is left of
    its session (code servers it did not stop, runs launched from the UI) gets SIGTERM, then SIGKILL after
    :data:`UI_LEFTOVER_GRACE_S`: no Dagster process outlives ``quadmix ui``, and its port is free. Returns
    ``dagster dev``'s exit code, or 128 + the signal's number after a signal."""
    out = out or sys.stderr
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True)
    received: list[int] = []

    def forward(signum, _frame) -> None:
        received.append(signum)
        try:
            proc.send_signal(signal.SIGINT if signum == signal.SIGHUP else signum)
        except ProcessLookupError:
            pass

    handled = [s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, forward) for s in handled}
    try:
        deadline = None
        while proc.poll() is None:
            if received and deadline is None:
                print(f"quadmix ui: {signal.Signals(received[0]).name}: stopping Dagster (up to {grace_s:.0f} s)",
                      file=out, flush=True)
                deadline = time.monotonic() + grace_s
            if deadline is not None and time.monotonic() > deadline:
                print("quadmix ui: Dagster did not stop in time; killing it", file=out, flush=True)
                _signal_session(proc.pid, signal.SIGKILL)
                deadline = float("inf")
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        if _session_processes(proc.pid):  # left behind by dagster dev: code servers, runs launched from the UI
            _signal_session(proc.pid, signal.SIGTERM)
            if not _wait_session(proc.pid, UI_LEFTOVER_GRACE_S):
                _signal_session(proc.pid, signal.SIGKILL)
                _wait_session(proc.pid, UI_LEFTOVER_GRACE_S)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if received:
        print("quadmix ui: stopped", file=out, flush=True)
        return 128 + int(received[0])
    return proc.returncode


def cmd_ui(args: argparse.Namespace) -> int:
    home = prepare_dagster_home(args.dagster_home)
    child_env, last = ui_environment(home)
    if args.host not in LOOPBACK_HOSTS:
        print(f"quadmix ui: warning: binding to {args.host}, not loopback: anyone who can reach this port can launch "
              "runs with this machine's credentials and files (README, 'Threat model')", file=sys.stderr, flush=True)
    workspace = env.REPO_ROOT / "workspace.yaml"
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {home})", flush=True)
    if last:
        print(f"  runs launched there get the settings of the last quadmix run ({Path(home) / LAST_RUN}): "
              + ", ".join(f"{k}={v}" for k, v in sorted(last.items())), flush=True)
    else:
        print("  no quadmix run in this instance yet: runs launched there get this environment's settings", flush=True)
    return run_dagster(cmd, child_env, str(env.REPO_ROOT))


def cmd_lineage(args: argparse.Namespace) -> int:
    """Print a mixture's lineage (or the mixtures a shard fed), read from the instance's event log."""
    home = os.path.abspath(args.dagster_home or env.default_dagster_home())
    if not os.path.isdir(home):
        print(f"quadmix lineage: no Dagster instance at {home}; run `quadmix run` first (or pass --dagster-home)", file=sys.stderr)
        return 2
    if bool(args.mixture) == bool(args.shard):
        print("quadmix lineage: give a MIXTURE_ID or --shard SHARD (not both)", file=sys.stderr)
        return 2
    from quadmix_assets.storage import UnsafeKeyError, check_key

    try:
        check_key(args.shard, "shard") if args.shard else check_key(args.mixture, "mixture")
    except UnsafeKeyError as exc:
        print(f"quadmix lineage: {errors.explain(exc)}", file=sys.stderr)
        return 2
    prepare_dagster_home(home)
    from dagster import DagsterInstance

    from quadmix_assets import lineage

    with DagsterInstance.get() as instance:
        try:
            if args.shard:
                rows = lineage.shard_lineage(instance, args.shard)
                text = json.dumps(rows, indent=2) + "\n" if args.json else lineage.shard_lineage_text(args.shard, rows)
            else:
                from quadmix_assets.definitions import asset_graph  # the code location's graph, walked upstream

                story = lineage.mixture_lineage(instance, lineage.resolve_mixture(instance, args.mixture), asset_graph=asset_graph())
                text = json.dumps(story, indent=2) + "\n" if args.json else lineage.lineage_text(story)
            sys.stdout.write(text)
        except KeyError as exc:
            why = exc.args[0] if exc.args else str(exc)
            print(f"quadmix lineage: {errors.plain(None, why, hint='give a mixture id, a unique id prefix or a name (see `quadmix show` or the UI), and the --dagster-home that `quadmix run` used')}",
                  file=sys.stderr)
            return 1
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Paper-style table: one evaluation model per selection method, judged on the held-out half."""
    from quadmix_assets.selection.stored import compare_command

    storage = os.path.abspath(args.storage) if args.storage and "://" not in args.storage else args.storage
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    judge = user_targets(args).get("judge")
    if judge:
        from quadmix_assets.proxy.objective import parse_sources

        check_target_files(parse_sources(judge, "judge"))
    return compare_command(storage or env.default_storage_root(), eval_preset=args.eval_preset, judge=judge,
                           budget_tokens=args.budget_tokens, methods=methods, max_examples=args.max_examples or None,
                           seed=args.seed, regmix_proxies=args.regmix_proxies, device=args.device, threads=args.threads,
                           seeds=args.seeds, jobs=args.jobs, out=args.out)


def cmd_show(args: argparse.Namespace) -> int:
    """The documents behind a mixture (top, middle and bottom of each domain's rank) or behind a criterion."""
    from quadmix_assets.reporting import data_view
    from quadmix_assets.storage import StorageRoot

    if bool(args.mixture) == bool(args.criterion):
        print("quadmix show: give a MIXTURE (id, unique prefix or name such as random or draw-0003) or --criterion C, "
              "not both", file=sys.stderr)
        return 2
    storage = StorageRoot(os.path.abspath(args.storage) if args.storage and "://" not in args.storage
                          else (args.storage or env.default_storage_root()))
    if args.n < 1:
        print("quadmix show: --n must be at least 1", file=sys.stderr)
        return 2
    try:
        domain = data_view.resolve_domain(data_view.domain_names(storage), args.domain) if args.domain is not None else None
        if args.criterion:
            view = data_view.criterion_extremes(storage, args.criterion, n=args.n, domain=domain, text_chars=args.chars)
            text = data_view.extremes_text(view)
        else:
            mixture_id = data_view.resolve_mixture(storage, args.mixture)
            view = data_view.mixture_samples(storage, mixture_id, domains=None if domain is None else [domain],
                                             bands=[args.band] if args.band else data_view.BANDS, n=args.n,
                                             text_chars=args.chars)
            text = data_view.samples_text(view)
            if args.mixture == data_view.OPTIMUM and mixture_id == data_view.exported_mixture(storage):
                record = data_view.export_record(storage, mixture_id) or {}
                why = (record.get("selection") or {}).get("why")
                text = (f"optimum = the exported mixture {mixture_id}, selected as {record.get('selected_as', '?')}"
                        + (f" ({why})" if why and why not in str(record.get("selected_as")) else "") + "\n" + text)
    except data_view.DataViewError as exc:
        print(f"quadmix show: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(view, indent=2, default=str) + "\n" if args.json else text)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """A SQL query over a stored run's DuckDB views (documents, attributes, ranks, manifests, proxies, ...).
    Read-only: one SELECT whose plan writes nothing; ``--out`` (outside the storage root) is the only write.
    A refused request (a statement that could write, a bad ``--out``, no stored run) is checked before the
    views are built and exits 1 with what was refused."""
    from quadmix_assets.reporting import sql_views
    from quadmix_assets.storage import StorageRoot
    from quadmix_assets.storage.duck import duck_session

    storage = StorageRoot(os.path.abspath(args.storage) if args.storage and "://" not in args.storage
                          else (args.storage or env.default_storage_root()))
    try:
        sql_views.check_storage(storage)
        if args.out:
            sql_views.check_out_path(storage, args.out)
        with duck_session(storage, memory_limit=args.memory_limit) as con:
            sql_views.one_select(con, args.query)  # parse only: refuse before building the views
            sql_views.create_views(con, storage, args.query)
            spill = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
            sql_views.lock_to_storage(con, storage, [spill])
            if args.out:
                n = sql_views.query_to_file(con, args.query, args.out, storage=storage)
                print(f"{n} rows written to {args.out}")
            else:
                sys.stdout.write(sql_views.query_text(con, args.query, max_rows=args.max_rows))
    except sql_views.SqlRefused as exc:
        print(f"quadmix sql: {exc}", file=sys.stderr)
        return 1
    return 0


def plain_text(text: str) -> str:
    """A docstring as --help shows it: reStructuredText's ``double backticks`` become plain `backticks`."""
    return re.sub(r"``([^`]+)``", r"`\1`", text or "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quadmix", description=plain_text(__doc__))
    parser.add_argument("-v", "--verbose", action="store_true", help="on failure, show the exception class and the stack")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the asset graph in-process on a corpus")
    run.add_argument("--corpus", default=None, help="glob of JSONL/JSONL.gz/Parquet shards, local or fsspec URL (default: $QUADMIX_CORPUS or the bundled web text)")
    run.add_argument("--storage", default=None, help="storage root folder or URL (default: $QUADMIX_STORAGE or .quadmix/storage)")
    run.add_argument("--preset", default=os.environ.get("QUADMIX_PRESET", DEFAULT_PRESET), choices=sorted(PRESETS),
                     help="run size: cpu (the default: the bundled corpus on a laptop), paper (QuaDMix's own) or test "
                     "(the smallest that runs every step); default: $QUADMIX_PRESET or cpu")
    run.add_argument("--configs", type=int, default=None, help="number of configs K drawn (default: the preset's)")
    run.add_argument("--text-field", default="text", help="field or column holding the document text (default: text)")
    run.add_argument("--id-field", default="id", help="field or column holding the document id; derived from the "
                     "content where absent (default: id)")
    run.add_argument("--export-tokenizer", default=None, help="Hugging Face tokenizer for the Megatron export: tokenizer.json, "
                     "folder, name in the local HF cache, bundled:smollm2 or bundled:minilm (default: the proxies' tokenizer)")
    run.add_argument("--alpha-criteria", default=None, metavar="LIST", help="comma-separated criteria forming alpha's "
                     "columns, or all (default: the preset's; cpu leaves askllm out: its student lost its teacher). "
                     "A criterion left out is still scored and carded")
    run.add_argument("--data-dir", default=None, help="reference data folder (default: $QUADMIX_DATA_DIR or ../shared/data)")
    run.add_argument("--dagster-home", default=None, help="persistent Dagster instance (default: $DAGSTER_HOME or .quadmix/dagster_home)")
    run.add_argument("--allow-partial", action="store_true", help="exit 0 even when shards, mixtures or proxies failed or "
                     "were left out, or nothing was exported, as long as some mixture was made (default: exit 1 on any failure)")
    run.add_argument("--reoptimise", choices=("share", "always", "never"), default=None,
                     help="after a corpus refresh, retrain the proxies and search again: always, never (only re-export the "
                     "exported mixture's parameters on the new corpus), or share (when the new documents reach "
                     "$QUADMIX_REOPTIMISE_SHARE, default 0.25, of the corpus); default: $QUADMIX_REOPTIMISE or share")
    run.add_argument("--no-resume", "--force", dest="no_resume", action="store_true",
                     help="redo every stage (default: skip shards, mixtures, proxies and stages whose outputs are current: "
                     "same settings, code versions and input data versions)")
    run.add_argument("--jobs", "-j", type=int, default=None, help="shard and mixture partitions run at once, each in a "
                     "worker process (default: one per core; 1 runs every partition in this process)")
    run.add_argument("--submit", action="store_true", help="execute nothing here: submit every run to the instance's run "
                     "launcher (DAGSTER_HOME's dagster.yaml: local processes, or Kubernetes Jobs in a deployment) through "
                     "workspace.yaml's code location, and follow the runs")
    add_target_flags(run)
    run.set_defaults(func=cmd_run)
    ui = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on loopback over the same instance, with the "
                        "settings of the last quadmix run; SIGTERM or Ctrl-C stops every Dagster process it started")
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only; see the README's threat model)")
    ui.add_argument("--port", type=int, default=3000, help="port of the UI (default 3000)")
    ui.add_argument("--dagster-home", default=None, help="the instance `quadmix run` wrote (default: $DAGSTER_HOME or "
                    ".quadmix/dagster_home)")
    ui.set_defaults(func=cmd_ui)
    lin = sub.add_parser("lineage", help="the full story of a mixture (or, with --shard, the mixtures a shard fed)")
    lin.add_argument("mixture", nargs="?", default=None, metavar="MIXTURE_ID", help="mixture id, unique id prefix or mixture name")
    lin.add_argument("--shard", default=None, help="list the mixtures this shard (partition key) fed")
    lin.add_argument("--json", action="store_true", help="print JSON instead of text")
    lin.add_argument("--dagster-home", default=None, help="the instance `quadmix run` wrote (default: $DAGSTER_HOME or .quadmix/dagster_home)")
    lin.set_defaults(func=cmd_lineage)
    cmp_ = sub.add_parser("compare", help="one evaluation model per selection method (random, criteria, DSIR, RegMix, "
                          "QuaDMix) at one token budget; held-out loss and multiple-choice accuracy")
    cmp_.add_argument("--storage", default=None, help="storage root a `quadmix run` wrote (default: $QUADMIX_STORAGE or .quadmix/storage)")
    cmp_.add_argument("--eval-preset", default="cpu-eval", help="evaluation model (a quadmix_assets.proxy.model preset: cpu-eval, gpu-eval)")
    cmp_.add_argument("--budget-tokens", type=int, default=None, help="training tokens per model (default: the preset's steps x batch x (seq_len+1))")
    cmp_.add_argument("--methods", default=None, help="comma-separated subset (default: every baseline of the run: random, english-random, each <criterion>-only, criteria-mean; then dsir, regmix, quadmix)")
    cmp_.add_argument("--max-examples", type=int, default=100, help="held-out examples per set (seeded subset; 0: all)")
    cmp_.add_argument("--seed", type=int, default=None, help="data order, subsets, DSIR/RegMix draws and model init (default: the run preset's seed)")
    cmp_.add_argument("--seeds", type=int, default=1, help="evaluation models per method (different init and data order); "
                      "with S > 1 the table gives mean ± standard error and the paired difference against random")
    cmp_.add_argument("--jobs", type=int, default=1, help="train the seeds in this many worker processes at once "
                      "(e.g. one per core with --threads 1); the table is the same as with one process")
    cmp_.add_argument("--regmix-proxies", type=int, default=None, help="RegMix proxy runs (default: the run preset's number of configs)")
    cmp_.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    cmp_.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 can be faster on a busy machine)")
    cmp_.add_argument("--out", default=None, help="folder to write selection_table.md and selection_table.json")
    add_target_flags(cmp_, objective=False)
    cmp_.set_defaults(func=cmd_compare)
    show = sub.add_parser("show", help="the documents behind a mixture: top, middle and bottom of each domain's rank "
                          "with their scores and copies (or, with --criterion, the best and worst scored documents)")
    show.add_argument("mixture", nargs="?", default=None, metavar="MIXTURE",
                      help="mixture id, unique id prefix or name (random, draw-0003, ...)")
    show.add_argument("--criterion", default=None, help="instead of a mixture: the documents with the highest and lowest "
                      "scores of this criterion (dclm, heuristic, langid, edu, askllm)")
    show.add_argument("--domain", default=None, help="only this domain (name, unique name prefix, or index)")
    show.add_argument("--band", default=None, choices=("top", "middle", "bottom"), help="only this rank band (default: all three)")
    show.add_argument("--n", type=int, default=5, help="documents per band (default 5)")
    show.add_argument("--chars", type=int, default=200, help="characters of text per document (default 200)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.add_argument("--storage", default=None, help="storage root a `quadmix run` wrote (default: $QUADMIX_STORAGE or .quadmix/storage)")
    show.set_defaults(func=cmd_show)
    sql = sub.add_parser("sql", help="a DuckDB SQL query over a stored run: views documents, features, attr_<name>, "
                         "ranks, domains, mixtures, manifests, mixture_scores, proxy_results, proxy_set_losses, "
                         "regressor_training (README, 'quadmix sql')")
    sql.add_argument("query", help="one SELECT statement (read-only), e.g. \"SELECT domain_name, count(*) FROM features GROUP BY 1\"")
    sql.add_argument("--out", default=None, help="write every row to this .parquet or .csv file instead of printing")
    sql.add_argument("--max-rows", type=int, default=40, help="rows printed (default 40)")
    sql.add_argument("--memory-limit", default="1GB", help="DuckDB memory limit; beyond it DuckDB spills to a temporary folder")
    sql.add_argument("--storage", default=None, help="storage root a `quadmix run` wrote (default: $QUADMIX_STORAGE or .quadmix/storage)")
    sql.set_defaults(func=cmd_sql)
    for p in sub.choices.values():  # also accepted after the command: quadmix run --verbose
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="on failure, show the exception class and the stack")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every failure is printed as what failed, why and what to do; the exception class and the stack only
    with ``--verbose``."""
    args = build_parser().parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    errors.set_verbose(verbose)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"quadmix {args.command}: interrupted. Run the same command again to continue; finished steps are kept.",
              file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the top level: one plain message instead of a traceback
        print(f"quadmix {args.command}: {errors.explain(exc)}", file=sys.stderr)
        if verbose:
            print(errors.stack(exc), file=sys.stderr, end="")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
