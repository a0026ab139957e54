"""Fault injection (issue 15): `quadmix run` killed with SIGKILL at three stages and started again ends with
the same bytes as an uninterrupted run and says what it skipped; a second `quadmix run` on the same storage
refuses; a read-only or full storage fails clearly with nothing half-written; hostile inputs end in a
quarantine with a reason or a clear per-shard error.

Every run is the real command (`python -m quadmix_assets.cli run`) in its own process, on two real shards
with the `test` preset. One uninterrupted run is the baseline for the whole module.

Compared: every file under the storage root, by relative path and SHA-256, except `.quadmix-run.lock` (the
lock file: it names the holder's pid and start time while a run holds it, and is emptied when released).
Dagster's instance (run and event storage, compute logs, schedules) lives in `--dagster-home`, outside the
storage root, so run ids and timings never enter the comparison; no output file holds a timing.
Temporary `*.tmp-*` files are not excluded: after a finished run there must be none.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

import quadmix_assets
from quadmix_assets.storage.lock import LOCK_NAME

from . import hostile

REPO = Path(quadmix_assets.__file__).resolve().parents[1]
EXCLUDED = {LOCK_NAME}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cmd(corpus: Path, storage: Path, home: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "quadmix_assets.cli", "run", "--corpus", str(corpus / "*.jsonl.gz"),
            "--storage", str(storage), "--dagster-home", str(home), "--preset", "test",
            # one partition at a time: with worker processes the second shard can finish before the kill
            # at "[shard 1/2]" lands, and the test's point is a partition killed mid-run and redone
            "--jobs", "1", *extra]


def tree(root: Path, temp: bool = True) -> dict[str, str]:
    """sha256 of every file under the storage root but the lock file (see the module docstring); with
    ``temp=False`` also without leftover ``*.tmp-*`` files of a failed write."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in EXCLUDED and (temp or ".tmp-" not in str(p.relative_to(root))):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_nothing_partial(root: Path) -> None:
    """Every file under a final name is whole: Parquet footers and JSON documents parse."""
    for p in root.rglob("*"):
        if not p.is_file() or ".tmp-" in str(p.relative_to(root)):
            continue
        if p.suffix == ".parquet":
            pq.read_metadata(p)
        elif p.suffix == ".json":
            json.loads(p.read_bytes())


def _session_processes(sid: int) -> list[str]:
    """Command lines of the live processes of session ``sid`` (what a killed run left behind)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != b"Z":
                out.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip())
        except (OSError, IndexError, ValueError):
            continue
    return out


ORPHAN_BOUND_S = 5.0


def run_cli(cmd: list[str], kill_at: str | None = None, during=None, timeout: float = 3600,
            preexec_fn=None) -> tuple[int, str, bool]:
    """Run ``cmd`` (own session) and return (exit code, output, killed). With ``kill_at`` (a regex), send
    SIGKILL to the main process as soon as a line matches, as an operator would, then check that nothing it
    started (proxy workers, Dagster's compute-log ``tail -F``) outlives it. ``during(line)`` sees every line
    first (to act while the run is alive)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            start_new_session=True, cwd=str(REPO), preexec_fn=preexec_fn)
    lines, killed, t_kill = [], False, 0.0
    deadline = time.time() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            if during is not None:
                during(line)
            if kill_at and re.search(kill_at, line):
                os.kill(proc.pid, signal.SIGKILL)
                killed, t_kill = True, time.monotonic()
                break
            if time.time() > deadline:
                break
        rc = proc.wait(timeout=60)
        if killed:
            # nothing it started outlives it by more than ORPHAN_BOUND_S: every pool's workers get SIGKILL from
            # the kernel when their parent dies (PR_SET_PDEATHSIG), Dagster's compute-log `tail -F` is ended
            # by its watcher, which polls its parent every second
            while True:
                left = _session_processes(proc.pid)
                if not left or time.monotonic() - t_kill >= ORPHAN_BOUND_S:
                    break
                time.sleep(0.1)
            assert not left, f"processes left {ORPHAN_BOUND_S} s after the kill: {left}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()
    return rc, "".join(lines), killed


def _unfinished_runs(home: Path) -> list[str]:
    """Runs the instance under ``home`` still holds as STARTING/STARTED (none once every killed one is marked)."""
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]))
    return [r.dagster_run.run_id for r in records]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, two_shard_corpus):
    """One uninterrupted `quadmix run`: its output tree is what every interrupted run must end with."""
    root = tmp_path_factory.mktemp("fi-baseline")
    rc, out, _ = run_cli(_cmd(two_shard_corpus, root / "storage", root / "home"))
    assert rc == 0, out[-3000:]
    want = tree(root / "storage")
    assert any(k.startswith("exports/") for k in want) and any(k.startswith("proxies/") for k in want)
    assert not [k for k in want if ".tmp-" in k]
    return want, out


def test_killed_three_times_then_resumed_gives_the_same_bytes(baseline, two_shard_corpus, tmp_path):
    want, base_out = baseline
    assert "current, skipped" not in base_out  # a fresh storage: nothing to skip
    storage, home = tmp_path / "storage", tmp_path / "home"
    cmd = _cmd(two_shard_corpus, storage, home)
    second: dict = {}

    def start_a_second_run(line: str) -> None:
        """(b) While the first run holds the storage, a second `quadmix run` on it refuses at once."""
        if line.startswith("quadmix: 2 shard(s)") and not second:
            done = subprocess.run(_cmd(two_shard_corpus, storage, tmp_path / "home2"), capture_output=True, text=True,
                                  env=_env(), cwd=str(REPO), timeout=600)
            second.update(rc=done.returncode, out=done.stdout + done.stderr)

    # 1: during shard scoring (shard 1 of 2 done)
    rc, out, killed = run_cli(cmd, kill_at=r"^\[shard 1/2\]", during=start_a_second_run)
    assert killed, out[-3000:]
    assert second["rc"] == 1 and "is in use by another quadmix run" in second["out"], second["out"][-2000:]
    assert "removed" not in second["out"]  # it touched nothing: not even the first run's temporary files
    assert_nothing_partial(storage)

    # 2: at the first mixture line (with --jobs 1 the mixtures are one Dagster run, so it comes when that run is
    # done, as the next stage starts); the finished shard is skipped, the killed one redone
    rc, out, killed = run_cli(cmd, kill_at=r"^\[mixture 1/")
    assert killed, out[-3000:]
    assert re.search(r"^\[shard 1/2\] \S+: .*current, skipped", out, re.M), out[-3000:]
    assert re.search(r"^\[shard 2/2\] \S+: \d+ docs.*s\)$", out, re.M), out[-3000:]  # the killed one, redone
    # the run the kill interrupted is marked failed at the start, if it had been created before the kill (a race
    # with the kill: the line "[shard 1/2]" is printed just before shard 2's run is created)
    marked = re.search(r"marked (\d+) run\(s\) of a killed quadmix run as failed", out)
    assert marked is None or int(marked.group(1)) == 1, out[-3000:]
    assert_nothing_partial(storage)

    # 3: during the proxies (targets and tokenizer done, proxies training)
    rc, out, killed = run_cli(cmd, kill_at=r"^\[targets\]")
    assert killed, out[-3000:]
    assert re.search(r"^\[mixture 1/\d+\] \S+ .*current, skipped", out, re.M), out[-3000:]
    assert "[shard] resume: 2 of 2 shard_fast_job partition(s) so far current, skipped" in out
    assert_nothing_partial(storage)

    # 4: to the end. While it works, a Dagster materialization of the same root from another process and
    # instance (`dagster asset materialize`, as from a shell beside the run) is refused, naming the holder,
    # and writes nothing: the run ends with the baseline's bytes.
    targets_before = {k: v for k, v in tree(storage).items() if k.startswith("targets/")}
    assert targets_before  # run 3 wrote them: a writer let in would replace them
    beside: dict = {}

    def materialize_beside(line: str) -> None:
        if line.startswith("quadmix: 2 shard(s)") and not beside:
            env = _env() | {"QUADMIX_CORPUS": str(two_shard_corpus / "*.jsonl.gz"), "QUADMIX_STORAGE": str(storage),
                            "QUADMIX_PRESET": "test", "DAGSTER_HOME": str(tmp_path / "home-beside")}
            (tmp_path / "home-beside").mkdir()
            done = subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "quadmix_assets.definitions",
                                   "--select", "target_sets"], capture_output=True, text=True, env=env, cwd=str(REPO), timeout=600)
            beside.update(rc=done.returncode, out=done.stdout + done.stderr,
                          targets={k: v for k, v in tree(storage).items() if k.startswith("targets/")})

    rc, out, killed = run_cli(cmd, during=materialize_beside)
    assert rc == 0 and not killed, out[-3000:]
    assert beside["rc"] != 0 and "is in use by another quadmix run" in beside["out"], beside["out"][-3000:]
    assert beside["targets"] == targets_before  # nothing replaced under the run
    assert re.search(r"^\[mixture\] resume: (\d+) of \1 mixture_job partition\(s\)", out, re.M), out[-3000:]
    summary = re.search(r"^resume: skipped as current (.*)$", out, re.M)
    assert summary and "shard_fast_job 2/2" in summary.group(1) and "models_job 1/1" in summary.group(1), out[-3000:]
    assert not re.search(r"proxy_job [1-9]", summary.group(1))  # the proxies were killed: none was current
    assert not _unfinished_runs(home)  # every run a kill interrupted was marked failed
    got = tree(storage)
    assert sorted(got) == sorted(want)
    assert got == want, sorted(k for k in want if got.get(k) != want[k])

    # and once more: every partition and every stage up to the proxies is current and skipped, nothing
    # changes. (A fan-in over all mixture partitions that ran before later ones were added, such as the
    # noise ceiling or a round's regressor, is stale by Dagster's rule and may run again, with the same bytes.)
    rc, out, _ = run_cli(cmd)
    assert rc == 0, out[-3000:]
    summary = dict((job, (int(n), int(of))) for job, n, of in
                   re.findall(r"(\w+_job) (\d+)/(\d+)", re.search(r"^resume: skipped as current (.*)$", out, re.M).group(1)))
    for job in ("models_job", "shard_fast_job", "distill_job", "shard_model_job", "refresh_job", "mixture_job",
                "proxy_setup_job", "proxy_job", "export_job"):
        assert summary[job][0] == summary[job][1] > 0, (job, summary)
    assert tree(storage) == got  # the further run changed no byte

    # --no-resume (--force) redoes even what is current, here on a full storage (RLIMIT_FSIZE of 24 MiB in the
    # child: writes past it fail with EFBIG, what a writer sees on a full disk): the first output that does
    # not fit (a classifier) fails its stage clearly, and every output of the finished run is still intact
    rc, out, killed = run_cli(cmd + ["--no-resume"], preexec_fn=_small_files)
    assert rc == 1 and not killed, out[-3000:]
    assert "current, skipped" not in out and "resume:" not in out, out[-3000:]
    # (Python's own writes fail with EFBIG; fastText's unchecked C++ writer is caught by save_model's check)
    assert re.search(r"stage models FAILED: .*(File too large|not written completely)", out), out[-3000:]
    assert_nothing_partial(storage)
    after = tree(storage, temp=False)  # every output of the finished run intact (the models job redid the DCLM model)
    assert sorted(after) == sorted(got)
    assert after == got, [k for k in got if after[k] != got[k]]


FSIZE_LIMIT = 24 << 20  # above the instance's SQLite files, below a trained classifier (34-46 MB)


def _small_files():
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def _read_only(root: Path) -> list[str]:
    """A prefix that runs a command with ``root`` read-only: chmod for a normal user; for root (which
    ignores modes) a read-only bind mount in a private mount namespace."""
    if os.geteuid() != 0:
        root.chmod(0o555)
        return []
    if not shutil.which("unshare"):
        pytest.skip("running as root without unshare(1): cannot make a read-only folder")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"running as root and unshare -m is not permitted: {probe.stderr.decode()[:200]}")
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && shift && exec "$@"',
            str(root), "--"]


def test_read_only_storage_fails_clearly_and_writes_nothing(two_shard_corpus, tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    prefix = _read_only(storage)
    rc, out, _ = run_cli(prefix + _cmd(two_shard_corpus, storage, tmp_path / "home"))
    assert rc == 1, out[-3000:]
    assert re.search(r"stage storage FAILED: storage \S+ is not writable: .*(Read-only file system|Permission denied)", out), out[-3000:]
    assert "[models]" not in out  # refused before any work
    assert list(storage.iterdir()) == []


def test_hostile_inputs_table(tmp_path):
    """(d) Every hostile input ends as expected: refused (unsafe partition keys), a clear per-shard error
    (unusable files) or documents + quarantine with the reason, records read = documents + quarantined."""
    cases = hostile.build_hostile_corpus(tmp_path / "corpus")
    rows = hostile.run_cases(tmp_path / "corpus", tmp_path / "storage", cases)
    table = hostile.markdown(rows)
    (tmp_path / "fault_table.md").write_text(table)
    if os.environ.get("QUADMIX_FAULT_TABLE"):
        Path(os.environ["QUADMIX_FAULT_TABLE"]).write_text(table)
    for case, row in zip(cases, rows):
        assert row["outcome"] == case.expect, (row, table)
        if row["outcome"] == "ok":
            assert row["records_read"] == row["documents"] + row["quarantined"], row
            assert row["checks_passed"] == row["checks"], row
            assert set(case.reasons) <= set(row["reasons"]), row
        elif row["outcome"] == "refused":
            assert "unsafe" in row["detail"], row
        else:
            assert row["input"] in row["detail"] or row["key"] in row["detail"], row
    # nothing escaped: every file written is under the storage root, and the victim path was never created
    assert not Path("/tmp/quadmix-victim.parquet").exists()
