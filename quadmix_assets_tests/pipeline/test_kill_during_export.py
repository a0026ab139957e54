"""A run killed (SIGKILL) while it writes an export leaves nothing half-written under the final name, and
the export written again is byte-identical to the one of an uninterrupted run.

The export of the test preset takes about a second, too short to catch by polling on a loaded machine (CI once
saw it finish first). So the child holds still right after it has staged its first file, says so through a
marker file, and the parent kills it there: the kill always lands mid-export, between a staged file and the
manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dagster import RunsFilter

from quadmix_assets.storage import StorageRoot, layout


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


SCRIPT = textwrap.dedent("""
    import json
    import os
    import sys
    import time
    from pathlib import Path
    from dagster import DagsterInstance
    from quadmix_assets.dagster_support.resources import QuadmixSettings
    from quadmix_assets.definitions import build_definitions
    from quadmix_assets.storage.root import TMP_MARK, StorageRoot

    def hold_after_first_staged_file(marker):
        write_file = StorageRoot.write_file

        def write_then_hold(self, relpath, local_file):
            out = write_file(self, relpath, local_file)
            if TMP_MARK in relpath:
                Path(marker).write_text(relpath)
                time.sleep(600)  # the parent kills us here
            return out

        StorageRoot.write_file = write_then_hold

    def main():
        corpus, storage, key = sys.argv[1:4]
        if len(sys.argv) > 4:
            hold_after_first_staged_file(sys.argv[4])
        settings = QuadmixSettings.from_env(corpus_glob=corpus, storage_root=storage, preset="test")
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("mixtures", [key])
        instance.add_dynamic_partitions("exports", [key])
        tags = json.loads(os.environ["QUADMIX_EXPORT_TAGS"])  # the loop's export run's tags: why it is exported
        res = build_definitions(settings).resolve_job_def("export_job").execute_in_process(
            instance=instance, partition_key=key, tags=tags)
        sys.exit(0 if res.success else 1)

    if __name__ == "__main__":
        main()
""")


def test_kill_during_export_then_rerun_gives_the_same_bytes(demo_run, tmp_path):
    settings, instance, summary, _ = demo_run
    key = summary.optimum
    original = Path(settings.storage_root) / layout.export_dir(key)
    want = _tree(original)
    assert want and "manifest.json" in want
    copy = tmp_path / "storage"
    shutil.copytree(settings.storage_root, copy)
    shutil.rmtree(copy / layout.export_dir(key))
    script = tmp_path / "export.py"
    script.write_text(SCRIPT)
    args = [sys.executable, str(script), settings.corpus_glob, str(copy), key]
    # the rerun carries the tags the loop gave the export run (what it is exported as, and the comparison it was
    # chosen by), as a re-execution of that run does: the manifest records them
    (run,) = instance.get_runs(RunsFilter(job_name="export_job"), limit=1)
    env = {**os.environ, "QUADMIX_EXPORT_TAGS": json.dumps({k: v for k, v in run.tags.items() if k.startswith("quadmix/")})}
    exports = copy / "exports"
    marker = tmp_path / "staged"
    proc = subprocess.Popen([*args, str(marker)], start_new_session=True, env=env)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and not marker.exists():
            time.sleep(0.05)
        assert marker.exists(), "the export never staged a file"
        staged = [p for p in exports.glob("*.tmp-*")]
        assert staged and any(p.is_file() for s in staged for p in s.rglob("*")), "no staged file on disk"
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed, "the export finished before it could be killed"
    # nothing visible under the final name; the leftovers are temp files that listings skip
    assert not (copy / layout.export_dir(key)).exists()
    storage = StorageRoot(str(copy))
    assert not [p for p in storage.list("exports") if ".tmp-" in p]
    assert storage.temp_files()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _tree(copy / layout.export_dir(key)) == want
