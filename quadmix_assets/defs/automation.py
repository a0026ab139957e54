"""Jobs, the shard sensor (new or changed corpus files -> shard partitions and runs) and the refresh schedule."""


import json

from dagster import (
    AssetRecordsFilter,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from quadmix_assets.corpus import file_fingerprint
from quadmix_assets.defs.corpus import documents
from quadmix_assets.defs.labels import domain_classifier, domain_labels
from quadmix_assets.defs.mixtures import mixture_configs, mixture_manifest, mixture_scores
from quadmix_assets.defs.normaliser import quality_normaliser
from quadmix_assets.defs.partitions import shards_partitions
from quadmix_assets.defs.evaluation import QUALITY_ASSETS, criteria_evaluation
from quadmix_assets.defs.model_scorers import MODEL_QUALITY_ASSETS, askllm_student, edu_student, edu_teacher
from quadmix_assets.defs.quality import FAST_QUALITY_ASSETS, dclm_classifier
from quadmix_assets.defs.resources import QuadmixSettings

MAX_SHARDS_PER_TICK = 16

models_job = define_asset_job(
    "models_job",
    selection=AssetSelection.assets(domain_classifier, dclm_classifier, edu_teacher),
    description="Train (or import) the domain and DCLM-style classifiers and the Edu teacher's head.",
)
shard_job = define_asset_job(
    "shard_job",
    selection=AssetSelection.assets(documents, domain_labels, *QUALITY_ASSETS.values()),
    description="Normalise one shard and write its domain label and every quality score attribute "
    "(the distilled students must exist: see distill_job).",
)
shard_fast_job = define_asset_job(
    "shard_fast_job",
    selection=AssetSelection.assets(documents, domain_labels, *FAST_QUALITY_ASSETS.values()),
    description="Normalise one shard; domain label and the fastText / heuristic quality scores.",
)
distill_job = define_asset_job(
    "distill_job",
    selection=AssetSelection.assets(edu_student, askllm_student),
    description="Annotate a seeded corpus sample with the transformer teachers and train their students.",
)
shard_model_job = define_asset_job(
    "shard_model_job",
    selection=AssetSelection.assets(*MODEL_QUALITY_ASSETS.values()),
    description="The transformer criteria (teacher or student) of one shard.",
)
refresh_job = define_asset_job(
    "refresh_job",
    selection=AssetSelection.assets(quality_normaliser, criteria_evaluation, mixture_configs),
    description="Refit the global normaliser, re-evaluate the criteria and (re)register mixture configs.",
)
mixture_job = define_asset_job(
    "mixture_job",
    selection=AssetSelection.assets(mixture_scores, mixture_manifest),
    description="Aggregate scores and draw the sampled mixture of one config.",
)


def _materialized_fingerprint(instance, shard_key: str) -> str | None:
    """The source fingerprint recorded by the latest `documents` materialization of a shard, if any."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=documents.key, asset_partitions=[shard_key]), limit=1
    ).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get("fingerprint")
    return getattr(value, "value", value)


def _file_stamp(fs, path: str) -> str:
    info = fs.info(path)
    changed = info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("etag") or ""
    return f"{info.get('size')}:{changed}"


@sensor(
    job=shard_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Discovers new or changed corpus files, adds `shards` partitions and requests their runs "
    f"(at most {MAX_SHARDS_PER_TICK} per tick; the cursor remembers each file's content hash).",
)
def shard_sensor(context: SensorEvaluationContext, settings: QuadmixSettings):
    import fsspec

    cursor: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(shards_partitions.name))
    fs, _ = fsspec.core.url_to_fs(settings.corpus_glob)
    new_keys, requests = [], []
    for ref in settings.shards():
        if len(requests) >= MAX_SHARDS_PER_TICK:
            break
        stamp = _file_stamp(fs, ref.path)
        seen = cursor.get(ref.key, {})
        if seen.get("stamp") == stamp and ref.key in known:
            continue
        fingerprint = file_fingerprint(ref.path)
        cursor[ref.key] = {"stamp": stamp, "fingerprint": fingerprint}
        previous = seen.get("fingerprint") or (_materialized_fingerprint(context.instance, ref.key) if ref.key in known else None)
        if previous == fingerprint and ref.key in known:
            continue
        if ref.key not in known:
            new_keys.append(ref.key)
        requests.append(RunRequest(run_key=f"{ref.key}:{fingerprint}", partition_key=ref.key))
    return SensorResult(
        run_requests=requests,
        skip_reason=None if requests else SkipReason("no new or changed corpus files"),
        dynamic_partitions_requests=[shards_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


corpus_refresh_schedule = ScheduleDefinition(
    name="corpus_refresh_schedule",
    job=refresh_job,
    cron_schedule="0 3 * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Nightly: refit the normaliser over the current shards and re-register mixture configs.",
)
