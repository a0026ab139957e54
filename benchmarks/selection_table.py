"""The paper-style comparison table (issue 3, item 7): the same as ``quadmix compare``.

    .venv/bin/python benchmarks/selection_table.py --storage /path/to/storage [--eval-preset cpu-eval] [--out DIR]
"""

import sys

from quadmix_assets.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["compare", *sys.argv[1:]]))
