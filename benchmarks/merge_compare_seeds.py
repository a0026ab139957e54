"""One multi-seed table from `quadmix compare` runs made separately (other machines, other pods, or one
process per core by hand): QuaDMix against each control (paired, per seed), mean ± standard error per method and the paired difference against random.

Usage::

    .venv/bin/python benchmarks/merge_compare_seeds.py OUT_DIR [OUT_DIR ...]

Each OUT_DIR is the ``--out`` folder of one `quadmix compare` run (``selection_table.json``); a run made
with ``--seeds S`` contributes its S seeds. The runs must agree on the storage root, the methods, the
evaluation model (all but its seed), the token budget and the held-out subset size, and no seed may appear
twice; ``quadmix compare --seed seed_of(s, i)`` (``quadmix_assets.selection.stored.seed_of``) trains exactly
seed ``i`` of ``--seed s --seeds S``, so the merged table equals the one a single ``--seeds S`` run prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quadmix_assets.selection.compare import across_seeds, controls_table, optimum_vs_controls, seeds_table  # noqa: E402
from quadmix_assets.selection.stored import seed_of  # noqa: E402

SAME = ("storage", "budget_tokens", "max_examples", "selection_tokens")


def seeds_of(doc: dict) -> list[tuple[int, list[dict]]]:
    """(seed, rows) of every seed a run trained."""
    if "per_seed_rows" in doc:
        return [(seed_of(int(doc["seed"]), i), rows) for i, rows in enumerate(doc["per_seed_rows"])]
    return [(int(doc["seed"]), doc["rows"])]


def merge(docs: list[dict]) -> tuple[list[dict], list[int]]:
    seen = per_seed(docs)
    return across_seeds([SimpleNamespace(rows=seen[s]) for s in sorted(seen)]), sorted(seen)


def per_seed(docs: list[dict]) -> dict[int, list[dict]]:
    """Every seed's rows over the runs (refused: runs that differ in their setup or repeat a seed)."""
    ref = docs[0]
    config = {k: v for k, v in ref["eval_config"].items() if k != "seed"}
    seen: dict[int, list[dict]] = {}
    for doc in docs:
        for key in SAME:
            if doc.get(key) != ref.get(key):
                raise SystemExit(f"the runs differ in {key}: {doc.get(key)!r} vs {ref.get(key)!r}")
        if {k: v for k, v in doc["eval_config"].items() if k != "seed"} != config:
            raise SystemExit("the runs used different evaluation models")
        if [r["method"] for r in doc["rows"]] != [r["method"] for r in ref["rows"]]:
            raise SystemExit("the runs compared different methods")
        if (doc.get("judge") or {}).get("weights") != (ref.get("judge") or {}).get("weights"):
            raise SystemExit("the runs used different judges (sets or weights)")
        for seed, rows in seeds_of(doc):
            if seed in seen:
                raise SystemExit(f"seed {seed} appears twice")
            seen[seed] = rows
    return seen


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    docs = [json.loads((Path(d) / "selection_table.json").read_text()) for d in sys.argv[1:]]
    rows, seeds = merge(docs)
    print(f"seeds {seeds} from {len(docs)} run(s) on {docs[0]['storage']}\n")
    seen = per_seed(docs)
    controls = optimum_vs_controls([SimpleNamespace(rows=seen[s]) for s in sorted(seen)])
    if controls:
        print(controls_table(controls))
    print(seeds_table(rows))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
