"""How repeatable is a proxy loss, per CPU-second? Proxy variants measured in one run on a stored run.

Usage (after `quadmix run`, on its storage root)::

    .venv/bin/python benchmarks/proxy_fidelity.py --storage .quadmix/storage [--configs 12] [--workers 2]

Takes ``--configs`` drawn configs of the stored run (a seeded choice), and for every variant trains each
config's proxy twice, under two seeds (other initial weights, other data draw), then reports the repeat
Spearman rho of the two target losses across configs (how well one proxy run ranks configs the way a
second one does: the noise ceiling of any regressor), the CPU-seconds the variant took, and
``rho / CPU-second``. Variants:

* ``windows``: the pipeline's sampler (windows across the whole mixture, :mod:`quadmix_assets.proxy.windows`)
  at the preset's budget: the reference;
* ``stream``: the previous sampler (whole documents in shuffled order until the budget is full) at the
  same budget: the baseline;
* ``windows-half`` / ``windows-double``: half and twice the optimiser steps (token budget);
* ``windows-narrow`` / ``windows-wide``: half and twice the model width (d_model and d_ff), same budget;
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
from quadmix_assets.proxy.runs import load_proxy_tokenizer, noise_subset, repeat_seed, target_token_seqs  # noqa: E402
from quadmix_assets.proxy.stream import manifest_token_stream  # noqa: E402
from quadmix_assets.proxy.windows import mixture_windows  # noqa: E402
from quadmix_assets.selection.stored import run_preset  # noqa: E402
from quadmix_assets.storage import StorageRoot, layout  # noqa: E402
from quadmix_assets.storage.texts import ShardTexts  # noqa: E402


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
    keys = noise_subset([d["mixture_id"] for d in training_entries(storage, up_to_round=1)], a.configs, preset.seed + 99)
    texts = ShardTexts(storage, max_shards=64)
    manifests = {k: storage.read_parquet(layout.mixture_manifest(k), columns=["id", "shard", "row", "n_tokens", "copies"])
                 for k in keys}
    variants = {"windows": base, "stream": base, "windows-half": replace(base, steps=base.steps // 2),
                "windows-double": replace(base, steps=base.steps * 2),
                "windows-narrow": replace(base, d_model=base.d_model // 2, d_ff=base.d_ff // 2),
                "windows-wide": replace(base, d_model=base.d_model * 2, d_ff=base.d_ff * 2)}
    results = {}
    print(f"{len(keys)} drawn configs of {a.storage}, proxy {preset.proxy_model} ({base.n_layers} layers, d_model "
          f"{base.d_model}), {len(sets)} target sets; two seeds per config and variant")
    for variant in a.variants.split(","):
        cfg = variants[variant]
        n_seqs = cfg.steps * cfg.batch_size
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        losses = []
        for rep in (0, 1):
            seed = repeat_seed(preset, rep)
            batches = []
            cache: dict = {}
            for k in keys:
                if variant == "stream":
                    arr = manifest_token_stream(manifests[k], texts, tokenizer, seed=seed, budget_tokens=n_seqs * (cfg.seq_len + 1),
                                                seq_len=cfg.seq_len)
                    arr = arr[np.arange(n_seqs) % len(arr)]
                else:
                    arr, _ = mixture_windows(manifests[k], texts, tokenizer, seed=seed, n_seqs=n_seqs, seq_len=cfg.seq_len, cache=cache)
                batches.append(arr.astype(np.int64))
            sc = train_and_score(replace(cfg, seed=seed), np.stack(batches), seqs, seeds=[seed] * len(keys),
                                 group_size=preset.proxy_group_size, workers=a.workers)
            losses.append(sc.set_losses)
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        for choice, names in (("all sets", sets), ("subset", subset)) if subset else (("all sets", sets),):
            l0 = np.mean([losses[0][s] for s in names], axis=0)
            l1 = np.mean([losses[1][s] for s in names], axis=0)
            rho = float(spearmanr(l0, l1).statistic)
            results[(variant, choice)] = (rho, cpu, wall, cfg.steps * cfg.batch_size * (cfg.seq_len + 1))
    ref = results.get(("stream", "all sets"))
    print(f"\n| variant | d_model | target sets | tokens per proxy | repeat Spearman | CPU s | wall s | rho per CPU-hour | vs stream |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (variant, choice), (rho, cpu, wall, tok) in results.items():
        per = rho / cpu * 3600
        vs = f"{rho / ref[0]:.2f}x rho" if ref and ref[0] > 0 and choice == "all sets" else "-"
        print(f"| {variant} | {variants[variant].d_model} | {choice if choice == 'all sets' else ','.join(subset)} | {tok:,} | {rho:.3f} | {cpu:.0f} | {wall:.0f} | {per:.2f} | {vs} |")


if __name__ == "__main__":
    main()
