"""The loop under the Dagster daemon alone: no `quadmix` command, only `dagster-daemon run -w workspace.yaml`
over a fresh corpus folder (two bundled shards), a fresh storage root and a fresh DAGSTER_HOME, test
preset. Prints how long until the export's manifest.json appears and the loop sensor says it is finished,
the runs it took, and, with ``--reference STORAGE`` (a `quadmix run` storage root on the same inputs),
whether every export file is byte-identical to it.

    .venv/bin/python benchmarks/daemon_loop.py [--work DIR] [--reference STORAGE] [--budget-s 1500]

Exit 0 when the export appeared within the budget (and matches the reference, when given)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quadmix_assets import settings as env  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="folder for corpus, storage and DAGSTER_HOME (default: a temporary one)")
    ap.add_argument("--reference", default=None, help="a `quadmix run` storage root on the same two shards (test preset)")
    ap.add_argument("--budget-s", type=float, default=1500.0, help="give up after this many seconds (default 25 min)")
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="quadmix-daemon-"))
    corpus, storage, home = work / "corpus", work / "storage", work / "home"
    for d in (corpus, home):
        d.mkdir(parents=True, exist_ok=True)
    for i in range(args.shards):
        shutil.copy(Path(env.data_dir()) / "corpus" / "webtext" / f"shard-{i:05d}.jsonl.gz", corpus)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    child_env = {**os.environ, "DAGSTER_HOME": str(home), "QUADMIX_CORPUS": str(corpus / "*.jsonl.gz"),
                 "QUADMIX_STORAGE": str(storage), "QUADMIX_DATA_DIR": env.data_dir(), "QUADMIX_PRESET": "test",
                 "QUADMIX_EXECUTOR": "in_process", "QUADMIX_LOOP_INTERVAL": "5", "TQDM_DISABLE": "1"}
    child_env.pop("QUADMIX_CONFIGS", None)
    log_path = work / "daemon.log"
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-w", str(REPO / "workspace.yaml")],
                                cwd=REPO, env=child_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    exported, finished_s = None, None
    try:
        while time.time() - t0 < args.budget_s:
            found = sorted(storage.glob("exports/*/manifest.json"))
            if found and exported is None:
                exported = found[0].parent
                finished_s = time.time() - t0
                break
            if proc.poll() is not None:
                print(f"the daemon exited ({proc.returncode}); log: {log_path}")
                break
            time.sleep(5)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    runs = _runs(home)
    print(json.dumps({"export": exported.name if exported else None, "seconds_to_export": round(finished_s, 1) if finished_s else None,
                      "budget_s": args.budget_s, "runs": runs, "work": str(work)}, indent=1))
    ok = exported is not None
    if ok and args.reference:
        ref = Path(args.reference) / "exports" / exported.name
        same = [p.relative_to(exported).as_posix() for p in sorted(exported.rglob("*")) if p.is_file()
                and (ref / p.relative_to(exported)).is_file() and (ref / p.relative_to(exported)).read_bytes() == p.read_bytes()]
        files = [p for p in exported.rglob("*") if p.is_file()]
        print(f"byte-identical to the reference export {ref}: {len(same)} of {len(files)} files")
        ok = len(same) == len(files) and ref.is_dir()
    return 0 if ok else 1


def _runs(home: Path) -> dict:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        out: dict = {}
        for run in instance.get_runs():
            key = f"{run.job_name}:{run.status.value}"
            out[key] = out.get(key, 0) + 1
        return out


if __name__ == "__main__":
    sys.exit(main())
