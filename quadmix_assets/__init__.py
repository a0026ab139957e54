"""quadmix: QuaDMix data selection as a Dagster asset platform.

``quadmix_assets.method`` is the method as a plain library (no Dagster); ``quadmix_assets.corpus``
reads shards; ``quadmix_assets.scoring`` holds the labellers and quality scorers; ``quadmix_assets.defs``
is the thin Dagster layer.
"""

from quadmix_assets import cpu_kernels as _cpu_kernels

_cpu_kernels.pin()  # QUADMIX_CPU_ISA=avx2: before torch or numpy load, the same kernels (same bytes) on any x86-64

__version__ = "0.1.0"
