"""Asset checks on every stage. Per-shard and per-mixture checks are partitioned: each one reads only
its own partition's files (column projections, never the text unless it must)."""

import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetRecordsFilter,
    DagsterEventType,
    asset_check,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from quadmix_assets.defs.corpus import documents
from quadmix_assets.defs.labels import domain_labels
from quadmix_assets.defs.export import mixture_export
from quadmix_assets.defs.mixtures import mixture_manifest, mixture_scores
from quadmix_assets.defs.proxies import proxy_run
from quadmix_assets.defs.regressor import regressor_fit_quality
from quadmix_assets.defs.normaliser import RANKS_ATTRIBUTE, quality_normaliser
from quadmix_assets.defs.partitions import exports_partitions, mixtures_partitions, shards_partitions
from quadmix_assets.defs.quality import QUALITY_ASSETS
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.export.megatron import read_megatron
from quadmix_assets.mixing.features import duplicate_rows
from quadmix_assets.mixing.store import drawn_from, scores_card
from quadmix_assets.scoring.criteria import criteria
from quadmix_assets.storage import StorageRoot, layout

REQUIRED_DOCUMENT_COLUMNS = ("id", "id_hash", "text", "n_tokens", "row", "record")


@asset_check(asset=documents, partitions_def=shards_partitions, description="Schema, unique ids, positive token counts, row numbers 0..n-1.")
def documents_valid(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> AssetCheckResult:
    storage = settings.storage()
    path = layout.documents(context.partition_key)
    schema = pq.read_schema(storage.path(path), filesystem=storage.fs)
    missing = [c for c in REQUIRED_DOCUMENT_COLUMNS if c not in schema.names]
    if missing:
        return AssetCheckResult(passed=False, metadata={"missing_columns": missing})
    t = storage.read_parquet(path, columns=["id", "n_tokens", "row"])
    n = t.num_rows
    unique_ids = pc.count_distinct(t["id"]).as_py() if n else 0
    rows_ok = bool(np.array_equal(t["row"].to_numpy(), np.arange(n)))
    tokens_ok = bool(n == 0 or pc.min(t["n_tokens"]).as_py() > 0)
    return AssetCheckResult(
        passed=unique_ids == n and rows_ok and tokens_ok,
        metadata={"documents": n, "unique_ids": unique_ids, "rows_in_order": rows_ok, "tokens_positive": tokens_ok},
    )


def _attribute_check(asset_def, attribute: str, column: str, low: float, high_of):
    name = f"{asset_def.key.to_user_string()}_aligned_and_in_range"

    @asset_check(
        asset=asset_def,
        name=name,
        partitions_def=shards_partitions,
        description=f"One row per document, in order; `{column}` finite and within its range.",
    )
    def _check(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> AssetCheckResult:
        storage = settings.storage()
        shard = context.partition_key
        n_docs = storage.parquet_rows(layout.documents(shard))
        values = storage.read_parquet(layout.attribute(attribute, shard), columns=[column])[column]
        v = values.to_numpy(zero_copy_only=False).astype(np.float64)
        high = high_of(storage)
        non_finite = int(np.sum(~np.isfinite(v)))
        out_of_range = int(np.sum((v < low) | (v > high)))
        return AssetCheckResult(
            passed=len(v) == n_docs and non_finite == 0 and out_of_range == 0,
            metadata={"rows": len(v), "documents": n_docs, "non_finite": non_finite, "out_of_range": out_of_range, "range": f"[{low}, {high}]"},
        )

    return _check


def _n_domains_minus_one(storage: StorageRoot) -> float:
    return float(storage.read_json(layout.model_card("domain_classifier"))["n_domains"] - 1)


ATTRIBUTE_CHECKS = [_attribute_check(domain_labels, "domain", "domain", 0.0, _n_domains_minus_one)] + [
    # one per registered criterion: its raw score within the criterion's range
    _attribute_check(QUALITY_ASSETS[c.name], c.attribute, "score", c.score_range[0], lambda s, c=c: c.score_range[1])
    for c in criteria()
]


@asset_check(asset=quality_normaliser, description="Every complete shard has ranks in [0, 1], aligned with its documents.")
def normaliser_ranks_valid(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> AssetCheckResult:
    storage = settings.storage()
    card = storage.read_json(layout.normaliser_card())
    problems = {}
    for shard in card["shards"]:
        t = storage.read_parquet(layout.attribute(RANKS_ATTRIBUTE, shard))
        if t.num_rows != storage.parquet_rows(layout.documents(shard)):
            problems[shard] = "row count differs from documents"
            continue
        for col in t.column_names:
            v = t[col].to_numpy()
            if not np.all((v >= 0) & (v <= 1)):
                problems[shard] = f"{col} outside [0, 1]"
    return AssetCheckResult(passed=not problems, metadata={"shards": len(card["shards"]), "problems": problems})


@asset_check(
    asset=quality_normaliser,
    description="The normaliser covers every shard of the corpus: none was left out as failed, stale (its "
    "documents read from another version of the file) or incomplete. Fails listing the ones left out.",
)
def normaliser_covers_corpus(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> AssetCheckResult:
    card = settings.storage().read_json(layout.normaliser_card())
    left_out = dict(card.get("missing_shards", {}))
    return AssetCheckResult(
        passed=not left_out,
        severity=AssetCheckSeverity.ERROR,
        metadata={"shards": len(card["shards"]), "shards_left_out": left_out},
    )


def _targets(instance, asset_key, keys: list[str]) -> dict:
    """The latest materialization of each partition in ``keys`` (what its check judged), as the pointer
    Dagster records with a check evaluation: two queries for the whole run, not one per partition."""
    ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key, DagsterEventType.ASSET_MATERIALIZATION, set(keys))
    if not ids:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, storage_ids=sorted(ids.values())), limit=len(ids)).records
    return {r.partition_key: AssetCheckEvaluationTargetMaterializationData(
        storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp) for r in records}


def _per_mixture(context: AssetCheckExecutionContext, judged: dict[str, tuple[bool, bool, dict]]) -> None:
    """One evaluation per mixture partition of the run, recorded against that partition: ``judged[key] =
    (passed, error, metadata)``; ERROR severity where ``error``, else WARN. Dagster's own result of a check
    run over a range of partitions names no partition (the UI then shows every partition of the range as
    skipped), so each is logged as an ``AssetCheckEvaluation`` with its ``partition`` and the
    materialization it judged, and the check returns nothing else."""
    spec = next(iter(context.check_specs))
    targets = _targets(context.instance, spec.asset_key, list(judged))
    for key, (passed, error, metadata) in judged.items():
        context.op_execution_context.log_event(AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=bool(passed),
            severity=AssetCheckSeverity.ERROR if error else AssetCheckSeverity.WARN,
            metadata=metadata,
            target_materialization_data=targets.get(key),
            blocking=spec.blocking,
            partition=key,
        ))


@asset_check(
    asset=mixture_scores,
    partitions_def=mixtures_partitions,
    description="The mixture draws from every shard of the corpus; fails listing the shards left out (failed, "
    "stale, or changed since the normaliser was fitted); run over several mixtures it judges each and "
    "records each mixture's own result.",
)
def mixture_covers_corpus(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> None:
    storage = settings.storage()
    card = storage.read_json(layout.normaliser_card())
    missing = card.get("missing_shards", {})
    corpus = [r.key for r in settings.shards()]
    keys = list(context.partition_keys)
    judged = {}
    for key in keys:
        used = drawn_from(storage, key)
        left_out = {k: missing.get(k, "left out of this mixture") for k in corpus if k not in used}
        judged[key] = (not left_out, True, {"shards": len(used), "shards_left_out": left_out})
    _per_mixture(context, judged)


@asset_check(
    asset=mixture_manifest,
    partitions_def=mixtures_partitions,
    description="Copies >= 1, rows point at the right documents (never at a quarantined cross-shard text "
    "duplicate), the mixture is not empty; warns when a "
    "corpus domain gets no tokens at all; run over several mixtures it judges each and records each "
    "mixture's own result.",
)
def mixture_manifest_valid(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> None:
    storage = settings.storage()
    ids_of: dict[str, object] = {}  # shard -> its documents' ids, read once for every mixture of the run
    left_out_of: dict[tuple, set] = {}  # shards used -> the (shard, row) quarantined as cross-shard duplicates
    keys = list(context.partition_keys)
    judged = {}
    for key in keys:
        m = storage.read_parquet(layout.mixture_manifest(key), columns=["id", "shard", "row", "copies", "n_tokens", "domain"])
        copies_ok = bool(m.num_rows == 0 or pc.min(m["copies"]).as_py() >= 1)
        pointers_ok = True
        for shard in pc.unique(m["shard"]).to_pylist():
            sel = m.filter(pc.equal(m["shard"], shard))
            if shard not in ids_of:
                ids_of[shard] = storage.read_parquet(layout.documents(shard), columns=["id"])["id"]
            pointers_ok &= ids_of[shard].take(sel["row"]).equals(sel["id"])
        tokens = int(pc.sum(pc.multiply(m["n_tokens"], m["copies"].cast("int64"))).as_py() or 0)
        card = scores_card(storage, key)
        used = tuple(sorted(card["shard_fingerprints"]))
        if used not in left_out_of:
            left_out_of[used] = {(s, int(r)) for s, rows in duplicate_rows(storage, list(used)).items() for r in rows}
        left_out = left_out_of[used]
        duplicates_drawn = sum(1 for s, r in zip(m["shard"].to_pylist(), m["row"].to_pylist()) if (s, int(r)) in left_out) if left_out else 0
        pointers_ok &= duplicates_drawn == 0
        corpus_domains = {d["domain"] for d in card["per_domain"] if d["documents"]}
        mixture_domains = set(pc.unique(m["domain"]).to_pylist())
        uncovered = sorted(corpus_domains - mixture_domains)
        passed = copies_ok and pointers_ok and tokens > 0
        judged[key] = (passed and not uncovered, not passed, {
            "tokens": tokens,
            "copies_at_least_one": copies_ok,
            "rows_point_at_ids": bool(pointers_ok),
            "quarantined_duplicates_drawn": duplicates_drawn,
            "domains_in_corpus": len(corpus_domains),
            "domains_in_mixture": len(mixture_domains),
            "domains_without_tokens": uncovered,
        })
    _per_mixture(context, judged)


@asset_check(
    asset=proxy_run,
    partitions_def=mixtures_partitions,
    description="The proxy trained to the end with finite losses on every target set (failed runs are left "
    "out of the regressor); run over a backfill range it judges each mixture of the range and records each "
    "mixture's own result.",
)
def proxy_loss_finite(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> None:
    storage = settings.storage()
    judged = {}
    for key in context.partition_keys:
        status = storage.read_json(layout.proxy_run(key))["status"]
        judged[key] = (status == "ok", True, {"status": status})
    _per_mixture(context, judged)


@asset_check(
    asset=mixture_export,
    partitions_def=exports_partitions,
    description="The export is complete and consistent: every listed file has its recorded size and "
    "checksum, the Megatron index (tokens.idx) covers tokens.bin exactly with the recorded token count and "
    "dtype, one sequence per text row = occurrence.",
)
def mixture_export_complete(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> AssetCheckResult:
    storage = settings.storage()
    folder = layout.export_dir(context.partition_key)
    doc = storage.read_json(f"{folder}/manifest.json")
    bad_files = [rel for rel, f in doc["files"].items() if storage.file_sha256(f"{folder}/{rel}") != f["sha256"]]
    prefix = doc.get("tokens_prefix", "tokens")
    try:
        with storage.local_file(f"{folder}/{prefix}.idx") as idx, storage.local_file(f"{folder}/{prefix}.bin") as bin_:
            if Path(idx).parent != Path(bin_).parent:  # remote storage: the two copies side by side
                shutil.copy(idx, Path(bin_).with_suffix(".idx"))
            tokens, lengths, _ = read_megatron(Path(bin_).with_suffix(""))
            n_tokens, n_sequences, dtype = len(tokens), len(lengths), tokens.dtype.name
    except (OSError, ValueError) as exc:
        context.log.warning(f"export index unreadable: {exc}")
        n_tokens, n_sequences, dtype = -1, -1, None
    tokens_ok = n_tokens == doc["tokens"] and dtype == doc["token_dtype"]
    rows = sum(storage.parquet_rows(f"{folder}/{p}") for p in doc["text_parts"])
    passed = not bad_files and tokens_ok and rows == doc["occurrences"] == n_sequences
    return AssetCheckResult(
        passed=passed,
        metadata={"files_mismatched": bad_files, "index_matches_tokens": tokens_ok, "text_rows": rows,
                  "occurrences": doc["occurrences"]},
    )


CHECKS = [documents_valid, *ATTRIBUTE_CHECKS, normaliser_ranks_valid, normaliser_covers_corpus, mixture_covers_corpus,
          mixture_manifest_valid, proxy_loss_finite,
          mixture_export_complete, regressor_fit_quality]
