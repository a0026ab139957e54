"""Numbers for people: 4 significant digits for floats (losses, scores), plain integers for counts."""

from __future__ import annotations

import math
from typing import Any

DIGITS = 4


def fmt_num(v: Any, digits: int = DIGITS) -> str:
    """``None`` -> ``-``; ints and strings as they are; floats to ``digits`` significant digits, keeping
    trailing zeros (a loss of 7 prints ``7.000``, not ``7``); floats of ``10**digits`` or more as whole
    numbers with thousands separators (``4,706,572``)."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, float):
        try:
            import numpy as np

            if isinstance(v, np.floating):
                return fmt_num(float(v), digits)
            if isinstance(v, np.integer):
                return str(int(v))
        except ImportError:  # pragma: no cover
            pass
        return str(v)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v != 0 and abs(v) >= 10**digits:
        return f"{round(v):,}"
    s = f"{v:#.{digits}g}"
    return s[:-1] if s.endswith(".") else s


def round_sig(v: Any, digits: int = DIGITS) -> Any:
    """A float rounded to ``digits`` significant digits (for metadata shown in the UI); other values,
    and non-finite floats, unchanged; dicts and lists rounded inside."""
    if isinstance(v, float) and math.isfinite(v) and v != 0:
        return float(f"{v:.{digits}g}")
    if isinstance(v, dict):
        return {k: round_sig(x, digits) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(round_sig(x, digits) for x in v)
    return v
