"""A test stand-in for the kubelet (and the Job controller): it runs the Jobs that dagster-k8s creates
through a real Kubernetes API server as local processes, and writes each Job's status back through the
API. Nothing here is a node: no image is pulled, no pod is scheduled, no container is isolated.

What it does, for every batch/v1 Job that appears in its namespace:

1. reads the Job back from the API server (the object the server accepted, defaulted and stored);
2. takes the pod template's first container and builds the process from it:

   * **argv** = ``command`` + ``args`` (the image has no ENTRYPOINT, so with no ``command`` the ``args``
     are the whole command line, as a container runtime would run them). The image's interpreter
     (``/usr/local/bin/python`` in ``deploy/Dockerfile``'s base image: run commands start with it) is mapped
     to this checkout's Python (:attr:`executables`), and a bare command name (step commands start with
     ``dagster``, a console script on the image's PATH) to the script of that name beside it;
   * **environment**, in the order Kubernetes builds it: the image's own ``ENV`` (read from
     ``deploy/Dockerfile``), then every ``envFrom`` ConfigMap and Secret, then ``env`` (which wins), with
     ``valueFrom`` ``secretKeyRef`` / ``configMapKeyRef`` / ``fieldRef`` (metadata.name, metadata.namespace)
     resolved -- every ConfigMap and Secret read through the API, as the kubelet reads them. ``HOSTNAME`` is
     the pod's name, as in a pod. From this machine only ``PATH``, ``HOME``, ``LANG`` and ``TMPDIR`` are
     kept (the image's own are not meaningful here) plus :attr:`node_env` (set by the test: thread caps);
   * **paths** inside the image are mapped to this machine by prefix, in environment values and argv
     (:attr:`paths`): the image's working directory ``/opt/quadmix/app`` -> this checkout (also the
     process' working directory: the image installs the package from there, this checkout has it
     installed editable), ``/opt/quadmix/shared/data`` -> the reference data beside the checkout,
     ``/opt/dagster/dagster_home`` -> an empty folder per harness (the image's empty ``DAGSTER_HOME``;
     dagster 1.13 processes load the instance from the ``instance_ref`` in their arguments, not from it);
   * **images**: every image (the CPU and the GPU build) runs as this checkout; the image is recorded per
     Job so that the test can check which one was asked for. GPU limits are not enforced: GPU steps run
     on the CPU (their ``nvidia.com/gpu`` limit, node selector and tolerations stay in the Job, where the
     test reads them);
3. patches the Job's ``status`` subresource as the Job controller would: ``startTime`` and ``active: 1``
   when the process starts; ``succeeded: 1`` and a ``Complete`` condition (exit code 0), or ``failed: 1``
   and a ``Failed`` condition, plus ``completionTime``, when it ends. dagster-k8s reads only the Job's
   status while a run or step runs (``get_job_status``: the step handler's health check, the run launcher's
   run-worker health check); it reads pods only for debug text after a failure, so no Pod objects are made.

Run workers (label ``app.kubernetes.io/component=run_worker``) start at once; step workers wait for one
of ``slots`` (a node's capacity: pods beyond it stay pending), so a test on a small machine does not start
dozens of Python processes at once. Each process' stdout and stderr go to ``<log_dir>/<job name>.log``.

**Warm start** (``prefork=True``; the test's default, ``QUADMIX_K8S_HARNESS_PREFORK=0`` turns it off): a
Dagster command (``python -m dagster ...`` or the ``dagster`` script) is not exec'd from scratch but forked
from a waiting interpreter (:func:`zygote`, started once with the harness' base environment) that has
already imported the third-party libraries every such process loads (:data:`PRELOAD`: dagster, torch,
scipy, pyarrow, ...; none of them reads a pod's variables at import). The child then takes the pod's
environment in full (``os.environ`` replaced), working directory, argv and log file, and runs Dagster's CLI
entry point, which imports ``quadmix_assets`` in that child -- so the code location and everything that
reads the pod's environment start fresh, as in a container. It saves the ~10 s of imports per process that
dominate a test with ~80 Jobs on a small machine; it is a harness detail, like the process itself.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import kubernetes
import kubernetes.watch

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
#: the base image's interpreter (python:3.11-slim), which dagster-k8s puts first in every run and step command
IMAGE_PYTHON = "/usr/local/bin/python"
#: the image's working directory (deploy/Dockerfile WORKDIR)
IMAGE_WORKDIR = "/opt/quadmix/app"
KEPT_FROM_HOST = ("PATH", "HOME", "LANG", "TMPDIR")
#: imported once by the warm-start interpreter (third-party only: quadmix reads the pod's env when it loads)
PRELOAD = ("dagster", "dagster._cli", "dagster_k8s", "dagster_postgres", "psycopg2", "sqlalchemy", "kubernetes",
           "numpy", "scipy.stats", "torch", "pyarrow", "pyarrow.parquet", "duckdb", "matplotlib", "fsspec", "s3fs")


def image_env(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """The ``ENV`` of a Dockerfile (``K=V`` pairs, line continuations joined)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                if "=" in pair:
                    k, v = pair.split("=", 1)
                    out[k] = v
    return out


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodRun:
    """One Job as the harness ran it."""

    name: str
    component: str  # run_worker | step_worker
    labels: dict
    image: str
    argv: list[str]
    env: dict[str, str]
    resources: dict
    node_selector: dict
    tolerations: list
    log: Path
    pid: int | None = None
    returncode: int | None = None
    started: float | None = None
    ended: float | None = None
    job: dict = field(default_factory=dict, repr=False)  # the Job as the API server returned it

    @property
    def seconds(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started


class KubeletHarness:
    """Runs every Job of ``namespace`` as a local process (see the module docstring).

    ``api_client``: a client allowed to read Jobs, ConfigMaps and Secrets and to patch ``jobs/status``
    (the test's cluster-admin client: the kubelet and the Job controller have their own identities)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str, log_dir: Path, *,
                 paths: dict[str, str], slots: int = 2, node_env: dict[str, str] | None = None,
                 prefork: bool = False, poll_s: float = 0.5):
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.api_client = api_client
        self.namespace = namespace
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.paths = dict(sorted(paths.items(), key=lambda kv: -len(kv[0])))  # longest prefix first
        self.executables = {IMAGE_PYTHON: sys.executable, "python": sys.executable, "python3": sys.executable}
        self.node_env = dict(node_env or {})
        self.prefork = prefork
        self.poll_s = poll_s
        self.pods: dict[str, PodRun] = {}
        self.errors: list[str] = []
        self._slots = threading.Semaphore(max(1, slots))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._procs: dict[str, subprocess.Popen] = {}
        self._forked: dict[str, int] = {}  # Job name -> pid of a warm-started process still running
        self._zygote: _Zygote | None = None
        self._watcher: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> KubeletHarness:
        if self.prefork:
            self._zygote = _Zygote(self.base_env(), self.log_dir / "zygote.log")
        self._watcher = threading.Thread(target=self._watch, name="kubelet-harness", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with self._lock:
            procs, forked = list(self._procs.values()), dict(self._forked)
        for p in procs:  # only the processes this harness started
            if p.poll() is None:
                p.terminate()
        for pid in forked.values():
            _signal(pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        deadline = time.monotonic() + 30
        while self._forked and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in dict(self._forked).values():
            _signal(pid, signal.SIGKILL)
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        for t in list(self._threads):
            t.join(timeout=10)
        if self._zygote is not None:
            self._zygote.close()

    # --- mapping -----------------------------------------------------------------------------------
    def map_path(self, value: str) -> str:
        for image_path, local in self.paths.items():
            if value == image_path or value.startswith(image_path + "/"):
                return local + value[len(image_path):]
        return value

    def _api(self, call, *args, **kwargs):
        """An API call, retried a few times on a transient failure (5xx, 429, a dropped connection), as
        the kubelet's and the Job controller's own clients do."""
        import urllib3

        for attempt in range(5):
            try:
                return call(*args, **kwargs)
            except kubernetes.client.ApiException as exc:
                if attempt == 4 or not (exc.status == 429 or (exc.status or 0) >= 500):
                    raise
            except urllib3.exceptions.HTTPError:
                if attempt == 4:
                    raise
            time.sleep(1 + attempt)

    def _config_map(self, name: str) -> dict[str, str]:
        return dict(self._api(self.core.read_namespaced_config_map, name, self.namespace).data or {})

    def _secret(self, name: str) -> dict[str, str]:
        data = self._api(self.core.read_namespaced_secret, name, self.namespace).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _value_from(self, source: dict, pod_name: str) -> str | None:
        if ref := source.get("secretKeyRef"):
            try:
                return self._secret(ref["name"]).get(ref["key"])
            except kubernetes.client.ApiException:
                if ref.get("optional"):
                    return None
                raise
        if ref := source.get("configMapKeyRef"):
            try:
                return self._config_map(ref["name"]).get(ref["key"])
            except kubernetes.client.ApiException:
                if ref.get("optional"):
                    return None
                raise
        if ref := source.get("fieldRef"):
            return {"metadata.name": pod_name, "metadata.namespace": self.namespace}.get(ref["fieldPath"])
        raise ValueError(f"unsupported valueFrom {source}")

    def base_env(self) -> dict[str, str]:
        """What every process starts from: ``PATH``/``HOME``/``LANG``/``TMPDIR`` of this machine, the image's
        ``ENV``, the node's :attr:`node_env` (paths mapped)."""
        env = {k: os.environ[k] for k in KEPT_FROM_HOST if k in os.environ}
        env.update(image_env())
        env.update(self.node_env)
        return {k: self.map_path(v) for k, v in env.items()}

    def container_env(self, container: dict, pod_name: str) -> dict[str, str]:
        """The container's environment as the kubelet assembles it (image ENV < envFrom < env)."""
        env = self.base_env()
        env["HOSTNAME"] = pod_name
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if ref := source.get("configMapRef"):
                values = self._config_map(ref["name"])
            elif ref := source.get("secretRef"):
                values = self._secret(ref["name"])
            else:
                raise ValueError(f"unsupported envFrom {source}")
            env.update({prefix + k: v for k, v in values.items()})
        for var in container.get("env") or []:
            if "valueFrom" in var:
                value = self._value_from(var["valueFrom"], pod_name)
                if value is None:
                    continue
            else:
                value = var.get("value", "")
            env[var["name"]] = value
        return {k: self.map_path(v) for k, v in env.items()}

    def argv(self, container: dict) -> list[str]:
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if not argv:
            raise ValueError("container has neither command nor args (the image's CMD is not run here)")
        exe = self.executables.get(argv[0], argv[0])
        if "/" not in exe:  # a name on the image's PATH (console scripts live beside its interpreter)
            local = Path(sys.executable).parent / exe
            exe = str(local) if local.exists() else exe
        return [exe, *(self.map_path(a) for a in argv[1:])]

    # --- the loop ------------------------------------------------------------------------------------
    def _start(self, job, seen: set[str]) -> None:
        if job.metadata.uid in seen or (job.status and job.status.start_time is not None):
            return
        seen.add(job.metadata.uid)
        t = threading.Thread(target=self._run_job, args=(self.api_client.sanitize_for_serialization(job),),
                             name=f"pod-{job.metadata.name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _watch(self) -> None:
        """List the namespace's Jobs once, then watch for new ones (a relist when the watch expires)."""
        seen: set[str] = set()
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = self.batch.list_namespaced_job(self.namespace)
                    for job in listed.items:
                        self._start(job, seen)
                    version = listed.metadata.resource_version
                stream = kubernetes.watch.Watch().stream(
                    self.batch.list_namespaced_job, self.namespace, resource_version=version, timeout_seconds=2)
                for event in stream:
                    job = event["object"]
                    version = job.metadata.resource_version
                    if event["type"] == "ADDED":
                        self._start(job, seen)
                    if self._stop.is_set():
                        break
            except kubernetes.client.ApiException as exc:
                if exc.status == 410:  # the watch's resource version is too old: list again
                    version = None
                    continue
                if not self._stop.is_set():
                    self.errors.append(f"watch jobs: {exc!r}")
                self._stop.wait(self.poll_s)
            except Exception as exc:  # noqa: BLE001 - the server may be going away at teardown
                if not self._stop.is_set():
                    self.errors.append(f"watch jobs: {exc!r}")
                self._stop.wait(self.poll_s)

    def _patch_status(self, name: str, status: dict) -> None:
        # a JSON merge patch (the client would send a dict as a JSON patch)
        self._api(self.batch.patch_namespaced_job_status, name, self.namespace, {"status": status},
                  _content_type="application/merge-patch+json")

    def _run_job(self, job: dict) -> None:
        name = job["metadata"]["name"]
        try:
            spec = job["spec"]["template"]["spec"]
            container = spec["containers"][0]
            labels = dict(job["metadata"].get("labels") or {})
            component = labels.get("app.kubernetes.io/component", "")
            pod_name = job["spec"]["template"]["metadata"].get("name") or name
            pod = PodRun(
                name=name, component=component, labels=labels, image=container.get("image", ""),
                argv=self.argv(container), env=self.container_env(container, pod_name),
                resources=container.get("resources") or {}, node_selector=spec.get("nodeSelector") or {},
                tolerations=spec.get("tolerations") or [], log=self.log_dir / f"{name}.log", job=job,
            )
            with self._lock:
                self.pods[name] = pod
            slot = self._slots if component != "run_worker" else None
            if slot is not None:
                while not slot.acquire(timeout=0.5):  # pending: no room on the "node"
                    if self._stop.is_set():
                        return
            try:
                if self._stop.is_set():
                    return
                self._execute(pod)
            finally:
                if slot is not None:
                    slot.release()
        except Exception as exc:  # noqa: BLE001 - reported to the test, and the Job marked failed
            self.errors.append(f"{name}: {exc!r}")
            try:
                failed = self._condition("Failed", "HarnessError", repr(exc))
                self._patch_status(name, {"failed": 1, "conditions": [failed]})
            except Exception:  # noqa: BLE001
                pass

    @staticmethod
    def _condition(kind: str, reason: str, message: str = "") -> dict:
        now = _now()
        return {"type": kind, "status": "True", "reason": reason, "message": message[:1000],
                "lastProbeTime": now, "lastTransitionTime": now}

    def _execute(self, pod: PodRun) -> None:
        self._patch_status(pod.name, {"startTime": _now(), "active": 1})
        cwd = self.map_path(IMAGE_WORKDIR)
        command = dagster_command(pod.argv) if self._zygote is not None else None
        if command is not None:
            pod.pid = self._zygote.spawn(*command, env=pod.env, cwd=cwd, log=pod.log)
            pod.started = time.monotonic()
            with self._lock:
                self._forked[pod.name] = pod.pid
            pod.returncode = self._zygote.wait(pod.pid)
            pod.ended = time.monotonic()
            with self._lock:
                self._forked.pop(pod.name, None)
        else:
            with open(pod.log, "wb") as log:
                proc = subprocess.Popen(pod.argv, env=pod.env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
                pod.pid, pod.started = proc.pid, time.monotonic()
                with self._lock:
                    self._procs[pod.name] = proc
                pod.returncode = proc.wait()
                pod.ended = time.monotonic()
        if self._stop.is_set() and pod.returncode != 0:
            return  # terminated at teardown: the server may be gone
        done = {"active": 0, "completionTime": _now()} if pod.returncode == 0 else {"active": 0}
        if pod.returncode == 0:
            complete = self._condition("Complete", "Completed")
            self._patch_status(pod.name, {**done, "succeeded": 1, "conditions": [complete]})
        else:
            self._patch_status(pod.name, {**done, "failed": 1, "conditions": [
                self._condition("Failed", "BackoffLimitExceeded", f"container exited with code {pod.returncode}")]})

    # --- for the test --------------------------------------------------------------------------------
    def running(self) -> list[str]:
        with self._lock:
            return [n for n, p in self._procs.items() if p.poll() is None] + list(self._forked)

    def log_tail(self, name: str, chars: int = 4000) -> str:
        pod = self.pods.get(name)
        if pod is None or not pod.log.exists():
            return ""
        return pod.log.read_text(errors="replace")[-chars:]


# --- warm start -------------------------------------------------------------------------------------------
def dagster_command(argv: list[str]) -> tuple[list[str], bool] | None:
    """``(arguments after "dagster", run as "-m")`` when ``argv`` (mapped) starts Dagster's CLI, else None."""
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1:3] == ["-m", "dagster"]:
        return argv[3:], True
    if argv and Path(argv[0]).name == "dagster" and Path(argv[0]).parent == Path(sys.executable).parent:
        return argv[1:], False
    return None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class _Zygote:
    """The harness' side of :func:`zygote`: ask it to fork a Dagster command, learn its pid and exit code."""

    def __init__(self, env: dict[str, str], log: Path):
        self._log = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, "-m", __name__, "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=env, cwd=str(REPO))
        ready = self.proc.stdout.readline()
        if json.loads(ready or b"{}").get("ready") is not True:
            self.close()
            raise RuntimeError(f"the warm-start interpreter did not start: {Path(log).read_text()[-2000:]}")
        self._cond = threading.Condition()
        self._started: dict[int, int] = {}
        self._exited: dict[int, int] = {}
        self._next = 0
        self._dead = False
        threading.Thread(target=self._read, name="zygote-reader", daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._cond:
                if "started" in msg:
                    self._started[msg["id"]] = msg["started"]
                if "exited" in msg:
                    self._exited[msg["exited"]] = msg["rc"]
                self._cond.notify_all()
        with self._cond:
            self._dead = True
            self._cond.notify_all()

    def spawn(self, args: list[str], module: bool, *, env: dict, cwd: str, log: Path) -> int:
        with self._cond:
            self._next += 1
            rid = self._next
            request = {"id": rid, "args": args, "module": module, "env": env, "cwd": cwd, "log": str(log)}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            while rid not in self._started:
                if self._dead:
                    raise RuntimeError("the warm-start interpreter exited")
                self._cond.wait(1)
            return self._started.pop(rid)

    def wait(self, pid: int) -> int:
        with self._cond:
            while pid not in self._exited:
                if self._dead:
                    raise RuntimeError("the warm-start interpreter exited")
                self._cond.wait(1)
            return self._exited.pop(pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def _child(request: dict) -> None:
    """In the forked child: become the pod's process (session, stdio, cwd, environment, argv), run Dagster's
    CLI, exit with its code. Never returns."""
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # what `python -m dagster` / the `dagster` script would have as __main__, argv[0] and sys.path[0]
        # (multiprocessing's spawn re-imports __main__ in its children; click names the program from it)
        import importlib.util
        import types

        main_module = types.ModuleType("__main__")
        if request["module"]:
            spec = importlib.util.find_spec("dagster.__main__")
            main_module.__spec__, main_module.__file__, main_module.__package__ = spec, spec.origin, "dagster"
            sys.path[0] = request["cwd"]
        else:
            main_module.__spec__, main_module.__file__ = None, str(Path(sys.executable).parent / "dagster")
            sys.path[0] = str(Path(sys.executable).parent)
        sys.modules["__main__"] = main_module
        sys.argv = [main_module.__file__, *request["args"]]
        from dagster._cli import main

        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported in the pod's log, as an uncaught exception would be
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # noqa: SLF001 - what interpreter exit would run
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001
                    pass
            os._exit(code)


def zygote() -> None:
    """The warm-start interpreter: import :data:`PRELOAD`, say ready, then fork one child per request read
    from stdin (one JSON line: args, module, env, cwd, log) and report ``started`` (pid) and ``exited``
    (exit code) on stdout. Single-threaded, so forking is safe; exits when stdin closes."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing optional library is imported by the child if needed
            print(f"preload {name}: {exc!r}", file=sys.stderr, flush=True)
    early = sorted(m for m in sys.modules if m.split(".")[0] == "quadmix_assets")
    if early:  # it would be shared by every child, loaded with this interpreter's environment
        raise SystemExit(f"the warm-start interpreter imported {early}")
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing but the protocol reaches the harness

    def say(msg: dict) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    say({"ready": True})
    pending, live = b"", 0
    while True:
        readable, _, _ = select.select([0], [], [], 0.1)
        if readable:
            chunk = os.read(0, 1 << 20)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    out.close()
                    _child(request)
                live += 1
                say({"id": request["id"], "started": pid})
        while live:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            live -= 1
            say({"exited": pid, "rc": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__" and sys.argv[1:] == ["--zygote"]:
    zygote()
