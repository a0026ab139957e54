import base64
import re
import struct

import numpy as np
import pytest

from quadmix_assets.method import ParamSpace, QuadMixParams
from quadmix_assets.reporting import plots
from quadmix_assets.reporting.plots import (
    PNG_SIGNATURE,
    domain_shares_png,
    loss_curves_png,
    png_markdown,
    predicted_vs_actual_png,
    sampling_curves_png,
    score_histograms_png,
)

RNG = np.random.default_rng(7)
NAMES = [f"topic {i}" for i in range(6)]
BEFORE = RNG.integers(0, 1000, 6)
AFTER = RNG.integers(0, 1000, 6)
SCORES = {"askllm": RNG.random(2000), "edu": RNG.normal(size=2000), "dclm": np.r_[RNG.random(50), np.nan]}
PARAMS = ParamSpace(6, 3, omega_max=0.3).sample(1, 3)[0]
PRED, ACT = RNG.random(60), RNG.random(60)
CURVES = RNG.random((5, 40)).cumsum(axis=1)[:, ::-1]

CASES = {
    "shares": lambda: domain_shares_png(NAMES, BEFORE, AFTER),
    "hist": lambda: score_histograms_png(SCORES),
    "curves": lambda: sampling_curves_png(PARAMS, NAMES),
    "curves_unnamed": lambda: sampling_curves_png(PARAMS),
    "pva": lambda: predicted_vs_actual_png(PRED, ACT),
    "pva_groups": lambda: predicted_vs_actual_png(PRED, ACT, ["train"] * 50 + ["valid"] * 10),
    "pva_points": lambda: predicted_vs_actual_png(PRED[:8], ACT[:8], [f"c{i}" for i in range(8)]),
    "loss": lambda: loss_curves_png(CURVES, [f"cfg{i}" for i in range(5)]),
    "loss_steps": lambda: loss_curves_png(CURVES[:2], None, steps=np.arange(40) * 10),
}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("name", sorted(CASES))
def test_valid_small_deterministic_png(name):
    first = CASES[name]()
    second = CASES[name]()
    assert isinstance(first, bytes)
    assert first == second, "same inputs must give the same PNG bytes"
    w, h = _png_size(first)
    assert 100 < w <= 1000 and 100 < h <= 1000
    assert 3_000 < len(first) < 120_000
    assert b"tEXtSoftware" not in first
    assert first.endswith(b"IEND\xaeB`\x82")


def test_different_inputs_give_different_pictures():
    assert domain_shares_png(NAMES, BEFORE, AFTER) != domain_shares_png(NAMES, AFTER, BEFORE)


def test_sampling_curves_handles_extremes():
    m = 3
    p = QuadMixParams(
        alpha=np.full((m, 2), 0.5),
        lam=[1.0, 1000.0, 30.0],
        omega=[0.0, 1.0, 0.05],
        eta=[0.0, 1.0, 0.5],
        eps=[0.0, 0.001, 0.0],
    )
    assert sampling_curves_png(p, ["a", "b", "c"]).startswith(PNG_SIGNATURE)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"tokens_after must have shape \(6,\)"):
        domain_shares_png(NAMES, BEFORE, AFTER[:5])
    with pytest.raises(ValueError, match="tokens_before must be >= 0"):
        domain_shares_png(NAMES, -BEFORE - 1, AFTER)
    with pytest.raises(ValueError, match="domain_names must not be empty"):
        domain_shares_png([], [], [])
    with pytest.raises(ValueError, match="not a single string"):
        domain_shares_png("abc", [1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="at least one criterion"):
        score_histograms_png({})
    with pytest.raises(ValueError, match=r"scores\['x'\] must be one-dimensional"):
        score_histograms_png({"x": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="domain_names must have 6 entries"):
        sampling_curves_png(PARAMS, NAMES[:2])
    with pytest.raises(ValueError, match="params must be a QuadMixParams"):
        sampling_curves_png({"alpha": 1}, NAMES)
    with pytest.raises(ValueError, match="same shape"):
        predicted_vs_actual_png([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="labels must have 3 entries"):
        predicted_vs_actual_png([1, 2, 3], [1, 2, 3], ["a"])
    with pytest.raises(ValueError, match="predicted must be finite"):
        predicted_vs_actual_png([np.nan], [1.0])
    with pytest.raises(ValueError, match=r"curves must have shape \(K runs, steps\)"):
        loss_curves_png(np.zeros((2, 3, 4)), ["a", "b"])
    with pytest.raises(ValueError, match="labels must have 2 entries"):
        loss_curves_png(np.zeros((2, 3)), ["a"])
    with pytest.raises(ValueError, match=r"steps must have shape \(3,\)"):
        loss_curves_png(np.zeros((2, 3)), ["a", "b"], steps=[1, 2])
    with pytest.raises(ValueError, match="infinities"):
        loss_curves_png(np.array([[1.0, np.inf]]), ["a"])


def test_loss_curves_accept_nan_gaps_and_one_curve():
    assert loss_curves_png([3.0, np.nan, 2.0], ["only"]).startswith(PNG_SIGNATURE)


def test_png_markdown_round_trip():
    png = domain_shares_png(NAMES, BEFORE, AFTER)
    md = png_markdown(png, "shares [before]\nafter")
    m = re.fullmatch(r"!\[([^\]\n]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert m, md[:80]
    assert m.group(1) == "shares (before) after"
    assert base64.b64decode(m.group(2)) == png
    with pytest.raises(ValueError, match="not a PNG"):
        png_markdown(b"GIF89a", "x")
    with pytest.raises(ValueError, match="must be bytes"):
        png_markdown("abc", "x")


def test_spearman_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 4.0])
    y = np.array([2.0, 1.0, 4.0, 4.0, 6.0, 5.0])
    assert plots._spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)
