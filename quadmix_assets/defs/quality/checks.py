"""Checks of the quality domain: every per-shard attribute (domain label, each criterion's raw score)
aligned with its documents and within range (partitioned: each reads only its own shard), the
normaliser's ranks and coverage."""

import numpy as np
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetKey, asset_check

from quadmix_assets import keys
from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring.criteria import criteria
from quadmix_assets.storage import StorageRoot, layout


def _attribute_check(asset_key: AssetKey, attribute: str, column: str, low: float, high_of):
    name = f"{asset_key.to_user_string()}_aligned_and_in_range"

    @asset_check(
        asset=asset_key,
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


ATTRIBUTE_CHECKS = [_attribute_check(AssetKey(keys.DOMAIN_LABELS), "domain", "domain", 0.0, _n_domains_minus_one)] + [
    # one per registered criterion: its raw score within the criterion's range
    _attribute_check(AssetKey(c.attribute), c.attribute, "score", c.score_range[0], lambda s, c=c: c.score_range[1])
    for c in criteria()
]


@asset_check(asset=AssetKey(keys.QUALITY_NORMALISER), description="Every complete shard has ranks in [0, 1], aligned with its documents.")
def normaliser_ranks_valid(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> AssetCheckResult:
    storage = settings.storage()
    card = storage.read_json(layout.normaliser_card())
    problems = {}
    for shard in card["shards"]:
        t = storage.read_parquet(layout.attribute(layout.RANKS_ATTRIBUTE, shard))
        if t.num_rows != storage.parquet_rows(layout.documents(shard)):
            problems[shard] = "row count differs from documents"
            continue
        for col in t.column_names:
            v = t[col].to_numpy()
            if not np.all((v >= 0) & (v <= 1)):
                problems[shard] = f"{col} outside [0, 1]"
    return AssetCheckResult(passed=not problems, metadata={"shards": len(card["shards"]), "problems": problems})


@asset_check(
    asset=AssetKey(keys.QUALITY_NORMALISER),
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
