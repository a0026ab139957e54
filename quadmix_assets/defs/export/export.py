"""Stage 7: a mixture written for large-scale training (any mixture partition; the runner exports the
search optimum): Parquet text shards with copies expanded, a Megatron-LM indexed dataset (``tokens.bin`` +
``tokens.idx``) tokenized with the configured Hugging Face tokenizer (``export_tokenizer``; default the
proxies' own), and a manifest naming every input. The export is written into a new folder beside the old one and switched in at
the end (``StorageRoot.replace_dir``); ``manifest.json`` goes last, so an export folder with a manifest is
complete. Only shards whose documents are still the ones the mixture was drawn from are exported."""


import json
import tempfile
from pathlib import Path

from dagster import (
    AssetKey,
    AssetDep,
    AssetExecutionContext,
    DataVersion,
    Failure,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets import keys
from quadmix_assets.dagster_support.current import select_shards

from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.mixing.store import drawn_from, load_spec
from quadmix_assets.dagster_support.partitions import exports_partitions
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import stored_table_metadata, uri_metadata
from quadmix_assets.proxy.optimise import measured_rank
from quadmix_assets.resume import EXPORT_SETTINGS_KEY, export_fingerprint
from quadmix_assets.proxy.runs import load_proxy_tokenizer
from quadmix_assets.export import as_export_tokenizer, export_mixture, load_export_tokenizer
from quadmix_assets.reporting.numbers import fmt_num
from quadmix_assets.storage import content_hash, layout
from quadmix_assets.storage.texts import ShardTexts

EXPORT_VERSION = "mixture-export-v3"  # v2: Megatron tokens.bin + tokens.idx, any HF tokenizer; v3: the tokenizer
# shipped beside the tokens, provenance in the text parts
from quadmix_assets.loop.policy import SEARCH_OPTIMUM, SELECTED_AS_TAG, SELECTION_TAG  # noqa: E402  (the loop selects what is exported)


@asset(
    partitions_def=exports_partitions,
    group_name="export",
    op_tags=pod_tags("fanin"),
    code_version=EXPORT_VERSION,
    # an `exports` partition is the key of the `mixtures` partition it exports
    deps=[AssetDep(AssetKey(keys.MIXTURE_MANIFEST), partition_mapping=IdentityPartitionMapping()), AssetKey(keys.PROXY_TOKENIZER)],
    kinds={"parquet"},
    description="Only the mixtures promoted for export (`exports` partitions: the search optimum, or the "
    "best measured config). Training-ready mixture: text/part-*.parquet (one row per copy, shuffled), a Megatron-LM "
    "indexed dataset tokens.bin + tokens.idx (any Hugging Face tokenizer: `export_tokenizer`), the tokenizer "
    "beside them (tokenizer.json + tokenizer_config.json), and manifest.json naming every file and input.",
)
def mixture_export(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    key = context.partition_key
    spec, configs = load_spec(storage, key)
    manifest_path = layout.mixture_manifest(key)
    manifest = storage.read_parquet(manifest_path, columns=["id", "shard", "row", "copies"])
    tokenizer, tok_card = _export_tokenizer(settings, storage)
    seed = f"export:{key}:{configs['preset']['seed']}"
    folder = layout.export_dir(key)
    shards = sorted(set(manifest["shard"].to_pylist()))
    _check_shards_current(context, settings, key, shards)
    manifest_sha = storage.file_sha256(manifest_path)
    # what made the text parts (not the tokenizer: another tokenizer leaves them byte for byte the same)
    documents = {s: storage.provenance(layout.documents(s)).get("inputs", {}) for s in shards}
    text_prov = provenance(context, EXPORT_VERSION, params={"order_seed": seed}, inputs={
        "mixture_manifest": {"path": manifest_path, "sha256": manifest_sha}, "documents": documents})
    with storage.replace_dir(folder) as staged, tempfile.TemporaryDirectory() as tmp:
        summary = export_mixture(manifest, ShardTexts(storage), tokenizer, tmp, seed=seed, provenance=text_prov)
        for rel in summary.files:
            storage.write_file(f"{staged}/{rel}", Path(tmp) / rel)
        # why this mixture is exported: the search optimum, or (tagged by the runner) the best measured config
        # when the regressor's pick was not promoted
        selected_as = context.run.tags.get(SELECTED_AS_TAG, SEARCH_OPTIMUM if spec.origin == "search" else "requested")
        # the comparison the loop chose it by (the search optimum's measured proxy loss against the best measured
        # config's and the noise: loop.policy.compare_to_best), when the loop made one
        selection = json.loads(context.run.tags[SELECTION_TAG]) if SELECTION_TAG in context.run.tags else None
        doc = _export_doc(context, storage, key, spec, summary, seed, manifest_path, documents, tok_card, selected_as,
                          manifest_sha, selection)
        uri = storage.uri(f"{folder}/manifest.json")
        storage.write_json(f"{staged}/manifest.json", doc)  # last: a folder with a manifest is complete
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(storage.uri(folder)),
            "manifest": MetadataValue.path(uri),
            "name": spec.name,
            "selected_as": selected_as,
            **({"selection": MetadataValue.json(selection), "selection_why": selection["why"]} if selection else {}),
            "measured_rank": MetadataValue.json(doc["measured_rank"]),
            "documents": summary.documents,
            "occurrences": summary.occurrences,
            "tokens": summary.tokens,
            "token_dtype": summary.token_dtype,
            "text_parts": len(summary.text_parts),
            "bytes": sum(f["bytes"] for f in summary.files.values()),
            "tokenizer_version": tok_card["version"],
            "tokenizer": tok_card["source"],
            "tokenizer_files": MetadataValue.json(summary.tokenizer_files),
            "format": "Megatron-LM indexed dataset (tokens.bin + tokens.idx) + Parquet text + the tokenizer",
            "lineage": MetadataValue.md(_export_lineage(doc)),
            EXPORT_SETTINGS_KEY: export_fingerprint(settings),
            **uri_metadata(storage.uri(folder)),
            **stored_table_metadata(storage, [f"{folder}/{p}" for p in summary.text_parts]),
        },
        data_version=DataVersion(content_hash(doc)),
    )


def _export_lineage(doc: dict) -> str:
    """This stage's part of a mixture's story: what was exported, from which manifest, why, with what."""
    rank = doc.get("measured_rank") or {}
    tok = doc["inputs"]["tokenizer"]
    loss = rank.get("loss") if isinstance(rank, dict) else None
    where = f", measured rank {rank.get('rank')} of {rank.get('of')}" if isinstance(rank, dict) and rank.get("rank") else ""
    return (
        f"**Export** of mixture {doc['mixture_id']} {doc['name']!r} ({doc['origin']}), selected as {doc['selected_as']}"
        f"{where}; proxy target loss {fmt_num(loss)}\n\n"
        + (f"- why: {doc['selection']['why']}\n" if doc.get("selection") else "")
        + f"- from the manifest with sha256 {doc['inputs']['mixture_manifest']['sha256'][:16]}: {doc['documents']:,} documents, "
        f"{doc['occurrences']:,} occurrences, {doc['tokens']:,} tokens ({doc['token_dtype']})\n"
        f"- tokenizer {tok['source']} (version {tok['version']}, vocabulary {tok['vocab_size']:,}, end of document {tok['eos_id']})\n"
        f"- Megatron `{doc['tokens_prefix']}.bin` + `{doc['tokens_prefix']}.idx`, Parquet text in {len(doc['text_parts'])} part(s), "
        f"the tokenizer beside them ({', '.join(f'`{f}`' for f in doc.get('tokenizer_files') or [])})\n"
    )


def _export_tokenizer(settings: QuadmixSettings, storage):
    """The configured export tokenizer, or the proxies' own (keeping its version, so the export names the
    same tokenizer the proxies were trained with)."""
    if settings.export_tokenizer:
        try:
            tok = load_export_tokenizer(settings.export_tokenizer)
        except (ValueError, OSError) as exc:
            raise Failure(description=f"the export tokenizer cannot be loaded: {exc}", allow_retries=False) from exc
        return tok, tok.card()
    proxy_tok, card = load_proxy_tokenizer(storage)
    src = card.get("source")
    if isinstance(src, dict):  # how the proxies' tokenizer was trained, said for people
        src = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in src.items())
    tok = as_export_tokenizer(proxy_tok, f"the proxies' own tokenizer ({src})", version=card["version"])
    return tok, tok.card()


def _check_shards_current(context, settings: QuadmixSettings, key: str, shards: list[str]) -> None:
    """Fail unless every shard the mixture draws from still holds the documents it was drawn from."""
    storage = settings.storage()
    drawn = drawn_from(storage, key)
    selection = select_shards(context, settings)
    stale = {}
    for s in shards:
        if s in selection.left_out:
            stale[s] = selection.left_out[s]
        elif s not in selection.fingerprints:
            stale[s] = "no longer in the corpus"
        elif selection.fingerprints[s] != drawn.get(s):
            stale[s] = f"documents changed since the mixture was drawn ({drawn.get(s)} -> {selection.fingerprints[s]})"
    if stale:
        raise Failure(
            description=f"mixture {key} cannot be exported: shard(s) not current: {stale}; re-materialize the "
            "normaliser and the mixture first",
            metadata={"stale_shards": MetadataValue.json(stale)},
            allow_retries=False,
        )


def _export_doc(context, storage, key, spec, summary, seed, manifest_path, documents: dict, tok_card, selected_as: str,
                manifest_sha: str, selection: dict | None = None) -> dict:
    return {
        "mixture_id": key,
        "name": spec.name,
        "origin": spec.origin,
        "selected_as": selected_as,
        "selection": selection,
        # the mixture's own proxy loss and its rank among every measured config of the search rounds
        "measured_rank": measured_rank(storage, key),
        "params": spec.params.to_dict(),
        **summary.to_dict(),
        "order_seed": seed,
        "inputs": {
            "mixture_manifest": {"path": manifest_path, "sha256": manifest_sha,
                                 "provenance": storage.provenance(manifest_path)},
            "documents": documents,
            "tokenizer": tok_card,
        },
        "provenance": provenance(context, EXPORT_VERSION, params={"order_seed": seed}),
    }
