"""The fused, chunked output layer + cross-entropy against ``F.cross_entropy`` over the full logits, in one run.

    .venv/bin/python benchmarks/fused_ce.py [--preset cpu] [--reps 7] [--chunks 256]

At the shapes a pipeline preset's proxies train with (``proxy_group_size`` stacked proxies, the preset's
batch, sequence length and model; vocabulary 4096 as the demo's tokenizer, or ``--vocab``), on one torch
thread as the proxy workers run: the time of the loss + backward of the output layer alone and of a whole
training step's loss + backward (median of ``--reps`` interleaved repetitions, so both paths see the same
load), the forward alone under no_grad (evaluation), the ratio today / fused, the peak memory each adds over its inputs (a fresh process per path, Linux
``VmHWM``), and the largest difference of the per-proxy losses and of the gradients.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _setup(preset_name: str, vocab: int, chunk: int):
    import torch

    from quadmix_assets import presets
    from quadmix_assets.proxy.model import init_params, preset as model_preset

    torch.set_num_threads(1)
    p = presets.PRESETS[preset_name]
    c = model_preset(p.proxy_model, vocab_size=vocab)
    c = replace(c, steps=p.proxy_steps or c.steps, batch_size=p.proxy_batch_size or c.batch_size)
    K = p.proxy_group_size
    params = {k: v.requires_grad_(True) for k, v in init_params(c, list(range(K))).items()}
    g = torch.Generator().manual_seed(0)
    seqs = torch.randint(0, vocab, (K, c.batch_size, c.seq_len + 1), generator=g)
    return torch, c, K, params, seqs


def _step(torch, c, params, seqs, fused: bool, chunk: int):
    from quadmix_assets.proxy import model

    if fused:
        x = model.hidden(params, c, seqs[..., :-1])
        loss = model.fused_linear_ce(x, params["embed"] if c.tie_embeddings else params["lm_head"], seqs[..., 1:],
                                     tied=c.tie_embeddings, chunk=chunk)
    else:
        loss = model.per_proxy_loss(params, c, seqs)
    grads = torch.autograd.grad(loss.sum(), list(params.values()))
    return loss, grads


def _head(torch, x, w, tgt, c, fused: bool, chunk: int):
    import torch.nn.functional as F

    from quadmix_assets.proxy import model

    if fused:
        loss = model.fused_linear_ce(x, w, tgt, tied=c.tie_embeddings, chunk=chunk)
    else:
        logits = torch.einsum("kbtd,kvd->kbtv", x, w) if c.tie_embeddings else torch.einsum("kbtd,kdv->kbtv", x, w)
        loss = F.cross_entropy(logits.float().flatten(0, 2), tgt.flatten(), reduction="none").view(tgt.shape).mean(dim=(1, 2))
    return loss, torch.autograd.grad(loss.sum(), [x, w])


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _peak_child(args, q) -> None:
    preset_name, vocab, fused, chunk = args
    from quadmix_assets.proxy.model import _tune_malloc

    _tune_malloc()
    torch, c, K, params, seqs = _setup(preset_name, vocab, chunk)
    before = _rss_kib("VmRSS")
    _step(torch, c, params, seqs, fused, chunk)
    q.put((_rss_kib("VmHWM") - before) / 1024)


def _peak_mib(preset_name: str, vocab: int, fused: bool, chunk: int) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=((preset_name, vocab, fused, chunk), q))
    proc.start()
    out = q.get()
    proc.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--chunks", default=None, help="comma-separated tokens per proxy per chunk (default: FUSED_CHUNK)")
    a = ap.parse_args()
    from quadmix_assets.proxy.model import FUSED_CHUNK, _tune_malloc

    _tune_malloc()
    chunks = [int(x) for x in a.chunks.split(",")] if a.chunks else [FUSED_CHUNK]
    torch, c, K, params, seqs = _setup(a.preset, a.vocab, chunks[0])
    print(f"preset {a.preset}: K={K} stacked proxies, batch {c.batch_size} x {c.seq_len} tokens, d_model {c.d_model}, "
          f"vocab {a.vocab}, tied {c.tie_embeddings}; 1 torch thread; median of {a.reps} interleaved reps")
    from quadmix_assets.proxy import model

    with torch.no_grad():
        x0 = model.hidden(params, c, seqs[..., :-1])
    x = x0.clone().requires_grad_(True)
    w = (params["embed"] if c.tie_embeddings else params["lm_head"]).detach().clone().requires_grad_(True)
    tgt = seqs[..., 1:]
    # agreement
    lr, gr = _step(torch, c, params, seqs, False, 0)
    for ch in chunks:
        lf, gf = _step(torch, c, params, seqs, True, ch)
        dl = (lr - lf).abs().max().item()
        dg = max((a_ - b_).abs().max().item() for a_, b_ in zip(gr, gf))
        rel = max(((a_ - b_).abs().max() / a_.abs().max().clamp_min(1e-30)).item() for a_, b_ in zip(gr, gf))
        print(f"chunk {ch}: max |loss diff| {dl:.2e} (losses ~{lr.mean().item():.3f}); max |grad diff| {dg:.2e} "
              f"(largest relative to the tensor's max {rel:.2e})")
    # timings, interleaved
    names = ["today"] + [f"fused/{ch}" for ch in chunks]
    head = {n: [] for n in names}
    step = {n: [] for n in names}
    eval_ = {n: [] for n in names}
    for _ in range(a.reps):
        for n in names:
            fused, ch = (n != "today"), (int(n.split("/")[1]) if n != "today" else 0)
            t0 = time.process_time()
            _head(torch, x, w, tgt, c, fused, ch)
            head[n].append(time.process_time() - t0)
            t0 = time.process_time()
            _step(torch, c, params, seqs, fused, ch)
            step[n].append(time.process_time() - t0)
            t0 = time.process_time()
            with torch.no_grad():  # evaluation's forward only
                if fused:
                    model.fused_linear_ce(model.hidden(params, c, seqs[..., :-1]), params["embed"] if c.tie_embeddings
                                          else params["lm_head"], seqs[..., 1:], tied=c.tie_embeddings, chunk=ch)
                else:
                    model.per_proxy_loss(params, c, seqs)
            eval_[n].append(time.process_time() - t0)
    med = {n: (statistics.median(head[n]), statistics.median(step[n]), statistics.median(eval_[n])) for n in names}
    print("\n| path | output layer + CE, loss + backward (CPU s) | training step's loss + backward (CPU s) | step ratio "
          "today/this | forward only, no grad (CPU s) | peak MiB of a step over its inputs |")
    print("|---|---|---|---|---|---|")
    for n in names:
        fused, ch = (n != "today"), (int(n.split("/")[1]) if n != "today" else 0)
        peak = _peak_mib(a.preset, a.vocab, fused, ch)
        print(f"| {n} | {med[n][0]:.3f} ({med['today'][0] / med[n][0]:.2f}x) | {med[n][1]:.3f} | "
              f"{med['today'][1] / med[n][1]:.2f}x | {med[n][2]:.3f} ({med['today'][2] / med[n][2]:.2f}x) | {peak:.0f} |")


if __name__ == "__main__":
    main()
