"""Stage 5b: one proxy run per mixture partition, and the measured noise of proxy losses.

Each run samples its mixture's training windows across the whole manifest (copies and tokens respected;
:mod:`quadmix_assets.proxy.windows`), trains a small LLaMA-style model from scratch to a fixed token budget
and evaluates the mean token loss on the *target* half of every target set. Runs over several partitions
(a backfill) train their proxies in stacked groups on every core. Every proxy starts from the same initial
weights and reads windows drawn with the same random numbers (common random numbers), so the data is the
only thing that differs, and a proxy's loss does not depend on its group, the partition order or the load.
``proxy_noise`` retrains a seeded subset under a second seed: how far a loss is repeatable.
"""


import numpy as np
from dagster import (
    AssetKey,
    AssetDep,
    AssetExecutionContext,
    AssetObservation,
    BackfillPolicy,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    SpecificPartitionsPartitionMapping,
    asset,
)

from quadmix_assets import keys
from quadmix_assets.dagster_support.k8s import pod_tags, step_pool
from quadmix_assets.dagster_support.partitions import mixtures_partitions
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.partition_metadata import add_partition_metadata
from quadmix_assets.dagster_support.table_metadata import uri_metadata
from quadmix_assets.mixing.store import load_spec, training_entries
from quadmix_assets.proxy.runs import noise_subset, noise_summary, per_set_repeatability, stored_loss, train_mixture_proxies
from quadmix_assets.reporting import markdown_table
from quadmix_assets.reporting.numbers import fmt_num, round_sig
from quadmix_assets.reporting.plots import loss_curves_png, png_markdown
from quadmix_assets.storage import content_hash, layout

PROXY_VERSION = "proxy-run-v3"
NOISE_VERSION = "proxy-noise-v2"
from quadmix_assets.loop.policy import PROXY_GROUP as MAX_GROUP  # noqa: E402 - partitions per run in a backfill; the preset's proxy_group_size stacks within a run


#: hex digits of the manifest's sha256 that name it (as `quadmix lineage` names every mixture file:
#: quadmix_assets.lineage.content_version)
MANIFEST_DIGITS = 16


def manifest_identity(storage, key: str) -> str:
    """The manifest a proxy trains on, named by its content: the first hex digits of the file's sha256, the
    hash its ``mixture_manifest`` materialization records (``quadmix/files``) and `quadmix lineage` shows."""
    return storage.file_sha256(layout.mixture_manifest(key))[:MANIFEST_DIGITS]


def _proxy_lineage(key: str, name: str, record: dict, manifest: str) -> str:
    """This stage's part of a mixture's story: what the proxy was trained on and what it measured."""
    losses = record.get("target_losses") or {}
    per_set = ", ".join(f"{s} {fmt_num(v)}" for s, v in sorted(losses.items()))
    return (
        f"**Proxy** of mixture {key} {name!r}: status {record['status']}, target loss {fmt_num(record['target_loss'])} "
        + (f"(weighted mean over {', '.join(f'{k} x{w:g}' for k, w in record['objective_weights'].items())})"
           if record.get("objective_weights") else f"(mean over {', '.join(record['objective_sets'])})") + (f"; per set: {per_set}" if per_set else "") + "\n\n"
        f"- trained on the manifest with content sha256 {manifest} (as mixture_manifest records it): "
        f"{record['sampler']['documents_read']:,} of {record['sampler']['mixture_documents']:,} documents read, "
        f"{record['budget_tokens']:,} tokens\n"
        f"- final train loss {fmt_num(record.get('final_train_loss'))}; seed {record['init_seed']}; tokenizer "
        f"{record['tokenizer_version']}; targets {record['targets_version']}\n"
    )


def _fmt(v) -> str:
    return f"{v:.4g}" if v is not None else "-"


@asset(
    partitions_def=mixtures_partitions,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MAX_GROUP),
    group_name="proxies",
    op_tags=pod_tags("gpu"),
    pool=step_pool("gpu"),
    code_version=PROXY_VERSION,
    deps=[AssetKey(keys.MIXTURE_MANIFEST), AssetKey(keys.TARGET_SETS), AssetKey(keys.PROXY_TOKENIZER)],
    kinds={"pytorch"},
    description="A small LLaMA-style proxy trained from scratch on the mixture's tokens to a fixed budget; "
    "loss curve, mean loss on every target set's target half, tokens/s and every version involved.",
)
def proxy_run(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    keys = list(context.partition_keys)
    records, scores, run = train_mixture_proxies(storage, keys, preset, repeat=0, log=context.log.info)
    rows, results = [], {}
    for key in keys:
        spec, _ = load_spec(storage, key)
        manifest = manifest_identity(storage, key)
        record = records[key] | {"name": spec.name, "origin": spec.origin}
        record["provenance"] = provenance(context, PROXY_VERSION, params={"proxy_config": run["config"].__dict__})
        record["provenance"]["partition"] = key
        uri = storage.write_json(layout.proxy_run(key), record)
        add_partition_metadata(context, uri_metadata(uri), key)
        results[key] = {k2: record[k2] for k2 in ("name", "origin", "status", "target_loss", "final_train_loss")}
        context.log_event(
            AssetObservation(
                asset_key=context.asset_key,
                partition=key,
                metadata={
                    "name": spec.name,
                    "status": record["status"],
                    "target_loss": round_sig(record["target_loss"]) if record["target_loss"] is not None else float("nan"),
                    "target_losses": MetadataValue.json(round_sig(record["target_losses"] or {})),
                    "documents_read": record["sampler"]["documents_read"],
                    "path": MetadataValue.path(storage.uri(layout.proxy_run(key))),
                    "trained_on_manifest": manifest,
                    "lineage": MetadataValue.md(_proxy_lineage(key, spec.name, record, manifest)),
                },
            )
        )
        rows.append([key, spec.name, record["status"], _fmt(record["target_loss"]), _fmt(record["final_train_loss"]),
                     f"{record['sampler']['documents_read']:,} of {record['sampler']['mixture_documents']:,}"])
    context.log.info(f"{len(keys)} proxies, {scores.tokens_per_s:,.0f} tokens/s on {scores.device}, {scores.wall_s:.1f}s")
    metadata = {
        "proxies": len(keys),
        "proxy_model": preset.proxy_model,
        "parameters_per_proxy": scores.parameters_per_proxy,
        "budget_tokens_per_proxy": records[keys[0]]["budget_tokens"] if keys else 0,
        "tokens_per_s": round_sig(float(scores.tokens_per_s)),
        "train_seconds": round_sig(float(scores.wall_s)),
        "device": scores.device,
        "init_and_window_seed": int(run["config"].seed),
        "tokenizer_version": run["tokenizer_version"],
        "targets_version": run["targets_version"],
        "results": MetadataValue.json(results),
        "runs": MetadataValue.md(markdown_table(["mixture", "name", "status", "target loss", "train loss", "documents read"], rows)),
    }
    labels = [f"{k} {records[k].get('name', '')}" for k in keys]
    curves = np.where(np.isfinite(scores.loss_curves), scores.loss_curves, np.nan)
    metadata["loss_curves"] = MetadataValue.md(png_markdown(loss_curves_png(curves, labels), "proxy training loss per mixture"))
    if len(keys) == 1:
        only = results[keys[0]]
        metadata |= {"name": only["name"], "status": only["status"],
                     "target_loss": round_sig(only["target_loss"]) if only["target_loss"] is not None else float("nan")}
    return MaterializeResult(metadata=metadata, data_version=DataVersion(content_hash(results)))


@asset(
    group_name="proxies",
    op_tags=pod_tags("gpu"),
    pool=step_pool("gpu"),
    code_version=NOISE_VERSION,
    # The noise ceiling reads the proxies of the drawn configs only (their primary losses) and is never redone
    # for later ones (the loop's policy). Dagster cannot map a dynamic partition set to the part of it that a
    # config registered first: "every partition" (AllPartitionMapping) made every later round's proxy and the
    # optimum's, trained after the noise, a new input of it, so a finished run showed it stale. The edge stays
    # (lineage, the graph); no proxy partition counts as a data input of it.
    deps=[AssetKey(keys.MIXTURE_CONFIGS), AssetDep(proxy_run, partition_mapping=SpecificPartitionsPartitionMapping([]))],
    kinds={"pytorch"},
    description="The noise ceiling: a seeded subset of the drawn configs retrained under a second seed (other "
    "initial weights, other windows); the repeat Spearman of their losses and each config's loss spread. It "
    "reads the drawn configs' proxies (registered before it), so the proxies of later rounds and of the "
    "optimum do not make it stale.",
)
def proxy_noise(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    drawn = [d["mixture_id"] for d in training_entries(storage, up_to_round=1)]
    primary = {i: v for i in drawn if (v := stored_loss(storage, i)) is not None}
    subset = noise_subset(sorted(primary), preset.noise_repeats, preset.seed)
    if len(subset) < 3:
        raise ValueError(f"only {len(subset)} drawn configs have a finished proxy run; the noise ceiling needs >= 3: "
                         "materialize proxy_run first")
    records, scores, run = train_mixture_proxies(storage, subset, preset, repeat=1, log=context.log.info)
    repeats = {}
    for key in subset:
        rec = records[key] | {"provenance": provenance(context, NOISE_VERSION, params={"repeat": 1})}
        storage.write_json(layout.proxy_repeat(key, 1), rec)
        if rec["target_loss"] is not None:
            repeats[key] = rec["target_loss"]
    summary = noise_summary(primary, repeats)
    per_set = per_set_repeatability(
        {k: storage.read_json(layout.proxy_run(k))["target_losses"] for k in subset},
        {k: records[k]["target_losses"] for k in subset if records[k]["target_losses"]})
    summary["per_set_repeat_spearman"] = per_set
    doc = summary | {"mixture_ids": subset, "primary": {k: primary[k] for k in subset}, "repeat": repeats,
                     "seeds": [int(preset.seed), int(run["config"].seed)],
                     "provenance": provenance(context, NOISE_VERSION, params={"n": preset.noise_repeats})}
    uri = storage.write_json(layout.proxy_noise(), doc)
    rows = [[k, _fmt(primary[k]), _fmt(repeats.get(k)), _fmt(summary.get("spread", {}).get(k))] for k in subset]
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri), **uri_metadata(uri),
            "configs_repeated": summary["n"],
            "repeat_spearman": round_sig(summary["repeat_spearman"]),
            "noise_sd": round_sig(summary.get("noise_sd", float("nan"))),
            "loss_sd_across_configs": round_sig(summary.get("loss_sd_across_configs", float("nan"))),
            "reliability": round_sig(summary.get("reliability", float("nan"))),
            "train_seconds": round_sig(float(scores.wall_s)),
            "losses": MetadataValue.md(markdown_table(["mixture", "seed 1 loss", "seed 2 loss", "spread"], rows)),
            "per_set_repeat_spearman": MetadataValue.md(markdown_table(
                ["target set", "repeat Spearman", "in objective"],
                [[k, f"{v:.3f}", "yes" if k in run["objective_sets"] else "no"] for k, v in sorted(per_set.items(), key=lambda t: -t[1])])),
        },
        data_version=DataVersion(content_hash({k: v for k, v in doc.items() if k != "provenance"})),
    )
