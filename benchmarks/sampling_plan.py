"""Throughput and memory of ``quadmix_assets.method.sampling_plan`` (one config, one core).

Usage::

    .venv/bin/python benchmarks/sampling_plan.py [--rows 1000000 10000000] [--repeats 3]

For each row count it builds a synthetic corpus (M = 24 domains with skewed sizes, N = 3 criteria
whose raw scores have heavy ties, log-normal token counts, random uint64 document keys), turns the
raw scores into worse-than ranks (not timed), and times ``sampling_plan`` for one config drawn from
``ParamSpace(24, 3)``. It also times a straightforward baseline written below -- a Python loop over
domains, each step a plain numpy call (mask, argsort, cumsum, searchsorted) -- checks that both give
identical results, and reports:

* rows/s: best of ``--repeats`` warm runs (and the median), single thread;
* peak extra memory: ``tracemalloc`` peak during one call minus the traced memory before it (numpy
  reports its buffers to tracemalloc), i.e. temporaries plus the returned arrays, per row.

The goal set by the issue: >= 3M rows/s on one core, memory linear in rows.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quadmix_assets.method import ParamSpace, QuadMixParams, sampling_plan, worse_than_rank  # noqa: E402
from quadmix_assets.method.sampling import seed_to_uint64  # noqa: E402

N_DOMAINS = 24
N_CRITERIA = 3

_M64 = np.uint64
_GAMMA, _MIX1, _MIX2 = _M64(0x9E3779B97F4A7C15), _M64(0xBF58476D1CE4E5B9), _M64(0x94D049BB133111EB)


# --------------------------------------------------------------------------- baseline
def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + _GAMMA
    z = (z ^ (z >> _M64(30))) * _MIX1
    z = (z ^ (z >> _M64(27))) * _MIX2
    return z ^ (z >> _M64(31))


def baseline_plan(ranks, domains, tokens, keys, params: QuadMixParams, seed) -> dict[str, np.ndarray]:
    """The obvious implementation: loop over domains, select each domain with a boolean mask."""
    n = ranks.shape[0]
    qbar = np.empty(n)
    r = np.empty(n)
    expected = np.empty(n)
    copies = np.empty(n, dtype=np.int64)
    s64 = int(_splitmix64(np.array([seed_to_uint64(seed)], dtype=np.uint64))[0])
    with np.errstate(over="ignore"):
        for m in range(params.n_domains):
            idx = np.flatnonzero(domains == m)
            if idx.size == 0:
                continue
            rk = ranks[idx]
            q = params.alpha[m, 0] * rk[:, 0]
            for j in range(1, params.n_criteria):
                q = q + params.alpha[m, j] * rk[:, j]
            w = tokens[idx]
            order = np.argsort(q)
            qs = q[order]
            c = np.cumsum(w[order])
            total = c[-1]
            if total == 0:
                c = np.arange(1, idx.size + 1)
                total = idx.size
            rr = c[np.searchsorted(qs, q, side="right") - 1] / total
            lam, om, eta, eps = params.lam[m], params.omega[m], params.eta[m], params.eps[m]
            x = np.maximum(lam * (om - rr), 0.0)
            s = np.where(rr <= om, (2.0 / (1.0 + np.exp(-x))) ** eta + eps, eps)
            u = (_splitmix64(keys[idx] ^ _M64(s64)) >> _M64(11)).astype(np.float64) * 2.0**-53
            whole = np.floor(s)
            qbar[idx] = q
            r[idx] = rr
            expected[idx] = s
            copies[idx] = whole.astype(np.int64) + (u < s - whole)
    return {"qbar": qbar, "r": r, "expected": expected, "copies": copies}


# --------------------------------------------------------------------------- data
def make_corpus(n: int, seed: int):
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.full(N_DOMAINS, 0.7))  # skewed domain sizes
    domains = rng.choice(N_DOMAINS, size=n, p=sizes).astype(np.int16)
    tokens = np.maximum(1, rng.lognormal(6.0, 1.0, n)).astype(np.int64)
    tokens[rng.random(n) < 0.01] = 0
    raw = np.empty((n, N_CRITERIA))
    raw[:, 0] = rng.beta(2, 5, n)  # an LLM's "yes" probability
    raw[:, 1] = np.clip(np.round(rng.normal(2.0, 1.0, n) * 4) / 4, 0, 5)  # a 0-5 score, many ties
    raw[:, 2] = rng.normal(0, 1, n).astype(np.float32)  # a fastText logit at float32 precision
    ranks = np.empty_like(raw)
    for j in range(N_CRITERIA):
        ranks[:, j] = worse_than_rank(raw[:, j], tokens)
    keys = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    return ranks, domains, tokens, keys


# --------------------------------------------------------------------------- measurement
def time_runs(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def peak_extra_bytes(fn) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return peak - before


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)

    params = ParamSpace(N_DOMAINS, N_CRITERIA).sample(1, seed=args.seed)[0]
    seed = params.config_id
    print(f"numpy {np.__version__}, python {platform.python_version()}, {platform.machine()}, "
          f"threads pinned to 1; config {params.config_id} (M={N_DOMAINS}, N={N_CRITERIA})")
    rows_out = []
    for n in args.rows:
        t0 = time.perf_counter()
        ranks, domains, tokens, keys = make_corpus(n, args.seed)
        print(f"built {n:,} rows in {time.perf_counter() - t0:.1f}s", flush=True)

        def lib():
            return sampling_plan(ranks, domains, tokens, keys, params, seed)

        def base():
            return baseline_plan(ranks, domains, tokens, keys, params, seed)

        got = lib()  # warm-up (page faults of first-touch memory), and the result to check
        lib_t = time_runs(lib, args.repeats)
        lib_mem = peak_extra_bytes(lib)
        row = {"rows": n, "lib": lib_t, "lib_mem": lib_mem, "selected": int(got["copies"].sum())}
        if not args.no_baseline:
            want = base()
            for k in ("qbar", "r", "expected", "copies"):
                if not np.array_equal(got[k], want[k]):
                    diff = np.abs(got[k].astype(float) - want[k].astype(float)).max()
                    print(f"  WARNING: {k} differs from the baseline (max |diff| {diff:.3g})")
            row["base"] = time_runs(base, args.baseline_repeats)
            row["base_mem"] = peak_extra_bytes(base)
        rows_out.append(row)
        del got, ranks, domains, tokens, keys

    print()
    hdr = (f"{'rows':>11} {'impl':>9} {'best s':>8} {'median s':>9} {'rows/s':>12} "
           f"{'vs base':>8} {'peak extra MiB':>15} {'B/row':>7}")
    print(hdr)
    print("-" * len(hdr))
    for row in rows_out:
        n = row["rows"]
        impls = [("library", row["lib"], row["lib_mem"])]
        if "base" in row:
            impls.append(("baseline", row["base"], row["base_mem"]))
        base_best = min(row["base"]) if "base" in row else None
        for name, ts, mem in impls:
            best = min(ts)
            ratio = f"{base_best / best:.2f}x" if base_best else "-"
            print(f"{n:>11,} {name:>9} {best:>8.3f} {statistics.median(ts):>9.3f} {n / best:>12,.0f} "
                  f"{ratio:>8} {mem / 2**20:>15.1f} {mem / n:>7.1f}")
    print("\nrows/s from the best warm run; memory = tracemalloc peak during one call minus the "
          "traced memory before it (temporaries + the 4 returned arrays, 32 B/row).")
    best_rate = min(row["rows"] / min(row["lib"]) for row in rows_out)
    print(f"goal >= 3,000,000 rows/s: {'met' if best_rate >= 3e6 else 'NOT met'} "
          f"(slowest size: {best_rate:,.0f} rows/s); selected copies at the largest size: "
          f"{rows_out[-1]['selected']:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
