"""The cluster path end to end: the whole optimisation loop, every run a Kubernetes Job and every step a
Kubernetes Job, against a real kube-apiserver + etcd, a real PostgreSQL and an S3-compatible server.

What is real: the API server (validation, defaulting, RBAC: every Job is created by the chart's service
account, deploy/rbac.yaml); the instance (deploy/dagster.yaml: PostgreSQL storage, the K8sRunLauncher,
the op-granular ``gpu`` pool); the code location's environment (deploy/values.yaml's user deployment:
``QUADMIX_EXECUTOR=k8s``, ``QUADMIX_DEPLOYMENT=cluster``, the pod shapes; storage and corpus moved to the
test bucket, preset ``test``), handed to every run and step pod as the chart's
``includeConfigInLaunchedRuns`` does; credentials only in Secrets, instance settings in a ConfigMap; the
``quadmix_loop`` sensor deciding every step; dagster-k8s' ``K8sRunLauncher`` and ``k8s_job_executor``
(``K8sStepHandler``) creating the Jobs.

What is not: no node. The pods are executed by a test harness (:mod:`.kubelet_harness`), not by a
kubelet: it runs each Job's container command, with the args and environment the API returned, as a local
process (on the CPU, GPU steps included) and writes the Job's status back through the API. The test plays
the daemon: it ticks the sensor in-process and launches each run it requests through the instance's run
launcher (what the queued run coordinator does), then waits for the run to end.

Asserted: the loop reaches its export; every run ran in its own run-worker Job and every step of every run
in its own step Job, in the process the harness started for that Job (its pid is in the step's
``STEP_WORKER_STARTED`` event); GPU steps (``pod_tags("gpu")``) asked for ``nvidia.com/gpu`` with the GPU
image, node selector and tolerations, CPU steps did not; the export is in the bucket.

Size: 200 documents, preset ``test``: 19 runs and 60 step Jobs (asset checks are steps too). Each Job is a
Python process that imports Dagster, torch and the code location; the harness forks them from a warm
interpreter by default (``QUADMIX_K8S_HARNESS_PREFORK=0``: a cold process each, about twice as slow).
"""

from __future__ import annotations

import gzip
import os
import time
import uuid
from pathlib import Path

import kubernetes
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, SensorResult, SkipReason, build_sensor_context
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.tags import PARTITION_NAME_TAG

from quadmix_assets import settings as env
from quadmix_assets.dagster_support.k8s import K8S_CONFIG_TAG, requests_gpu
from quadmix_assets_tests.deploy.conftest import SHARD
from quadmix_assets_tests.deploy.k8s_support import (
    GPU_IMAGE,
    IMAGE,
    deploy_yaml,
    launcher_env,
    run_launcher_config,
    step_tags,
)
from quadmix_assets_tests.deploy.kubelet_harness import IMAGE_PYTHON, IMAGE_WORKDIR, KubeletHarness

# the fixtures of the other deploy tests: the API server (+ namespace, RBAC, service-account kubeconfig),
# PostgreSQL and the S3 server, each started for this module too
from quadmix_assets_tests.deploy.test_deploy_apiserver import apiserver, cluster  # noqa: F401
from quadmix_assets_tests.deploy.test_deploy_postgres import postgres  # noqa: F401
from quadmix_assets_tests.deploy.test_deploy_s3 import s3_server  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

REPO = Path(__file__).resolve().parents[2]
BUCKET = "quadmix-loop"
#: image paths (deploy/Dockerfile) -> this machine, for the harness and for this process (the code location)
IMAGE_DATA_DIR = "/opt/quadmix/shared/data"
IMAGE_DAGSTER_HOME = "/opt/dagster/dagster_home"
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
MAX_TICKS = 60
#: documents of the corpus (the first of the bundled shard-00000): the smallest that the whole loop runs on
#: (with the 40 of `tiny_corpus` one of the test preset's 4 drawn mixtures selects no document, so only 3
#: proxies finish and the regressor, which needs 4, fails)
LOOP_DOCS = 200
LOOP_DEADLINE_S = float(os.environ.get("QUADMIX_K8S_LOOP_DEADLINE_S", 3600))
STEP_SLOTS = int(os.environ.get("QUADMIX_K8S_HARNESS_SLOTS", 2))
#: fork each Dagster process from a warm interpreter (kubelet_harness, "Warm start"); 0: a cold process each
PREFORK = os.environ.get("QUADMIX_K8S_HARNESS_PREFORK", "1") != "0"


@pytest.fixture(scope="module")
def loop_corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("loop-corpus")
    with gzip.open(SHARD, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(LOOP_DOCS)]
    with gzip.open(d / "webtext-00000.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(lines)
    return d


def code_location_env(overrides: dict[str, str]) -> list[dict[str, str]]:
    """deploy/values.yaml's user-deployment ``env`` (what every run and step pod inherits), with ``overrides``."""
    deployment = deploy_yaml("values.yaml")["dagster-user-deployments"]["deployments"][0]
    out = [dict(e) for e in deployment["env"]]
    for e in out:
        if e["name"] in overrides:
            e["value"] = overrides[e["name"]]
    known = {e["name"] for e in out}
    out += [{"name": k, "value": v} for k, v in overrides.items() if k not in known]
    return out


def container_context(env_list: list[dict]) -> dict:
    """The code location's container context as the chart's ``includeConfigInLaunchedRuns`` passes it to the
    run launcher (``DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT``): its env, env Secrets and env ConfigMaps."""
    deployment = deploy_yaml("values.yaml")["dagster-user-deployments"]["deployments"][0]
    return {"k8s": {
        "env": env_list,
        "env_secrets": [s["name"] for s in deployment.get("envSecrets") or []],
        "env_config_maps": [c["name"] for c in deployment.get("envConfigMaps") or []],
    }}


def origin(job_name: str, context: dict) -> JobPythonOrigin:
    """A run's origin when its code location is deploy/values.yaml's user deployment (image IMAGE)."""
    return JobPythonOrigin(job_name, RepositoryPythonOrigin(
        executable_path=IMAGE_PYTHON,
        code_pointer=ModuleCodePointer("quadmix_assets.definitions", "defs", working_directory=None),
        container_image=IMAGE,
        container_context=context,
    ))


def _namespace_objects(core, ns: str, s3_url: str, pg: dict, password: str) -> None:
    """What the operator and the chart put into the namespace: the object-store Secret (README step 2), the
    PostgreSQL password Secret, and the ConfigMap deploy/dagster.yaml's launcher hands to every pod."""
    V1 = kubernetes.client
    core.create_namespaced_secret(ns, V1.V1Secret(metadata=V1.V1ObjectMeta(name="quadmix-storage"), string_data={
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_url}))
    core.create_namespaced_secret(ns, V1.V1Secret(metadata=V1.V1ObjectMeta(name="dagster-postgresql-secret"),
                                                  string_data={"postgresql-password": password}))
    core.create_namespaced_config_map(ns, V1.V1ConfigMap(metadata=V1.V1ObjectMeta(name="quadmix-instance-env"), data={
        "DAGSTER_PG_HOST": pg["host"], "DAGSTER_PG_PORT": str(pg["port"]), "DAGSTER_PG_DB": pg["db"],
        "DAGSTER_PG_USERNAME": pg["user"], **launcher_env(ns)}))


def _events(instance, run_id: str, kind: DagsterEventType) -> list:
    return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=kind).records]


def _failure_report(instance, run, kubelet: KubeletHarness) -> str:
    lines = [f"run {run.run_id[:8]} ({run.job_name}) ended {run.status.value}"]
    for entry in _events(instance, run.run_id, DagsterEventType.STEP_FAILURE) + _events(
            instance, run.run_id, DagsterEventType.RUN_FAILURE):
        lines.append(f"  {entry.step_key}: {entry.message[:2000]}")
    for name, pod in kubelet.pods.items():
        if pod.labels.get("dagster/run-id") == run.run_id and pod.returncode not in (0, None):
            lines.append(f"--- {name} exited {pod.returncode}:\n{kubelet.log_tail(name)}")
    lines += kubelet.errors
    return "\n".join(lines)


def drive(instance, defs, settings, context: dict, kubelet: KubeletHarness, timings: list) -> tuple[list, str]:
    """Tick the loop sensor; launch every run it requests through the instance's run launcher and wait for
    them all to end; again until the sensor says the loop is finished. (runs, the last skip message)."""
    from quadmix_assets.defs.operations.loop import loop_sensor

    runs: list = []
    deadline = time.monotonic() + LOOP_DEADLINE_S
    for _ in range(MAX_TICKS):
        with build_sensor_context(instance=instance, resources={"settings": settings}, definitions=defs) as ctx:
            result = loop_sensor(ctx)
        if isinstance(result, SkipReason):
            return runs, result.skip_message or ""
        assert isinstance(result, SensorResult) and result.run_requests, result
        tick_runs, t0 = [], time.monotonic()
        for request in result.run_requests:
            job_def = defs.resolve_job_def(request.job_name)
            tags = dict(request.tags)
            if request.partition_key:
                tags[PARTITION_NAME_TAG] = request.partition_key
            run = instance.create_run_for_job(job_def, tags=tags, status=DagsterRunStatus.NOT_STARTED,
                                              job_code_origin=origin(request.job_name, context))
            instance.launch_run(run.run_id, workspace=None)  # the K8sRunLauncher: a Job through the API
            tick_runs.append(run.run_id)
        pending = set(tick_runs)
        while pending:
            assert time.monotonic() < deadline, f"the loop did not finish in {LOOP_DEADLINE_S:.0f} s: {timings}"
            assert not kubelet.errors, kubelet.errors
            for run_id in list(pending):
                run = instance.get_run_by_id(run_id)
                if run.status in TERMINAL:
                    pending.discard(run_id)
                    assert run.status == DagsterRunStatus.SUCCESS, _failure_report(instance, run, kubelet)
                    continue
                worker = kubelet.pods.get(f"dagster-run-{run_id}")
                if worker is not None and worker.returncode not in (None, 0):
                    time.sleep(2)  # the run's last events may still be on their way
                    run = instance.get_run_by_id(run_id)
                    assert run.status in TERMINAL, _failure_report(instance, run, kubelet)
            time.sleep(0.5)
        runs += [instance.get_run_by_id(r) for r in tick_runs]
        timings.append((result.run_requests[0].job_name, len(tick_runs), round(time.monotonic() - t0, 1)))
    raise AssertionError(f"the loop did not finish in {MAX_TICKS} ticks: {timings}")


def test_cluster_instance_config_loads(tmp_path, monkeypatch):
    """deploy/dagster.yaml loads as an instance config (dagster checks more than its schema: a `concurrency`
    section forbids the run coordinator's max_concurrent_runs), and values.yaml keeps the same rule."""
    from dagster._core.instance.config import dagster_instance_config

    for k in ("DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", *launcher_env("ns")):
        monkeypatch.setenv(k, "x")
    monkeypatch.setenv("DAGSTER_PG_PORT", "5432")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(deploy_yaml("dagster.yaml")))
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    values = deploy_yaml("values.yaml")
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"] or {}
    assert values["concurrency"]["enabled"] and values["concurrency"]["runs"]["maxConcurrentRuns"] >= 1
    assert queued.get("maxConcurrentRuns") is None and not queued.get("tagConcurrencyLimits")


def test_the_whole_loop_runs_as_kubernetes_jobs(
        cluster, postgres, s3_server, loop_corpus, tmp_path, monkeypatch):  # noqa: F811 - fixtures imported above
    t_start = time.monotonic()
    ns, admin = cluster["namespace"], cluster["admin"]
    core = kubernetes.client.CoreV1Api(admin)

    # --- the object store: the bucket, and the corpus in it ------------------------------------------
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3_server}
    for k, v in aws.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    import boto3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    for shard in sorted(loop_corpus.glob("*.jsonl.gz")):
        s3.upload_file(str(shard), BUCKET, f"{prefix}/corpus/{shard.name}")
    storage_url, corpus_url = f"s3://{BUCKET}/{prefix}/storage", f"s3://{BUCKET}/{prefix}/corpus/*.jsonl.gz"

    # --- the namespace: Secrets and ConfigMap; the instance (deploy/dagster.yaml) ------------------------
    password = "trust-auth-ignores-it"
    _namespace_objects(core, ns, s3_server, postgres, password)
    instance_env = {**launcher_env(ns), "DAGSTER_PG_HOST": postgres["host"], "DAGSTER_PG_PORT": str(postgres["port"]),
                    "DAGSTER_PG_DB": postgres["db"], "DAGSTER_PG_USERNAME": postgres["user"],
                    "DAGSTER_PG_PASSWORD": password}
    for k, v in instance_env.items():
        monkeypatch.setenv(k, v)
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = deploy_yaml("dagster.yaml")
    config["run_launcher"] = run_launcher_config(ns, cluster["sa_kubeconfig"])  # in-cluster account -> its kubeconfig
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))

    # --- the code location: deploy/values.yaml's env, storage and corpus in the bucket, preset test ------
    env_list = code_location_env({"QUADMIX_STORAGE": storage_url, "QUADMIX_CORPUS": corpus_url,
                                  "QUADMIX_PRESET": "test", "QUADMIX_K8S_GPU_IMAGE": GPU_IMAGE})
    context = container_context(env_list)
    pod_home = tmp_path / "pod_dagster_home"
    pod_home.mkdir()
    paths = {IMAGE_WORKDIR: str(REPO), IMAGE_DATA_DIR: env.data_dir(), IMAGE_DAGSTER_HOME: str(pod_home)}

    with DagsterInstance.from_config(str(home)) as instance, KubeletHarness(
        admin, ns, tmp_path / "pods", paths=paths, slots=STEP_SLOTS, prefork=PREFORK,
        # the node's share of this machine: one thread per process (the harness runs several at once)
        node_env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
    ) as kubelet:
        # this process is the code location (sensor ticks) and the daemon: the same env, paths mapped
        for e in env_list:
            monkeypatch.setenv(e["name"], kubelet.map_path(e["value"]))
        from quadmix_assets.definitions import build_definitions
        from quadmix_assets.dagster_support.resources import QuadmixSettings

        settings = QuadmixSettings.from_env(preset="test")
        defs = build_definitions()  # QUADMIX_DEPLOYMENT=cluster: the settings fixed from the env, k8s executor
        timings: list = []
        t_loop = time.monotonic()
        runs, last = drive(instance, defs, settings, context, kubelet, timings)
        loop_s = time.monotonic() - t_loop
        pods = dict(kubelet.pods)

        # --- the loop reached its export ------------------------------------------------------------
        assert "the loop is finished: exported" in last, (last, timings)
        jobs_run = [r.job_name for r in runs]
        assert jobs_run[0] == "models_job" and jobs_run[-1] == "export_job", jobs_run
        for name in ("shard_fast_job", "distill_job", "refresh_job", "mixture_job", "proxy_job", "noise_job",
                     "regressor_job", "search_job"):
            assert name in jobs_run, (name, jobs_run)
        (export_id,) = instance.get_dynamic_partitions("exports")
        assert export_id in last

        # --- every run in its own run-worker Job, every step in its own step Job ------------------------
        run_workers = {p.labels["dagster/run-id"] for p in pods.values() if p.component == "run_worker"}
        assert run_workers == {r.run_id for r in runs}
        assert all(p.returncode == 0 for p in pods.values()), {n: p.returncode for n, p in pods.items()}
        gpu_steps, cpu_steps, step_jobs = set(), set(), 0
        for run in runs:
            started = sorted(e.step_key for e in _events(instance, run.run_id, DagsterEventType.STEP_START))
            job_of = {e.step_key: e.dagster_event.engine_event_data.metadata["Kubernetes Job name"].value
                      for e in _events(instance, run.run_id, DagsterEventType.STEP_WORKER_STARTING)}
            pid_of = {e.step_key: int(e.dagster_event.engine_event_data.metadata["pid"].value)
                      for e in _events(instance, run.run_id, DagsterEventType.STEP_WORKER_STARTED)}
            mine = {n: p for n, p in pods.items() if p.component == "step_worker"
                    and p.labels.get("dagster/run-id") == run.run_id}
            assert started and sorted(job_of) == started, (run.job_name, started, job_of)
            assert set(job_of.values()) == set(mine), (run.job_name, sorted(job_of.values()), sorted(mine))
            for step, job_name in job_of.items():
                assert pid_of[step] == mine[job_name].pid, (run.job_name, step)  # it ran in that Job's process
            step_jobs += len(mine)
            # --- GPU steps asked for a GPU (and ran on the CPU here), CPU steps did not ---------------
            tags = step_tags(defs.resolve_job_def(run.job_name))
            for step, job_name in job_of.items():
                pod = mine[job_name]
                limits, requests = pod.resources.get("limits") or {}, pod.resources.get("requests") or {}
                if requests_gpu(tags[step]):
                    gpu_steps.add(step)
                    assert int(limits["nvidia.com/gpu"]) >= 1 and requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
                    assert pod.image == GPU_IMAGE and pod.node_selector == {"nvidia.com/gpu.present": "true"}
                    assert any(t.get("key") == "nvidia.com/gpu" for t in pod.tolerations), pod.tolerations
                else:
                    cpu_steps.add(step)
                    assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in requests, step
                    assert pod.image == IMAGE, step
                    if K8S_CONFIG_TAG in tags[step]:  # an asset's pod shape (asset checks carry none)
                        assert requests.get("cpu") and requests.get("memory"), step
        gpu_expected = {"edu_teacher", "edu_student", "askllm_student", "criteria_evaluation", "proxy_run",
                        "proxy_noise"}
        assert gpu_expected <= gpu_steps, gpu_steps
        assert {"documents", "quality_normaliser", "mixture_scores", "mixture_export"} <= cpu_steps, cpu_steps
        assert len({p.pid for p in pods.values()}) == len(pods)  # one process per Job

    # --- the export is in the bucket ----------------------------------------------------------------
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/storage/exports/")
    keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
    for name in ("tokens.bin", "tokens.idx", "manifest.json"):
        assert f"{prefix}/storage/exports/{export_id}/{name}" in keys, sorted(keys)
    s3fs.S3FileSystem.clear_instance_cache()

    slowest = sorted(pods.values(), key=lambda p: -(p.seconds or 0))[:5]
    print(f"\nloop on the cluster path: {len(runs)} runs, {step_jobs} step Jobs ({len(gpu_steps)} GPU step kinds), "
          f"loop {loop_s:.0f} s, test {time.monotonic() - t_start:.0f} s; per tick {timings}; slowest pods "
          f"{[(p.labels.get('dagster/op', 'run'), round(p.seconds or 0)) for p in slowest]}")
