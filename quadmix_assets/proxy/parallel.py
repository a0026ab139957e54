"""Train and score many proxies on every core, with results that do not depend on how they are grouped.

On the CPU each group of proxies trains in its own worker process with exactly one torch thread: a
proxy's numbers then depend only on its data, its seeds and the model config, not on the machine's load,
on which other proxies share its stacked model, or on the order of the partitions (tested bit for bit).
Groups are spread over ``workers`` processes (default: every core), which die with the process that
started them (:mod:`quadmix_assets.worker_pool`: a killed ``quadmix run`` leaves no proxy training). On
CUDA one process trains the groups one after another (bf16 autocast; bit-exactness across groupings is not
promised there).
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass
class ProxyScores:
    loss_curves: np.ndarray  # (K, steps)
    final_train_loss: np.ndarray  # (K,)
    finite: np.ndarray  # (K,) bool
    set_losses: dict[str, np.ndarray]  # {target set: (K,)}
    tokens_per_s: float
    wall_s: float
    device: str
    parameters_per_proxy: int


def _train_group(config, batches: np.ndarray, seeds: list[int], target_seqs: Mapping[str, list], device: str | None,
                 eval_batch: int) -> dict:
    import torch

    from .model import evaluate_losses, train_proxies

    on_cpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu"
    before = torch.get_num_threads()
    if on_cpu:
        torch.set_num_threads(1)
    try:
        res = train_proxies(config, batches, seeds=seeds, device=device)
        losses = evaluate_losses(res.state, target_seqs, batch_size=eval_batch, device=device)
    finally:
        if on_cpu:
            torch.set_num_threads(before)
    params = int(sum(int(np.prod(v.shape[1:])) for v in res.state["params"].values()))
    return {"loss_curves": res.loss_curves, "final": res.final_train_loss, "finite": res.finite,
            "losses": {k: np.asarray(v) for k, v in losses.items()}, "wall": res.wall_s, "device": res.device,
            "params": params}


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def train_and_score(config, batches: np.ndarray, target_seqs: Mapping[str, Sequence[np.ndarray]], *, seeds: Sequence[int],
                    group_size: int = 16, workers: int | None = None, device: str | None = None,
                    eval_batch: int = 16) -> ProxyScores:
    """Train proxy k on ``batches[k]`` ((K, n_seqs, seq_len + 1)) from init seed ``seeds[k]``, then its
    mean token loss on every target set. Groups of at most ``group_size`` proxies are stacked; groups
    run on ``workers`` processes (one torch thread each)."""
    import torch

    K = int(batches.shape[0])
    seeds = [int(s) for s in seeds]
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    workers = 1 if dev != "cpu" else int(workers or default_workers())
    size = max(1, min(int(group_size), math.ceil(K / workers)))
    groups = [list(range(i, min(K, i + size))) for i in range(0, K, size)]
    seqs = {k: [np.asarray(s) for s in v] for k, v in target_seqs.items()}
    from quadmix_assets.reporting.progress import Progress  # here: the spawned workers need not import it

    t0 = time.perf_counter()
    progress = Progress(f"proxies ({len(groups)} groups of <= {size})", K, "proxies", every_s=20.0)
    if workers > 1 and len(groups) > 1:
        from quadmix_assets.worker_pool import process_pool

        with process_pool(min(workers, len(groups))) as pool:
            futures = [pool.submit(_train_group, config, batches[g], [seeds[i] for i in g], seqs, dev, eval_batch)
                       for g in groups]
            sizes = {f: len(g) for f, g in zip(futures, groups)}
            for f in as_completed(futures):
                f.result()
                progress.update(sizes[f])
            parts = [f.result() for f in futures]
    else:
        parts = []
        for g in groups:
            parts.append(_train_group(config, batches[g], [seeds[i] for i in g], seqs, dev, eval_batch))
            progress.update(len(g))
    wall = time.perf_counter() - t0
    return ProxyScores(
        loss_curves=np.concatenate([p["loss_curves"] for p in parts]),
        final_train_loss=np.concatenate([p["final"] for p in parts]),
        finite=np.concatenate([p["finite"] for p in parts]),
        set_losses={name: np.concatenate([p["losses"][name] for p in parts]) for name in seqs},
        tokens_per_s=K * config.steps * config.batch_size * config.seq_len / max(wall, 1e-9),
        wall_s=wall,
        device=parts[0]["device"] if parts else dev,
        parameters_per_proxy=parts[0]["params"] if parts else 0,
    )
