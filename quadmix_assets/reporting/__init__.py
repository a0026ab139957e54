"""Reporting helpers: deterministic PNG plots (:mod:`.plots`) for materialization metadata."""

from .plots import (
    domain_shares_png,
    loss_curves_png,
    png_markdown,
    predicted_vs_actual_png,
    sampling_curves_png,
    score_histograms_png,
    try_png_markdown,
)

__all__ = [
    "domain_shares_png",
    "score_histograms_png",
    "sampling_curves_png",
    "predicted_vs_actual_png",
    "loss_curves_png",
    "png_markdown",
    "try_png_markdown",
]
