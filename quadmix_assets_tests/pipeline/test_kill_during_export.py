"""A run killed (SIGKILL) while it writes an export leaves nothing half-written under the final name, and
the export written again is byte-identical to the one of an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from quadmix_assets.storage import StorageRoot, layout


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


SCRIPT = textwrap.dedent("""
    import sys
    from dagster import DagsterInstance
    from quadmix_assets.defs.resources import QuadmixSettings
    from quadmix_assets.definitions import build_definitions

    def main():
        corpus, storage, key = sys.argv[1:4]
        settings = QuadmixSettings.from_env(corpus_glob=corpus, storage_root=storage, preset="test")
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("mixtures", [key])
        instance.add_dynamic_partitions("exports", [key])
        res = build_definitions(settings).resolve_job_def("export_job").execute_in_process(instance=instance, partition_key=key)
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
    exports = copy / "exports"
    proc = subprocess.Popen(args, start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:  # kill as soon as the staged folder has files
            staged = [p for p in exports.glob("*.tmp-*")] if exports.exists() else []
            if any(any(p.rglob("*")) for p in staged):
                break
            time.sleep(0.05)
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
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _tree(copy / layout.export_dir(key)) == want
