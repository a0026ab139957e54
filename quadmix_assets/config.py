"""One typed run configuration: a preset and its overrides, resolved in one function.

:func:`resolve_config` is the only place a preset is combined with overrides (the settings resource's
``n_configs``, ``proxy_model``, ``regressor_min_spearman``, ``search_samples``, a teacher criterion's
scoring mode; or the values a stored run recorded, :mod:`quadmix_assets.selection.stored`). The result
holds the preset with its overrides applied and, per teacher criterion of the registry
(:mod:`quadmix_assets.scoring.criteria`), a typed :class:`~quadmix_assets.scoring.criteria.TeacherConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from quadmix_assets.presets import DEFAULT_PRESET, PRESETS, Preset
from quadmix_assets.scoring.criteria import TeacherConfig, teacher_configs

PRESET_FIELDS = frozenset(f.name for f in fields(Preset)) - {"name"}


@dataclass(frozen=True)
class RunConfig:
    preset: Preset  # the named preset with its overrides applied
    teachers: Mapping[str, TeacherConfig]  # teacher criterion -> its mode and sample size

    def teacher(self, criterion: str) -> TeacherConfig:
        try:
            return self.teachers[criterion]
        except KeyError:
            raise KeyError(f"{criterion!r} is not a teacher criterion ({', '.join(self.teachers)})") from None


def resolve_config(preset: str = DEFAULT_PRESET, overrides: Mapping[str, Any] | None = None, *,
                   modes: Mapping[str, str | None] | None = None, none_keeps: bool = True) -> RunConfig:
    """The preset called ``preset`` with ``overrides`` (preset field -> value; None keeps the preset's)
    applied, and each teacher criterion's settings with ``modes`` (criterion -> 'direct' / 'distill';
    None keeps the preset's). With ``none_keeps=False`` a None override is a value too (a stored run's
    recorded preset). Unknown presets or fields and invalid values are refused."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None or not none_keeps}
    unknown = sorted(set(given) - PRESET_FIELDS)
    if unknown:
        raise ValueError(f"unknown preset field(s) {unknown}")
    if given.get("n_configs") is not None and given["n_configs"] < 1:
        raise ValueError(f"--configs must be >= 1, got {given['n_configs']}")
    resolved = replace(PRESETS[preset], **given) if given else PRESETS[preset]
    return RunConfig(preset=resolved, teachers=teacher_configs(resolved, modes))
