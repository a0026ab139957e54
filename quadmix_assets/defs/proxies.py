"""Stage 5b: one proxy run per mixture partition.

Each run streams its mixture's tokens from the manifest (copies respected, shuffled with the preset's
seed), trains a small LLaMA-style model from scratch to a fixed token budget and evaluates the mean token
loss on the *target* half of every target set. Runs over several partitions (a backfill of up to
``proxy_group_size`` mixtures per run) train their proxies together in one stacked model. Every proxy
starts from the same initial weights (the preset's seed), so the data is the only thing that differs.
"""


import numpy as np
import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    AssetObservation,
    BackfillPolicy,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets.defs.k8s import pod_tags
from quadmix_assets.defs.labels import _markdown_table
from quadmix_assets.defs.mixtures import load_spec, mixture_manifest
from quadmix_assets.defs.partitions import mixtures_partitions
from quadmix_assets.defs.provenance import provenance
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.defs.targets import load_proxy_tokenizer, proxy_tokenizer, target_sets
from quadmix_assets.presets import Preset
from quadmix_assets.reporting.plots import loss_curves_png, png_markdown
from quadmix_assets.proxy.model import evaluate_losses, run_proxy_config, train_proxies
from quadmix_assets.proxy.stream import manifest_token_stream
from quadmix_assets.storage import StorageRoot, content_hash, layout
from quadmix_assets.storage.texts import ShardTexts

PROXY_VERSION = "proxy-run-v1"
MAX_GROUP = 64  # partitions per run in a backfill; the preset's proxy_group_size stacks within a run


def target_token_seqs(storage: StorageRoot, tokenizer, preset: Preset, half: str = "target") -> tuple[dict[str, list], dict]:
    """Token sequences of one half of every target set (EOS first, so every text token is predicted),
    capped at ``preset.target_examples`` per set by a seeded choice; and the target card."""
    card = storage.read_json(layout.target_card())
    table = storage.read_parquet(layout.target_examples(), columns=["set", "half", "text"])
    eos = int(storage.read_json(layout.model_card("proxy_tokenizer"))["eos_id"])
    out: dict[str, list] = {}
    for name in sorted(card["sets"]):
        mask = pc.and_(pc.equal(table["set"], name), pc.equal(table["half"], half))
        texts = pc.filter(table["text"], mask).to_pylist()
        if preset.target_examples is not None and len(texts) > preset.target_examples:
            pick = np.sort(np.random.default_rng(preset.seed).choice(len(texts), preset.target_examples, replace=False))
            texts = [texts[i] for i in pick]
        out[name] = [np.asarray([eos, *e.ids], dtype=np.int64) for e in tokenizer.encode_batch(texts)]
    return out, card


def manifest_version(storage: StorageRoot, mixture_id: str) -> str:
    """Identity of a mixture manifest's content (its recorded provenance)."""
    return content_hash(storage.provenance(layout.mixture_manifest(mixture_id)))


def _fit_to(arr: np.ndarray, n: int) -> np.ndarray:
    """``n`` sequences from ``arr``, wrapping around when the mixture is smaller than the budget."""
    return arr[np.arange(n) % len(arr)]


@asset(
    partitions_def=mixtures_partitions,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MAX_GROUP),
    group_name="proxies",
    op_tags=pod_tags("gpu"),
    code_version=PROXY_VERSION,
    deps=[mixture_manifest, target_sets, proxy_tokenizer],
    kinds={"pytorch"},
    description="A small LLaMA-style proxy trained from scratch on the mixture's tokens to a fixed budget; "
    "loss curve, mean loss on every target set's target half, tokens/s and every version involved.",
)
def proxy_run(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    keys = list(context.partition_keys)
    tokenizer, tok_card = load_proxy_tokenizer(storage)
    cfg = run_proxy_config(preset, tok_card["vocab_size"])
    seqs, target_card = target_token_seqs(storage, tokenizer, preset)
    objective = target_card["objective_sets"]
    texts = ShardTexts(storage)
    n_seqs = cfg.steps * cfg.batch_size
    budget = n_seqs * (cfg.seq_len + 1)
    batches, info = [], []
    for key in keys:
        spec, _ = load_spec(storage, key)
        manifest = storage.read_parquet(layout.mixture_manifest(key), columns=["shard", "row", "copies"])
        arr = manifest_token_stream(manifest, texts, tokenizer, seed=preset.seed, budget_tokens=budget, seq_len=cfg.seq_len)
        available = int(arr.size)
        info.append({"spec": spec, "available_tokens": available, "empty": len(arr) == 0,
                     "manifest_version": manifest_version(storage, key)})
        batches.append(_fit_to(arr, n_seqs) if len(arr) else np.zeros((n_seqs, cfg.seq_len + 1), dtype=arr.dtype))
    result = train_proxies(cfg, np.stack(batches), seeds=[cfg.seed] * len(keys), group_size=preset.proxy_group_size)
    losses = evaluate_losses(result.state, seqs, batch_size=16)  # (K, 16, T, V) logits at a time
    rows, results = [], {}
    for k, (key, inf) in enumerate(zip(keys, info)):
        spec = inf["spec"]
        finite = bool(result.finite[k]) and all(np.isfinite(losses[s][k]) for s in seqs)
        status = "empty_mixture" if inf["empty"] else ("ok" if finite else "diverged")
        set_losses = {s: float(losses[s][k]) for s in seqs}
        target_loss = float(np.mean([set_losses[s] for s in objective])) if status == "ok" else None
        record = {
            "mixture_id": key,
            "name": spec.name,
            "origin": spec.origin,
            "status": status,
            "target_loss": target_loss,
            "target_losses": set_losses if status == "ok" else None,
            "objective_sets": objective,
            "final_train_loss": float(result.final_train_loss[k]) if status == "ok" else None,
            "loss_curve": [float(v) if np.isfinite(v) else None for v in result.loss_curves[k]],
            "available_tokens": inf["available_tokens"],
            "budget_tokens": budget,
            "epochs_over_mixture": budget / inf["available_tokens"] if inf["available_tokens"] else None,
            "proxy_config": cfg.__dict__ | {"preset": preset.proxy_model},
            "init_seed": cfg.seed,
            "data_seed": preset.seed,
            "manifest_version": inf["manifest_version"],
            "tokenizer_version": tok_card["version"],
            "targets_version": target_card["version"],
            "target_examples_per_set": preset.target_examples,
            "provenance": provenance(context, PROXY_VERSION, params={"proxy_config": cfg.__dict__}),
        }
        record["provenance"]["partition"] = key
        storage.write_json(layout.proxy_run(key), record)
        results[key] = {k2: record[k2] for k2 in ("name", "origin", "status", "target_loss", "final_train_loss")}
        context.log_event(
            AssetObservation(
                asset_key=context.asset_key,
                partition=key,
                metadata={
                    "name": spec.name,
                    "status": status,
                    "target_loss": target_loss if target_loss is not None else float("nan"),
                    "target_losses": MetadataValue.json(set_losses),
                    "final_train_loss": record["final_train_loss"] if record["final_train_loss"] is not None else float("nan"),
                    "path": MetadataValue.path(storage.uri(layout.proxy_run(key))),
                },
            )
        )
        rows.append([key, spec.name, status, f"{target_loss:.4f}" if target_loss is not None else "-",
                     f"{record['final_train_loss']:.4f}" if record["final_train_loss"] is not None else "-"])
    context.log.info(f"{len(keys)} proxies, {result.tokens_per_s:,.0f} tokens/s on {result.device}, {result.wall_s:.1f}s")
    metadata = {
        "proxies": len(keys),
        "proxy_model": preset.proxy_model,
        "parameters_per_proxy": int(sum(int(np.prod(v.shape[1:])) for v in result.state["params"].values())),
        "budget_tokens_per_proxy": budget,
        "tokens_per_s": float(result.tokens_per_s),
        "train_seconds": float(result.wall_s),
        "device": result.device,
        "tokenizer_version": tok_card["version"],
        "targets_version": target_card["version"],
        "results": MetadataValue.json(results),
        "runs": MetadataValue.md(_markdown_table(["mixture", "name", "status", "target loss", "train loss"], rows)),
    }
    labels = [f"{k} {inf['spec'].name}" for k, inf in zip(keys, info)]
    curves = np.where(np.isfinite(result.loss_curves), result.loss_curves, np.nan)
    metadata["loss_curves"] = MetadataValue.md(png_markdown(loss_curves_png(curves, labels), "proxy training loss per mixture"))
    if len(keys) == 1:
        only = results[keys[0]]
        metadata |= {"name": only["name"], "status": only["status"],
                     "target_loss": only["target_loss"] if only["target_loss"] is not None else float("nan")}
    return MaterializeResult(metadata=metadata, data_version=DataVersion(content_hash(results)))
