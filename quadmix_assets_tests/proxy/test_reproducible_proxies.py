"""Proxy losses are a function of (data, seeds, config) alone: the same configs trained in different
groupings, orders and worker counts give the same numbers bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from quadmix_assets.proxy.model import preset
from quadmix_assets.proxy.parallel import train_and_score

CFG = preset("cpu-tiny", steps=6, batch_size=4, vocab_size=256, seq_len=32, d_model=32, d_ff=64, n_heads=2)


def _data(k=5):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(k, 24, 33))


def _targets():
    rng = np.random.default_rng(1)
    return {"a": [rng.integers(0, 256, size=n) for n in (20, 33, 50)], "b": [rng.integers(0, 256, size=40)]}


@pytest.mark.parametrize("cfg", [CFG, replace(CFG, lr_schedule="linear", average_last=0.5)], ids=["constant", "decay-avg"])
def test_groupings_orders_and_workers_give_identical_losses(cfg):
    data, tg = _data(), _targets()
    seeds = [11] * 5
    one = train_and_score(cfg, data, tg, seeds=seeds, group_size=16, workers=1)
    split = train_and_score(cfg, data, tg, seeds=seeds, group_size=2, workers=2)  # 3 groups on 2 processes
    order = [3, 0, 4, 2, 1]
    shuffled = train_and_score(cfg, data[order], tg, seeds=seeds, group_size=3, workers=1)
    alone = train_and_score(cfg, data[[2]], tg, seeds=[11], workers=1)
    for name in tg:
        assert one.set_losses[name].tobytes() == split.set_losses[name].tobytes()
        assert one.set_losses[name][order].tobytes() == shuffled.set_losses[name].tobytes()
        assert one.set_losses[name][2] == alone.set_losses[name][0]
    np.testing.assert_array_equal(one.loss_curves, split.loss_curves)
    np.testing.assert_array_equal(one.loss_curves[order], shuffled.loss_curves)


def test_other_seed_other_loss_and_torch_threads_restored():
    import torch

    before = torch.get_num_threads()
    data, tg = _data(2), _targets()
    a = train_and_score(CFG, data, tg, seeds=[1, 1], workers=1)
    b = train_and_score(CFG, data, tg, seeds=[2, 2], workers=1)
    assert not np.array_equal(a.set_losses["a"], b.set_losses["a"])
    assert torch.get_num_threads() == before
    assert a.finite.all() and a.parameters_per_proxy > 0


def test_proxy_groups_report_progress_lines(caplog):
    import logging

    from quadmix_assets.reporting.progress import LOGGER_NAME

    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        train_and_score(CFG, _data(3), _targets(), seeds=[1, 2, 3], group_size=2, workers=1)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
    assert lines and lines[-1].startswith("proxies (2 groups of <= 2): 3/3 proxies")
