"""The quadmix code location: the defs folder (``quadmix_assets/defs/``, one package per domain, loaded
as a ``dg`` project loads it) with the settings resource and the executor added.

Settings come from the environment (``QUADMIX_CORPUS``, ``QUADMIX_STORAGE``, ``QUADMIX_DATA_DIR``,
``QUADMIX_PRESET``); see ``quadmix_assets.settings``. With ``QUADMIX_DEPLOYMENT=cluster`` run config
cannot move the storage root, corpus or data folder (``dagster_support.resources.settings_resource``). ``QUADMIX_EXECUTOR`` picks how a run executes its
steps: unset keeps Dagster's default (multiprocess, in-process for ``execute_in_process``);
``in_process`` or ``multiprocess`` locally; ``k8s`` runs every step in its own Kubernetes Job
(dagster-k8s ``k8s_job_executor``; pod shapes in ``quadmix_assets.dagster_support.k8s``).
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path

from dagster import AssetChecksDefinition, Definitions, ExecutorDefinition, PreviewWarning, in_process_executor, multiprocess_executor
from dagster.components.core.component_tree import ComponentTree

import quadmix_assets
from quadmix_assets import defs as defs_folder
from quadmix_assets.dagster_support.resources import QuadmixSettings, settings_resource
from quadmix_assets.lineage import register_asset_graph
from quadmix_assets.settings import deployment_mode

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


@functools.cache
def folder_definitions() -> Definitions:
    """Every asset, check, job and sensor of the defs folder (``quadmix_assets/defs/``, one package per
    domain), loaded the way a ``dg`` project loads its defs module (``[tool.dg.project]`` in
    pyproject.toml): each module's definitions, found by the folder's component tree. Loaded once per
    process (the definitions do not depend on the settings). The project root is found from the package,
    not from pyproject.toml, so an installed (non-editable) package loads the same folder."""
    tree = ComponentTree.from_module(defs_module=defs_folder, project_root=Path(quadmix_assets.__file__).resolve().parent.parent)
    with warnings.catch_warnings():
        # the folder loader's own module scan (``load_definitions_from_module(s)``) is marked Preview in
        # the pinned release; `dg`'s `load_from_defs_folder` silences the same warnings
        warnings.filterwarnings("ignore", message=r"Function `load_definitions_from_modules?` is currently in preview", category=PreviewWarning)
        return tree.build_defs()


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
    return Definitions.merge(
        folder_definitions(),
        Definitions(resources={"settings": settings_resource(settings)}, executor=executor_from_env()),
    )


defs = build_definitions()

#: what the defs folder holds: its assets (checks apart), checks, jobs and sensors
ASSETS = [a for a in folder_definitions().assets or () if not isinstance(a, AssetChecksDefinition)]
CHECKS = [*(a for a in folder_definitions().assets or () if isinstance(a, AssetChecksDefinition)),
          *(folder_definitions().asset_checks or ())]
# (a module that imports a job or sensor of its own domain holds it too: one of each, by name)
JOBS = list({j.name: j for j in folder_definitions().jobs or ()}.values())
SENSORS = list({s.name: s for s in folder_definitions().sensors or ()}.values())


def asset_graph():
    """The code location's asset graph (``defs``'s, resolved once by Dagster: it does not depend on the
    settings)."""
    return defs.resolve_asset_graph()


# the lineage story walks this graph upstream of every mixture asset (the lineage package, imported by the
# mixture assets, never imports the definitions)
register_asset_graph(asset_graph)
