"""The fused, chunked output layer + cross-entropy gives F.cross_entropy's losses and gradients; the learning
rate schedules and the weight average of the proxy trainer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quadmix_assets.proxy.model import (averaging_start, fused_linear_ce, init_params, lr_factor, per_proxy_loss,
                                        preset, train_proxies)


def _reference(x, w, tgt, mask, tied):
    logits = torch.einsum("kbtd,kvd->kbtv", x, w) if tied else torch.einsum("kbtd,kdv->kbtv", x, w)
    nll = F.cross_entropy(logits.flatten(0, 2), tgt.flatten(), reduction="none").view(tgt.shape)
    if mask is None:
        return nll.mean(dim=(1, 2))
    m = mask.to(nll.dtype)
    return (nll * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1)


def _inputs(dtype, tied, K=3, B=2, T=9, D=8, V=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(K, B, T, D, generator=g, dtype=dtype).requires_grad_(True)
    w = (torch.randn(K, V, D, generator=g, dtype=dtype) if tied else torch.randn(K, D, V, generator=g, dtype=dtype))
    w.requires_grad_(True)
    tgt = torch.randint(0, V, (K, B, T), generator=g)
    mask = torch.rand(K, B, T, generator=g) > 0.4
    mask[1] = False  # a proxy with no target token: loss 0, no gradient
    return x, w, tgt, mask


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("chunk", [4, 7, 18, 1000])  # chunks that do and do not divide the 18 tokens, one chunk
def test_losses_and_gradients_equal_the_full_logits(dtype, tol, tied, masked, chunk):
    x, w, tgt, mask = _inputs(dtype, tied)
    mask = mask if masked else None
    up = torch.tensor([1.0, -2.0, 0.5], dtype=dtype)  # each proxy's own incoming gradient
    ref = _reference(x, w, tgt, mask, tied)
    gref = torch.autograd.grad((ref * up).sum(), [x, w])
    out = fused_linear_ce(x, w, tgt, mask, tied=tied, chunk=chunk)
    gout = torch.autograd.grad((out * up).sum(), [x, w])
    assert out.dtype == dtype and out.shape == (3,)
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    for a, b in zip(gout, gref):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    if masked:
        assert out[1] == 0 and (gout[0][1] == 0).all() and (gout[1][1] == 0).all()
    with torch.no_grad():  # the forward-only path: the same losses
        torch.testing.assert_close(fused_linear_ce(x, w, tgt, mask, tied=tied, chunk=chunk), out, atol=0, rtol=0)


@pytest.mark.parametrize("tied", [True, False])
def test_gradcheck(tied):
    x, w, tgt, mask = _inputs(torch.float64, tied, K=2, B=1, T=5, D=3, V=7)
    for m in (None, mask[:2]):
        assert torch.autograd.gradcheck(lambda x_, w_: fused_linear_ce(x_, w_, tgt[:2], m, tied=tied, chunk=2),
                                        (x[:2].detach().requires_grad_(True), w[:2].detach().requires_grad_(True)))


def test_a_proxy_gives_the_same_bytes_alone_or_stacked():
    x, w, tgt, mask = _inputs(torch.float32, True, K=3, T=600)
    both = fused_linear_ce(x, w, tgt, mask)
    gx, gw = torch.autograd.grad(both.sum(), [x, w])
    for k in range(3):
        one = fused_linear_ce(x[k:k + 1], w[k:k + 1], tgt[k:k + 1], mask[k:k + 1])
        ox, ow = torch.autograd.grad(one.sum(), [x, w])
        assert one[0].item() == both[k].item()
        assert torch.equal(ox[k], gx[k]) and torch.equal(ow[k], gw[k])


@pytest.mark.parametrize("tied", [True, False])
def test_per_proxy_loss_fused_matches_the_model_path(tied):
    c = preset("cpu-tiny", vocab_size=97, seq_len=32, tie_embeddings=tied)
    p = {k: v.requires_grad_(True) for k, v in init_params(c, [1, 2]).items()}
    seqs = torch.randint(0, 97, (2, 3, 33), generator=torch.Generator().manual_seed(3))
    mask = torch.rand(2, 3, 32, generator=torch.Generator().manual_seed(4)) > 0.3
    for m in (None, mask):
        a = per_proxy_loss(p, c, seqs, m)
        b = per_proxy_loss(p, c, seqs, m, fused=True)
        ga = torch.autograd.grad(a.sum(), list(p.values()))
        gb = torch.autograd.grad(b.sum(), list(p.values()))
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
        for x, y in zip(ga, gb):
            torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-4)


def test_training_fused_or_not_follows_the_same_curve():
    c = preset("cpu-tiny", vocab_size=97, seq_len=32, batch_size=4, steps=12, warmup_steps=3)
    data = np.random.default_rng(0).integers(0, 97, size=(2, 16, 33))
    a = train_proxies(c, data, device="cpu", fused_loss=True)
    b = train_proxies(c, data, device="cpu", fused_loss=False)
    np.testing.assert_allclose(a.loss_curves, b.loss_curves, atol=1e-4, rtol=0)


def test_lr_schedules():
    c = preset("cpu-tiny", steps=20, warmup_steps=4)
    const = [lr_factor(c, s) for s in range(20)]
    assert const[:4] == [0.25, 0.5, 0.75, 1.0] and const[4:] == [1.0] * 16
    lin = [lr_factor(replace(c, lr_schedule="linear"), s) for s in range(20)]
    assert lin[:4] == const[:4] and lin[4] == 1.0 and lin[-1] == pytest.approx(1 / 16)
    assert all(a > b for a, b in zip(lin[4:], lin[5:]))
    cos = [lr_factor(replace(c, lr_schedule="cosine"), s) for s in range(20)]
    assert cos[4] == 1.0 and 0 < cos[-1] < 0.01 and all(a > b for a, b in zip(cos[4:], cos[5:]))
    with pytest.raises(ValueError):
        lr_factor(replace(c, lr_schedule="step"), 10)


def test_weight_average_of_the_last_steps():
    c = preset("cpu-tiny", vocab_size=97, seq_len=32, batch_size=4, steps=8, warmup_steps=2)
    assert averaging_start(c) == 8 and averaging_start(replace(c, average_last=0.25)) == 6
    assert averaging_start(replace(c, average_last=0.01)) == 7  # at least the last step
    data = np.random.default_rng(0).integers(0, 97, size=(2, 32, 33))
    last = [train_proxies(replace(c, steps=s), data, device="cpu").state["params"] for s in (6, 7, 8)]
    avg = train_proxies(replace(c, average_last=0.3), data, device="cpu")  # the last 3 steps' weights
    for name, v in avg.state["params"].items():
        torch.testing.assert_close(v, (last[0][name] + last[1][name] + last[2][name]) / 3, atol=1e-6, rtol=1e-5)
    # the loss curve is the trained iterates', as without averaging
    np.testing.assert_array_equal(avg.loss_curves, train_proxies(c, data, device="cpu").loss_curves)


def test_the_run_presets_schedule_reaches_the_proxy_config():
    from quadmix_assets.presets import PRESETS
    from quadmix_assets.proxy.model import run_proxy_config

    cpu = run_proxy_config(PRESETS["cpu"], 4096)
    assert cpu.lr_schedule == PRESETS["cpu"].proxy_lr_schedule and cpu.steps == 60
    assert run_proxy_config(PRESETS["test"], 512).lr_schedule == "constant"  # the model preset's own
    assert run_proxy_config(replace(PRESETS["test"], proxy_average_last=0.25), 512).average_last == 0.25
