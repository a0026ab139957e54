"""Are two runs' proxies the same? Compares every ``proxies/<id>/run.json`` of two storage roots.

Usage::

    .venv/bin/python benchmarks/compare_proxy_runs.py STORAGE_A STORAGE_B

Prints how many mixtures have identical per-set target losses and loss curves (compared as stored, to
the last bit), how many differ, and how many the second root lacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    same, diff, missing = 0, [], 0
    for p in sorted((a / "proxies").glob("*/run.json")):
        q = b / "proxies" / p.parent.name / "run.json"
        if not q.exists():
            missing += 1
            continue
        ra, rb = json.loads(p.read_text()), json.loads(q.read_text())
        if ra["target_losses"] == rb["target_losses"] and ra["loss_curve"] == rb["loss_curve"]:
            same += 1
        else:
            diff.append(p.parent.name)
    print(f"identical per-set losses and loss curves: {same}; different: {len(diff)} {diff[:5]}; not in the second run: {missing}")


if __name__ == "__main__":
    main()
