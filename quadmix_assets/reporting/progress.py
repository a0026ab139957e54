"""Progress lines for long steps: items done, rate and ETA, at most one line every ``every_s`` seconds
(plus the last), to the ``quadmix_assets.progress`` logger (``quadmix run`` prints it; Dagster's logs show
it when the instance manages that logger, which the instance ``quadmix`` writes does). No progress bars."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LOGGER_NAME", "Progress"]

LOGGER_NAME = "quadmix_assets.progress"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class Progress:
    """``update(n)`` after each piece of work; a line such as ``AskLLM teacher: 1,200/8,000 documents,
    2.6 documents/s, ETA 43m35s`` when ``every_s`` seconds passed since the last one, and at the end."""

    def __init__(self, what: str, total: int, unit: str = "documents", *, every_s: float = 30.0,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.perf_counter):
        self.what, self.total, self.unit, self.every_s = what, int(total), unit, float(every_s)
        self._log = log or logging.getLogger(LOGGER_NAME).info
        self._clock = clock
        self.done = 0
        self._t0 = self._last = clock()

    def line(self) -> str:
        elapsed = self._clock() - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left > 0 else ""
        return f"{self.what}: {self.done:,}/{self.total:,} {self.unit}, {rate:,.1f} {self.unit}/s{eta} ({_duration(elapsed)} so far)"

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        now = self._clock()
        if self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            self._log(self.line())
