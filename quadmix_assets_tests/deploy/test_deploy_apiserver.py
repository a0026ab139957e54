"""dagster-k8s against a real Kubernetes API server (../shared/tools/kube-apiserver: etcd + kube-apiserver
on 127.0.0.1, validation, defaulting and RBAC; no pods ever run).

The chart's service account and RBAC (deploy/rbac.yaml) are applied; the real K8sRunLauncher (configured
from deploy/dagster.yaml) and the real K8sStepHandler of the k8s_job_executor then create their Jobs
*as that service account*, and the Jobs are read back: accepted by the server, with the expected pod shapes.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import kubernetes
import pytest
import yaml
from dagster._core.launcher import LaunchRunContext
from dagster._core.test_utils import create_run_for_test, environ, instance_for_test
from kubernetes.client.rest import ApiException

from quadmix_assets.dagster_support.k8s import requests_gpu
from quadmix_assets_tests.deploy.conftest import tiny_settings
from quadmix_assets_tests.deploy.k8s_support import (
    DEPLOY,
    GPU_IMAGE,
    IMAGE,
    job_origin,
    k8s_definitions,
    k8s_executor,
    launcher_env,
    run_launcher_config,
    step_contexts,
    step_tags,
)

TOOLS = Path(__file__).resolve().parents[3] / "shared" / "tools" / "kube-apiserver"
# the test server's certificate is self-signed (server.sh's kubeconfig skips verification)
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
BUILD = Path(__file__).resolve().parents[2] / "deploy" / "ci" / "kube-apiserver.sh"  # build.sh + reflect2 fix
BUILD_TIMEOUT_S = 1200


@pytest.fixture(scope="module")
def apiserver():
    """Build once (reused across runs; .ci/run builds it beforehand), start on loopback, always stop."""
    if not (TOOLS / "build.sh").exists():
        pytest.skip(f"no kube-apiserver tooling at {TOOLS}")
    subprocess.run(["bash", str(BUILD)], check=True, timeout=BUILD_TIMEOUT_S, capture_output=True)
    try:
        out = subprocess.run(["bash", str(TOOLS / "server.sh"), "start"], check=True, timeout=120,
                             capture_output=True, text=True).stdout
        kubeconfig = out.strip().splitlines()[-1].split("=", 1)[1]
        yield kubeconfig
    finally:
        subprocess.run(["bash", str(TOOLS / "server.sh"), "stop"], timeout=60, check=False)


def _client(kubeconfig: str) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="module")
def cluster(apiserver, tmp_path_factory):
    """A fresh namespace with deploy/rbac.yaml applied; a kubeconfig that authenticates as its service account."""
    admin = _client(apiserver)
    ns = f"quadmix-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api(admin)
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=ns)))
    docs = [d for d in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()) if d]
    for d in docs:
        for subject in d.get("subjects", []):
            subject["namespace"] = ns
    kubernetes.utils.create_from_yaml(admin, yaml_objects=docs, namespace=ns)
    token = core.create_namespaced_service_account_token(
        "dagster", ns, kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc"], expiration_seconds=3600)
        ),
    ).status.token
    server = yaml.safe_load(Path(apiserver).read_text())["clusters"][0]["cluster"]["server"]
    sa_config = tmp_path_factory.mktemp("sa") / "kubeconfig"
    sa_config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "test", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "dagster", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "dagster", "namespace": ns}}],
    }))
    # RBAC reaches the authorizer through an informer: wait until the new binding is in force.
    sa_batch = kubernetes.client.BatchV1Api(_client(str(sa_config)))
    deadline = time.monotonic() + 60
    while True:
        try:
            sa_batch.list_namespaced_job(ns)
            break
        except ApiException as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    # (no namespace deletion: it needs the controller-manager; server.sh start begins from empty etcd)
    yield {"admin": admin, "namespace": ns, "sa_kubeconfig": str(sa_config)}


@pytest.fixture
def instance(cluster):
    ns = cluster["namespace"]
    with environ(launcher_env(ns)):
        with instance_for_test(overrides={"run_launcher": run_launcher_config(ns, cluster["sa_kubeconfig"])}) as inst:
            yield inst


def _jobs(cluster, run_id: str) -> dict[str, dict]:
    batch = kubernetes.client.BatchV1Api(cluster["admin"])
    items = batch.list_namespaced_job(cluster["namespace"], label_selector=f"dagster/run-id={run_id}").items
    api = kubernetes.client.ApiClient()
    return {j.metadata.labels.get("dagster/op", "run"): api.sanitize_for_serialization(j) for j in items}


def test_service_account_is_limited_by_the_charts_rbac(cluster):
    sa = _client(cluster["sa_kubeconfig"])
    kubernetes.client.BatchV1Api(sa).list_namespaced_job(cluster["namespace"])  # allowed
    with pytest.raises(ApiException) as err:
        kubernetes.client.CoreV1Api(sa).list_namespaced_secret(cluster["namespace"])  # not granted
    assert err.value.status == 403


def test_k8s_run_launcher_creates_the_run_job(cluster, instance):
    run = create_run_for_test(instance, job_name="shard_job", job_code_origin=job_origin("shard_job"))
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    (job,) = _jobs(cluster, run.run_id).values()
    spec = job["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert job["metadata"]["name"] == f"dagster-run-{run.run_id}"
    assert spec["serviceAccountName"] == "dagster" and c["image"] == IMAGE
    assert "execute_run" in c["args"]
    assert {"secretRef": {"name": "quadmix-storage"}} in c["envFrom"]
    assert job["spec"]["backoffLimit"] == 0  # defaulted/kept by the server


def test_step_handler_creates_one_job_per_step_with_its_pod_shape(cluster, instance, tiny_corpus, tmp_path):
    defs = k8s_definitions(tiny_settings(tiny_corpus, str(tmp_path / "storage")))
    seen_gpu = seen_cpu = 0
    for job_name in ("shard_job", "refresh_job", "models_job", "test_gpu_job"):
        job_def = defs.resolve_job_def(job_name)
        run = create_run_for_test(instance, job_name=job_name, job_code_origin=job_origin(job_name))
        executor = k8s_executor(instance, job_def)
        contexts = step_contexts(instance, job_def, run, executor)
        for ctx in contexts.values():
            list(executor._step_handler.launch_step(ctx))  # noqa: SLF001 - the real K8sStepHandler
        created = _jobs(cluster, run.run_id)
        assert set(created) == set(contexts), job_name
        tags = step_tags(job_def)
        for key, job in created.items():
            c = job["spec"]["template"]["spec"]["containers"][0]
            limits, requests = c["resources"]["limits"], c["resources"]["requests"]
            assert "execute_step" in c["args"] and job["spec"]["template"]["spec"]["serviceAccountName"] == "dagster"
            if requests_gpu(tags[key]):
                seen_gpu += 1
                assert int(limits["nvidia.com/gpu"]) >= 1 and requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
                pod = job["spec"]["template"]["spec"]
                assert pod["nodeSelector"] and any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
                if key == "test_gpu_scorer":
                    assert c["image"] == GPU_IMAGE
            else:
                seen_cpu += 1
                assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in requests, key
                assert requests["cpu"] and requests["memory"] and limits["memory"], key
                assert c["image"] == IMAGE
    assert seen_gpu >= 1 and seen_cpu >= 8


def test_server_rejects_an_invalid_gpu_request(cluster):
    """Sanity: the server really validates (a GPU request above its limit is refused)."""
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad-gpu"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "x", "image": IMAGE,
            "resources": {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "1"}}}]}}},
    }
    with pytest.raises(ApiException) as err:
        kubernetes.client.BatchV1Api(cluster["admin"]).create_namespaced_job(cluster["namespace"], job)
    assert err.value.status == 422
