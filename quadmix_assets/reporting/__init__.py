"""Reporting helpers: deterministic PNG plots (:mod:`.plots`) and markdown tables for materialization metadata."""

from . import plots
from .plots import *  # noqa: F401,F403  (the names listed in plots.__all__)
from .tables import markdown_table

__all__ = list(plots.__all__) + ["markdown_table"]
