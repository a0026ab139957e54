"""The hostile-input table of docs/resume-and-faults.md ("Hostile inputs"): every hostile input of the
fault-injection suite (`quadmix_assets_tests/pipeline/hostile.py`) through the `documents` asset and its
checks, in Dagster.

    python benchmarks/fault_table.py [--out fault_table.md]

Prints the Markdown table (and writes it to --out). The same rows are asserted by
`quadmix_assets_tests/pipeline/test_fault_injection.py::test_hostile_inputs_table`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: quadmix_assets_tests


def main() -> None:
    from quadmix_assets_tests.pipeline import hostile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quadmix-fault-table-") as d:
        corpus, storage = Path(d) / "corpus", Path(d) / "storage"
        rows = hostile.run_cases(corpus, storage, hostile.build_hostile_corpus(corpus))
    table = hostile.markdown(rows)
    print(table, end="")
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
