"""The regressor interface: JSON round trips, model choice by repeated CV, the noise-ceiling gate."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from quadmix_assets.config import get_preset
from quadmix_assets.proxy.regression_gate import gate
from quadmix_assets.proxy.surrogate import MODELS, Surrogate, repeated_cv, select_surrogate


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.random((n, 30))
    stats = rng.random((n, 6))
    y = 3.0 - 0.8 * stats[:, 0] + 0.5 * stats[:, 1] + rng.normal(0, 0.05, n)  # signal only in the statistics
    return raw, stats, y


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_saves_to_json_and_predicts_the_same(name):
    raw, stats, y = _data()
    m = MODELS[name]().fit(stats, y, seed=1)
    state = json.loads(json.dumps(m.to_json()))
    again = MODELS[name](state)
    np.testing.assert_allclose(again.predict(stats[:7]), m.predict(stats[:7]), rtol=1e-10, atol=1e-12)


def test_selection_finds_the_signal_and_round_trips():
    raw, stats, y = _data()
    sur = select_surrogate(raw, stats, y, raw_names=[f"r{i}" for i in range(30)], stats_names=[f"s{i}" for i in range(6)], n_criteria=2,
                           repeats=2, seed=0)
    assert "stats" in sur.feature_set and sur.report["cv_spearman"] > 0.8
    assert sur.report["candidates"]["lgbm/raw"]["cv_spearman"] < 0.4  # the raw numbers carry no signal here
    back = Surrogate.from_json(sur.to_json())
    np.testing.assert_allclose(back.predict(raw, stats), sur.predict(raw, stats), rtol=1e-10)


def test_noise_gives_no_cv_signal():
    rng = np.random.default_rng(3)
    X = rng.random((40, 5))
    cv = repeated_cv("ridge", X, rng.normal(size=40), repeats=3)
    assert abs(cv["cv_spearman"]) < 0.35 and cv["repeats"] == 3


def test_gate_against_the_noise_ceiling():
    p = replace(get_preset("cpu"), regressor_ceiling_share=0.5, regressor_min_spearman=0.3)
    assert gate(0.5, 0.8, p)["passed"] and not gate(0.35, 0.8, p)["passed"]  # threshold 0.4
    assert gate(0.35, None, p)["passed"] and not gate(0.25, None, p)["passed"]  # fixed floor without a ceiling
    assert not gate(-0.1, -0.2, p)["passed"]  # never promote a backwards ranking
    assert not gate(float("nan"), 0.8, p)["passed"]
    assert "noise ceiling" in gate(0.35, 0.8, p)["reason"]
