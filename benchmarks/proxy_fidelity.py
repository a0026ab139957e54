"""How repeatable is a proxy loss, per CPU-second? Proxy variants measured in one run on a stored run.

Usage (after `quadmix run`, on its storage root)::

    .venv/bin/python benchmarks/proxy_fidelity.py --storage .quadmix/storage [--configs 12] [--workers 2]

Takes ``--configs`` drawn configs of the stored run (a seeded choice), and for every variant trains each
config's proxy twice, under two seeds (other initial weights, other data draw), then reports the repeat
Spearman rho of the two target losses across configs (how well one proxy run ranks configs the way a
second one does: the noise ceiling of any regressor), the noise SD (``proxy_noise``'s definition:
sqrt(var(loss difference between the seeds) / 2)), the CPU-seconds the variant took, ``rho / CPU-second``
and the noise variance x CPU-hours (lower is better per CPU-second; averaging n repeats leaves it as it
is). A training that two variants share (same sampler, config and seed) runs once. Variants:

* ``windows``: the pipeline's sampler (windows across the whole mixture, :mod:`quadmix_assets.proxy.windows`)
  at the preset's budget: the reference;
* ``stream``: the previous sampler (whole documents in shuffled order until the budget is full) at the
  same budget: the baseline;
* ``windows-half`` / ``windows-double``: half and twice the optimiser steps (token budget);
* ``windows-narrow`` / ``windows-wide``: half and twice the model width (d_model and d_ff), same budget;
* ``decay`` / ``cosine``: the learning rate decayed linearly / by a half cosine to zero after the warm-up;
* ``avg``: the uniform average of the weights of the last 25% of steps; ``decay-avg``: both;
* ``batch2x``: twice the batch at the same steps (twice the tokens and CPU);
* ``init-only`` / ``data-only``: the second seed changes only the initial weights / only the windows
  (where the noise comes from);
* ``lr-half`` / ``lr-double``: half and twice the peak learning rate (same schedule);
* ``strata``: windows drawn domain by domain (``mixture_windows(stratify="domain")``: every domain gets its
  share of the windows to within one);
* ``repeat2``: the mean of two seeds' losses against the mean of two other seeds' (twice the CPU);
  ``repeat2-<variant>``: the same for another variant;
and, re-scored from the same runs (no extra training), target-set choices: every set vs. the sets named by
``--subset`` (default: the run preset's ``objective_sets``, the pipeline's objective).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quadmix_assets.mixing.store import training_entries  # noqa: E402
from quadmix_assets.proxy.model import run_proxy_config  # noqa: E402
from quadmix_assets.proxy.parallel import train_and_score  # noqa: E402
from quadmix_assets.proxy.runs import (load_proxy_tokenizer, noise_subset, noise_summary, repeat_seed,  # noqa: E402
                                       target_token_seqs)
from quadmix_assets.proxy.stream import manifest_token_stream  # noqa: E402
from quadmix_assets.proxy.windows import mixture_windows  # noqa: E402
from quadmix_assets.selection.stored import run_preset  # noqa: E402
from quadmix_assets.storage import StorageRoot, layout  # noqa: E402
from quadmix_assets.storage.texts import ShardTexts  # noqa: E402


#: the two trainings a variant compares, (windows repeat, initial-weights repeat) each; default ((0, 0), (1, 1))
SEED_PAIRS = {"init-only": ((0, 0), (0, 1)), "data-only": ((0, 0), (1, 0))}


def cpu_seconds() -> float:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", required=True)
    ap.add_argument("--configs", type=int, default=12)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--subset", default=None, help="comma-separated target sets (default: the preset's objective_sets)")
    ap.add_argument("--objective-only", action="store_true",
                    help="score the proxies on the subset's target sets only (less evaluation CPU; no 'all sets' rows)")
    ap.add_argument("--pipeline-subset", action="store_true",
                    help="the configs proxy_noise repeats (its seeded choice) instead of another seeded choice")
    ap.add_argument("--variants", default="windows,stream,windows-half,windows-double,windows-narrow,windows-wide")
    a = ap.parse_args()
    storage = StorageRoot(a.storage)
    preset = run_preset(storage)
    tokenizer, card = load_proxy_tokenizer(storage)
    base = run_proxy_config(preset, card["vocab_size"])
    seqs, tcard = target_token_seqs(storage, tokenizer, preset)
    sets = sorted(seqs)
    wanted = a.subset.split(",") if a.subset else list(preset.objective_sets or ())
    subset = [s for s in wanted if s in seqs]
    if a.objective_only and subset:
        seqs = {s_: seqs[s_] for s_ in subset}
        sets = list(subset)
    keys = noise_subset([d["mixture_id"] for d in training_entries(storage, up_to_round=1)], a.configs,
                        preset.seed if a.pipeline_subset else preset.seed + 99)
    texts = ShardTexts(storage, max_shards=64)
    manifests = {k: storage.read_parquet(layout.mixture_manifest(k), columns=["id", "shard", "row", "n_tokens", "copies", "domain"])
                 for k in keys}
    variants = {"windows": base, "stream": base, "windows-half": replace(base, steps=base.steps // 2),
                "windows-double": replace(base, steps=base.steps * 2),
                "windows-narrow": replace(base, d_model=base.d_model // 2, d_ff=base.d_ff // 2),
                "windows-wide": replace(base, d_model=base.d_model * 2, d_ff=base.d_ff * 2),
                "decay": replace(base, lr_schedule="linear"), "cosine": replace(base, lr_schedule="cosine"),
                "avg": replace(base, average_last=0.25), "decay-avg": replace(base, lr_schedule="linear", average_last=0.25),
                "batch2x": replace(base, batch_size=base.batch_size * 2), "repeat2": base,
                "init-only": base, "data-only": base, "strata": base,
                "lr-half": replace(base, lr=base.lr / 2), "lr-double": replace(base, lr=base.lr * 2)}
    for name in a.variants.split(","):
        if name.startswith("repeat2-"):  # the mean of two seeds of another variant
            variants[name] = variants[name.removeprefix("repeat2-")]
    runs: dict = {}  # (sampler, config, windows repeat, init repeat) -> (set losses, CPU s, wall s): shared by variants

    def sampler_of(variant: str) -> str:
        base_name = variant.removeprefix("repeat2-")
        return base_name if base_name in ("stream", "strata") else "windows"

    def train(variant: str, cfg, rep: int, init_rep: int | None = None):
        """Set losses, CPU s and wall s of the configs' proxies: windows drawn under repeat ``rep``'s seed,
        initial weights under ``init_rep``'s (default: the same)."""
        sampler = sampler_of(variant)
        init_rep = rep if init_rep is None else init_rep
        key = (sampler, cfg, rep, init_rep)
        if key in runs:
            return runs[key]
        n_seqs = cfg.steps * cfg.batch_size
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        seed, init_seed = repeat_seed(preset, rep), repeat_seed(preset, init_rep)
        batches = []
        cache: dict = {}
        for k in keys:
            if sampler == "stream":
                arr = manifest_token_stream(manifests[k], texts, tokenizer, seed=seed, budget_tokens=n_seqs * (cfg.seq_len + 1),
                                            seq_len=cfg.seq_len)
                arr = arr[np.arange(n_seqs) % len(arr)]
            else:
                arr, _ = mixture_windows(manifests[k], texts, tokenizer, seed=seed, n_seqs=n_seqs, seq_len=cfg.seq_len, cache=cache,
                                         stratify="domain" if sampler == "strata" else None)
            batches.append(arr.astype(np.int64))
        sc = train_and_score(replace(cfg, seed=init_seed), np.stack(batches), seqs, seeds=[init_seed] * len(keys),
                             group_size=preset.proxy_group_size, workers=a.workers)
        runs[key] = (sc.set_losses, cpu_seconds() - cpu0, time.perf_counter() - wall0)
        return runs[key]

    results = {}
    print(f"{len(keys)} drawn configs of {a.storage}, proxy {preset.proxy_model} ({base.n_layers} layers, d_model "
          f"{base.d_model}), {len(sets)} target sets; two seeds per config and variant (repeat2: the mean of two "
          f"seeds against the mean of two others)", flush=True)
    for variant in a.variants.split(","):
        cfg = variants[variant]
        if variant.startswith("repeat2"):
            r = [train(variant, cfg, rep) for rep in range(4)]
            losses = [{s: (r[0][0][s] + r[2][0][s]) / 2 for s in sets}, {s: (r[1][0][s] + r[3][0][s]) / 2 for s in sets}]
        else:  # two trainings, (windows repeat, initial-weights repeat) each
            r = [train(variant, cfg, d, i) for d, i in SEED_PAIRS.get(variant, ((0, 0), (1, 1)))]
            losses = [r[0][0], r[1][0]]
        cpu, wall = sum(x[1] for x in r), sum(x[2] for x in r)
        for choice, names in (("subset", subset),) if a.objective_only and subset else \
                (("all sets", sets), ("subset", subset)) if subset else (("all sets", sets),):
            l0 = np.mean([losses[0][s] for s in names], axis=0)
            l1 = np.mean([losses[1][s] for s in names], axis=0)
            summ = noise_summary(dict(zip(keys, l0)), dict(zip(keys, l1)))  # the pipeline's proxy_noise figures
            summ["mean_loss"] = float(np.mean([l0, l1]))
            results[(variant, choice)] = (summ, cpu, wall, cfg.steps * cfg.batch_size * (cfg.seq_len + 1))
            print(f"  {variant} ({choice}): repeat Spearman {summ['repeat_spearman']:.3f}, noise SD {summ['noise_sd']:.4f}, "
                  f"mean loss {np.mean([l0, l1]):.4f}, {cpu:.0f} CPU s", flush=True)
    ref = results.get(("windows", "subset")) or results.get(("windows", "all sets"))
    print(f"\n{len(keys)} configs. noise SD: of the loss difference between the two seeds, sqrt(var(diff) / 2) "
          "(proxy_noise's definition); noise var x CPU-h: lower is better per CPU-second (averaging n repeats keeps "
          "it constant). CPU s: all the variant's trainings (two seeds; repeat2: four)")
    print("\n| variant | target sets | tokens per proxy | repeat Spearman | noise SD | SD across configs | reliability | "
          "mean loss | CPU s | wall s | rho per CPU-hour | noise var x CPU-h (x1e-6) | noise SD vs windows |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (variant, choice), (summ, cpu, wall, tok) in results.items():
        rho, sd = summ["repeat_spearman"], summ["noise_sd"]
        vs = f"{sd / ref[0]['noise_sd']:.2f}x" if ref and (choice == "subset" or not subset) else "-"
        sets_ = choice if choice == "all sets" else ",".join(subset)
        print(f"| {variant} | {sets_} | {tok:,} | {rho:.3f} | {sd:.4f} | {summ['loss_sd_across_configs']:.4f} | "
              f"{summ['reliability']:.3f} | {summ['mean_loss']:.4f} | {cpu:.0f} | {wall:.0f} | {rho / cpu * 3600:.2f} | "
              f"{sd * sd * cpu / 3600 * 1e6:.2f} | {vs} |")


if __name__ == "__main__":
    main()
