"""Same bytes on any x86-64 machine: the CPU kernels are pinned to one instruction set.

torch picks its CPU kernels by what the processor offers: ATen's vectorised ops (``ATEN_CPU_CAPABILITY``:
AVX2 or AVX-512), MKL's matrix products and oneDNN's ops. The kernels for different instruction sets sum
in different orders, so the same proxy trained on an AVX-512 machine and on an AVX2 one ends with losses
that differ in the last bits; a noise ceiling, a regressor and the proposals of the next round are then
computed from other numbers, and a search can end at another optimum. Measured here: one proxy config
trained under ATen's default, AVX2 and AVX-512 kernels gives three different sets of bytes; with ATen at
AVX2 and MKL's conditional numerical reproducibility at AVX2 it gives one.

With ``QUADMIX_CPU_ISA=avx2`` every quadmix process pins them, before anything imports torch or numpy (this
module runs when ``quadmix_assets`` is imported): ATen to AVX2, MKL to its AVX2 code path (``MKL_CBWR``),
oneDNN to at most AVX2, and OpenBLAS (numpy, scipy, scikit-learn) to its Haswell kernels. AVX2 is on every
x86-64 server processor of the last decade, so every such machine then computes the same bytes.
``QUADMIX_CPU_ISA=sse`` pins the oldest kernels. The default is ``native`` (no pins): on this AVX-512
machine the pins made the AskLLM teacher 4x slower (0.6 against 2.6 documents/s) and would have taken
``make demo`` past its time budget, so reproducibility across machines is the user's choice, and the bytes
of outputs computed by torch or BLAS (scores of the transformer criteria, proxy losses, the noise ceiling,
the regressor, the proposals and the optimum that follow from them) may differ between machines whose
processors differ unless it is set. A variable the user set stays as set. Other processor families (ARM)
and GPUs compute other bytes whatever the pins; the proxies record what they ran with (:func:`effective`).
A plain library: no Dagster.
"""

from __future__ import annotations

import os
import platform

ISA_ENV = "QUADMIX_CPU_ISA"
DEFAULT_ISA = "native"  # see the module docstring: the pins cost 4x on the transformer scorers here
PINS: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"},
    "sse": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41", "OPENBLAS_CORETYPE": "Prescott"},
}


def pin(environ: dict | None = None) -> dict[str, str]:
    """Set the pins of ``QUADMIX_CPU_ISA`` (``avx2`` or ``sse``; default ``native``: none) in ``environ``
    (default ``os.environ``) where unset; returns those set. Nothing on a non-x86-64 machine or with ``native``."""
    e = os.environ if environ is None else environ
    isa = (e.get(ISA_ENV) or DEFAULT_ISA).strip().lower()
    if isa == "native" or platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    if isa not in PINS:
        raise ValueError(f"{ISA_ENV}={isa!r}: expected one of {', '.join([*PINS, 'native'])}")
    applied = {k: v for k, v in PINS[isa].items() if not e.get(k)}
    e.update(applied)
    return applied


def effective() -> dict[str, str | None]:
    """What the kernels of this process run with: ATen's capability as torch reports it, and the pins."""
    out: dict[str, str | None] = {k: os.environ.get(k) for k in PINS["avx2"]}
    try:
        import torch

        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:  # no torch: numpy and scipy only
        out["torch_cpu_capability"] = None
    out["machine"] = platform.machine()
    return out
