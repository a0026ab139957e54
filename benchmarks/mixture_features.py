"""Mixture statistics for the search's candidates: batched pass vs config-by-config reference.

Usage::

    .venv/bin/python benchmarks/mixture_features.py [--docs 4096] [--configs 2000] [--domains 24] [--criteria 5]

Builds a synthetic attribute table (continuous worse-than ranks, skewed domain sizes, log-normal token
counts), draws configs from ``ParamSpace``, and times, in the same run and on one thread:

* ``mixture_features``: every config's statistics in batches (one argsort of a (batch, docs) matrix);
* the baseline: for each config, ``method.aggregate`` + ``method.sampling_frequency`` (the reference
  numpy path, one radix sort and a per-domain sort per config) and the same statistics from its output.

Both must agree (max abs difference printed); the ratio is configs/s batched over configs/s baseline,
and the projected time for the search's 100,000 candidates is printed beside it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quadmix_assets.method import ParamSpace, aggregate, sampling_frequency  # noqa: E402
from quadmix_assets.proxy.features import DocumentTable, mixture_features  # noqa: E402


def baseline(ranks, domains, tokens, configs, M):
    out = []
    for p in configs:
        _, r = aggregate(ranks, domains, tokens, p)
        S = sampling_frequency(r, domains, p)
        wt = S * tokens
        total = wt.sum()
        out.append(np.concatenate([np.bincount(domains, weights=wt, minlength=M) / total,
                                   (wt[:, None] * ranks).sum(0) / total,
                                   [np.log(total), np.log(np.minimum(S, 1).sum()), (np.maximum(S - 1, 0) * tokens).sum() / total]]))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=4096)
    ap.add_argument("--configs", type=int, default=2000)
    ap.add_argument("--domains", type=int, default=24)
    ap.add_argument("--criteria", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    M, N = a.domains, a.criteria
    sizes = rng.dirichlet(np.full(M, 0.7))
    domains = rng.choice(M, a.docs, p=sizes)
    ranks = rng.random((a.docs, N))
    tokens = np.round(rng.lognormal(6, 1, a.docs))
    space = ParamSpace(M, N, omega_max=0.5)
    arrays = space.sample_arrays(a.configs, 1)
    configs = space.sample(a.configs, 1)
    docs = DocumentTable.build(ranks, domains, tokens, M)
    mixture_features(docs, space.sample_arrays(8, 9))  # warm-up
    t = time.perf_counter()
    fast = mixture_features(docs, arrays)
    t_fast = time.perf_counter() - t
    n_base = min(a.configs, 300)
    t = time.perf_counter()
    ref = baseline(ranks, domains, tokens, configs[:n_base], M)
    t_base = time.perf_counter() - t
    diff = float(np.abs(fast[:n_base] - ref).max())
    fast_rate, base_rate = a.configs / t_fast, n_base / t_base
    print(f"documents {a.docs:,}, M = {M}, N = {N}, one thread")
    print(f"batched  mixture_features: {a.configs:,} configs in {t_fast:.2f} s = {fast_rate:,.0f} configs/s")
    print(f"baseline aggregate+sampling_frequency per config: {n_base:,} configs in {t_base:.2f} s = {base_rate:,.0f} configs/s")
    print(f"ratio {fast_rate / base_rate:.2f}x; max abs difference {diff:.2e}; "
          f"100,000 search candidates: {100_000 / fast_rate:.0f} s batched vs {100_000 / base_rate:.0f} s baseline")


if __name__ == "__main__":
    main()
