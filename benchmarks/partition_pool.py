"""A stage's partitions run in worker processes (``quadmix_assets.run_pool.PartitionPool``, what ``quadmix
run --jobs J`` does) against one after the other in this process (``--jobs 1``, the baseline), measured in
one run on the same storage and instance.

Usage::

    .venv/bin/python benchmarks/partition_pool.py --storage DIR --dagster-home DIR [--corpus GLOB]
        [--preset test|cpu|paper] [--job mixture_job] [--jobs 2] [--limit N]

The storage and instance must be those of a finished ``quadmix run`` (same ``--corpus`` and ``--preset``):
every partition of ``--job`` (``mixture_job``: the ``mixtures`` partitions; ``shard_fast_job`` or
``shard_model_job``: the ``shards`` partitions) is run again, first one after the other, then in the pool.
Both write the same files; the benchmark checks that every output of the stage has the same bytes after
each pass. Printed: seconds per pass, the pool's start-up (worker spawn, imports, code location) on its own,
partitions/s and the ratio baseline/pool with and without the start-up. Measure alone: on a shared
machine only the ratio means anything.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from finished_run import add_run_arguments, open_run  # noqa: E402 - the benchmarks folder, just added

os.environ.setdefault("TQDM_DISABLE", "1")


def _outputs(root: Path, job: str, keys: list[str]) -> dict[str, str]:
    """sha256 of every file the stage writes for ``keys``."""
    from quadmix_assets.storage import layout

    if job == "mixture_job":
        rels = [r for k in keys for r in (layout.mixture_scores_card(k), layout.mixture_manifest(k))]
    else:
        rels = [str(p.relative_to(root)) for p in sorted((root / "attributes").rglob("*.parquet"))]
        rels += [str(p.relative_to(root)) for p in sorted((root / "documents").rglob("*.parquet"))]
    return {r: hashlib.sha256((root / r).read_bytes()).hexdigest() for r in rels}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(ap)
    ap.add_argument("--job", default="mixture_job", choices=["mixture_job", "shard_fast_job", "shard_model_job"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N partitions (default: all)")
    args = ap.parse_args(argv)

    from quadmix_assets.definitions import build_definitions
    from quadmix_assets.run_pool import PartitionPool
    from quadmix_assets.runner import QUIET

    settings, instance = open_run(args)
    partitions = "mixtures" if args.job == "mixture_job" else "shards"
    keys = list(instance.get_dynamic_partitions(partitions))
    keys = keys[: args.limit] if args.limit else keys
    if not keys:
        raise SystemExit(f"no {partitions} partitions in {args.dagster_home}: run `quadmix run` first")
    root = Path(args.storage)
    before = _outputs(root, args.job, keys)
    job = build_definitions(settings).resolve_job_def(args.job)

    t = time.perf_counter()
    for key in keys:
        res = job.execute_in_process(instance=instance, partition_key=key, run_config=QUIET, raise_on_error=False)
        if not res.success:
            raise SystemExit(f"{args.job}[{key}] failed in the baseline pass")
    serial = time.perf_counter() - t
    after_serial = _outputs(root, args.job, keys)

    with PartitionPool(settings, instance, {}, args.jobs) as pool:
        t = time.perf_counter()
        pool.start()
        startup = time.perf_counter() - t
        t = time.perf_counter()
        failed = [k for k, out in pool.map(args.job, keys) if not out.success]
        pooled = time.perf_counter() - t
    if failed:
        raise SystemExit(f"{args.job} failed in the pool for {failed}")
    after_pool = _outputs(root, args.job, keys)
    same = before == after_serial == after_pool

    print(f"{args.job}: {len(keys)} partitions of {args.storage}; {args.jobs} workers; cores {os.cpu_count()}")
    print(f"  one after the other (baseline): {serial:8.1f} s  {len(keys) / serial:6.2f} partitions/s")
    print(f"  pool start-up (spawn, imports, code location): {startup:.1f} s")
    print(f"  pool, started:                  {pooled:8.1f} s  {len(keys) / pooled:6.2f} partitions/s")
    print(f"  ratio baseline/pool: {serial / pooled:.2f}x started, {serial / (pooled + startup):.2f}x with start-up")
    print(f"  outputs byte-identical across the passes ({len(before)} files): {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
