"""Every step's Kubernetes Job, built by dagster-k8s' own run launcher and step handler, validated
strictly against the Kubernetes OpenAPI schema; GPU steps request GPUs, CPU steps do not."""

from __future__ import annotations

import kubernetes
import kubernetes_validate
import pytest
from dagster import DagsterInstance
from dagster._core.launcher import LaunchRunContext
from dagster._core.test_utils import create_run_for_test, environ, instance_for_test
from dagster_k8s.client import DagsterKubernetesClient

from quadmix_assets.dagster_support.k8s import requests_gpu
from quadmix_assets_tests.deploy.conftest import tiny_settings
from quadmix_assets_tests.deploy.k8s_support import (
    DEPLOY,
    GPU_IMAGE,
    IMAGE,
    container,
    gpu_limit,
    job_origin,
    k8s_definitions,
    k8s_executor,
    launcher_env,
    run_launcher_config,
    step_contexts,
    step_tags,
)

K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
NAMESPACE = "quadmix"


def validate(obj: dict) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.fixture
def captured(monkeypatch):
    """Jobs dagster-k8s would create, as the API server would receive them (camelCase JSON)."""
    jobs: list[dict] = []
    api = kubernetes.client.ApiClient()

    def create(self, body, namespace, **kw):
        jobs.append(api.sanitize_for_serialization(body))

    monkeypatch.setattr(DagsterKubernetesClient, "create_namespaced_job_with_retries", create)
    return jobs


@pytest.fixture
def k8s_instance(tmp_path, dummy_kubeconfig):
    with environ(launcher_env(NAMESPACE)):
        with instance_for_test(overrides={"run_launcher": run_launcher_config(NAMESPACE, dummy_kubeconfig)}) as inst:
            yield inst


def all_step_jobs(instance: DagsterInstance, settings, captured) -> dict[str, dict]:
    """Launch every step of every job through the real K8sStepHandler; {job/step: Job manifest}."""
    defs = k8s_definitions(settings)
    out = {}
    for job_name in [j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]:
        job_def = defs.resolve_job_def(job_name)
        run = create_run_for_test(instance, job_name=job_name, job_code_origin=job_origin(job_name))
        executor = k8s_executor(instance, job_def)
        handler = executor._step_handler  # noqa: SLF001 - the real K8sStepHandler the executor uses
        for key, ctx in step_contexts(instance, job_def, run, executor).items():
            before = len(captured)
            list(handler.launch_step(ctx))
            assert len(captured) == before + 1
            out[f"{job_name}/{key}"] = captured[-1]
    return out


def test_every_step_manifest_is_a_valid_job_and_gpu_only_where_tagged(k8s_instance, tiny_corpus, tmp_path, captured):
    settings = tiny_settings(tiny_corpus, str(tmp_path / "storage"))
    jobs = all_step_jobs(k8s_instance, settings, captured)
    defs = k8s_definitions(settings)
    tags = {f"{j}/{k}": t for j in {k.split("/")[0] for k in jobs} for k, t in step_tags(defs.resolve_job_def(j)).items()}
    assert {k.split("/")[1] for k in jobs} >= {
        "documents", "domain_labels", "quality_dclm", "quality_heuristic", "quality_langid", "domain_classifier",
        "dclm_classifier", "quality_normaliser", "criteria_evaluation", "mixture_configs", "mixture_scores",
        "mixture_manifest", "test_gpu_scorer",
    }
    gpu_steps = {k for k in jobs if requests_gpu(tags[k])}
    assert "test_gpu_job/test_gpu_scorer" in gpu_steps  # the test-local GPU asset
    for key, job in jobs.items():
        validate(job)
        c = container(job)
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "dagster", key
        assert "execute_step" in c["args"], key
        res = c["resources"]
        assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"], key
        if key in gpu_steps:
            assert gpu_limit(job) is not None and int(gpu_limit(job)) >= 1, key
            spec = job["spec"]["template"]["spec"]
            assert spec["nodeSelector"] and spec["tolerations"], key
            if key == "test_gpu_job/test_gpu_scorer":
                assert c["image"] == GPU_IMAGE, key
        else:
            assert gpu_limit(job) is None and "nvidia.com/gpu" not in res.get("requests", {}), key
            assert "nodeSelector" not in job["spec"]["template"]["spec"] or not job["spec"]["template"]["spec"]["nodeSelector"]
            assert c["image"] == IMAGE, key


def test_cpu_steps_are_sized_by_kind(k8s_instance, tiny_corpus, tmp_path, captured):
    jobs = all_step_jobs(k8s_instance, tiny_settings(tiny_corpus, str(tmp_path / "s")), captured)
    mem = {k.split("/")[1]: container(j)["resources"]["requests"]["memory"] for k, j in jobs.items()}
    assert mem["documents"] == mem["quality_heuristic"] == "2Gi"  # shard
    assert mem["quality_normaliser"] == mem["mixture_scores"] == "4Gi"  # fan-in: scans files
    assert mem["domain_classifier"] == mem["dclm_classifier"] == "8Gi"  # model training


def test_run_worker_manifest_from_deploy_dagster_yaml(k8s_instance, captured):
    run = create_run_for_test(k8s_instance, job_name="shard_job", job_code_origin=job_origin("shard_job"))
    k8s_instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    (job,) = captured
    validate(job)
    c = container(job)
    assert c["image"] == IMAGE and "execute_run" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql-secret"
    assert {"secretRef": {"name": "quadmix-storage"}} in c["envFrom"]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "run_worker"


def test_rbac_manifests_are_valid():
    import yaml

    docs = [d for d in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()) if d]
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding"]
    for d in docs:
        d.setdefault("metadata", {})["namespace"] = NAMESPACE
        validate(d)
