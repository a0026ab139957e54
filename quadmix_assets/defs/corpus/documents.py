"""Stage 1: the normalised documents of each shard, with a counted, inspectable quarantine."""


import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets.corpus import ShardError, read_shard
from quadmix_assets.corpus.reader import ReadLimits
from quadmix_assets.dagster_support import conditions
from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.table_metadata import table_metadata, uri_metadata
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.storage import content_hash, layout
from quadmix_assets.dagster_support.k8s import pod_tags

DOCUMENTS_VERSION = "documents-v1"


@asset(
    partitions_def=shards_partitions,
    group_name="corpus",
    op_tags=pod_tags("shard"),
    code_version=DOCUMENTS_VERSION,
    automation_condition=conditions.DOCUMENTS,
    kinds={"parquet"},
    description="One corpus file, normalised: stable id and 64-bit key, text, token estimate, original "
    "fields kept. Bad records go to a quarantine file with the reason per record.",
)
def documents(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    shard = settings.shard(context.partition_key)
    limits = settings.read_limits()
    try:
        read = read_shard(shard.path, text_field=settings.text_field, id_field=settings.id_field, limits=limits)
    except ShardError as exc:
        raise Failure(
            description=f"shard {shard.key} cannot be read: {exc}",
            metadata={"source": shard.path, "fingerprint": str(exc.fingerprint)},
            allow_retries=False,
        ) from exc
    fingerprint = read.fingerprint  # of exactly the bytes read (hashed in the same pass)
    storage = settings.storage()
    prov = provenance(
        context,
        DOCUMENTS_VERSION,
        params={"text_field": settings.text_field, "id_field": settings.id_field, "limits": limits.to_dict()},
        inputs={"source": shard.path, "fingerprint": fingerprint},
    )
    docs_uri = storage.write_parquet(layout.documents(shard.key), read.documents, prov)
    quarantine_uri = storage.write_parquet(layout.quarantine(shard.key), read.quarantine, prov)
    n_docs = read.documents.num_rows
    tokens = int(pc.sum(read.documents["n_tokens"]).as_py() or 0) if n_docs else 0
    quarantined = int(read.stats["quarantined"])
    if quarantined:
        not_stored = int(read.stats["quarantine_rows_not_stored"])
        context.log.warning(
            f"{shard.key}: {quarantined} records quarantined "
            f"{dict(read.stats.get('quarantined_by_reason', {}))} -> {quarantine_uri}"
            + (f" ({not_stored} of them counted only, beyond max_quarantine_rows={limits.max_quarantine_rows})" if not_stored else "")
        )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(docs_uri),
            **uri_metadata(docs_uri),
            **table_metadata(read.documents),
            "source": MetadataValue.path(shard.path),
            "source_name": shard.name,
            "fingerprint": fingerprint,
            "documents": n_docs,
            "tokens": tokens,
            "quarantined": quarantined,
            "quarantine_rows_not_stored": int(read.stats["quarantine_rows_not_stored"]),
            "quarantined_by_reason": MetadataValue.json(dict(read.stats.get("quarantined_by_reason", {}))),
            "quarantine_path": MetadataValue.path(quarantine_uri),
            "stats": MetadataValue.json({k: v for k, v in read.stats.items() if k != "quarantined_by_reason"}),
        },
        data_version=DataVersion(
            f"{fingerprint[:23]}/{DOCUMENTS_VERSION}"
            + ("" if limits == ReadLimits() else f"/limits-{content_hash(limits.to_dict())[:8]}")
        ),
    )
