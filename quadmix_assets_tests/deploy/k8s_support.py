"""Shared by the deploy tests: the quadmix jobs under the k8s_job_executor, plus a test-local GPU asset,
and the real dagster-k8s step handler / run launcher wired to a kubeconfig."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from dagster import Definitions, MaterializeResult, asset, define_asset_job
from dagster._config import process_config, resolve_to_config_type
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.code_pointer import ModuleCodePointer
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA, k8s_job_executor

from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.definitions import ASSETS, JOBS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IMAGE = "registry.invalid/quadmix:test"
GPU_IMAGE = "registry.invalid/quadmix-gpu:test"


@asset(
    partitions_def=shards_partitions,
    group_name="quality",
    op_tags=pod_tags("gpu", env={**os.environ, "QUADMIX_K8S_GPU_IMAGE": GPU_IMAGE}),
    description="Test-local stand-in for a transformer scorer: a per-shard step that needs a GPU.",
)
def test_gpu_scorer(context):
    return MaterializeResult()


GPU_JOB = define_asset_job("test_gpu_job", selection=[test_gpu_scorer])


def k8s_definitions(settings: QuadmixSettings) -> Definitions:
    """Every quadmix asset and job plus the GPU stand-in, with the k8s_job_executor."""
    return Definitions(
        assets=[*ASSETS, test_gpu_scorer],
        jobs=[*JOBS, GPU_JOB],
        resources={"settings": settings},
        executor=k8s_job_executor,
    )


def job_origin(job_name: str, image: str = IMAGE) -> JobPythonOrigin:
    """The origin a run of ``job_name`` has when its code location is served from ``image``."""
    return JobPythonOrigin(
        job_name,
        RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=ModuleCodePointer("quadmix_assets.definitions", "defs", working_directory=None),
            container_image=image,
        ),
    )


def deploy_yaml(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def run_launcher_config(namespace: str, kubeconfig: str) -> dict:
    """deploy/dagster.yaml's run launcher, pointed at a kubeconfig instead of the in-cluster account."""
    launcher = deploy_yaml("dagster.yaml")["run_launcher"]
    config = dict(launcher["config"], load_incluster_config=False, kubeconfig_file=kubeconfig)
    config["job_namespace"] = namespace
    return {"module": launcher["module"], "class": launcher["class"], "config": config}


def launcher_env(namespace: str) -> dict[str, str]:
    """The environment deploy/dagster.yaml reads (what the chart / ConfigMap set in the cluster)."""
    return {
        "DAGSTER_K8S_JOB_NAMESPACE": namespace,
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "quadmix-dagster-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
        "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster",
    }


def k8s_executor(instance, job_def):
    processed = process_config(resolve_to_config_type(_K8S_EXECUTOR_CONFIG_SCHEMA), {})
    assert processed.success, processed.errors
    return k8s_job_executor.executor_creation_fn(
        InitExecutorContext(job=InMemoryJob(job_def), executor_def=k8s_job_executor,
                            executor_config=processed.value, instance=instance)
    )


def step_contexts(instance, job_def, run, executor):
    """One StepHandlerContext per step of ``job_def`` for ``run``, as the StepDelegatingExecutor makes them."""
    plan = create_execution_plan(job_def)
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(job=InMemoryJob(job_def), dagster_run=run, instance=instance, execution_plan=plan,
                           raise_on_error=True, retry_mode=RetryMode.DISABLED),
        log_manager=create_context_free_log_manager(instance, run),
        executor=executor,
        output_capture=None,
    )
    out = {}
    for step in plan.steps:
        args = ExecuteStepArgs(run.job_code_origin, run.run_id, [step.key], instance_ref=instance.get_ref())
        out[step.key] = StepHandlerContext(instance=instance, plan_context=plan_context, steps=[step],
                                           execute_step_args=args, dagster_run=run)
    return out


def step_tags(job_def) -> dict[str, dict[str, str]]:
    return {s.key: dict(s.tags or {}) for s in create_execution_plan(job_def).steps}


def container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def gpu_limit(job: dict) -> str | None:
    limits = (container(job).get("resources") or {}).get("limits") or {}
    return limits.get("nvidia.com/gpu")


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, indent=1)
