"""How the mixture fan-in grows with the corpus: time and peak RSS, the DuckDB engine against the numpy one.

Usage::

    .venv/bin/python benchmarks/scale.py [--scales 1 8 64] [--rows-10m] [--memory-limit 1GB] [--work DIR]
                                         [--paths duckdb numpy] [--threads N]

For every size it writes a stored corpus laid out as the pipeline stores it (``documents/<shard>.parquet``
with id, id_hash, n_tokens and a ~100-byte text; ``attributes/domain``; ``attributes/quality_<c>`` raw scores
for the five criteria; the normaliser tables and ``attributes/quality_ranks``). The attributes are
*generated*, not scored: 24 domains with skewed sizes, log-normal token counts (median ~450, as the bundled
web text), raw scores with heavy ties (rounded to 1e-4), documents with new ids per row. ``1x`` is the bundled
corpus' 14,361 documents, 16 shards; larger sizes keep at most 100,000 documents per shard. ``--rows-10m``
adds a 10,000,000-document corpus. Generation is not timed.

The stage runs in its own child process (its peak RSS is the child's VmHWM; the child's RSS after its
imports and inputs is given too, and the growth compares the RSS the stage added on top of that):

* ``plan``: one config's qbar, in-domain rank r, S(r) and copies, manifest rows kept (DuckDB:
  :func:`quadmix_assets.mixing.fanin_duckdb.sampling_plan`; numpy: ``document_features`` + ``sampling_plan``),
  the step both engines of :func:`quadmix_assets.mixing.fanin.open_fan_in` run per mixture.

(Until 2026-12-07 there were also ``ranks`` (the global worse-than ranks) and ``export`` (the manifest x
documents join) stages: their DuckDB functions were used by nothing but tests and this benchmark, and were
removed with them; their figures stay in RESULTS.md.)

Printed: a table of seconds and peak RSS per stage, path and size (a stage that fails, e.g. out of memory
under a small ``--memory-limit``, is printed as FAILED with its error, and the others still run), then per
consecutive pair of sizes the time ratio divided by the size ratio (1.0 = linear) and the added-RSS ratio
(1.0 = flat), and the peak-RSS ratio from the smallest size to every other. Timings on a
shared machine are only comparable within one run: report the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUNDLED_DOCS = 14_361
CRITERIA = ("dclm", "heuristic", "langid", "edu", "askllm")
N_DOMAINS = 24
MAX_SHARD_ROWS = 100_000
STAGES = ("plan",)


# --------------------------------------------------------------------------- data
def write_corpus(root: str, n_docs: int, seed: int = 0) -> list[str]:
    from quadmix_assets.method import Normaliser, hash_ids
    from quadmix_assets.storage import StorageRoot, layout

    storage = StorageRoot(root)
    n_shards = max(16, math.ceil(n_docs / MAX_SHARD_ROWS))
    sizes = np.full(n_shards, n_docs // n_shards)
    sizes[: n_docs % n_shards] += 1
    rng = np.random.default_rng(seed)
    domain_p = rng.dirichlet(np.full(N_DOMAINS, 0.7))
    shards = [f"shard-{i:05d}" for i in range(n_shards)]
    raw = {c: [] for c in CRITERIA}
    toks = []
    start = 0
    for k, n in zip(shards, sizes):
        n = int(n)
        ids = [f"doc-{start + j:09d}" for j in range(n)]
        start += n
        tokens = np.maximum(1, rng.lognormal(6.1, 0.9, n)).astype(np.int64)
        text = pa.array([f"{i} " + "lorem ipsum " * 7 for i in ids], pa.string())
        storage.write_parquet(layout.documents(k), pa.table({"id": pa.array(ids), "id_hash": pa.array(hash_ids(ids)),
                                                             "n_tokens": pa.array(tokens), "text": text}), {})
        dom = rng.choice(N_DOMAINS, n, p=domain_p).astype(np.int16)
        storage.write_parquet(layout.attribute("domain", k), pa.table({"domain": pa.array(dom)}), {})
        for c in CRITERIA:
            s = np.round(rng.beta(2, 3, n), 4)
            storage.write_parquet(layout.attribute(f"quality_{c}", k), pa.table({"score": pa.array(s)}), {})
            raw[c].append(s)
        toks.append(tokens)
    tokens = np.concatenate(toks)
    norms = {c: Normaliser.fit(np.concatenate(raw[c]), tokens, max_exact=n_docs + 1) for c in CRITERIA}
    for c in CRITERIA:
        storage.write_parquet(layout.normaliser_table(c), norms[c].to_table(), {})
    for i, k in enumerate(shards):
        cols = {f"s_{c}": pa.array(norms[c].transform(raw[c][i])) for c in CRITERIA}
        storage.write_parquet(layout.attribute(layout.RANKS_ATTRIBUTE, k), pa.table(cols), {})
    return shards


# --------------------------------------------------------------------------- child: one stage
def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """This process' peak RSS: VmHWM (reset by exec, unlike ru_maxrss, which after fork + exec still holds
    the parent's peak on Linux); ru_maxrss where there is no /proc."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_now_mb() -> float:
    now = _status_mb("VmRSS")
    return now if now is not None else _peak_rss_mb()


def _params():
    from quadmix_assets.method import ParamSpace

    return ParamSpace(N_DOMAINS, len(CRITERIA)).sample(1, seed=7)[0]


def _manifest_numpy(storage, shards):
    from quadmix_assets.method import sampling_plan
    from quadmix_assets.mixing.features import document_features

    feats = document_features(storage, shards, CRITERIA)
    ranks = np.column_stack([feats[f"s_{c}"].to_numpy() for c in CRITERIA])
    plan = sampling_plan(ranks, feats["domain"].to_numpy().astype(np.int64), feats["n_tokens"].to_numpy(),
                         feats["id_hash"].to_numpy(), _params(), "bench")
    sel = np.flatnonzero(plan["copies"] > 0)
    man = feats.select(["id", "shard", "row"]).take(sel)
    return man.append_column("copies", pa.array(plan["copies"][sel]))


def child(args) -> dict:
    from quadmix_assets.mixing import fanin_duckdb as F
    from quadmix_assets.storage import StorageRoot
    from quadmix_assets.storage.duck import duck_session

    storage = StorageRoot(args.storage)
    shards = sorted(r.split("/")[1].removesuffix(".parquet") for r in storage.list("documents", ".parquet"))
    base = _rss_now_mb()
    rows = 0
    t0 = time.perf_counter()
    if args.path == "duckdb":
        with duck_session(storage, memory_limit=args.memory_limit, threads=args.threads, temp_dir=args.spill) as con:
            for b in F.sampling_plan(con, storage, shards, CRITERIA, _params(), "bench"):
                rows += b.num_rows
    else:
        rows = _manifest_numpy(storage, shards).num_rows
    seconds = time.perf_counter() - t0
    return {"stage": args.child, "path": args.path, "seconds": seconds, "rows_out": int(rows),
            "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base}


# --------------------------------------------------------------------------- parent
def run_child(stage: str, path: str, storage: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, "--path", path, "--storage", storage,
           "--memory-limit", args.memory_limit, "--spill", args.spill]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:  # reported in its cell, the other stages still run
        last = [line for line in out.stderr.strip().splitlines() if "Error" in line or "error" in line]
        return {"failed": (last[-1] if last else f"exit status {out.returncode}")[:160]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--rows-10m", action="store_true", help="also a 10,000,000-document corpus")
    ap.add_argument("--paths", nargs="+", default=["duckdb", "numpy"], choices=["duckdb", "numpy"])
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", default=None, help="scratch folder for the corpora (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated corpora")
    ap.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--path", default="duckdb", help=argparse.SUPPRESS)
    ap.add_argument("--storage", help=argparse.SUPPRESS)
    ap.add_argument("--spill", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="quadmix-scale-"))
    args.spill = str(work / "spill")
    os.makedirs(args.spill, exist_ok=True)
    sizes = [(f"{s}x", s * BUNDLED_DOCS) for s in args.scales] + ([("10M", 10_000_000)] if args.rows_10m else [])
    results: dict[tuple[str, str, str], dict] = {}
    print(f"cpu cores {os.cpu_count()}, DuckDB memory limit {args.memory_limit}; attributes generated (see the docstring)")
    print(f"{'size':>5} {'docs':>11} {'stage':>7} {'path':>7} {'seconds':>9} {'rows out':>11} {'peak RSS MB':>12} {'added MB':>9}")
    try:
        for label, n in sizes:
            root = str(work / f"corpus-{label}")
            t0 = time.perf_counter()
            shards = write_corpus(root, n)
            gen = time.perf_counter() - t0
            print(f"# {label}: {n:,} documents in {len(shards)} shards written in {gen:.1f}s (not timed)", flush=True)
            for stage in STAGES:
                for path in args.paths:
                    r = run_child(stage, path, root, args)
                    results[(label, stage, path)] = r | {"docs": n}
                    if "failed" in r:
                        print(f"{label:>5} {n:>11,} {stage:>7} {path:>7}   FAILED: {r['failed']}", flush=True)
                        continue
                    print(f"{label:>5} {n:>11,} {stage:>7} {path:>7} {r['seconds']:>9.3f} {r['rows_out']:>11,} "
                          f"{r['peak_rss_mb']:>12.0f} {r['peak_rss_mb'] - r['base_rss_mb']:>9.0f}", flush=True)
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print("\ngrowth between consecutive sizes: time ratio / size ratio (1.0 = linear), added-RSS ratio (1.0 = flat)")
    labels = [lab for lab, _ in sizes]
    for a, b in zip(labels, labels[1:]):
        for stage in STAGES:
            for path in args.paths:
                ra, rb = results[(a, stage, path)], results[(b, stage, path)]
                if "failed" in ra or "failed" in rb:
                    print(f"{a:>4} -> {b:<4} {stage:>7} {path:>7}: (a stage failed)")
                    continue
                size_ratio = rb["docs"] / ra["docs"]
                t = (rb["seconds"] / max(ra["seconds"], 1e-9)) / size_ratio
                added_a = max(ra["peak_rss_mb"] - ra["base_rss_mb"], 1.0)
                added_b = max(rb["peak_rss_mb"] - rb["base_rss_mb"], 1.0)
                print(f"{a:>4} -> {b:<4} {stage:>7} {path:>7}: time/linear {t:5.2f}   added RSS x{added_b / added_a:6.2f}   "
                      f"peak RSS x{rb['peak_rss_mb'] / ra['peak_rss_mb']:5.2f}")
    print(f"\npeak RSS against {labels[0]} (the issue's yardstick: within 1.5x)")
    for stage in STAGES:
        for path in args.paths:
            first = results[(labels[0], stage, path)]
            cells = [f"{lab} " + ("failed" if "failed" in results[(lab, stage, path)] or "failed" in first else
                                  f"x{results[(lab, stage, path)]['peak_rss_mb'] / first['peak_rss_mb']:.2f}")
                     for lab in labels[1:]]
            print(f"  {stage:>7} {path:>7}: " + ", ".join(cells))
    if len(args.paths) == 2:
        print("\nDuckDB seconds / numpy seconds, same size and stage:")
        for label in labels:
            cells = [f"{s} {results[(label, s, 'duckdb')]['seconds'] / max(results[(label, s, 'numpy')]['seconds'], 1e-9):.2f}"
                     if "failed" not in results[(label, s, "duckdb")] and "failed" not in results[(label, s, "numpy")]
                     else f"{s} (failed)" for s in STAGES]
            print(f"  {label:>5}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
