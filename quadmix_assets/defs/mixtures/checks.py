"""Checks of each mixture (partitioned: run over several mixtures, each mixture's own result is recorded
against its partition)."""

import pyarrow.compute as pc
from dagster import AssetCheckExecutionContext, AssetKey, asset_check

from quadmix_assets import keys
from quadmix_assets.dagster_support.check_results import record_per_partition
from quadmix_assets.dagster_support.partitions import mixtures_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.mixing.features import duplicate_rows
from quadmix_assets.mixing.store import drawn_from, scores_card
from quadmix_assets.storage import layout


@asset_check(
    asset=AssetKey(keys.MIXTURE_SCORES),
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
    record_per_partition(context, judged)


@asset_check(
    asset=AssetKey(keys.MIXTURE_MANIFEST),
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
    record_per_partition(context, judged)
