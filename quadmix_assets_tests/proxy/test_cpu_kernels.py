"""Same bytes on any x86-64 machine (quadmix_assets.cpu_kernels): a proxy trained in a fresh process with
``QUADMIX_CPU_ISA=avx2`` gives the bytes of the same proxy trained with the AVX2 pins set by hand (what an
AVX2-only machine runs), and, on a machine with AVX-512, other bytes when each library picks its own
kernels (the default, ``native``): the pin is what makes them equal."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from quadmix_assets.cpu_kernels import PINS, pin

REPO = Path(__file__).resolve().parents[2]
TRAIN = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from quadmix_assets.cpu_kernels import effective
from quadmix_assets.proxy.model import preset
from quadmix_assets.proxy.parallel import train_and_score
import numpy as np
cfg = preset("cpu-tiny", steps=12, batch_size=8, vocab_size=512, seq_len=64, d_model=64, d_ff=128, n_heads=4)
data = np.random.default_rng(0).integers(0, 512, size=(2, 96, 65))
rng = np.random.default_rng(1)
targets = {"a": [rng.integers(0, 512, size=n) for n in (20, 70, 130)]}
r = train_and_score(cfg, data, targets, seeds=[1, 2], workers=1)
digest = hashlib.sha256(r.set_losses["a"].tobytes() + r.loss_curves.tobytes()).hexdigest()
print(json.dumps({"digest": digest, "kernels": effective()}))
"""

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the pins are x86-64's")


def _train(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in PINS["avx2"] and k != "QUADMIX_CPU_ISA"}
    out = subprocess.run([sys.executable, "-c", TRAIN, str(REPO)], env={**clean, **env}, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _flags() -> str:
    return Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""


def test_the_avx2_pins_give_the_bytes_of_an_avx2_machine_and_native_kernels_do_not():
    pinned = _train(QUADMIX_CPU_ISA="avx2")
    assert pinned["kernels"]["torch_cpu_capability"] == "AVX2" and pinned["kernels"]["MKL_CBWR"] == "AVX2"
    by_hand = _train(**PINS["avx2"])
    assert by_hand["digest"] == pinned["digest"]
    native = _train()  # the default: each library picks its kernels
    assert native["kernels"]["MKL_CBWR"] is None
    if "avx512f" in _flags():  # each library's own choice here is AVX-512: other sums, other bytes
        assert native["kernels"]["torch_cpu_capability"] == "AVX512"
        assert native["digest"] != pinned["digest"]


def test_pins_leave_what_the_user_set_and_reject_an_unknown_set():
    env = {"ATEN_CPU_CAPABILITY": "avx512", "QUADMIX_CPU_ISA": "avx2"}
    applied = pin(env)
    assert env["ATEN_CPU_CAPABILITY"] == "avx512" and "ATEN_CPU_CAPABILITY" not in applied and env["MKL_CBWR"] == "AVX2"
    assert pin({"QUADMIX_CPU_ISA": "native"}) == {}
    with pytest.raises(ValueError, match="QUADMIX_CPU_ISA"):
        pin({"QUADMIX_CPU_ISA": "avx9"})
