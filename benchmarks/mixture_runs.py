"""Every mixture in one pass: many ``mixtures`` partitions per Dagster run (what ``quadmix run`` does now,
:func:`quadmix_assets.runner.plan_runs`) against one Dagster run per mixture (the baseline, what it did
before), both in the same worker pool, measured in one run on the same storage and instance.

Usage::

    .venv/bin/python benchmarks/mixture_runs.py --storage DIR --dagster-home DIR [--corpus GLOB]
        [--preset test] [--configs 3000] [--baseline 64] [--jobs 2]

The storage and instance must be a **copy** of a finished ``quadmix run`` (same ``--corpus`` and
``--preset``): the benchmark first materializes ``mixture_configs`` with ``--configs`` drawn configs (plus
the baselines), which replaces that run's configs and adds their partitions. Then it builds the first
``--baseline`` mixtures one Dagster run each, and every mixture (the same ones included) in runs of up to
``MIXTURE_BATCH`` partitions; each partition still gets its own materializations of ``mixture_scores`` and
``mixture_manifest`` and its checks run. Printed: seconds and mixtures/s of both, their ratio, the time
for all of them, and whether the mixtures built both ways have the same bytes. Measure alone.
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


def _outputs(root: Path, keys: list[str]) -> dict[str, str]:
    from quadmix_assets.storage import layout

    rels = [r for k in keys for r in (layout.mixture_scores_card(k), layout.mixture_manifest(k))]
    return {r: hashlib.sha256((root / r).read_bytes()).hexdigest() for r in rels}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(ap)
    ap.add_argument("--configs", type=int, default=3000, help="drawn configs K (the baselines come on top)")
    ap.add_argument("--baseline", type=int, default=64, help="mixtures built one Dagster run each")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)

    from dagster import AssetKey

    from quadmix_assets.definitions import build_definitions
    from quadmix_assets.defs.mixtures.mixtures import MIXTURE_BATCH
    from quadmix_assets.run_pool import PartitionPool
    from quadmix_assets.runner import QUIET, plan_runs
    from quadmix_assets.storage import layout

    settings, instance = open_run(args, n_configs=args.configs)
    defs = build_definitions(settings)
    root = Path(args.storage)

    t = time.perf_counter()
    res = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[AssetKey("mixture_configs")], run_config=QUIET, raise_on_error=False)
    if not res.success:
        raise SystemExit("mixture_configs failed: is this a finished quadmix run of the same corpus and preset?")
    configs_s = time.perf_counter() - t
    keys = [c["mixture_id"] for c in settings.storage().read_json(layout.mixture_configs())["configs"]]
    ordered = list(instance.get_dynamic_partitions("mixtures"))
    first = keys[: args.baseline]

    with PartitionPool(settings, instance, {}, args.jobs) as pool:
        pool.start()
        t = time.perf_counter()
        failed = [k for k, out in pool.map("mixture_job", first) if not out.success]
        one_each = time.perf_counter() - t
        if failed:
            raise SystemExit(f"one run per mixture failed for {failed[:3]}")
        baseline_bytes = _outputs(root, first)
        runs = plan_runs(ordered, keys, MIXTURE_BATCH, args.jobs)
        t = time.perf_counter()
        failed = [r[0] for r, out in pool.map("mixture_job", runs) if not out.success]
        batched = time.perf_counter() - t
    if failed:
        raise SystemExit(f"runs over several mixtures failed (first keys {failed[:3]})")
    same = _outputs(root, first) == baseline_bytes

    per_one, per_batch = args.baseline / one_each, len(keys) / batched
    print(f"mixtures on {args.storage}: {len(keys)} ({args.configs} drawn + baselines); {args.jobs} workers; cores {os.cpu_count()}")
    print(f"  mixture_configs ({len(keys)} configs, partitions added): {configs_s:.1f} s")
    print(f"  one Dagster run per mixture (baseline), first {args.baseline}: {one_each:7.1f} s  {per_one:6.2f} mixtures/s")
    print(f"  {len(runs)} runs of up to {MIXTURE_BATCH} mixtures, all {len(keys)}: {batched:7.1f} s  {per_batch:6.2f} mixtures/s")
    print(f"  ratio (mixtures/s): {per_batch / per_one:.1f}x; all {len(keys)} mixtures with their configs: {configs_s + batched:.1f} s "
          f"(one run each would take about {len(keys) / per_one:.0f} s)")
    print(f"  the first {args.baseline} mixtures byte-identical both ways ({len(baseline_bytes)} files): {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
