"""When the regressor's pick may be promoted: its repeated-CV Spearman against the measured noise ceiling.

A proxy loss is itself noisy: two proxies on the same mixture under different seeds rank configs with the
repeat Spearman rho ``c`` (``proxy_noise``). No regressor can rank the measured losses much better than the
measurements rank themselves, so the yardstick is a share of ``c`` (``regressor_ceiling_share``), not a
fixed number. Without a measured ceiling the preset's fixed floor ``regressor_min_spearman`` applies.
The CV Spearman must also be positive: a regressor that ranks backwards is never promoted.
"""

from __future__ import annotations

import math


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def gate(cv_spearman: float | None, ceiling: float | None, preset) -> dict:
    """``{"passed", "threshold", "share_of_ceiling", "reason"}`` for a regressor's CV Spearman."""
    share = preset.regressor_ceiling_share
    if not _finite(cv_spearman):
        return {"passed": False, "threshold": None, "share_of_ceiling": None,
                "reason": "cross-validated Spearman is undefined (too few finished proxy runs for the folds)"}
    of = cv_spearman / ceiling if _finite(ceiling) and ceiling > 0 else None
    if share is not None and _finite(ceiling):
        threshold = max(0.0, share * ceiling)
        where = f"{share:g} x the measured noise ceiling {ceiling:.3f}"
    elif preset.regressor_min_spearman is not None:
        threshold = float(preset.regressor_min_spearman)
        where = "the preset's fixed floor (no noise ceiling measured)"
    else:
        return {"passed": True, "threshold": None, "share_of_ceiling": of, "reason": "no floor configured"}
    passed = cv_spearman >= threshold and cv_spearman > 0
    verb = "reaches" if passed else "is below"
    reason = f"CV Spearman {cv_spearman:.3f} {verb} {threshold:.3f} ({where})"
    return {"passed": bool(passed), "threshold": threshold, "share_of_ceiling": of, "reason": reason}
