"""Jobs, the shard sensor (new or changed corpus files -> shard partitions and runs) and the automation
condition sensor (``dagster_support/conditions.py``: labels, scores and mixtures kept current, and the nightly
refresh of the normaliser and mixture configs when stale). Both are stopped by default: the
``quadmix_loop`` sensor (``defs/operations/loop.py``) is the one orchestrator, from new corpus files to the export.

A new corpus file, with ``dagster dev`` (or the daemon) running and nothing else done: the shard
sensor adds its ``shards`` partition and runs ``shard_job`` (documents, domain label, every quality
score); automation then re-evaluates the criteria; the next refresh refits the normaliser over every
complete shard, and automation re-scores and re-draws every mixture from it.

Intervals come from the environment (read when the code location loads): ``QUADMIX_SENSOR_INTERVAL``
(shard sensor, seconds, default 60), ``QUADMIX_AUTOMATION_INTERVAL`` (automation sensor, default 30); the
refresh cron is ``dagster_support/conditions.REFRESH_CRON`` (``QUADMIX_REFRESH_CRON``, default ``0 3 * * *``).
"""


import json
import os

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from quadmix_assets import keys
from quadmix_assets.corpus import file_fingerprint
from quadmix_assets.dagster_support.partitions import checked_keys, shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring.criteria import criteria, teacher_criteria

MAX_SHARDS_PER_TICK = 16
#: content hashes per tick (a file whose size or mtime changed is hashed; a bulk `touch` is spread over ticks)
MAX_HASHES_PER_TICK = 64
SENSOR_INTERVAL_S = int(os.environ.get("QUADMIX_SENSOR_INTERVAL", "60"))
AUTOMATION_INTERVAL_S = int(os.environ.get("QUADMIX_AUTOMATION_INTERVAL", "30"))

#: per-shard scoring assets (keys, named by the criterion registry) of every criterion, of the fast ones
#: (CPU, no distilled student) and of the heavy ones; the distilled students
QUALITY_KEYS = [AssetKey(c.attribute) for c in criteria()]
FAST_QUALITY_KEYS = [AssetKey(c.attribute) for c in criteria() if not c.accelerator]
MODEL_QUALITY_KEYS = [AssetKey(c.attribute) for c in criteria() if c.accelerator]
STUDENT_KEYS = [AssetKey(c.student) for c in teacher_criteria()]

models_job = define_asset_job(
    "models_job",
    # the domain classifier and every model a registered criterion needs (dclm_classifier, edu_teacher)
    selection=AssetSelection.assets(AssetKey(keys.DOMAIN_CLASSIFIER), *dict.fromkeys(AssetKey(m) for c in criteria() for m in c.models)),
    description="Train (or import) the domain classifier and every model a registered criterion builds (the "
    "DCLM-style classifier, the Edu teacher's head, ...).",
)
shard_job = define_asset_job(
    "shard_job",
    selection=AssetSelection.assets(AssetKey(keys.DOCUMENTS), AssetKey(keys.DOMAIN_LABELS), *QUALITY_KEYS),
    description="Normalise one shard and write its domain label and every quality score attribute "
    "(the distilled students must exist: see distill_job).",
)
shard_fast_job = define_asset_job(
    "shard_fast_job",
    selection=AssetSelection.assets(AssetKey(keys.DOCUMENTS), AssetKey(keys.DOMAIN_LABELS), *FAST_QUALITY_KEYS),
    description="Normalise one shard; domain label and the fastText / heuristic quality scores.",
)
distill_job = define_asset_job(
    "distill_job",
    selection=AssetSelection.assets(*STUDENT_KEYS),
    description="Annotate a seeded corpus sample with the transformer teachers and train their students.",
)
shard_model_job = define_asset_job(
    "shard_model_job",
    selection=AssetSelection.assets(*MODEL_QUALITY_KEYS),
    description="The transformer criteria (teacher or student) of one shard.",
)
refresh_job = define_asset_job(
    "refresh_job",
    selection=AssetSelection.assets(keys.QUALITY_NORMALISER, keys.CRITERIA_EVALUATION, keys.MIXTURE_CONFIGS),
    description="Refit the global normaliser, re-evaluate the criteria and (re)register mixture configs.",
)
mixture_job = define_asset_job(
    "mixture_job",
    selection=AssetSelection.assets(keys.MIXTURE_SCORES, keys.MIXTURE_MANIFEST),
    description="Aggregate scores and draw the sampled mixture of one config.",
)

proxy_setup_job = define_asset_job(
    "proxy_setup_job",
    selection=AssetSelection.assets(keys.TARGET_SETS, keys.PROXY_TOKENIZER),
    description="Split the target sets into target / held-out halves and train (or import) the proxies' tokenizer.",
)
proxy_job = define_asset_job(
    "proxy_job",
    selection=AssetSelection.assets(keys.PROXY_RUN),
    description="Train the proxy of one mixture, or (over a partition range) of several mixtures stacked.",
)
noise_job = define_asset_job(
    "noise_job",
    selection=AssetSelection.assets(keys.PROXY_NOISE),
    description="Retrain a seeded subset of the drawn configs' proxies under a second seed: the noise ceiling.",
)
regressor_job = define_asset_job(
    "regressor_job",
    # without its blocking check: a regressor too weak to promote an optimum still proposes the next round
    selection=AssetSelection.assets(keys.MIXTURE_REGRESSOR).without_checks(),
    description="Refit the regressor on the configs of every registered round (between search rounds).",
)
rounds_job = define_asset_job(
    "rounds_job",
    selection=AssetSelection.assets(keys.MIXTURE_ROUNDS),
    description="Propose the next search round's configs from the current regressor.",
)
search_job = define_asset_job(
    "search_job",
    selection=AssetSelection.assets(keys.MIXTURE_REGRESSOR, keys.MIXTURE_SEARCH),
    description="Refit the regressor on every round's finished proxy runs; if its CV Spearman passes the "
    "blocking check against the noise ceiling, search for the optimum and register it as a new mixture.",
)
export_job = define_asset_job(
    "export_job",
    selection=AssetSelection.assets(keys.MIXTURE_EXPORT),
    description="Write one mixture for training: text shards with copies expanded, a Megatron indexed dataset (tokens.bin + tokens.idx).",
)


def _materialized_fingerprint(instance, shard_key: str) -> str | None:
    """The source fingerprint recorded by the latest `documents` materialization of a shard, if any."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(keys.DOCUMENTS), asset_partitions=[shard_key]), limit=1
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
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    # stopped by default: the `quadmix_loop` sensor (defs/operations/loop.py) finds new shards and runs the whole loop;
    # turned on, this one scores new files at once even while the loop is off
    default_status=DefaultSensorStatus.STOPPED,
    description="Discovers new or changed corpus files, adds `shards` partitions and requests their runs "
    f"(at most {MAX_SHARDS_PER_TICK} runs and {MAX_HASHES_PER_TICK} content hashes per tick; the cursor "
    "remembers each file's size, mtime and content hash, so a restart re-hashes nothing it has seen).",
)
def shard_sensor(context: SensorEvaluationContext, settings: QuadmixSettings):
    import fsspec

    cursor: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(shards_partitions.name))
    fs, _ = fsspec.core.url_to_fs(settings.corpus_glob)
    new_keys, requests, hashed, more = [], [], 0, False
    for ref in settings.shards():
        stamp = _file_stamp(fs, ref.path)
        seen = cursor.get(ref.key, {})
        if seen.get("stamp") == stamp and ref.key in known:
            continue
        if len(requests) >= MAX_SHARDS_PER_TICK or hashed >= MAX_HASHES_PER_TICK:
            more = True  # the rest waits for the next tick (the cursor keeps what this one did)
            break
        fingerprint = file_fingerprint(ref.path)
        hashed += 1
        cursor[ref.key] = {"stamp": stamp, "fingerprint": fingerprint}
        previous = seen.get("fingerprint") or (_materialized_fingerprint(context.instance, ref.key) if ref.key in known else None)
        if previous == fingerprint and ref.key in known:
            continue  # touched, same content
        if ref.key not in known:
            new_keys.append(ref.key)
        # run keys dedupe a re-evaluated tick; (previous -> new) keeps a file reverted to old content distinct
        requests.append(RunRequest(run_key=f"{ref.key}:{previous}->{fingerprint}", partition_key=ref.key))
    if more:
        context.log.info(f"more corpus files to check: the next tick goes on ({len(requests)} requested, {hashed} hashed)")
    return SensorResult(
        run_requests=requests,
        skip_reason=None if requests else SkipReason("no new or changed corpus files"),
        # keys come from ShardRef (always safe keys, derived from unsafe file names); checked again here
        dynamic_partitions_requests=[shards_partitions.build_add_request(checked_keys(new_keys, "shard"))] if new_keys else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


automation_sensor = AutomationConditionSensorDefinition(
    "quadmix_automation_sensor",
    target=AssetSelection.all(),
    # stopped by default: the `quadmix_loop` sensor keeps every stage current (one orchestrator); turned on,
    # these conditions add the nightly refresh batch and eager rescoring without the loop
    default_status=DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=AUTOMATION_INTERVAL_S,
    description="Evaluates the assets' automation conditions (dagster_support/conditions.py): new shard scores -> "
    "criteria evaluation; a refitted normaliser or new configs -> every mixture's scores and manifest; a "
    "changed model or code version -> what it feeds; at the refresh cron's tick, the normaliser and the "
    "mixture configs when stale. Models, proxies, regressor, search and export are never requested here "
    "(the quadmix_loop sensor runs the whole loop; this one is stopped by default).",
)
