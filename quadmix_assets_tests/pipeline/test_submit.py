"""`quadmix run --submit`: the CLI as a client of the instance. It executes nothing itself: every run of
the loop goes to the instance's run launcher (here Dagster's default launcher: a process per run, started
by the code server of workspace.yaml), and the CLI follows them. Same progress lines and summary, and the
same optimum and byte-identical export files as `quadmix run` executing in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance

from .conftest import assert_same_export, make_settings

REPO = Path(__file__).resolve().parents[2]


def test_submit_launches_every_run_and_gives_the_same_export(demo_run, two_shard_corpus, tmp_path):
    settings, _, summary, _ = demo_run
    other = make_settings(str(two_shard_corpus / "*.jsonl.gz"), tmp_path / "storage")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "QUADMIX_EXECUTOR": "in_process", "TQDM_DISABLE": "1"}
    env.pop("QUADMIX_CONFIGS", None)
    cmd = [sys.executable, "-m", "quadmix_assets.cli", "run", "--submit", "--preset", "test",
           "--corpus", other.corpus_glob, "--storage", other.storage_root, "--data-dir", other.data_dir]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert f"optimum {summary.optimum} exported" in out, out[-3000:]
    assert "[round 2]" in out and "[optimum proxy 1/1]" in out
    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        # every run was launched by the run launcher (none executed in the CLI's process), and tagged by the loop
        assert runs and all(r.tags.get("quadmix/loop") for r in runs)
        assert not any("quadmix/runner" in r.tags for r in runs)
        assert instance.get_dynamic_partitions("exports") == [summary.optimum]
    assert_same_export(settings.storage(), other.storage(), summary.optimum)
