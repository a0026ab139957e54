"""Stage 3: the global normaliser (token-weighted worse-than ranks per criterion, QUADMIX.md §2).

It is fitted once over every complete shard, stored as a versioned lookup table per criterion, and
applied to every shard, giving per-shard rank attributes aligned with the documents.

It is also where the shards meet, so it resolves exact text duplicates across shards
(:mod:`quadmix_assets.corpus.duplicates`): a text is kept in the first shard key holding it, every
occurrence in a later shard is quarantined (``quarantine/cross_shard/duplicate_text.parquet``, reason
``duplicate_text``, pointer to the kept copy), left out of the reference the ranks are fitted on, and
left out of every mixture. Per-shard files keep all rows (still aligned with the documents).
"""


import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetKey,
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets import keys
from quadmix_assets.corpus.duplicates import cross_shard_duplicates as text_duplicates
from quadmix_assets.corpus.duplicates import rows_left_out, text_digests
from quadmix_assets.dagster_support import conditions
from quadmix_assets.dagster_support.current import PER_SHARD_ASSETS, SCORED_ATTRIBUTES, left_out_metadata, select_shards
from quadmix_assets.dagster_support.file_records import files_recorded_at_end
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import stored_table_metadata, uri_metadata
from quadmix_assets.method import Normaliser
from quadmix_assets.scoring.criteria import CRITERIA, attribute_name, criteria
from quadmix_assets.storage import content_hash, layout
from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.reporting.plots import score_histograms_png, try_png_markdown

NORMALISER_VERSION = "normaliser-v1"
RANKS_ATTRIBUTE = layout.RANKS_ATTRIBUTE


def cross_shard_duplicates(ids: pa.ChunkedArray) -> list[str]:
    """Ids that occur more than once over the shards (within-shard repeats are already quarantined; pass
    the ids of the documents kept after exact text duplicates are removed: the rest differ in text)."""
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return sorted(repeated.to_pylist())


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
    per_shard = {}
    for k in shards:  # one shard's text at a time: only 32-byte digests are held
        t = storage.read_parquet(layout.documents(k), columns=["id", "text"])
        step = 65_536  # Python strings for a slice at a time
        digests = [text_digests(t["text"].slice(i, step).to_pylist()) for i in range(0, t.num_rows, step)]
        per_shard[k] = (t["id"].to_pylist(), np.concatenate(digests) if digests else text_digests([]))
    dup_table = text_duplicates(per_shard)
    sizes = {k: len(v[0]) for k, v in per_shard.items()}
    del per_shard
    dup_rows = rows_left_out(dup_table, shards)
    dup_uri = storage.write_parquet(
        layout.cross_shard_duplicates(), dup_table,
        provenance(context, NORMALISER_VERSION, inputs={"shard_fingerprints": {k: selection.fingerprints[k] for k in shards}}),
    )
    if dup_table.num_rows:
        context.log.info(
            f"{dup_table.num_rows} exact text duplicate(s) across shards quarantined (duplicate_text; the copy in "
            f"the first shard key is kept): {dup_uri}"
        )
    docs = storage.dataset([layout.documents(k) for k in shards]).to_table(columns=["id", "n_tokens"])
    keep = np.ones(docs.num_rows, dtype=bool)
    offset = 0
    for k in shards:
        if k in dup_rows:
            keep[offset + dup_rows[k]] = False
        offset += sizes[k]
    docs = docs.filter(pa.array(keep))
    tokens = docs["n_tokens"].to_numpy()
    duplicates = cross_shard_duplicates(docs["id"])
    if duplicates:
        context.log.warning(
            f"{len(duplicates)} document id(s) occur in more than one shard with different texts (each occurrence "
            f"is kept and ranked; their copy draws coincide): {duplicates[:10]}"
        )
    normalisers: dict[str, Normaliser] = {}
    table_hashes = {}
    raw_scores = {}
    for c in CRITERIA:
        paths = [layout.attribute(attribute_name(c), k) for k in shards]
        scores = storage.dataset(paths).to_table(columns=["score"])["score"].to_numpy().astype(np.float64)[keep]
        norm = Normaliser.fit(
            scores, tokens, max_exact=preset.normaliser_max_exact, sample_size=preset.normaliser_sample_size, seed=preset.seed
        )
        normalisers[c] = norm
        raw_scores[c] = scores[:: max(1, scores.size // 200_000)]  # a strided sample bounds the picture's memory
        table = norm.to_table()
        storage.write_parquet(
            layout.normaliser_table(c), table, provenance(context, NORMALISER_VERSION, params={"criterion": c})
        )
        table_hashes[c] = storage.file_sha256(layout.normaliser_table(c))
    dup_hash = storage.file_sha256(layout.cross_shard_duplicates())
    # the quarantine enters the version only when it holds something: a corpus without cross-shard
    # duplicates keeps the normaliser version (and every byte downstream) it had before this rule
    version = content_hash({"code": NORMALISER_VERSION, "tables": table_hashes,
                            **({"duplicate_text": dup_hash} if dup_table.num_rows else {})})
    inputs = {k: selection.fingerprints[k] for k in shards}
    for key in shards:
        cols = {}
        for c in CRITERIA:
            s = storage.read_parquet(layout.attribute(attribute_name(c), key), columns=["score"])["score"]
            cols[f"s_{c}"] = pa.array(normalisers[c].transform(s.to_numpy().astype(np.float64)), pa.float64())
        storage.write_parquet(
            layout.attribute(RANKS_ATTRIBUTE, key),
            pa.table(cols),
            provenance(context, NORMALISER_VERSION, models={"normaliser": version}, inputs={"fingerprint": inputs[key]}),
        )
    card = {
        "version": version,
        "criteria": list(CRITERIA),
        "shards": shards,
        "missing_shards": missing,
        "shard_fingerprints": inputs,
        "tables": table_hashes,
        "reference": {c: {"exact": bool(n.exact), "n_reference_docs": int(n.n_reference_docs)} for c, n in normalisers.items()},
        "documents": int(tokens.size),
        "tokens": int(tokens.sum()),
        "cross_shard_duplicate_ids": duplicates,
        "duplicate_text": {
            "rule": "exact text (SHA-256 of the UTF-8 bytes) in more than one shard: kept in the first shard key, "
            "quarantined in the later ones",
            "quarantined": int(dup_table.num_rows),
            "per_shard": {k: int(v.size) for k, v in dup_rows.items()},
            "path": layout.cross_shard_duplicates(),
            "sha256": dup_hash,
        },
    }
    storage.write_json(layout.normaliser_card(), card)
    histograms = try_png_markdown(lambda: score_histograms_png(raw_scores), "raw score distribution per criterion", context.log.warning)
    return MaterializeResult(
        metadata={
            "normaliser_version": version,
            "shards": len(shards),
            "missing_shards": MetadataValue.json(missing),
            **left_out_metadata(selection),
            "cross_shard_duplicate_ids": len(duplicates),
            "duplicate_text_quarantined": int(dup_table.num_rows),
            "duplicate_text_path": MetadataValue.path(dup_uri),
            "documents": int(tokens.size),
            "tokens": int(tokens.sum()),
            "reference": MetadataValue.json(card["reference"]),
            "path": MetadataValue.path(storage.uri(layout.normaliser_card())),
            **uri_metadata(storage.uri(layout.normaliser_card())),
            # the table it writes for every shard: each document's worse-than ranks (attributes/quality_ranks)
            **stored_table_metadata(storage, [layout.attribute(RANKS_ATTRIBUTE, k) for k in shards]),
            **({"score_distributions": MetadataValue.md(histograms)} if histograms else {}),
        },
        data_version=DataVersion(version),
    )
