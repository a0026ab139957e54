"""``quadmix ui`` as a user runs it: ``dagster dev`` (webserver, daemon, code server) starts in a session of its
own with the settings of the last ``quadmix run``, and SIGTERM to ``quadmix ui`` stops every one of those
processes and frees the port. The settings are read from the live processes' environments (``/proc``), as
the code server that launches the UI's runs has them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from quadmix_assets import cli
from quadmix_assets.dagster_support.resources import QuadmixSettings, launch_environment

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads processes from /proc (Linux)")

START_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _session(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and (f := _stat(int(name))) is not None and int(f[3]) == sid and f[0] != "Z":
            out.append(int(name))
    return out


def _children(pid: int) -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and (f := _stat(int(n))) is not None and int(f[1]) == pid]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _location_loaded(port: int) -> bool:
    query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                                 "locationOrLoadError { __typename } } } } }"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            entries = json.loads(resp.read())["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return any(e["loadStatus"] == "LOADED" and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
               for e in entries)


def test_sigterm_stops_every_dagster_process_and_frees_the_port(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # what `quadmix run` saves after a run that found shards; the corpus here finds none, so the loop
    # sensor's ticks under the daemon start no run
    (tmp_path / "corpus").mkdir()
    settings = QuadmixSettings.from_env(corpus_glob=str(tmp_path / "corpus" / "*.jsonl"), storage_root=str(tmp_path / "s"),
                                        preset="test", text_field="body", id_field="doc_id",
                                        export_tokenizer="bundled:smollm2", max_json_depth=7)
    saved = launch_environment(settings)
    (home / cli.LAST_RUN).write_text(json.dumps(saved))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUADMIX_")}
    env |= {"QUADMIX_TEXT_FIELD": "text", "QUADMIX_CONFIGS": "99", "QUADMIX_LOOP_INTERVAL": "3600"}
    proc = subprocess.Popen([sys.executable, "-m", "quadmix_assets.cli", "ui", "--port", str(port), "--dagster-home", str(home)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + START_TIMEOUT_S
        while not _location_loaded(port):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < end, "the UI did not load the code location in time"
            time.sleep(2)
        (dev,) = _children(proc.pid)  # dagster dev, in a session of its own
        assert "dagster" in _cmdline(dev) and " dev " in _cmdline(dev)
        sid = int(_stat(dev)[3])
        assert sid == dev != os.getsid(proc.pid)
        members = _session(sid)
        kinds = " | ".join(_cmdline(p) for p in members)
        assert "dagster_webserver" in kinds and "dagster._daemon" in kinds, kinds
        code_servers = [p for p in members if " grpc " in _cmdline(p) or " code-server " in _cmdline(p)]
        assert code_servers, kinds
        # every setting of the last run reaches the processes that load the code location and launch runs;
        # the environment's own (QUADMIX_TEXT_FIELD=text, QUADMIX_CONFIGS) do not
        for pid in members:
            child_env = _environ(pid)
            assert {k: child_env.get(k) for k in saved} == saved, _cmdline(pid)
            assert "QUADMIX_CONFIGS" not in child_env and child_env["DAGSTER_HOME"] == str(home)
        server = code_servers[-1]
        from unittest import mock

        with mock.patch.dict(os.environ, _environ(server), clear=True):  # the code location's view of them
            launched = QuadmixSettings.read_at_launch()
            got = {f: getattr(launched, f) for f in ("text_field", "id_field", "export_tokenizer", "max_json_depth")}
            resolved = {f: (v.get_value() if hasattr(v, "get_value") else v) for f, v in got.items()}
        assert resolved == {"text_field": "body", "id_field": "doc_id", "export_tokenizer": "bundled:smollm2",
                            "max_json_depth": 7}

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=cli.UI_GRACE_S + 2 * cli.UI_LEFTOVER_GRACE_S + 30)
        output = proc.stdout.read()
        assert code == 128 + signal.SIGTERM, output
        assert "stopping Dagster" in output and "stopped" in output
        assert _session(sid) == [], [(p, _cmdline(p)) for p in _session(sid)]
        assert all(_stat(p) is None or _stat(p)[0] == "Z" for p in members)
        with socket.socket() as s:  # nothing listens any more
            assert s.connect_ex(("127.0.0.1", port)) != 0
        with socket.socket() as s:  # and the port can be bound again
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _session(dev) if "dev" in locals() else []:
            os.kill(pid, signal.SIGKILL)
