"""Stage 4: mixture configs (one dynamic partition each), per-mixture aggregated scores and in-domain
ranks, and the sampled mixture manifest (document id, shard, row, copies: never a copy of the text)."""


import contextlib

import numpy as np
import pyarrow as pa
from dagster import (
    AssetKey,
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets import keys
from quadmix_assets.reporting import markdown_table
from quadmix_assets.dagster_support.current import PER_SHARD_ASSETS, select_shards
from quadmix_assets.dagster_support import conditions
from quadmix_assets.dagster_support.partition_metadata import add_partition_metadata
from quadmix_assets.dagster_support.partitions import add_partitions, mixtures_partitions
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import table_metadata, uri_metadata
from quadmix_assets.method import ParamSpace
from quadmix_assets.mixing import MixtureSpec, baseline_specs, drawn_specs, global_params
from quadmix_assets.mixing.fanin import open_fan_in
from quadmix_assets.mixing.store import TRAINING_ORIGINS, alpha_criteria, load_specs, round_of, scores_card, searched_specs
from quadmix_assets.scoring.cards import alpha_warnings, stored_student_statuses
from quadmix_assets.scoring.criteria import criteria as criteria_registry
from quadmix_assets.storage import StorageRoot, content_hash, layout
from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.lineage import lineage_markdown, mixture_lineage
from quadmix_assets.reporting.data_view import mixture_samples, samples_markdown
from quadmix_assets.reporting.numbers import round_sig
from quadmix_assets.reporting.plots import domain_shares_png, sampling_curves_png, try_png_markdown

CONFIGS_VERSION = "mixture-configs-v3"  # v2: partition keys carry the mixture's name; v3: english-random (keep rules)
SCORES_VERSION = "mixture-scores-v2"  # v2: a card of sums per domain, no per-document table
MANIFEST_VERSION = "mixture-manifest-v2"  # v2: the scores computed again from the features, not read
#: mixture partitions per run in a backfill (and in `quadmix run`): the attributes are read once per run and
#: the Dagster run's own cost (about a second) is shared; each partition still gets its own materialization
from quadmix_assets.loop.policy import MIXTURE_GROUP as MIXTURE_BATCH  # noqa: E402 - one number for the loop and a UI backfill


@asset(
    group_name="mixtures",
    op_tags=pod_tags("fanin"),
    code_version=CONFIGS_VERSION,
    deps=[AssetKey(keys.DOMAIN_CLASSIFIER)],
    automation_condition=conditions.REFRESH,
    kinds={"json"},
    description="K configs drawn from the QuaDMix parameter space with the preset's seed, plus the named "
    "baselines; each becomes a `mixtures` partition keyed by its name and content hash (`draw-0002-1c9e04aa`).",
)
def mixture_configs(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    config = settings.config()
    preset = config.preset
    alpha, left_out = config.alpha, config.alpha_left_out
    n_domains = int(storage.read_json(layout.model_card("domain_classifier"))["n_domains"])
    space = ParamSpace(n_domains, len(alpha), omega_max=preset.omega_max, lambda_scale=preset.lambda_scale)
    # the keep rules of alpha's criteria (``english-random``: random among the documents langid keeps)
    keep_rules = {c.name: (c.keep.name, c.keep.min_score) for c in criteria_registry() if c.keep is not None and c.name in alpha}
    specs = drawn_specs(space, preset.n_configs, preset.seed) + baseline_specs(
        n_domains, alpha, preset.baseline_keep_fraction, keep_rules
    )
    ids = [s.mixture_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError("two mixture configs share a content hash")
    doc = {
        "preset": preset.to_dict(),
        # alpha's columns, recorded: every reader of the configs (fan-in, regressor, search, export, data view,
        # lineage) follows this list, not the registry
        "space": {"n_domains": n_domains, "criteria": list(alpha), "left_out": left_out,
                  "omega_max": preset.omega_max, "lambda_scale": preset.lambda_scale},
        "configs": [s.to_dict() for s in specs],
        "provenance": provenance(context, CONFIGS_VERSION, params=preset.to_dict()),
    }
    uri = storage.write_json(layout.mixture_configs(), doc)
    new = add_partitions(context.instance, mixtures_partitions, ids)
    # never silently: a column of alpha whose distilled student lost its teacher in this run (its card says so)
    warnings = alpha_warnings(alpha, stored_student_statuses(storage, config))
    for w in warnings:
        context.log.warning(w)
    rows = [[s.mixture_id, s.name, s.origin, "yes" if s.domain_aware else "no",
             ", ".join(f"{c} >= {v:g}" for c, v in s.keep) or "-"] for s in specs]
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri), **uri_metadata(uri),
            "configs": len(specs),
            "drawn": preset.n_configs,
            "baselines": len(specs) - preset.n_configs,
            "new_partitions": len(new),
            "alpha_criteria": MetadataValue.json(list(alpha)),
            "criteria_left_out": MetadataValue.json(left_out),
            "alpha_warnings": MetadataValue.json(warnings),
            "alpha": MetadataValue.md(_alpha_markdown(alpha, left_out, warnings)),
            "table": MetadataValue.md(markdown_table(["mixture_id", "name", "origin", "per domain", "keeps only"], rows)),
        },
        data_version=DataVersion(content_hash(doc["configs"])),
    )


def _alpha_markdown(alpha, left_out: dict, warnings: list[str]) -> str:
    text = f"**Columns of alpha**: {', '.join(alpha)}\n\n"
    if left_out:
        text += "**Left out of alpha** (still scored and carded):\n\n" + "\n".join(f"- {c}: {why}" for c, why in left_out.items()) + "\n\n"
    if warnings:
        text += "**WARNING**:\n\n" + "\n".join(f"- {w}" for w in warnings)
    return text


def _mixture_shards(context: AssetExecutionContext, settings: QuadmixSettings, card: dict):
    """The normaliser's shards that are still current (same documents as when it was fitted, labels and
    ranks computed from them), their fingerprints, and every corpus shard left out with the reason."""
    selection = select_shards(context, settings, ("domain", layout.RANKS_ATTRIBUTE), PER_SHARD_ASSETS)
    fitted = card["shard_fingerprints"]
    shards = [k for k in card["shards"] if k in selection.fingerprints and selection.fingerprints[k] == fitted.get(k)]
    left_out = {}
    for ref in settings.shards():
        if ref.key in shards:
            continue
        if ref.key in selection.left_out:
            left_out[ref.key] = selection.left_out[ref.key]
        elif ref.key in fitted:
            left_out[ref.key] = "its documents changed since the normaliser was fitted"
        else:
            left_out[ref.key] = f"not in the normaliser: {card.get('missing_shards', {}).get(ref.key, 'new shard')}"
    return shards, {k: fitted[k] for k in shards}, left_out


def _shown_to_people(spec: MixtureSpec) -> bool:
    """Baselines and search results, the mixtures a person opens in the UI, get pictures, a data view and
    the lineage story; the many configs only the regressor reads (K drawn, the search rounds) do not: two
    PNGs cost a third of a mixture's run, the story another third. `quadmix show` prints any mixture's
    documents, `quadmix lineage` any mixture's story."""
    return spec.origin not in TRAINING_ORIGINS


def _scores_lineage_metadata(context: AssetExecutionContext, spec: MixtureSpec, params, fingerprints: dict,
                             domain_names: list[str], searched: dict, criteria: list[str]) -> dict:
    """What the lineage report reads back from the event log: the config's numbers, the shards with
    their fingerprints, how a search result was found, and the sampling curve per domain."""
    md = {
        "params": MetadataValue.json(spec.params.to_dict()),
        "param_axes": MetadataValue.json({"domains": list(domain_names), "criteria": list(criteria)}),
        "shards": MetadataValue.json(fingerprints),
    }
    if spec.origin == "search":
        found = (searched.get(spec.mixture_id) or {}).get("found_by")
        if found:
            md["found_by"] = MetadataValue.json(found)
            md["regressor_version"] = str(found.get("regressor_version"))
    if not _shown_to_people(spec):
        return md
    names = domain_names if spec.domain_aware else ["all documents (one global rank)"]
    curve = try_png_markdown(lambda: sampling_curves_png(params, names, mixture=spec.name), f"sampling curve {spec.name}", context.log.warning)
    if curve:
        md["sampling_curve"] = MetadataValue.md(curve)
    return md


def _batch_summary(keys: list[str]) -> dict:
    """What every partition of a run over several mixtures records about that run (Dagster copies the run's
    own metadata into each partition's materialization, so it stays small)."""
    if len(keys) == 1:
        return {}
    return {"mixtures_in_run": len(keys), "run_range": f"{keys[0]} .. {keys[-1]}"}


@asset(
    partitions_def=mixtures_partitions,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MIXTURE_BATCH),
    group_name="mixtures",
    op_tags=pod_tags("fanin"),
    code_version=SCORES_VERSION,
    automation_condition=conditions.MIXTURE_SCORES,
    deps=[
        mixture_configs,
        AssetKey(keys.QUALITY_NORMALISER),
        AssetDep(AssetKey(keys.DOMAIN_LABELS), partition_mapping=AllPartitionMapping()),
        AssetDep(AssetKey(keys.DOCUMENTS), partition_mapping=AllPartitionMapping()),
    ],
    kinds={"json"},
    description="The mixture's scores card: per document, the merged quality qbar (domain-weighted ranks), its "
    "in-domain token-weighted rank r and the expected copy count S(r) of this mixture's config are computed, "
    "and the card keeps their sums per domain with the shards and normaliser they came from (the per-document "
    "scores are computed again where needed, never stored). A run over several mixtures (a backfill) reads "
    "the documents' attributes once for all of them.",
)
def mixture_scores(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    keys = list(context.partition_keys)
    entries, configs = load_specs(storage, keys)
    criteria = alpha_criteria(configs)
    card = storage.read_json(layout.normaliser_card())
    shards, fingerprints, left_out = _mixture_shards(context, settings, card)
    if not shards:
        raise Failure(f"no shard of the normaliser is current: {left_out}", metadata={"shards_left_out": MetadataValue.json(left_out)})
    domain_names = storage.read_json(layout.model_card("domain_classifier"))["domain_names"]
    searched = {d["mixture_id"]: d for d in searched_specs(storage)}
    with open_fan_in(storage, shards, criteria, log=context.log.info) as fan_in:
        engine = fan_in.label
        for key in keys:
            spec = MixtureSpec.from_dict(entries[key])
            params = spec.params if spec.domain_aware else global_params(spec.params)
            summary = fan_in.summary(spec, len(domain_names))
            prov = provenance(
                context,
                SCORES_VERSION,
                models={"normaliser": card["version"]},
                params=spec.to_dict(),
                inputs={"shard_fingerprints": fingerprints},
                partition=key,
            )
            doc = {"mixture_id": spec.mixture_id, "name": spec.name, "shards": list(shards),
                   "shard_fingerprints": fingerprints, "normaliser_version": card["version"], **summary,
                   "provenance": prov}
            uri = storage.write_json(layout.mixture_scores_card(spec.mixture_id), doc)
            add_partition_metadata(context, {
                "path": MetadataValue.path(uri), **uri_metadata(uri),
                "name": spec.name,
                "origin": spec.origin,
                "round": round_of(entries[key]) or 0,  # 1: random draws, 2+: search rounds, 0: none
                "domain_aware": spec.domain_aware,
                "config_id": spec.params.config_id,
                "documents": summary["documents"],
                "expected_tokens": round_sig(summary["expected_tokens"]),
                "normaliser_version": card["version"],
                "engine": engine,
                "shards_left_out": MetadataValue.json(left_out),
                "shards_left_out_count": len(left_out),
                **_scores_lineage_metadata(context, spec, params, fingerprints, domain_names, searched, criteria),
            }, key)
    return MaterializeResult(metadata=_batch_summary(keys))


def _manifest_pictures(context: AssetExecutionContext, spec: MixtureSpec, names, before, after) -> dict:
    """Where people look (baselines, search results): domain shares before/after sampling, and the lineage
    story read from the instance's event log. Reading the story was 30% of a drawn mixture's run; for those
    configs `quadmix lineage` tells it on demand, from the same event log."""
    md = {}
    if not _shown_to_people(spec):
        return md
    shares = try_png_markdown(
        lambda: domain_shares_png(names, before, after, title=f"{spec.name}: domain token shares before and after sampling"),
        f"domain shares {spec.name}", context.log.warning
    )
    if shares:
        md["domain_shares"] = MetadataValue.md(shares)
    try:
        try:
            graph = context.repository_def.asset_graph
        except Exception:  # noqa: BLE001 - no repository on in-process runs: the graph the code location registered
            graph = None
        story = mixture_lineage(context.instance, spec.mixture_id, asset_graph=graph)
        md["lineage"] = MetadataValue.md(lineage_markdown(story, known_at="mixture_manifest"))
    except Exception as exc:  # noqa: BLE001 - the story is informative; it never fails the manifest
        context.log.warning(f"lineage not recorded: {type(exc).__name__}: {exc}")
    return md


def _check_card_current(key: str, card: dict, current: dict[str, str], normaliser_version: str) -> None:
    """The manifest computes its mixture's scores again from today's features: fail unless those are the
    features the scores card was made from (same normaliser, same shard fingerprints)."""
    changed = {s: f"{fp} -> {current.get(s, 'not current')}" for s, fp in card["shard_fingerprints"].items()
               if current.get(s) != fp}
    if card.get("normaliser_version") != normaliser_version or changed:
        why = changed or {"normaliser": f"{card.get('normaliser_version')} -> {normaliser_version}"}
        raise Failure(
            description=f"mixture {key}: its scores card is stale ({why}); re-materialize mixture_scores first",
            metadata={"stale": MetadataValue.json(why)},
            allow_retries=False,
        )


DATA_VIEW_ROWS_PER_BAND = 2  # the UI table: top, middle and bottom of each domain (quadmix show gives more)


def _data_view_metadata(context: AssetExecutionContext, storage: StorageRoot, spec: MixtureSpec, scores, copies) -> dict:
    """Documents from the top, middle and bottom of each domain's rank, with scores and copies (never fails
    the manifest). Only where people look: baselines and search results, not the many drawn and round
    configs (reading every shard's text costs about a second per mixture); `quadmix show` covers any."""
    if not _shown_to_people(spec):
        return {}
    try:
        view = mixture_samples(storage, spec.mixture_id, n=DATA_VIEW_ROWS_PER_BAND, scores=scores, copies=copies)
        return {"data_view": MetadataValue.md(samples_markdown(view))}
    except Exception as exc:  # noqa: BLE001 - informative only
        context.log.warning(f"data view not recorded: {type(exc).__name__}: {exc}")
        return {}


@asset(
    partitions_def=mixtures_partitions,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MIXTURE_BATCH),
    group_name="mixtures",
    op_tags=pod_tags("fanin"),
    code_version=MANIFEST_VERSION,
    automation_condition=conditions.MIXTURE_MANIFEST,
    deps=[mixture_scores],
    kinds={"parquet"},
    description="The sampled mixture: (document id, shard, row, copies) for every selected document, "
    "copies drawn deterministically from (config, document id, seed).",
)
def mixture_manifest(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    keys = list(context.partition_keys)
    entries, configs = load_specs(storage, keys)
    names = storage.read_json(layout.model_card("domain_classifier"))["domain_names"]
    normaliser = storage.read_json(layout.normaliser_card())
    _, current, _ = _mixture_shards(context, settings, normaliser)
    with contextlib.ExitStack() as stack:
        fan_ins: dict[tuple[str, ...], object] = {}  # one fan-in per set of shards: its features read once per run
        for key in keys:
            spec = MixtureSpec.from_dict(entries[key])
            seed = f"{spec.content_id}:{configs['preset']['seed']}"  # the content, not the name, seeds the draws
            card = scores_card(storage, spec.mixture_id)
            _check_card_current(key, card, current, normaliser["version"])
            shards = tuple(card["shards"])
            if shards not in fan_ins:
                fan_ins[shards] = stack.enter_context(open_fan_in(storage, shards, alpha_criteria(configs), log=context.log.info))
            engine = fan_ins[shards].label
            # out of core no per-document table is held (scores None): the data view is left to `quadmix show`
            selection = fan_ins[shards].select(spec, seed)
            manifest, scores, copies = selection.manifest, selection.scores, selection.copies
            prov = provenance(
                context,
                MANIFEST_VERSION,
                params={**spec.to_dict(), "draw_seed": seed},
                inputs={"mixture_scores": card["provenance"]},
                partition=key,
            )
            uri = storage.write_parquet(layout.mixture_manifest(spec.mixture_id), manifest, prov)

            before = np.array([d["tokens"] for d in card["per_domain"]], dtype=np.float64)
            m_copies = manifest["copies"].to_numpy().astype(np.int64)
            after = np.bincount(manifest["domain"].to_numpy().astype(np.int64),
                                weights=manifest["n_tokens"].to_numpy().astype(np.int64) * m_copies, minlength=len(names))
            total_before, total_after = float(before.sum()), float(after.sum())
            rows = [
                [names[m], int(before[m]), f"{before[m] / max(total_before, 1):.1%}", int(after[m]), f"{after[m] / max(total_after, 1):.1%}"]
                for m in range(len(names))
            ]
            add_partition_metadata(context, {
                "path": MetadataValue.path(uri), **uri_metadata(uri), **table_metadata(manifest),
                "name": spec.name,
                "documents_selected": int(manifest.num_rows),
                "documents_total": int(card["documents"]),
                "copies_total": int(m_copies.sum()),
                "max_copies": int(m_copies.max()) if m_copies.size else 0,
                "engine": engine,
                "tokens_before": int(total_before),
                "tokens_after": int(total_after),
                "tokens_per_domain": MetadataValue.md(
                    markdown_table(["domain", "tokens before", "share", "tokens after", "share"], rows)
                ),
                "tokens_per_domain_after": MetadataValue.json({names[m]: int(after[m]) for m in range(len(names))}),
                **_manifest_pictures(context, spec, names, before, after),
                **(_data_view_metadata(context, storage, spec, scores, copies) if scores is not None else {}),
            }, key)
    return MaterializeResult(metadata=_batch_summary(keys))
