"""Reporting helpers: deterministic PNG plots (:mod:`.plots`) for materialization metadata."""

from . import plots
from .plots import *  # noqa: F401,F403  (the names listed in plots.__all__)

__all__ = list(plots.__all__)
