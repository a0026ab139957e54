"""The quadmix code location: every asset, job and sensor, and the settings resource.

Settings come from the environment (``QUADMIX_CORPUS``, ``QUADMIX_STORAGE``, ``QUADMIX_DATA_DIR``,
``QUADMIX_PRESET``); see ``quadmix_assets.settings``. With ``QUADMIX_DEPLOYMENT=cluster`` run config
cannot move the storage root, corpus or data folder (``defs.resources.settings_resource``). ``QUADMIX_EXECUTOR`` picks how a run executes its
steps: unset keeps Dagster's default (multiprocess, in-process for ``execute_in_process``);
``in_process`` or ``multiprocess`` locally; ``k8s`` runs every step in its own Kubernetes Job
(dagster-k8s ``k8s_job_executor``; pod shapes in ``quadmix_assets.defs.k8s``).
"""

from __future__ import annotations

import json
import os

from dagster import Definitions, ExecutorDefinition, in_process_executor, multiprocess_executor

from quadmix_assets.defs.automation import (
    automation_sensor,
    distill_job,
    export_job,
    mixture_job,
    models_job,
    proxy_job,
    proxy_setup_job,
    noise_job,
    refresh_job,
    regressor_job,
    rounds_job,
    search_job,
    shard_fast_job,
    shard_job,
    shard_model_job,
    shard_sensor,
)
from quadmix_assets.defs.checks import CHECKS
from quadmix_assets.defs.corpus import documents
from quadmix_assets.defs.labels import domain_classifier, domain_labels
from quadmix_assets.defs.loop import loop_sensor
from quadmix_assets.defs.export import mixture_export
from quadmix_assets.defs.mixtures import mixture_configs, mixture_manifest, mixture_scores
from quadmix_assets.defs.proxies import proxy_noise, proxy_run
from quadmix_assets.defs.regressor import mixture_regressor
from quadmix_assets.defs.search import mixture_rounds, mixture_search
from quadmix_assets.defs.targets import proxy_tokenizer, target_sets
from quadmix_assets.defs.normaliser import quality_normaliser
from quadmix_assets.defs.evaluation import criteria_evaluation
from quadmix_assets.defs.model_scorers import MODEL_ASSETS, STUDENT_ASSETS
from quadmix_assets.defs.quality import QUALITY_ASSETS
from quadmix_assets.defs.resources import QuadmixSettings, settings_resource
from quadmix_assets.settings import deployment_mode

ASSETS = [
    documents,
    domain_classifier,
    *MODEL_ASSETS.values(),  # every model the registered criteria build (dclm_classifier, edu_teacher, ...)
    domain_labels,
    *STUDENT_ASSETS.values(),
    *QUALITY_ASSETS.values(),
    criteria_evaluation,
    quality_normaliser,
    mixture_configs,
    mixture_scores,
    mixture_manifest,
    target_sets,
    proxy_tokenizer,
    proxy_run,
    proxy_noise,
    mixture_regressor,
    mixture_rounds,
    mixture_search,
    mixture_export,
]
JOBS = [models_job, shard_fast_job, distill_job, shard_model_job, shard_job, refresh_job, mixture_job,
        proxy_setup_job, proxy_job, noise_job, regressor_job, rounds_job, search_job, export_job]
EXECUTORS = ("in_process", "multiprocess", "k8s")


def executor_from_env(value: str | None = None) -> ExecutorDefinition | None:
    """The executor named by ``QUADMIX_EXECUTOR`` (None, the default: Dagster's own default executor)."""
    name = (os.environ.get("QUADMIX_EXECUTOR", "") if value is None else value).strip().lower()
    if not name:
        return None
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor  # the `k8s` extra; only needed in the cluster

        if deployment_mode() == "cluster":
            return locked_k8s_executor(k8s_job_executor)
        return k8s_job_executor
    raise ValueError(f"QUADMIX_EXECUTOR={name!r}: expected one of {', '.join(EXECUTORS)} (or unset)")


def locked_k8s_executor(k8s_job_executor: ExecutorDefinition) -> ExecutorDefinition:
    """The k8s executor with its config fixed by the code location (``QUADMIX_K8S_EXECUTOR_CONFIG``, JSON,
    default none): its run config (``env_vars``, ``step_k8s_config``, volumes, image...) would otherwise let
    whoever launches a run set the step pods' environment and so move the storage root."""
    fixed = json.loads(os.environ.get("QUADMIX_K8S_EXECUTOR_CONFIG") or "{}")
    if not isinstance(fixed, dict):
        raise ValueError("QUADMIX_K8S_EXECUTOR_CONFIG must be a JSON object (the k8s_job_executor's config)")
    return k8s_job_executor.configured(lambda _run_config: fixed, name="k8s", config_schema={})


def build_definitions(settings: QuadmixSettings | None = None) -> Definitions:
    """The Definitions object for ``settings`` (default: from the environment; locally as ``EnvVar`` read
    when a run starts, in the cluster fixed when the code location loads, where its policy checks them)."""
    if settings is None and deployment_mode() == "cluster":
        settings = QuadmixSettings.from_env(
            preset=os.environ.get("QUADMIX_PRESET"),
            n_configs=int(os.environ["QUADMIX_CONFIGS"]) if os.environ.get("QUADMIX_CONFIGS") else None,
        )
    elif settings is None:
        settings = QuadmixSettings.read_at_launch()
    return Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=JOBS,
        sensors=[shard_sensor, automation_sensor, loop_sensor],
        resources={"settings": settings_resource(settings)},
        executor=executor_from_env(),
    )


defs = build_definitions()
