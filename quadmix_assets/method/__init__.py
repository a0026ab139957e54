"""QuaDMix as a plain numpy library (no Dagster): the method's description, QUADMIX.md (beside the repository,
``../shared/QUADMIX.md``), sections 2-4; docs/method.md summarises it.

Per document ``x`` with domain ``d(x)`` in ``0..M-1``, ``N`` raw quality scores and a token count:

1. normalise each criterion to a worse-than rank ``s_n(x)`` = share of corpus tokens whose score is
   strictly greater (0 = best): :func:`worse_than_rank`, or a stored :class:`Normaliser`;
2. merge with domain weights, ``qbar(x) = sum_n alpha[d(x), n] * s_n(x)``, and rank again inside the
   domain, ``r(x)`` = share of the domain's tokens with ``qbar <= qbar(x)``: :func:`aggregate`
   (``qbar`` alone: :func:`aggregated_quality`);
3. expected copies ``S = (2 / (1 + exp(-lam (omega - r)))) ** eta + eps`` if ``r <= omega`` else
   ``eps`` (per-domain parameters): :func:`sampling_frequency`;
4. emit ``floor(S)`` copies plus one with probability ``S - floor(S)``, decided by a hash of
   (seed, document id) so the result is reproducible bit for bit: :func:`draw_copies`.

:func:`sampling_plan` does steps 2-4 in one call. A config (:class:`QuadMixParams`, ``M * (N + 4)``
numbers) is drawn from :class:`ParamSpace` (the paper's Algorithm 1) and named by its content hash
``config_id``. :func:`hash_ids` turns document ids into the ``uint64`` keys of the draw.
:func:`sampling_plans` does steps 2-4 for many configs in one pass, equal to :func:`sampling_plan` per config.
"""

from .aggregation import aggregate, aggregated_quality
from .batch import sampling_plans
from .ids import hash_id, hash_ids
from .params import ParamSpace, QuadMixParams
from .ranking import Normaliser, worse_than_rank
from .sampling import (
    draw_copies,
    sampling_frequency,
    sampling_plan,
    seed_to_uint64,
    uniforms,
)

__all__ = [
    "QuadMixParams",
    "ParamSpace",
    "worse_than_rank",
    "Normaliser",
    "aggregate",
    "aggregated_quality",
    "sampling_frequency",
    "draw_copies",
    "sampling_plan",
    "sampling_plans",
    "hash_ids",
    "hash_id",
    "seed_to_uint64",
    "uniforms",
]
