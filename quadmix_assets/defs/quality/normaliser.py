"""Stage 3: the global normaliser asset (token-weighted worse-than ranks per criterion, QUADMIX.md §2):
picks the current shards and records what :func:`quadmix_assets.normalise.fit_normaliser` wrote (the
fit, the cross-shard text duplicates' quarantine and every shard's ranks: see that module)."""

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets import keys
from quadmix_assets.dagster_support import conditions
from quadmix_assets.dagster_support.current import PER_SHARD_ASSETS, SCORED_ATTRIBUTES, left_out_metadata, select_shards
from quadmix_assets.dagster_support.file_records import files_recorded_at_end
from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import stored_table_metadata, uri_metadata
from quadmix_assets.normalise import NORMALISER_VERSION, RANKS_ATTRIBUTE, fit_normaliser
from quadmix_assets.reporting.plots import score_histograms_png, try_png_markdown
from quadmix_assets.scoring.criteria import criteria
from quadmix_assets.storage import layout


@asset(
    group_name="normalise",
    op_tags=pod_tags("fanin"),
    code_version=NORMALISER_VERSION,
    deps=[AssetDep(AssetKey(keys.DOCUMENTS), partition_mapping=AllPartitionMapping())]
    + [AssetDep(AssetKey(c.attribute), partition_mapping=AllPartitionMapping()) for c in criteria()],
    automation_condition=conditions.REFRESH,
    kinds={"parquet"},
    description="Token-weighted worse-than rank tables per criterion (0 = best), fitted over the corpus, "
    "and the per-shard rank attributes they give.",
)
@files_recorded_at_end  # one rank file per shard
def quality_normaliser(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    selection = select_shards(context, settings, SCORED_ATTRIBUTES, PER_SHARD_ASSETS)
    shards, missing = sorted(selection.shards), dict(sorted(selection.left_out.items()))
    if not shards:
        raise Failure("no shard has current documents and all quality scores yet", metadata={"missing": MetadataValue.json(missing)})
    fit = fit_normaliser(
        storage, preset, shards, selection.fingerprints, missing,
        provenance=lambda **kw: provenance(context, NORMALISER_VERSION, **kw),
        info=context.log.info,
        warning=context.log.warning,
    )
    histograms = try_png_markdown(lambda: score_histograms_png(fit.raw_scores), "raw score distribution per criterion", context.log.warning)
    return MaterializeResult(
        metadata={
            "normaliser_version": fit.version,
            "shards": len(shards),
            "missing_shards": MetadataValue.json(missing),
            **left_out_metadata(selection),
            "cross_shard_duplicate_ids": len(fit.duplicates),
            "duplicate_text_quarantined": fit.card["duplicate_text"]["quarantined"],
            "duplicate_text_path": MetadataValue.path(fit.duplicate_uri),
            "documents": fit.card["documents"],
            "tokens": fit.card["tokens"],
            "reference": MetadataValue.json(fit.card["reference"]),
            "path": MetadataValue.path(storage.uri(layout.normaliser_card())),
            **uri_metadata(storage.uri(layout.normaliser_card())),
            # the table it writes for every shard: each document's worse-than ranks (attributes/quality_ranks)
            **stored_table_metadata(storage, [layout.attribute(RANKS_ATTRIBUTE, k) for k in shards]),
            **({"score_distributions": MetadataValue.md(histograms)} if histograms else {}),
        },
        data_version=DataVersion(fit.version),
    )
