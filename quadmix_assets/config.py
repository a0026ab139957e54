"""One typed run configuration: a preset and its overrides, resolved in one function.

:func:`resolve_config` is the only place a preset is combined with overrides (the settings resource's
``n_configs``, ``proxy_model``, ``regressor_min_spearman``, ``search_samples`` and per-criterion options; or
the values a stored run recorded, :mod:`quadmix_assets.selection.stored`). The result holds the preset with
its overrides applied, every registered criterion's options (:mod:`quadmix_assets.scoring.criteria`:
defaults, the preset's values, the settings' overrides) and, per teacher criterion, a typed
:class:`~quadmix_assets.scoring.criteria.TeacherConfig`.

Dependencies run one way: this module reads :mod:`quadmix_assets.presets` (the values) and the criterion
registry; neither imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from quadmix_assets.presets import DEFAULT_PRESET, PRESETS, Preset
from quadmix_assets.scoring import criteria as registry
from quadmix_assets.scoring.criteria import TeacherConfig, option_alias, preset_option_keys, resolve_options, teacher_configs

#: the reason a criterion the settings' ``alpha_criteria`` do not name is left out of alpha
LEFT_OUT_BY_SETTINGS = "not named in the settings' alpha_criteria"

#: the preset's own fields an override may set (a criterion's preset options are set by their flat names,
#: :func:`preset_keys`)
PRESET_FIELDS = frozenset(f.name for f in fields(Preset)) - {"name", "criteria"}


def preset_keys() -> frozenset[str]:
    """Every key an override (or a stored run's recorded preset) may hold: the preset's fields and the
    ``<criterion>_<option>`` names of the registered criteria's preset options."""
    return PRESET_FIELDS | frozenset(preset_option_keys())


@dataclass(frozen=True)
class RunConfig:
    preset: Preset  # the named preset with its overrides applied
    teachers: Mapping[str, TeacherConfig]  # teacher criterion -> its mode and sample size
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # criterion -> option -> value

    def teacher(self, criterion: str) -> TeacherConfig:
        try:
            return self.teachers[criterion]
        except KeyError:
            raise KeyError(f"{criterion!r} is not a teacher criterion ({', '.join(self.teachers)})") from None

    @property
    def alpha(self) -> tuple[str, ...]:
        """The criteria forming alpha's columns (registry order): every registered criterion the preset
        (or the settings' ``alpha_criteria``) does not leave out."""
        return self.preset.alpha_criteria()

    @property
    def alpha_left_out(self) -> dict[str, str]:
        """The registered criteria left out of alpha, with the reason."""
        return self.preset.left_out_of_alpha()

    def criterion(self, name: str) -> Mapping[str, Any]:
        """Criterion ``name``'s options (its registry defaults, the preset's values, the settings')."""
        try:
            return self.options[name]
        except KeyError:
            raise KeyError(f"unknown criterion {name!r} ({', '.join(self.options)})") from None


def resolve_config(preset: str = DEFAULT_PRESET, overrides: Mapping[str, Any] | None = None, *,
                   modes: Mapping[str, str | None] | None = None,
                   options: Mapping[str, Mapping[str, Any]] | None = None, none_keeps: bool = True,
                   alpha_criteria: str | Sequence[str] | None = None) -> RunConfig:
    """The preset called ``preset`` with ``overrides`` (preset field, or a criterion's preset option by its
    flat name ``<criterion>_<option>`` -> value; None keeps the preset's) applied, and every criterion's
    options with ``options`` (criterion -> option -> value, e.g. the settings') over them; ``modes``
    (criterion -> 'direct' / 'distill'; None keeps) is short for ``options={criterion: {"mode": ...}}``.
    With ``none_keeps=False`` a None override is a value too (a stored run's recorded preset).
    ``alpha_criteria`` (the settings': names, or one comma-separated string; ``all``: every registered
    criterion; None keeps the preset's) names the criteria forming alpha; the others are left out with the
    preset's reason, or :data:`LEFT_OUT_BY_SETTINGS`. Unknown presets, fields, criteria or options and
    invalid values are refused."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None or not none_keeps}
    unknown = sorted(k for k in given if k not in PRESET_FIELDS and option_alias(k, preset_only=True) is None)
    if unknown:
        raise ValueError(f"unknown preset field(s) {unknown}")
    if given.get("n_configs") is not None and given["n_configs"] < 1:
        raise ValueError(f"--configs must be >= 1, got {given['n_configs']}")
    own = {k: v for k, v in given.items() if k in PRESET_FIELDS}
    per_criterion: dict[str, dict[str, Any]] = {}
    for k, v in given.items():
        if k not in PRESET_FIELDS:
            name, option = option_alias(k, preset_only=True)
            per_criterion.setdefault(name, {})[option] = v
    base = PRESETS[preset]
    if per_criterion:
        merged = {name: dict(values) for name, values in base.criteria.items()}
        for name, values in per_criterion.items():
            merged.setdefault(name, {}).update(values)
        own["criteria"] = merged
    resolved = replace(base, **own) if own else base
    if alpha_criteria is not None:
        resolved = replace(resolved, alpha_left_out=alpha_left_out(resolved, alpha_criteria))
    resolved.alpha_criteria()  # refuses a preset that leaves every criterion out
    settings: dict[str, dict[str, Any]] = {name: dict(values) for name, values in (options or {}).items()}
    for name, mode in (modes or {}).items():
        if mode is not None:
            settings.setdefault(name, {})["mode"] = mode
    resolved_options = resolve_options(resolved.criteria, settings)
    return RunConfig(preset=resolved, teachers=teacher_configs(resolved_options), options=resolved_options)


def alpha_left_out(preset: Preset, alpha_criteria: str | Sequence[str]) -> dict[str, str]:
    """The criteria left out of alpha when alpha is ``alpha_criteria`` (see :func:`resolve_config`)."""
    names = [n.strip() for n in (alpha_criteria.split(",") if isinstance(alpha_criteria, str) else alpha_criteria)]
    names = [n for n in names if n]
    if names == ["all"]:
        return {}
    unknown = [n for n in names if n not in registry.REGISTRY]
    if unknown or not names:
        raise ValueError(f"alpha_criteria {list(alpha_criteria) if not isinstance(alpha_criteria, str) else alpha_criteria!r}: "
                         + (f"unknown criteria {unknown}" if unknown else "names no criterion")
                         + f"; registered: {', '.join(registry.CRITERIA)} (or 'all')")
    given = preset.left_out_of_alpha()
    return {c: given.get(c, LEFT_OUT_BY_SETTINGS) for c in registry.CRITERIA if c not in names}


def get_preset(name: str, *, n_configs: int | None = None) -> Preset:
    """The preset called ``name``, with ``n_configs`` overridden when given (see :func:`resolve_config`
    for every override)."""
    return resolve_config(name, {"n_configs": n_configs}).preset
