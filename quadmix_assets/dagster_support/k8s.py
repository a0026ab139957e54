"""Pod shapes per asset on Kubernetes: the ``dagster-k8s/config`` op tag of each step.

Under the ``k8s_job_executor`` (``QUADMIX_EXECUTOR=k8s``) every step runs in its own Kubernetes Job;
dagster-k8s reads the ``dagster-k8s/config`` tag of the step's op and merges it into the Job's pod.
Elsewhere (in-process, multiprocess) the tags are inert. Four shapes:

=========  ==========================================================  ============================
kind       for                                                         resources
=========  ==========================================================  ============================
``shard``  one corpus shard: documents, domain labels, quality scores  CPU + memory for one shard
``fanin``  normaliser, criteria evaluation, mixtures: scan Parquet     CPU + memory; scans files,
           files column by column, never hold the corpus in memory     so no corpus-sized memory
``model``  classifier training (fastText) on CPU                       more CPU + memory
``gpu``    proxy training, transformer scorers                         ``nvidia.com/gpu`` limit,
                                                                       node selector, tolerations,
                                                                       the ``gpu`` concurrency pool
                                                                       (``pool=``, :func:`step_pool`)
=========  ==========================================================  ============================

Every number comes from an environment variable read when the code location loads (set them on the
user-code deployment, see ``deploy/values.yaml``), with these defaults:

``QUADMIX_K8S_<KIND>_CPU`` / ``_MEMORY``  requests (``<KIND>`` = SHARD, FANIN, MODEL, GPU)
``QUADMIX_K8S_<KIND>_CPU_LIMIT`` / ``_MEMORY_LIMIT``  limits (CPU unlimited unless set; memory = request)
``QUADMIX_K8S_GPU_COUNT``          GPUs per GPU step (``nvidia.com/gpu`` limit), default 1
``QUADMIX_K8S_GPU_RESOURCE``       the extended resource name, default ``nvidia.com/gpu``
``QUADMIX_K8S_GPU_NODE_SELECTOR``  JSON object or ``k=v,k2=v2``; default ``{"nvidia.com/gpu.present": "true"}``
``QUADMIX_K8S_GPU_TOLERATIONS``    JSON list of tolerations; default tolerates the ``nvidia.com/gpu`` taint
``QUADMIX_K8S_GPU_IMAGE``          image for GPU steps (the CUDA build); default: the user-code image
``QUADMIX_K8S_GPU_POOL``           Dagster concurrency pool of GPU steps, default ``gpu`` (size it with the
                                   instance's pool limit: ``concurrency.pools`` in ``deploy/``)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

K8S_CONFIG_TAG = "dagster-k8s/config"
KINDS = ("shard", "fanin", "model", "gpu")

# kind -> (cpu request, memory request): one shard of ~100k web documents fits in 2 GiB with room;
# fan-ins scan Parquet files column by column; fastText training holds its training text in memory.
DEFAULTS: dict[str, tuple[str, str]] = {
    "shard": ("1", "2Gi"),
    "fanin": ("2", "4Gi"),
    "model": ("4", "8Gi"),
    "gpu": ("4", "16Gi"),
}
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def _env(name: str, default: str | None, env: Mapping[str, str]) -> str | None:
    value = env.get(name)
    return value.strip() if value and value.strip() else default


def _node_selector(raw: str | None) -> dict[str, str]:
    if raw is None:
        return dict(DEFAULT_GPU_NODE_SELECTOR)
    raw = raw.strip()
    if raw.startswith("{"):
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError(f"QUADMIX_K8S_GPU_NODE_SELECTOR must be a JSON object, got {raw!r}")
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"QUADMIX_K8S_GPU_NODE_SELECTOR: expected k=v pairs, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def _tolerations(raw: str | None) -> list[dict[str, Any]]:
    if raw is None:
        return [dict(t) for t in DEFAULT_GPU_TOLERATIONS]
    value = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError(f"QUADMIX_K8S_GPU_TOLERATIONS must be a JSON list of objects, got {raw!r}")
    # dagster-k8s takes the Kubernetes Python client's snake_case field names
    snake = {"tolerationSeconds": "toleration_seconds"}
    return [{snake.get(k, k): v for k, v in t.items()} for t in value]


def pod_config(kind: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``dagster-k8s/config`` value (snake_case, as dagster-k8s takes it) for a pod of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown pod kind {kind!r}; expected one of {', '.join(KINDS)}")
    env = os.environ if env is None else env
    prefix = f"QUADMIX_K8S_{kind.upper()}_"
    cpu_default, memory_default = DEFAULTS[kind]
    memory = _env(prefix + "MEMORY", memory_default, env)
    requests = {"cpu": _env(prefix + "CPU", cpu_default, env), "memory": memory}
    limits: dict[str, str] = {"memory": _env(prefix + "MEMORY_LIMIT", memory, env)}
    cpu_limit = _env(prefix + "CPU_LIMIT", None, env)
    if cpu_limit:
        limits["cpu"] = cpu_limit
    container: dict[str, Any] = {"resources": {"requests": requests, "limits": limits}}
    config: dict[str, Any] = {"container_config": container}
    if kind == "gpu":
        gpu = _env("QUADMIX_K8S_GPU_RESOURCE", "nvidia.com/gpu", env)
        count = _env("QUADMIX_K8S_GPU_COUNT", "1", env)
        if int(count) < 1:
            raise ValueError(f"QUADMIX_K8S_GPU_COUNT must be at least 1, got {count!r}")
        limits[gpu] = count
        requests[gpu] = count  # extended resources: request must equal limit
        image = _env("QUADMIX_K8S_GPU_IMAGE", None, env)
        if image:
            container["image"] = image
        config["pod_spec_config"] = {
            "node_selector": _node_selector(_env("QUADMIX_K8S_GPU_NODE_SELECTOR", None, env)),
            "tolerations": _tolerations(_env("QUADMIX_K8S_GPU_TOLERATIONS", None, env)),
        }
    return config


def pod_tags(kind: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Op tags giving a step the pod shape ``kind`` ("shard", "fanin", "model" or "gpu"). GPU steps also
    take :func:`step_pool` as their ``pool=``."""
    env = os.environ if env is None else env
    return {K8S_CONFIG_TAG: json.dumps(pod_config(kind, env), sort_keys=True)}


def step_pool(kind: str, env: Mapping[str, str] | None = None) -> str | None:
    """The Dagster concurrency pool (the ``pool=`` of an asset) of a step of pod shape ``kind``: GPU steps
    join the ``gpu`` pool (``QUADMIX_K8S_GPU_POOL``), so the instance's pool limit bounds how many GPU pods
    run at once across all runs; other steps none."""
    if kind not in KINDS:
        raise ValueError(f"unknown pod kind {kind!r}; expected one of {', '.join(KINDS)}")
    env = os.environ if env is None else env
    return _env("QUADMIX_K8S_GPU_POOL", "gpu", env) if kind == "gpu" else None


def requests_gpu(tags: Mapping[str, Any]) -> bool:
    """Whether op ``tags`` ask Kubernetes for a GPU (any ``*/gpu`` extended resource limit)."""
    raw = tags.get(K8S_CONFIG_TAG)
    if not raw:
        return False
    config = json.loads(raw) if isinstance(raw, str) else raw
    container = config.get("container_config") or {}
    resources = container.get("resources") or {}
    return any(k.endswith("/gpu") for k in (resources.get("limits") or {}))
