"""What one mixture partition is: QuaDMix parameters, whether ranks are taken per domain, and where it
came from (a random draw from the §4 space, or a named baseline from QUADMIX.md §7)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from quadmix_assets.method import ParamSpace, QuadMixParams
from quadmix_assets.storage import check_key, content_hash

#: hex digits of the content id carried by a mixture's partition key
KEY_HASH_LENGTH = 8
_NOT_KEY = re.compile(r"[^A-Za-z0-9._-]+")


def mixture_key(name: str, content_id: str) -> str:
    """The partition key of a mixture: its human name then the first 8 hex digits of its content id
    (``heuristic-only-3f2a1b9c``, ``draw-0002-1c9e04aa``), so the UI's partition filter finds it by name
    and the same spec always gets the same key. Characters a key cannot hold become ``-``."""
    stem = _NOT_KEY.sub("-", name).strip(".-_")[:100] or "mixture"
    return check_key(f"{stem}-{content_id[:KEY_HASH_LENGTH]}", "mixture")


@dataclass(frozen=True)
class MixtureSpec:
    name: str
    origin: str  # "random_draw" | "baseline" | "search" (later)
    params: QuadMixParams
    domain_aware: bool = True
    description: str = ""
    #: documents the mixture may select at all: ``(criterion, min_score)`` pairs, each a criterion's raw
    #: score (its ``quality_<criterion>`` attribute) that must be >= min_score; the rest get S = 0
    keep: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "keep", tuple((str(c), float(v)) for c, v in self.keep))

    @property
    def content_id(self) -> str:
        """The content hash: the config's numbers (and the ranking mode when not per domain, and the keep
        rule when there is one); it seeds the copy draws, so a mixture's documents do not depend on its name."""
        if self.keep:
            return content_hash({"config_id": self.params.config_id, "domain_aware": self.domain_aware,
                                 "keep": [[c, v] for c, v in self.keep]})
        if self.domain_aware:
            return self.params.config_id
        return content_hash({"config_id": self.params.config_id, "domain_aware": False})

    @property
    def mixture_id(self) -> str:
        """The partition key: the name and the content id (:func:`mixture_key`)."""
        return mixture_key(self.name, self.content_id)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "mixture_id": self.mixture_id,
            "name": self.name,
            "origin": self.origin,
            "domain_aware": self.domain_aware,
            "description": self.description,
            "content_id": self.content_id,
            "config_id": self.params.config_id,
            "params": self.params.to_dict(),
        }
        if self.keep:
            out["keep"] = [{"criterion": c, "min_score": v} for c, v in self.keep]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MixtureSpec:
        spec = cls(
            name=d["name"],
            origin=d["origin"],
            params=QuadMixParams.from_dict(d["params"]),
            domain_aware=bool(d["domain_aware"]),
            description=d.get("description", ""),
            keep=tuple((k["criterion"], k["min_score"]) for k in d.get("keep") or ()),
        )
        if spec.mixture_id != d["mixture_id"]:
            raise ValueError(
                f"mixture {d['name']!r}: stored id {d['mixture_id']} != recomputed {spec.mixture_id} (stored before "
                "mixture keys carried names, or edited): rematerialize mixture_configs"
            )
        return spec


def global_params(params: QuadMixParams) -> QuadMixParams:
    """The one-domain parameters used when a mixture ranks the whole corpus as one domain (row 0)."""
    return QuadMixParams(
        alpha=params.alpha[:1], lam=params.lam[:1], omega=params.omega[:1], eta=params.eta[:1], eps=params.eps[:1]
    )


def drawn_specs(space: ParamSpace, n: int, seed: int) -> list[MixtureSpec]:
    """``n`` configs drawn from the QuaDMix space (QUADMIX.md §4) with ``seed``."""
    return [
        MixtureSpec(name=f"draw-{i:04d}", origin="random_draw", params=p, description=f"draw {i} of {n}, seed {seed}")
        for i, p in enumerate(space.sample(n, seed))
    ]


def _uniform(n_domains: int, value: float) -> np.ndarray:
    return np.full(n_domains, float(value))


def baseline_specs(n_domains: int, criteria: tuple[str, ...], keep_fraction: float,
                   keep_rules: dict[str, tuple[str, float]] | None = None) -> list[MixtureSpec]:
    """The named baselines of QUADMIX.md §7, each keeping about ``keep_fraction`` of the tokens.

    - ``random``: every document kept with probability keep_fraction (omega = 0, eps = keep_fraction);
    - ``<label>-random`` for each criterion with a keep rule (``keep_rules``: criterion -> (label,
      min_score), from the criteria registry: langid's gives ``english-random``): the random baseline's
      parameters applied only to the documents whose raw score is >= min_score (the rest are never kept);
    - ``<criterion>-only``: top keep_fraction of tokens by that criterion alone, corpus-wide;
    - ``criteria-mean``: top keep_fraction by the plain average of the criteria ranks, without domains.
    """
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    n = len(criteria)
    m = n_domains
    ones = _uniform(m, 1.0)
    zeros = _uniform(m, 0.0)

    def top_k(alpha_row: np.ndarray) -> QuadMixParams:
        return QuadMixParams(
            alpha=np.tile(alpha_row, (m, 1)), lam=ones, omega=_uniform(m, keep_fraction), eta=zeros, eps=zeros
        )

    specs = [
        MixtureSpec(
            name="random",
            origin="baseline",
            params=QuadMixParams(
                alpha=np.full((m, n), 1.0 / n), lam=ones, omega=zeros, eta=zeros, eps=_uniform(m, keep_fraction)
            ),
            domain_aware=False,
            description=f"random selection: each document kept with probability {keep_fraction}",
        )
    ]
    for c in criteria:
        if c in (keep_rules or {}):
            label, floor = keep_rules[c]
            specs.append(MixtureSpec(
                name=f"{label}-random", origin="baseline", params=specs[0].params, domain_aware=False,
                description=f"random selection among the documents the {c} criterion keeps ({c} score >= {floor:g}): "
                            f"each kept with probability {keep_fraction}",
                keep=((c, floor),)))
    for j, c in enumerate(criteria):
        specs.append(
            MixtureSpec(
                name=f"{c}-only",
                origin="baseline",
                params=top_k(np.eye(n)[j]),
                domain_aware=False,
                description=f"top {keep_fraction:.0%} of tokens by the {c} criterion alone, no domains",
            )
        )
    specs.append(
        MixtureSpec(
            name="criteria-mean",
            origin="baseline",
            params=top_k(np.full(n, 1.0 / n)),
            domain_aware=False,
            description=f"top {keep_fraction:.0%} of tokens by the mean of the criteria ranks, no domains",
        )
    )
    return specs
