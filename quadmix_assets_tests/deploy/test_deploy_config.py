"""Pod shapes from the environment, the executor switch, and the deploy/ files agreeing with each other."""

from __future__ import annotations

import json

import pytest
from dagster import in_process_executor, multiprocess_executor
from dagster._core.instance.config import dagster_instance_config

from quadmix_assets.dagster_support.k8s import K8S_CONFIG_TAG, pod_config, pod_tags, requests_gpu, step_pool
from quadmix_assets.definitions import build_definitions, executor_from_env
from quadmix_assets_tests.deploy.k8s_support import DEPLOY, deploy_yaml


def test_cpu_kinds_have_requests_and_no_gpu():
    for kind in ("shard", "fanin", "model"):
        tags = pod_tags(kind, env={})
        config = json.loads(tags[K8S_CONFIG_TAG])
        res = config["container_config"]["resources"]
        assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
        assert not requests_gpu(tags) and step_pool(kind, env={}) is None and "pod_spec_config" not in config
        assert "dagster/concurrency_key" not in tags  # pools are set with `pool=`, not the old tag


def test_gpu_kind_defaults():
    tags = pod_tags("gpu", env={})
    config = json.loads(tags[K8S_CONFIG_TAG])
    res = config["container_config"]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"] == "1"
    assert config["pod_spec_config"]["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert config["pod_spec_config"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert step_pool("gpu", env={}) == "gpu" and requests_gpu(tags)
    assert "image" not in config["container_config"]


def test_gpu_kind_from_environment():
    env = {
        "QUADMIX_K8S_GPU_COUNT": "2", "QUADMIX_K8S_GPU_MEMORY": "40Gi", "QUADMIX_K8S_GPU_CPU_LIMIT": "8",
        "QUADMIX_K8S_GPU_NODE_SELECTOR": "cloud.google.com/gke-accelerator=nvidia-h100-80gb,pool=gpu",
        "QUADMIX_K8S_GPU_TOLERATIONS": '[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule", "tolerationSeconds": 60}]',
        "QUADMIX_K8S_GPU_IMAGE": "r/quadmix-gpu:1", "QUADMIX_K8S_GPU_POOL": "h100",
    }
    tags = pod_tags("gpu", env=env)
    config = json.loads(tags[K8S_CONFIG_TAG])
    c = config["container_config"]
    assert c["resources"]["limits"] == {"memory": "40Gi", "cpu": "8", "nvidia.com/gpu": "2"}
    assert c["image"] == "r/quadmix-gpu:1" and step_pool("gpu", env=env) == "h100"
    assert config["pod_spec_config"]["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb", "pool": "gpu"}
    assert config["pod_spec_config"]["tolerations"][0]["toleration_seconds"] == 60


def test_shard_kind_from_environment_and_bad_values():
    config = pod_config("shard", env={"QUADMIX_K8S_SHARD_CPU": "500m", "QUADMIX_K8S_SHARD_MEMORY": "1Gi",
                                      "QUADMIX_K8S_SHARD_MEMORY_LIMIT": "3Gi"})
    assert config["container_config"]["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}}
    with pytest.raises(ValueError):
        pod_tags("tpu", env={})
    with pytest.raises(ValueError):
        pod_tags("gpu", env={"QUADMIX_K8S_GPU_COUNT": "0"})
    with pytest.raises(ValueError):
        pod_tags("gpu", env={"QUADMIX_K8S_GPU_TOLERATIONS": '{"key": "x"}'})


EXPECTED_KINDS = {
    "documents": "shard", "domain_labels": "shard", "quality_dclm": "shard", "quality_heuristic": "shard",
    "quality_langid": "shard", "domain_classifier": "model", "dclm_classifier": "model",
    "quality_normaliser": "fanin", "mixture_configs": "fanin",
    "mixture_scores": "fanin", "mixture_manifest": "fanin",
}


def test_assets_carry_their_pod_kind():
    from quadmix_assets.definitions import ASSETS

    ops = {a.op.name: a.op.tags for a in ASSETS}
    assert all(K8S_CONFIG_TAG in tags for tags in ops.values())  # every asset has a pod shape
    for name, kind in EXPECTED_KINDS.items():
        assert json.loads(ops[name][K8S_CONFIG_TAG]) == pod_config(kind), name


def test_executor_switch(monkeypatch):
    monkeypatch.delenv("QUADMIX_EXECUTOR", raising=False)
    assert executor_from_env() is None  # default: unchanged (Dagster's default executor)
    assert build_definitions().executor is None or build_definitions().executor.name == "multi_or_in_process_executor"
    assert executor_from_env("in_process") is in_process_executor
    assert executor_from_env("multiprocess") is multiprocess_executor
    from dagster_k8s import k8s_job_executor

    monkeypatch.setenv("QUADMIX_EXECUTOR", "k8s")
    assert executor_from_env() is k8s_job_executor
    defs = build_definitions()
    assert defs.resolve_job_def("shard_job").executor_def is k8s_job_executor
    with pytest.raises(ValueError):
        executor_from_env("celery")


def test_cluster_dagster_yaml_is_a_valid_instance_config():
    from dagster._config import validate_config

    result = validate_config(dagster_instance_config_schema_type(), deploy_yaml("dagster.yaml"))
    assert result.success, result.errors


def dagster_instance_config_schema_type():
    from dagster._core.instance.config import dagster_instance_config_schema

    return dagster_instance_config_schema()


def test_helm_values_agree_with_dagster_yaml():
    values, instance = deploy_yaml("values.yaml"), deploy_yaml("dagster.yaml")
    assert values["runLauncher"]["type"] == instance["run_launcher"]["class"] == "K8sRunLauncher"
    mon, imon = values["dagsterDaemon"]["runMonitoring"], instance["run_monitoring"]
    assert mon["enabled"] and imon["enabled"]
    assert mon["startTimeoutSeconds"] == imon["start_timeout_seconds"]
    assert mon["freeSlotsAfterRunEndSeconds"] == imon["free_slots_after_run_end_seconds"] > 0
    assert values["concurrency"]["enabled"]
    assert values["concurrency"]["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert values["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["QUADMIX_EXECUTOR"] == "k8s" and "://" in env["QUADMIX_STORAGE"]
    assert env["QUADMIX_DEPLOYMENT"] == "cluster" and env["QUADMIX_CORPUS"] and env["QUADMIX_DATA_DIR"]
    for forbidden in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "DAGSTER_PG_PASSWORD"):
        assert forbidden not in env
    assert {"name": "quadmix-storage"} in deployment["envSecrets"]


def test_dockerfiles_install_the_k8s_extra():
    for name, torch_index in (("Dockerfile", "whl/cpu"), ("Dockerfile.gpu", "pypi.org")):
        text = (DEPLOY / name).read_text()
        assert '".[k8s]"' in text and "constraints.txt" in text and torch_index in text, name
