"""Proxy runs over stored mixtures (no Dagster): read each mixture's manifest, sample its training windows,
train the proxies on every core and score them on the target half of every target set.

Seeds: every proxy of repeat ``r`` starts from the same initial weights and reads windows drawn with the
same random numbers (``repeat_seed(preset, r)``), whatever its config, its group or its partition order:
common random numbers, so the data is the only thing that differs between configs, and a config's loss
is a function of its manifest and ``r`` alone. Repeat 0 is the proxy the regressor learns from; repeats
1, 2, ... (other init and window seeds) measure how much a proxy's loss is noise.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pyarrow.compute as pc

from quadmix_assets.storage import StorageRoot, content_hash, layout
from quadmix_assets.storage.texts import ShardTexts

from .model import run_proxy_config
from .objective import weighted_mean
from .parallel import ProxyScores, train_and_score
from .windows import mixture_windows

SAMPLER_VERSION = "windows-v1"


def load_proxy_tokenizer(storage: StorageRoot):
    """The stored tokenizer and its card (version, vocab size, eos id, source)."""
    from tokenizers import Tokenizer

    with storage.local_file(layout.tokenizer_file()) as path:
        tok = Tokenizer.from_file(str(path))
    return tok, storage.read_json(layout.model_card("proxy_tokenizer"))


def target_token_seqs(storage: StorageRoot, tokenizer, preset, half: str = "target") -> tuple[dict[str, list], dict]:
    """Token sequences of one half of every target set that has examples in it (EOS first, so every text
    token is predicted), capped at ``preset.target_examples`` per set by a seeded choice; and the target card.
    A set used whole by the judge has no target half and is not scored."""
    card = storage.read_json(layout.target_card())
    table = storage.read_parquet(layout.target_examples(), columns=["set", "half", "text"])
    eos = int(storage.read_json(layout.model_card("proxy_tokenizer"))["eos_id"])
    out: dict[str, list] = {}
    for name in sorted(card["sets"]):
        mask = pc.and_(pc.equal(table["set"], name), pc.equal(table["half"], half))
        texts = pc.filter(table["text"], mask).to_pylist()
        if not texts:
            continue
        if preset.target_examples is not None and len(texts) > preset.target_examples:
            pick = np.sort(np.random.default_rng(preset.seed).choice(len(texts), preset.target_examples, replace=False))
            texts = [texts[i] for i in pick]
        out[name] = [np.asarray([eos, *e.ids], dtype=np.int64) for e in tokenizer.encode_batch(texts)]
    return out, card


def manifest_version(storage: StorageRoot, mixture_id: str) -> str:
    """Identity of a mixture manifest's content (its recorded provenance)."""
    return content_hash(storage.provenance(layout.mixture_manifest(mixture_id)))


def repeat_seed(preset, repeat: int) -> int:
    """Init and window seed of repeat ``repeat`` (0: the regressor's proxies)."""
    return (int(preset.seed) + 1_000_003 * int(repeat)) % (2**31)


def objective_loss(set_losses: dict[str, float], objective: list[str] | dict[str, float]) -> float:
    """The objective: the weighted mean of the per-set losses over the objective's sets
    (:func:`quadmix_assets.proxy.objective.weighted_mean`; a list of names, or equal weights, is the plain mean)."""
    return weighted_mean(set_losses, objective)


def card_objective(card: dict) -> list[str] | dict[str, float]:
    """The objective a target card records: its sets with their weights (a card written before weights
    existed: the sets, weight 1)."""
    w = card.get("objective_weights")
    return {s: float(w[s]) for s in card["objective_sets"]} if w else list(card["objective_sets"])


def train_mixture_proxies(storage: StorageRoot, keys: list[str], preset, *, repeat: int = 0, workers: int | None = None,
                          log: Callable[[str], None] | None = None) -> tuple[dict[str, dict], ProxyScores, dict]:
    """Train one proxy per mixture in ``keys`` (repeat ``repeat``). Returns a record per key (status,
    target loss, loss per set, loss curve, sampler statistics, every version; no provenance), the raw
    scores and run information (config, tokenizer and target versions)."""
    tokenizer, tok_card = load_proxy_tokenizer(storage)
    seed = repeat_seed(preset, repeat)
    cfg = run_proxy_config(preset, tok_card["vocab_size"])
    from dataclasses import replace

    cfg = replace(cfg, seed=seed)
    seqs, target_card = target_token_seqs(storage, tokenizer, preset)
    objective = target_card["objective_sets"]
    weighted = card_objective(target_card)
    texts = ShardTexts(storage, max_shards=64)
    n_seqs = cfg.steps * cfg.batch_size
    width = cfg.seq_len + 1
    cache: dict = {}
    batches, info = [], []
    for key in keys:
        manifest = storage.read_parquet(layout.mixture_manifest(key), columns=["id", "shard", "row", "n_tokens", "copies"])
        arr, sample = mixture_windows(manifest, texts, tokenizer, seed=seed, n_seqs=n_seqs, seq_len=cfg.seq_len, cache=cache)
        mixture_tokens = int(np.dot(manifest["n_tokens"].to_numpy().astype(np.int64), manifest["copies"].to_numpy().astype(np.int64)))
        info.append({"sample": sample, "mixture_tokens": mixture_tokens, "empty": len(arr) == 0,
                     "manifest_version": manifest_version(storage, key)})
        batches.append(arr if len(arr) else np.zeros((n_seqs, width), dtype=np.int64))
    if log:
        log(f"{len(keys)} mixtures sampled ({len(cache):,} distinct documents tokenized); training")
    dtype = np.result_type(*[b.dtype for b in batches]) if batches else np.int64
    scores = train_and_score(cfg, np.stack([b.astype(dtype) for b in batches]), seqs, seeds=[seed] * len(keys),
                             group_size=preset.proxy_group_size, workers=workers or preset.proxy_workers)
    from quadmix_assets.cpu_kernels import effective

    kernels = effective()  # the instruction set the proxies' kernels ran with (quadmix_assets.cpu_kernels)
    records = {}
    for k, (key, inf) in enumerate(zip(keys, info)):
        set_losses = {s: float(scores.set_losses[s][k]) for s in seqs}
        finite = bool(scores.finite[k]) and all(math.isfinite(v) for v in set_losses.values())
        status = "empty_mixture" if inf["empty"] else ("ok" if finite else "diverged")
        ok = status == "ok"
        records[key] = {
            "mixture_id": key,
            "repeat": int(repeat),
            "status": status,
            "target_loss": objective_loss(set_losses, weighted) if ok else None,
            "target_losses": set_losses if ok else None,
            "objective_sets": objective,
            **({"objective_weights": weighted} if isinstance(weighted, dict) else {}),
            "final_train_loss": float(scores.final_train_loss[k]) if ok else None,
            "loss_curve": [float(v) if np.isfinite(v) else None for v in scores.loss_curves[k]],
            "mixture_tokens": inf["mixture_tokens"],
            "budget_tokens": n_seqs * width,
            "sampler": {"version": SAMPLER_VERSION, **inf["sample"]},
            "proxy_config": cfg.__dict__ | {"preset": preset.proxy_model},
            "init_seed": seed,
            "data_seed": seed,
            "manifest_version": inf["manifest_version"],
            "tokenizer_version": tok_card["version"],
            "targets_version": target_card["version"],
            "target_examples_per_set": preset.target_examples,
            "cpu_kernels": kernels,
        }
    run = {"config": cfg, "tokenizer_version": tok_card["version"], "targets_version": target_card["version"],
           "objective_sets": objective}
    return records, scores, run


def current_objective(storage: StorageRoot) -> list[str] | dict[str, float]:
    """The stored objective: its sets, with their weights where the target card records them."""
    return card_objective(storage.read_json(layout.target_card()))


def stored_loss(storage: StorageRoot, mixture_id: str, repeat: int = 0,
                objective: list[str] | dict[str, float] | None = None) -> float | None:
    """The target loss of a mixture's stored proxy (repeat 0: proxy_run) under the current objective (the
    weighted mean of its per-set losses over the target card's objective sets and weights, so a changed
    objective or weight needs no retraining), or None when it has no finished, finite proxy trained on the current manifest."""
    rel = layout.proxy_run(mixture_id) if repeat == 0 else layout.proxy_repeat(mixture_id, repeat)
    if not storage.exists(rel) or not storage.exists(layout.mixture_manifest(mixture_id)):
        return None
    run = storage.read_json(rel)
    if run.get("manifest_version") != manifest_version(storage, mixture_id):
        return None
    if run.get("status") != "ok" or not run.get("target_losses"):
        return None
    sets = objective if objective is not None else current_objective(storage)
    if any(s not in run["target_losses"] for s in sets):
        return None
    v = objective_loss(run["target_losses"], sets)
    return v if math.isfinite(v) else None


def noise_subset(ids: list[str], n: int, seed: int) -> list[str]:
    """A seeded choice of ``n`` mixture ids (order-free: ranked by a hash of (seed, id))."""
    return sorted(ids, key=lambda i: content_hash({"seed": int(seed), "id": i}))[: int(n)]


def per_set_repeatability(primary_sets: dict[str, dict[str, float]], repeat_sets: dict[str, dict[str, float]]) -> dict[str, float]:
    """Repeat Spearman of each target set's loss (same configs, two seeds): which sets carry signal."""
    from scipy.stats import spearmanr

    ids = sorted(set(primary_sets) & set(repeat_sets))
    if len(ids) < 3:
        return {}
    sets = sorted(primary_sets[ids[0]])
    return {s: float(spearmanr([primary_sets[i][s] for i in ids], [repeat_sets[i][s] for i in ids]).statistic) for s in sets}


def noise_summary(primary: dict[str, float], repeats: dict[str, float]) -> dict:
    """Repeat Spearman of the losses of the same configs under two seeds, the per-config spread and the
    share of the loss variance that is not noise (1 - noise variance / variance across configs)."""
    from scipy.stats import spearmanr

    ids = sorted(set(primary) & set(repeats))
    a = np.array([primary[i] for i in ids])
    b = np.array([repeats[i] for i in ids])
    if len(ids) < 3:
        return {"n": len(ids), "repeat_spearman": float("nan")}
    rho = float(spearmanr(a, b).statistic)
    diff = a - b
    noise_var = float(np.var(diff, ddof=1) / 2)
    total_var = float((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)  # across configs, within a seed
    return {"n": len(ids), "repeat_spearman": rho, "repeat_pearson": float(np.corrcoef(a, b)[0, 1]),
            "noise_sd": math.sqrt(noise_var), "loss_sd_across_configs": math.sqrt(total_var),
            "reliability": 1.0 - noise_var / total_var if total_var > 0 else float("nan"),
            "spread": {i: float(abs(d)) for i, d in zip(ids, diff)}}
