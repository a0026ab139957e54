"""Every worker pool dies with its parent (issue 28): a process that trains proxies (or runs any quadmix
process pool) is killed with SIGKILL, and its workers are gone within seconds instead of training on for
minutes. The workers here only record their pid and sleep; the pools are the real ones
(:func:`quadmix_assets.proxy.parallel.train_and_score`, :func:`quadmix_assets.worker_pool.process_pool`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import quadmix_assets
from quadmix_assets import libc

REPO = Path(quadmix_assets.__file__).resolve().parent.parent
PID_DIR_ENV = "QUADMIX_TEST_POOL_PIDS"

pytestmark = pytest.mark.skipif(libc.function("prctl") is None, reason="PR_SET_PDEATHSIG is Linux-only")


def record_pid_and_sleep(*_args, **_kwargs) -> None:
    """A worker task: write this worker's pid where the test reads it, then outlive any test."""
    Path(os.environ[PID_DIR_ENV], str(os.getpid())).touch()
    time.sleep(120)


# the parent: start a pool of 2 workers busy with record_pid_and_sleep, and wait on it
_PARENTS = {
    "proxy": """
import types
import numpy as np
from quadmix_assets.proxy import parallel
from quadmix_assets_tests.proxy.test_pool_dies_with_parent import record_pid_and_sleep

parallel._train_group = record_pid_and_sleep  # submitted by name from train_and_score; the pool is its own
parallel.train_and_score(types.SimpleNamespace(steps=1, batch_size=1, seq_len=1), np.zeros((2, 1, 2), np.int64), {},
                         seeds=[0, 0], group_size=1, workers=2, device="cpu")
""",
    "process_pool": """
from quadmix_assets.worker_pool import process_pool
from quadmix_assets_tests.proxy.test_pool_dies_with_parent import record_pid_and_sleep

with process_pool(2) as pool:
    for f in [pool.submit(record_pid_and_sleep) for _ in range(2)]:
        f.result()
""",
}


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("pool", sorted(_PARENTS))
def test_workers_die_within_seconds_of_a_sigkilled_parent(pool, tmp_path):
    env = {**os.environ, PID_DIR_ENV: str(tmp_path), "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", _PARENTS[pool]], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2:
            assert parent.poll() is None, parent.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
            workers = [int(p.name) for p in tmp_path.iterdir() if re.fullmatch(r"\d+", p.name)]
        assert all(_alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in workers if _alive(pid)] == [], "workers outlived their SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in workers:  # only if the test failed: end the workers it started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_every_process_pool_is_made_by_worker_pool():
    """No module starts a pool of its own: a new ``ProcessPoolExecutor`` or ``multiprocessing`` pool would
    not die with its parent. The partition pool (run_pool.py) makes its own, and calls die_with_parent."""
    src = REPO / "quadmix_assets"
    own = re.compile(r"ProcessPoolExecutor\(|\.Pool\(|multiprocessing\.Process\(|mp\.Process\(|get_context\([^)]*\)\.Process\(")
    offenders = [str(p.relative_to(REPO)) for p in sorted(src.rglob("*.py"))
                 if p.name not in ("worker_pool.py", "run_pool.py") and own.search(p.read_text())]
    assert offenders == []
    assert "_die_with_parent()" in (src / "run_pool.py").read_text()
