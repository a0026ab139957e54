"""The quadmix code location: every asset, job, sensor and schedule, and the settings resource.

Settings come from the environment (``QUADMIX_CORPUS``, ``QUADMIX_STORAGE``, ``QUADMIX_DATA_DIR``,
``QUADMIX_PRESET``); see ``quadmix_assets.settings``.
"""

from __future__ import annotations

import os

from dagster import Definitions

from quadmix_assets.defs.automation import (
    corpus_refresh_schedule,
    mixture_job,
    models_job,
    refresh_job,
    shard_job,
    shard_sensor,
)
from quadmix_assets.defs.corpus import documents
from quadmix_assets.defs.labels import domain_classifier, domain_labels
from quadmix_assets.defs.mixtures import mixture_configs, mixture_manifest, mixture_scores
from quadmix_assets.defs.normaliser import quality_normaliser
from quadmix_assets.defs.quality import QUALITY_ASSETS, criteria_evaluation, dclm_classifier
from quadmix_assets.defs.resources import QuadmixSettings

ASSETS = [
    documents,
    domain_classifier,
    dclm_classifier,
    domain_labels,
    *QUALITY_ASSETS.values(),
    criteria_evaluation,
    quality_normaliser,
    mixture_configs,
    mixture_scores,
    mixture_manifest,
]
JOBS = [models_job, shard_job, refresh_job, mixture_job]


def build_definitions(settings: QuadmixSettings | None = None) -> Definitions:
    """The Definitions object for ``settings`` (default: from the environment)."""
    if settings is None:
        settings = QuadmixSettings.from_env(
            preset=os.environ.get("QUADMIX_PRESET"),
            n_configs=int(os.environ["QUADMIX_CONFIGS"]) if os.environ.get("QUADMIX_CONFIGS") else None,
        )
    return Definitions(
        assets=ASSETS,
        jobs=JOBS,
        sensors=[shard_sensor],
        schedules=[corpus_refresh_schedule],
        resources={"settings": settings},
    )


defs = build_definitions()
