"""K stacked proxies vs one at a time, same total tokens, on this machine's CPU (or GPU if given --device).

    .venv/bin/python benchmarks/proxy_training.py [--K 8] [--steps 40] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from quadmix_assets.proxy.model import preset, train_proxies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--K", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    cfg = preset("cpu-tiny", steps=a.steps)
    rng = np.random.default_rng(0)
    data = rng.integers(0, cfg.vocab_size, size=(a.K, cfg.batch_size * a.steps, cfg.seq_len + 1)).astype(np.uint16)
    dev = a.device
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else (platform.processor() or platform.machine())
    print(f"device: {dev} ({name}), torch threads {torch.get_num_threads()}, cpu-tiny, K={a.K}, "
          f"{cfg.steps} steps x {cfg.batch_size} x {cfg.seq_len} tokens per proxy")
    train_proxies(preset("cpu-tiny", steps=2), data[:, :32], device=dev)  # warm-up
    t0 = time.perf_counter()
    st = train_proxies(cfg, data, device=dev)
    t_st = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(a.K):
        train_proxies(cfg, data[k:k + 1], device=dev, seeds=[cfg.seed + k])
    t_one = time.perf_counter() - t0
    tokens = a.K * cfg.steps * cfg.batch_size * cfg.seq_len
    print(f"stacked     : {t_st:7.2f} s  {tokens / t_st:10.0f} tokens/s")
    print(f"one-at-a-time: {t_one:7.2f} s  {tokens / t_one:10.0f} tokens/s")
    print(f"speed-up     : {t_one / t_st:.2f}x")


if __name__ == "__main__":
    main()
