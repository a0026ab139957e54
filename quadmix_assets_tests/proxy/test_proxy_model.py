from dataclasses import replace

import numpy as np
import pytest
import torch

from quadmix_assets.proxy.model import (PRESETS, evaluate_loss, evaluate_losses, forward, init_params,
                                        preset, train_proxies)

CFG = preset("cpu-tiny", vocab_size=97, seq_len=32, batch_size=4, steps=12, warmup_steps=3, lr=3e-3)


def _data(K, n=16, seed=0, c=CFG):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, c.vocab_size, size=(K, n, c.seq_len + 1))
    base[..., 1::2] = (base[..., 0::2][..., : base[..., 1::2].shape[-1]] * 7) % c.vocab_size  # learnable
    return base.astype(np.uint16)


@pytest.mark.parametrize("tie", [True, False])
def test_matches_transformers_llama(tie):
    from transformers import LlamaConfig, LlamaForCausalLM

    c = replace(CFG, tie_embeddings=tie)
    hc = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff,
                     num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_heads,
                     max_position_embeddings=c.seq_len, rms_norm_eps=c.rms_eps, tie_word_embeddings=tie,
                     attention_bias=False, mlp_bias=False, rope_theta=c.rope_theta)
    torch.manual_seed(0)
    hf = LlamaForCausalLM(hc).eval()
    p = init_params(c, [5])
    with torch.no_grad():
        for n in p:
            if n.endswith("norm1") or n.endswith("norm2") or n == "norm_f":
                p[n] += 0.1 * torch.randn_like(p[n])
        m = hf.model
        m.embed_tokens.weight.copy_(p["embed"][0])
        m.norm.weight.copy_(p["norm_f"][0])
        for i, layer in enumerate(m.layers):
            a, f = layer.self_attn, layer.mlp
            for mod, key in [(a.q_proj, "wq"), (a.k_proj, "wk"), (a.v_proj, "wv"), (a.o_proj, "wo"),
                             (f.gate_proj, "w_gate"), (f.up_proj, "w_up"), (f.down_proj, "w_down")]:
                mod.weight.copy_(p[f"l{i}.{key}"][0].T)
            layer.input_layernorm.weight.copy_(p[f"l{i}.norm1"][0])
            layer.post_attention_layernorm.weight.copy_(p[f"l{i}.norm2"][0])
        if not tie:
            hf.lm_head.weight.copy_(p["lm_head"][0].T)
        toks = torch.as_tensor(_data(1)[0, :3, :-1].astype(np.int64))
        ref = hf(input_ids=toks).logits
        ours = forward(p, c, toks[None])[0]
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_stacked_equals_alone_and_learns():
    K = 3
    data = _data(K)
    seeds, lrs = [11, 12, 13], [3e-3, 1e-3, 3e-3]
    res = train_proxies(CFG, data, device="cpu", seeds=seeds, lrs=lrs)
    assert res.finite.all()
    grouped = train_proxies(CFG, data, device="cpu", seeds=seeds, lrs=lrs, group_size=2)
    np.testing.assert_allclose(grouped.loss_curves, res.loss_curves, rtol=2e-4, atol=2e-4)
    assert grouped.state["params"]["embed"].shape[0] == K
    assert (res.loss_curves[:, -1] < res.loss_curves[:, 0]).all()
    for k in range(K):
        one = train_proxies(CFG, data[k:k + 1], device="cpu", seeds=[seeds[k]], lrs=[lrs[k]])
        np.testing.assert_allclose(one.loss_curves[0], res.loss_curves[k], rtol=2e-4, atol=2e-4)
    # evaluation: per proxy and batched agree, variable-length sequences accepted
    seqs = {"a": [data[0, 0, :20], data[1, 3]], "b": data[2, :4]}
    allk = evaluate_losses(res, seqs)
    for k in range(K):
        ek = evaluate_loss(res.state, k, seqs)
        assert abs(ek["a"] - allk["a"][k]) < 1e-4 and abs(ek["b"] - allk["b"][k]) < 1e-4


def test_deterministic_cpu():
    a = train_proxies(CFG, _data(2), device="cpu")
    b = train_proxies(CFG, _data(2), device="cpu")
    assert a.loss_curves.tobytes() == b.loss_curves.tobytes()


def test_nonfinite_proxy_flagged_others_finish():
    data = _data(3)
    res = train_proxies(CFG, data, device="cpu", seeds=[1, 2, 3], lrs=[3e-3, 1e38, 3e-3])
    ok = train_proxies(CFG, data[[0, 2]], device="cpu", seeds=[1, 3], lrs=[3e-3, 3e-3])
    assert list(res.finite) == [True, False, True]
    assert np.isnan(res.final_train_loss[1]) and np.isfinite(res.final_train_loss[[0, 2]]).all()
    np.testing.assert_allclose(res.loss_curves[[0, 2]], ok.loss_curves, rtol=2e-4, atol=2e-4)


def test_presets():
    r = PRESETS["regmix-1m"]
    assert (r.n_layers, r.n_heads, r.d_model, r.d_ff, r.seq_len, r.lr, r.warmup_steps, r.batch_size, r.steps) == \
        (2, 8, 256, 512, 2048, 4e-4, 100, 512, 1000)
