"""What pinning the CPU kernels to AVX2 costs (quadmix_assets.cpu_kernels): the `cpu` preset's proxy (cpu-tiny,
60 steps of 16 x 128 tokens, vocabulary 4096), four proxies in one stacked group on one torch thread, trained
in a fresh process with the default pins and with ``QUADMIX_CPU_ISA=native`` (each library's own choice),
alternating, ``--repeats`` times each. Prints tokens/s of both and the ratio pinned / native, and whether
the two give the same bytes (they do not where the machine has AVX-512).

    .venv/bin/python benchmarks/cpu_kernels.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = """
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
from quadmix_assets.cpu_kernels import effective
from quadmix_assets.proxy.model import preset
from quadmix_assets.proxy.parallel import train_and_score
import numpy as np
cfg = preset("cpu-tiny", steps=60, batch_size=16)
data = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(4, 60 * 16, cfg.seq_len + 1))
rng = np.random.default_rng(1)
targets = {"a": [rng.integers(0, cfg.vocab_size, size=n) for n in (40, 90, 130)]}
t = time.perf_counter()
r = train_and_score(cfg, data, targets, seeds=[1, 2, 3, 4], group_size=4, workers=1)
s = time.perf_counter() - t
print(json.dumps({"tokens_per_s": 4 * 60 * 16 * cfg.seq_len / s, "capability": effective()["torch_cpu_capability"],
                  "digest": hashlib.sha256(r.set_losses["a"].tobytes()).hexdigest()[:16]}))
"""


def run(isa: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
                                                              "OPENBLAS_CORETYPE", "QUADMIX_CPU_ISA")}
    if isa:
        env["QUADMIX_CPU_ISA"] = isa
    out = subprocess.run([sys.executable, "-c", TRAIN, str(REPO)], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    pinned, native = [], []
    for _ in range(args.repeats):
        pinned.append(run(None))
        native.append(run("native"))
    p = statistics.median(r["tokens_per_s"] for r in pinned)
    n = statistics.median(r["tokens_per_s"] for r in native)
    print(f"pinned ({pinned[0]['capability']}): {p:,.0f} tokens/s; native ({native[0]['capability']}): {n:,.0f} tokens/s; "
          f"ratio pinned/native {p / n:.3f} (median of {args.repeats}); same bytes: {pinned[0]['digest'] == native[0]['digest']}; "
          f"repeatable: {len({r['digest'] for r in pinned}) == 1 and len({r['digest'] for r in native}) == 1}")


if __name__ == "__main__":
    main()
