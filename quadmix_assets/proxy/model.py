"""K independent LLaMA-style proxy models stacked in one module.

Every weight has a leading K dimension; the forward pass is batched over K (einsum / batched matmul,
attention on a (K*B, H, T, hd) tensor), so K proxies train together on one (K, B, T) batch. Proxies never
interact: each has its own init seed, its own loss term (the total loss is the *sum* of per-proxy
means, so d total / d theta_k = d loss_k / d theta_k), its own gradient-norm clip and its own AdamW
state (element-wise). Architecture = ``transformers.LlamaForCausalLM`` (RMSNorm eps 1e-5, SwiGLU MLP,
rotate-half RoPE with theta 10000, no biases, MHA); verified by a test that copies weights between the two.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ProxyConfig:
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_ff: int = 128
    vocab_size: int = 4096
    seq_len: int = 128
    lr: float = 3e-3
    warmup_steps: int = 10
    batch_size: int = 16
    steps: int = 60
    seed: int = 0
    tie_embeddings: bool = True
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0
    init_std: float = 0.02
    # learning rate after the warm-up: "constant", or decayed to zero at the last step: "linear", "cosine"
    lr_schedule: str = "constant"
    # share of the last steps whose weights are averaged uniformly into the trained proxy (0: the final weights)
    average_last: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


PRESETS: dict[str, ProxyConfig] = {
    # fits K=8 proxies x ~120k tokens each in seconds on 2 CPU cores
    "cpu-tiny": ProxyConfig(n_layers=2, n_heads=4, d_model=64, d_ff=128, vocab_size=4096, seq_len=128,
                            lr=3e-3, warmup_steps=10, batch_size=16, steps=60),
    # RegMix tinyllama_1M: 2 layers, 8 heads, width 256, FFN 512, ctx 2048, const LR 4e-4 after 100
    # warm-up steps, batch 512 x 2048, 1000 steps (vocab of the TinyLlama/GPT-NeoX tokenizer)
    "regmix-1m": ProxyConfig(n_layers=2, n_heads=8, d_model=256, d_ff=512, vocab_size=50432, seq_len=2048,
                             lr=4e-4, warmup_steps=100, batch_size=512, steps=1000, tie_embeddings=False),
    # evaluation model of `quadmix compare` on a 2-core CPU: ~1.3M parameters at vocab 4096 (larger than
    # cpu-tiny's ~0.3M); 480 steps x 4 x 257 = ~0.49M tokens per model. Batch and lr picked on the final
    # *training* loss of the random baseline's stream (batch 16/8/4 at lr 2e-3: 6.70/6.34/6.14; batch 4 at
    # lr 1e-3/2e-3/3e-3: 6.20/6.14/6.30), never on held-out data
    "cpu-eval": ProxyConfig(n_layers=4, n_heads=4, d_model=128, d_ff=320, vocab_size=4096, seq_len=256,
                            lr=2e-3, warmup_steps=48, batch_size=4, steps=480),
    # evaluation model of `quadmix compare` on one GPU: ~28M parameters at vocab 4096 (~52M at vocab
    # 50432); 2000 steps x 64 x 1025 = ~131M tokens per model
    "gpu-eval": ProxyConfig(n_layers=8, n_heads=8, d_model=512, d_ff=1408, vocab_size=4096, seq_len=1024,
                            lr=1e-3, warmup_steps=200, batch_size=64, steps=2000),
}


def preset(name: str, **overrides) -> ProxyConfig:
    return replace(PRESETS[name], **overrides)


def run_proxy_config(run_preset, vocab_size: int) -> ProxyConfig:
    """The proxy model a pipeline preset trains (``proxy_model`` with its step, batch, schedule and averaging overrides and
    the preset's seed), sized to the tokenizer's vocabulary. ``run_preset`` is a
    :class:`quadmix_assets.presets.Preset`; the proxy_run asset and ``quadmix compare`` both call this."""
    overrides = {"vocab_size": int(vocab_size), "seed": int(run_preset.seed) % (2**31)}
    if run_preset.proxy_steps is not None:
        overrides["steps"] = int(run_preset.proxy_steps)
    if run_preset.proxy_batch_size is not None:
        overrides["batch_size"] = int(run_preset.proxy_batch_size)
    if run_preset.proxy_lr_schedule is not None:
        overrides["lr_schedule"] = str(run_preset.proxy_lr_schedule)
    if run_preset.proxy_average_last is not None:
        overrides["average_last"] = float(run_preset.proxy_average_last)
    return preset(run_preset.proxy_model, **overrides)


def _param_shapes(c: ProxyConfig) -> dict[str, tuple[int, ...]]:
    D, F_, V = c.d_model, c.d_ff, c.vocab_size
    s: dict[str, tuple[int, ...]] = {"embed": (V, D), "norm_f": (D,)}
    for i in range(c.n_layers):
        s |= {f"l{i}.norm1": (D,), f"l{i}.wq": (D, D), f"l{i}.wk": (D, D), f"l{i}.wv": (D, D),
              f"l{i}.wo": (D, D), f"l{i}.norm2": (D,), f"l{i}.w_gate": (D, F_), f"l{i}.w_up": (D, F_),
              f"l{i}.w_down": (F_, D)}
    if not c.tie_embeddings:
        s["lm_head"] = (D, V)
    return s


def init_params(c: ProxyConfig, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
    """Stacked (K, ...) float32 parameters; proxy k drawn from its own ``torch.Generator(seeds[k])``
    (so proxy k's init does not depend on K or on the other proxies)."""
    shapes = _param_shapes(c)
    per_k = []
    for sd in seeds:
        g = torch.Generator().manual_seed(int(sd))
        p = {}
        for n, shp in shapes.items():
            if n.split(".")[-1].startswith("norm"):
                p[n] = torch.ones(shp)
            else:
                std = c.init_std / math.sqrt(2 * c.n_layers) if n.endswith(("wo", "w_down")) else c.init_std
                p[n] = torch.randn(shp, generator=g) * std
        per_k.append(p)
    return {n: torch.stack([p[n] for p in per_k]) for n in shapes}


def _rms(x, w, eps):  # x (K,B,T,D), w (K,D)
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w[:, None, None, :] * xf.to(x.dtype)


def _rope(T, hd, theta, device):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
    f = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv)
    emb = torch.cat([f, f], dim=-1)
    return emb.cos(), emb.sin()


def _rot(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def forward(params: Mapping[str, torch.Tensor], c: ProxyConfig, tokens: torch.Tensor) -> torch.Tensor:
    """tokens (K, B, T) int64 -> logits (K, B, T, V)."""
    x = hidden(params, c, tokens)
    if c.tie_embeddings:
        return torch.einsum("kbtd,kvd->kbtv", x, params["embed"])
    return torch.einsum("kbtd,kdv->kbtv", x, params["lm_head"])


def hidden(params: Mapping[str, torch.Tensor], c: ProxyConfig, tokens: torch.Tensor) -> torch.Tensor:
    """tokens (K, B, T) int64 -> the final RMS-normed hidden states (K, B, T, D), the output layer's input."""
    K, B, T = tokens.shape
    H, hd = c.n_heads, c.head_dim
    emb = params["embed"]
    x = torch.gather(emb, 1, tokens.reshape(K, B * T, 1).expand(K, B * T, c.d_model)).reshape(K, B, T, -1)
    cos, sin = _rope(T, hd, c.rope_theta, tokens.device)
    for i in range(c.n_layers):
        p = lambda n: params[f"l{i}.{n}"]  # noqa: E731
        h = _rms(x, p("norm1"), c.rms_eps)
        q = torch.einsum("kbtd,kde->kbte", h, p("wq")).reshape(K * B, T, H, hd).transpose(1, 2)
        k_ = torch.einsum("kbtd,kde->kbte", h, p("wk")).reshape(K * B, T, H, hd).transpose(1, 2)
        v = torch.einsum("kbtd,kde->kbte", h, p("wv")).reshape(K * B, T, H, hd).transpose(1, 2)
        q = q * cos.to(q.dtype) + _rot(q) * sin.to(q.dtype)
        k_ = k_ * cos.to(k_.dtype) + _rot(k_) * sin.to(k_.dtype)
        a = F.scaled_dot_product_attention(q, k_, v, is_causal=True)
        a = a.transpose(1, 2).reshape(K, B, T, c.d_model)
        x = x + torch.einsum("kbtd,kde->kbte", a, p("wo"))
        h = _rms(x, p("norm2"), c.rms_eps)
        g = torch.einsum("kbtd,kdf->kbtf", h, p("w_gate"))
        u = torch.einsum("kbtd,kdf->kbtf", h, p("w_up"))
        x = x + torch.einsum("kbtf,kfd->kbtd", F.silu(g) * u, p("w_down"))
    return _rms(x, params["norm_f"], c.rms_eps)


#: tokens per proxy in one chunk of the fused output layer + cross-entropy (:func:`fused_linear_ce`). A
#: constant, never derived from K: a proxy's numbers must not depend on how many proxies share its stack
FUSED_CHUNK = 128


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return x.dtype


def _masked_mean(nll: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(K, N) per-token losses -> (K,) the per-proxy mean (``mask``-weighted when given), as
    :func:`per_proxy_loss` reduces them."""
    if mask is None:
        return nll.mean(dim=1)
    m = mask.to(nll.dtype)
    return (nll * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)


def _chunked_ce(x, w, tgt, wt, tied: bool, chunk: int, want_grad: bool):
    """The output layer and cross-entropy over chunks of ``chunk`` tokens per proxy: per-token losses (K, N)
    float32 and, when ``want_grad``, the gradients of ``sum_t wt[k, t] * nll[k, t]`` w.r.t. ``x`` (K, N, D)
    and ``w`` (tied: the embedding (K, V, D); else lm_head (K, D, V)). Only one chunk's (K, chunk, V) logits
    exist at a time."""
    K, N, D = x.shape
    cdt = _compute_dtype(x)
    acc = torch.float64 if cdt == torch.float64 else torch.float32  # softmax and gradient sums
    with torch.autocast(device_type=x.device.type, enabled=False):
        wc = w.to(cdt)
        w_out = wc.transpose(1, 2) if tied else wc  # (K, D, V): logits = x @ w_out
        nll = torch.empty(K, N, dtype=acc, device=x.device)
        dx = torch.empty(K, N, D, dtype=x.dtype, device=x.device) if want_grad else None
        dw = torch.zeros(w.shape, dtype=acc, device=x.device) if want_grad else None
        for s in range(0, N, chunk):
            xc = x[:, s:s + chunk].to(cdt)
            tc = tgt[:, s:s + chunk, None]
            # (K, c, V) log-probabilities by the kernel F.cross_entropy uses: the same per-token losses
            logp = torch.log_softmax(torch.bmm(xc, w_out).to(acc), dim=2)
            nll[:, s:s + chunk] = logp.gather(2, tc).squeeze(2).neg_()
            if not want_grad:
                continue
            p = logp.exp_()  # softmax
            p.scatter_add_(2, tc, torch.full(tc.shape, -1.0, dtype=p.dtype, device=p.device))  # - one-hot
            wk = wt[:, s:s + chunk, None]  # (K, c, 1): d loss / d nll of each token
            pc_ = p.to(cdt)
            # d/dx = (wt * (p - y)) @ w_out^T ; d/dw = x^T @ (wt * (p - y)): wt scales the small side
            dx[:, s:s + chunk] = (torch.bmm(pc_, w_out.transpose(1, 2)).to(acc) * wk).to(x.dtype)
            xw = (xc.to(acc) * wk).to(cdt)
            if tied:
                g = torch.bmm(pc_.transpose(1, 2), xw)  # (K, V, D)
            else:
                g = torch.bmm(xw.transpose(1, 2), pc_)  # (K, D, V)
            dw.add_(g if g.dtype == acc else g.to(acc))
    return nll, dx, (dw.to(w.dtype) if want_grad else None)


class _FusedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, tgt, mask, tied, chunk):
        K, N, _ = x.shape
        if mask is None:
            wt = torch.full((K, N), 1.0 / N, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                            device=x.device)
        else:
            m = mask.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
            wt = m / m.sum(dim=1, keepdim=True).clamp_min(1)
        nll, dx, dw = _chunked_ce(x, w, tgt, wt, tied, chunk, want_grad=True)
        ctx.save_for_backward(dx, dw)
        return _masked_mean(nll, mask)

    @staticmethod
    def backward(ctx, g):  # g (K,): d total / d loss_k
        dx, dw = ctx.saved_tensors
        gx = dx * g.to(dx.dtype).view(-1, 1, 1) if ctx.needs_input_grad[0] else None
        gw = dw * g.to(dw.dtype).view(-1, 1, 1) if ctx.needs_input_grad[1] else None
        return gx, gw, None, None, None, None


def fused_linear_ce(x: torch.Tensor, w: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor | None = None, *,
                    tied: bool = True, chunk: int = FUSED_CHUNK) -> torch.Tensor:
    """Per-proxy mean next-token loss (K,) of hidden states ``x`` (K, ..., D) through the output layer ``w``
    (tied: the embedding (K, V, D); untied: lm_head (K, D, V)) against targets ``tgt`` (K, ...), ``mask``
    (K, ...) weighting target tokens as :func:`per_proxy_loss` does; the same numbers as
    ``F.cross_entropy`` over the full logits (to float rounding) without ever holding them: chunk by
    chunk of ``chunk`` tokens per proxy, the forward computes the logits, their log-sum-exp, the loss and
    already the gradients w.r.t. ``x`` and ``w`` (softmax minus one-hot; the backward only scales them
    by each proxy's incoming gradient). Memory: one chunk's logits instead of (K, tokens, V) logits and
    their gradient."""
    K, D = x.shape[0], x.shape[-1]
    x = x.reshape(K, -1, D)
    tgt = tgt.reshape(K, -1)
    mask = None if mask is None else mask.reshape(K, -1)
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
        return _FusedLinearCE.apply(x, w, tgt, mask, tied, int(chunk))
    nll, _, _ = _chunked_ce(x, w, tgt, None, tied, int(chunk), want_grad=False)
    return _masked_mean(nll, mask)


def per_proxy_loss(params, c, seqs: torch.Tensor, mask: torch.Tensor | None = None, *,
                   fused: bool = False) -> torch.Tensor:
    """seqs (K, B, T+1) -> mean next-token loss per proxy (K,). ``mask`` (K, B, T) weights target tokens.
    ``fused``: the output layer and cross-entropy by :func:`fused_linear_ce` (training) instead of
    ``F.cross_entropy`` over the full (K, B, T, V) logits (same losses to float rounding)."""
    tgt = seqs[..., 1:]
    if fused:
        x = hidden(params, c, seqs[..., :-1])
        w = params["embed"] if c.tie_embeddings else params["lm_head"]
        return fused_linear_ce(x, w, tgt, mask, tied=c.tie_embeddings)
    logits = forward(params, c, seqs[..., :-1])
    nll = F.cross_entropy(logits.float().flatten(0, 2), tgt.flatten(), reduction="none").view(tgt.shape)
    if mask is None:
        return nll.mean(dim=(1, 2))
    m = mask.to(nll.dtype)
    return (nll * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1)


@dataclass
class ProxyRunResult:
    config: ProxyConfig
    seeds: list[int]
    lrs: list[float]
    loss_curves: np.ndarray  # (K, steps) float64, NaN after divergence
    final_train_loss: np.ndarray  # (K,) mean of the last 10% of steps' losses (NaN if diverged)
    finite: np.ndarray  # (K,) bool
    tokens_per_s: float  # all K together
    wall_s: float
    device: str
    state: dict = field(repr=False, default_factory=dict)  # {"config": dict, "params": {name: (K,...)}}

    @property
    def K(self) -> int:
        return len(self.seeds)


def lr_factor(c: ProxyConfig, step: int) -> float:
    """Multiplier of the learning rate at optimiser step ``step`` (0-based): linear warm-up over
    ``warmup_steps``, then ``lr_schedule``: constant, or decayed (linearly or by a half cosine) to zero
    at the step after the last one."""
    warm = min(1.0, (step + 1) / max(1, c.warmup_steps))
    if c.lr_schedule == "constant" or step < c.warmup_steps:
        return warm
    span = max(1, c.steps - c.warmup_steps)
    done = (step - c.warmup_steps) / span  # 0 at the first step after the warm-up, < 1 at the last
    if c.lr_schedule == "linear":
        return warm * (1.0 - done)
    if c.lr_schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * done))
    raise ValueError(f"unknown lr_schedule {c.lr_schedule!r} (constant, linear, cosine)")


def averaging_start(c: ProxyConfig) -> int:
    """First step whose weights enter the average (``average_last``); ``c.steps`` when there is none."""
    if not c.average_last:
        return c.steps
    if not 0 < c.average_last <= 1:
        raise ValueError(f"average_last {c.average_last} is not in (0, 1]")
    return c.steps - max(1, math.ceil(c.average_last * c.steps))


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """glibc returns every freed large block (the (K, B, T, V) logits and their grads, hundreds of MB)
    to the OS, so each step page-faults them back in: half the CPU time went to the kernel. Keep freed
    memory in the heap instead (M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = their maxima). Linux/glibc only;
    a no-op elsewhere. Only changes memory reuse, never results."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    import sys

    from quadmix_assets import libc

    mallopt = libc.function("mallopt")
    if mallopt is None or not sys.platform.startswith("linux"):
        return
    mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD
    if not mallopt(-3, 2**30):  # M_MMAP_THRESHOLD; older glibc caps it at 32 MiB
        mallopt(-3, 32 * 1024 * 1024)


def train_proxies(config: ProxyConfig, token_batches, *, device=None, seeds: Sequence[int] | None = None,
                  lrs: Sequence[float] | None = None, threads: int | None = None,
                  group_size: int | None = None, fused_loss: bool = True) -> ProxyRunResult:
    """Train K proxies, proxy k on ``token_batches[k]`` ((K, n_seqs, seq_len+1) array or tensor).

    Step s uses sequences ``[(s*B) % n, ...)`` (wrapping) of each proxy's own array, the same positions
    for every k. Seeds default to ``config.seed + k``; lrs default to ``config.lr`` (linear warm-up then
    constant). AdamW (beta 0.9/0.95, eps 1e-8) implemented element-wise on the stacked tensors; gradient
    clipping by each proxy's own norm. A proxy whose loss or gradient becomes non-finite is flagged and
    frozen (lr 0, grads zeroed); the others go on. bf16 autocast on CUDA.

    ``group_size``: train the K proxies in stacked groups of at most this many, one group after another,
    and concatenate (same results, proxies are independent); on CPU 16 keeps each (K, B, T, V) logits
    tensor small enough to be reused by malloc (K=64 cpu-tiny: ~2x faster than one group of 64).

    ``fused_loss``: the output layer and cross-entropy by :func:`fused_linear_ce` (chunked, the full
    logits never held; ``benchmarks/fused_ce.py``); False: ``F.cross_entropy`` over the full logits."""
    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cpu":
        _tune_malloc()
    data = torch.as_tensor(np.asarray(token_batches).astype(np.int64)).to(dev)
    K, n, L = data.shape
    seeds = [config.seed + k for k in range(K)] if seeds is None else [int(s) for s in seeds]
    lrs = [config.lr] * K if lrs is None else [float(x) for x in lrs]
    if group_size and K > group_size:
        parts = [train_proxies(config, data[i:i + group_size].cpu().numpy(), device=device,
                               seeds=seeds[i:i + group_size], lrs=lrs[i:i + group_size], fused_loss=fused_loss)
                 for i in range(0, K, int(group_size))]
        wall = sum(p.wall_s for p in parts)
        return ProxyRunResult(
            config=config, seeds=seeds, lrs=lrs, loss_curves=np.concatenate([p.loss_curves for p in parts]),
            final_train_loss=np.concatenate([p.final_train_loss for p in parts]),
            finite=np.concatenate([p.finite for p in parts]),
            tokens_per_s=K * config.steps * config.batch_size * config.seq_len / max(wall, 1e-9), wall_s=wall,
            device=parts[0].device,
            state={"config": asdict(config),
                   "params": {n_: torch.cat([p.state["params"][n_] for p in parts]) for n_ in parts[0].state["params"]}})
    if L != config.seq_len + 1:
        raise ValueError(f"token_batches last dim {L} != seq_len + 1 = {config.seq_len + 1}")
    if len(seeds) != K or len(lrs) != K:
        raise ValueError("seeds and lrs need one entry per proxy")
    params = {k_: v.to(dev).requires_grad_(True) for k_, v in init_params(config, seeds).items()}
    m1 = {k_: torch.zeros_like(v) for k_, v in params.items()}
    m2 = {k_: torch.zeros_like(v) for k_, v in params.items()}
    lr_k = torch.tensor(lrs, dtype=torch.float32, device=dev)
    alive = torch.ones(K, dtype=torch.bool, device=dev)
    curves = np.full((K, config.steps), np.nan)
    b1, b2, eps = 0.9, 0.95, 1e-8
    B = config.batch_size
    avg_from = averaging_start(config)
    avg = {k_: torch.zeros_like(v) for k_, v in params.items()} if avg_from < config.steps else {}
    use_amp = dev.type == "cuda"
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses_hist = []
    for step in range(config.steps):
        idx = (torch.arange(B, device=dev) + step * B) % n
        batch = data[:, idx]
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
            loss_k = per_proxy_loss(params, config, batch, fused=fused_loss)
        ok = torch.isfinite(loss_k) & alive
        total = torch.where(ok, loss_k, torch.zeros_like(loss_k)).sum()
        grads = torch.autograd.grad(total, list(params.values()))
        with torch.no_grad():
            sq = torch.zeros(K, device=dev)
            for g in grads:
                sq += g.float().pow(2).flatten(1).sum(1)
            gnorm = sq.sqrt()
            ok = ok & torch.isfinite(gnorm)
            alive &= ok
            scale = torch.where(ok, (config.grad_clip / (gnorm + 1e-6)).clamp(max=1.0), torch.zeros_like(gnorm))
            lr_now = lr_k * lr_factor(config, step) * ok
            bc1, bc2 = 1 - b1 ** (step + 1), 1 - b2 ** (step + 1)
            for (name, p), g in zip(params.items(), grads):
                shp = (K,) + (1,) * (p.dim() - 1)
                g = torch.nan_to_num(g.float()) * scale.view(shp)
                m1[name].mul_(b1).add_(g, alpha=1 - b1)
                m2[name].mul_(b2).addcmul_(g, g, value=1 - b2)
                upd = (m1[name] / bc1) / ((m2[name] / bc2).sqrt() + eps)
                if config.weight_decay:
                    upd = upd + config.weight_decay * p
                p.sub_(lr_now.view(shp) * upd)
            losses_hist.append(torch.where(alive, loss_k.detach().float(), torch.full_like(loss_k, float("nan"))))
            if step >= avg_from:
                for name, p in params.items():
                    avg[name].add_(p)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    if losses_hist:
        curves = torch.stack(losses_hist, 1).cpu().double().numpy()
    finite = alive.cpu().numpy() & np.isfinite(curves).all(1)
    tail = max(1, config.steps // 10)
    final = np.where(finite, curves[:, -tail:].mean(1) if config.steps else np.nan, np.nan)
    if avg:  # the uniform average of the weights after each of the last steps
        params = {k_: v.div_(config.steps - avg_from) for k_, v in avg.items()}
    state = {"config": asdict(config), "params": {k_: v.detach().cpu() for k_, v in params.items()}}
    return ProxyRunResult(config=config, seeds=seeds, lrs=lrs, loss_curves=curves, final_train_loss=final,
                          finite=finite, tokens_per_s=K * config.steps * B * config.seq_len / max(wall, 1e-9),
                          wall_s=wall, device=str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
                          state=state)


def _state_parts(model_state):
    if isinstance(model_state, ProxyRunResult):
        model_state = model_state.state
    return ProxyConfig(**model_state["config"]), model_state["params"]


def _pad(seqs, max_len):
    rows = [np.asarray(s, dtype=np.int64)[:max_len] for s in seqs]
    rows = [r for r in rows if len(r) >= 2]
    T = max(len(r) for r in rows)
    arr = np.zeros((len(rows), T), np.int64)
    mask = np.zeros((len(rows), T - 1), bool)
    for i, r in enumerate(rows):
        arr[i, : len(r)] = r
        mask[i, : len(r) - 1] = True
    return torch.as_tensor(arr), torch.as_tensor(mask)


Pair = tuple[Sequence[int], Sequence[int]]  # (context ids, continuation ids)

#: logits elements (K x batch tokens x vocab) per forward pass when evaluation is bounded: 128 MiB in float32
MAX_LOGITS = 2**25


def _bounded(K: int, c: ProxyConfig, batch_size: int, max_logits: int) -> tuple[int, int]:
    """``(proxies per pass, sequences per batch)`` keeping one pass's logits within ``max_logits``."""
    per_proxy_seq = c.seq_len * c.vocab_size
    group = max(1, min(K, max_logits // per_proxy_seq))
    return group, max(1, min(batch_size, max_logits // (group * per_proxy_seq)))


@torch.no_grad()
def evaluate_losses(model_state, token_seqs, *, batch_size: int = 64, device=None,
                    max_logits: int | None = None) -> dict[str, np.ndarray]:
    """Mean token loss of every proxy on each target set: ``{name: (K,)}``. ``token_seqs`` is
    ``{name: 2-D array or list of 1-D token arrays}`` (or one such value, named ``"target"``);
    sequences longer than seq_len+1 are truncated; loss is token-weighted over the set. The one loss
    evaluator of the proxy library: the stored proxy losses (:mod:`quadmix_assets.proxy.parallel`), the
    RegMix proxies and the held-out losses of ``quadmix compare`` (:mod:`quadmix_assets.selection`).

    ``max_logits`` (None: unbounded, the stored proxies' batches of ``batch_size``) bounds one forward
    pass's logits (:data:`MAX_LOGITS`): fewer sequences per batch, and the proxies in groups when even one
    sequence for all K is too much (hundreds of stacked RegMix proxies)."""
    c, params = _state_parts(model_state)
    K = params["embed"].shape[0]
    if max_logits is not None:
        group, batch_size = _bounded(K, c, batch_size, max_logits)
        if group < K:
            parts = [evaluate_losses({"config": asdict(c), "params": {n: v[a:a + group] for n, v in params.items()}},
                                     token_seqs, batch_size=batch_size, device=device)
                     for a in range(0, K, group)]
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    dev = torch.device(device or "cpu")
    params = {k: v.to(dev) for k, v in params.items()}
    if not isinstance(token_seqs, Mapping):
        token_seqs = {"target": token_seqs}
    out = {}
    for name, seqs in token_seqs.items():
        seqs = list(seqs)
        tot = torch.zeros(K, dtype=torch.float64)
        cnt = 0
        for i in range(0, len(seqs), batch_size):
            if all(len(s) < 2 for s in seqs[i:i + batch_size]):
                continue  # nothing to predict (a held-out text of no token)
            arr, mask = _pad(seqs[i:i + batch_size], c.seq_len + 1)
            arr = arr.to(dev)[None].expand(K, -1, -1)
            mask = mask.to(dev)[None].expand(K, -1, -1)
            ntok = int(mask[0].sum())
            tot += per_proxy_loss(params, c, arr, mask).double().cpu() * ntok
            cnt += ntok
        out[name] = (tot / max(cnt, 1)).numpy()
    return out


def evaluate_loss(model_state, k: int, token_seqs, **kw) -> dict[str, float]:
    """Mean loss of proxy ``k`` per target set (see :func:`evaluate_losses`)."""
    c, params = _state_parts(model_state)
    one = {"config": asdict(c), "params": {n: v[k:k + 1] for n, v in params.items()}}
    return {name: float(v[0]) for name, v in evaluate_losses(one, token_seqs, **kw).items()}


@torch.no_grad()
def continuation_logprobs(model_state, pairs: Sequence[Pair], *, max_batch_tokens: int | None = None,
                          device=None) -> tuple[np.ndarray, np.ndarray]:
    """Sum of log-probabilities of each continuation given its context, for every stacked model:
    ``(lp (K, n) float64, n_scored (n,) int)``. A pair longer than ``seq_len + 1`` tokens is cut: the
    context loses tokens from the left; a continuation longer than ``seq_len`` keeps its first ``seq_len``
    tokens after the last context token (so ``(EOS, text)`` scores a text's first ``seq_len`` tokens, the ones
    :func:`evaluate_losses` scores). Used for multiple-choice accuracy (``quadmix compare``); losses come
    from :func:`evaluate_losses`. Batches hold sequences of similar length, at most ``max_batch_tokens``
    tokens (default: as many as keep the K models' logits within ``MAX_LOGITS`` elements)."""
    c, params = _state_parts(model_state)
    dev = torch.device(device or "cpu")
    params = {k: v.to(dev) for k, v in params.items()}
    K = params["embed"].shape[0]
    L = c.seq_len + 1
    if max_batch_tokens is None:
        max_batch_tokens = max(L, MAX_LOGITS // (K * c.vocab_size))
    seqs, n_cont = [], []
    for ctx, cont in pairs:
        if len(ctx) == 0:
            raise ValueError("a context needs at least one token (prepend EOS)")
        ctx = [int(t) for t in ctx]
        cont = [int(t) for t in cont][: L - 1]
        s = ctx[-(L - len(cont)):] + cont
        seqs.append(s)
        n_cont.append(len(cont))
    n = len(seqs)
    out = np.zeros((K, n), dtype=np.float64)
    order = sorted(range(n), key=lambda i: len(seqs[i]))
    i = 0
    while i < n:  # ascending lengths: a chunk's last sequence is its longest
        j = i + 1
        while j < n and (j - i + 1) * len(seqs[order[j]]) <= max_batch_tokens:
            j += 1
        chunk = order[i:j]
        T = len(seqs[chunk[-1]])
        arr = np.zeros((len(chunk), T), dtype=np.int64)
        mask = np.zeros((len(chunk), T - 1), dtype=bool)
        for r, q in enumerate(chunk):
            s = seqs[q]
            arr[r, :len(s)] = s
            mask[r, len(s) - 1 - n_cont[q]:len(s) - 1] = True
        if T < 2:
            i += len(chunk)
            continue
        x = torch.as_tensor(arr, device=dev)
        logits = forward(params, c, x[None, :, :-1].expand(K, -1, -1)).float()
        tgt = x[None, :, 1:].expand(K, -1, -1)
        tok = logits.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # (K, B, T-1)
        del logits
        m = torch.as_tensor(mask, device=dev)[None]
        sums = (tok.double() * m).sum(-1).cpu().numpy()  # (K, B)
        out[:, chunk] = sums
        i += len(chunk)
    return out, np.asarray(n_cont, dtype=np.int64)
