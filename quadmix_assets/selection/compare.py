"""The paper-style comparison (QuaDMix Table 1 at small scale): one evaluation model per selection method,
all at ONE token budget, judged on the *held-out* half of the target sets only.

* Training data: every method's manifest becomes a token stream with :func:`manifest_token_stream`
  (copies respected, occurrences shuffled with ``seed``, EOS after each document, packed into windows of
  ``seq_len + 1``) cut at the budget. A mixture that yields fewer windows than the budget is *wrapped*:
  window ``i`` of the training array is window ``i mod available`` of the stream, i.e. the model sees the
  whole mixture again (more than one epoch); the epochs are reported per method.
* Models: one per method, all with the same init seed (data are the only difference), trained together
  stacked in ONE :func:`train_proxies` call, same optimiser and steps for all.
* Held-out loss per set: mean token loss over the held-out examples' full texts (EOS prepended so every
  text token is predicted; token-weighted; the first ``seq_len`` text tokens), computed by the proxy
  library's one loss evaluator, :func:`~quadmix_assets.proxy.model.evaluate_losses` (the one the stored
  proxy losses come from).
* Multiple-choice accuracy by log-likelihood (lm-evaluation-harness "acc"): each choice is scored as the
  *sum* of the log-probabilities of its tokens (``" " + choice``) given ``EOS + prefix``; the highest
  score is the prediction (ties: the lowest index). Sets whose choices are contexts (winogrande's
  options, ``prefix`` null) are scored the other way round ("partial evaluation"): the shared
  continuation given each option. The length-normalised variant (sum divided by the choice's UTF-8
  bytes, "acc_norm") is reported beside it in the JSON.
* Only rows with ``half == "heldout"`` are read; the target half is dropped before anything is tokenised.
  Examples per set are capped by a seeded subset (``np.random.default_rng(seed).choice``, sorted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quadmix_assets.proxy.model import (
    MAX_LOGITS,
    Pair,
    ProxyConfig,
    continuation_logprobs,
    evaluate_losses,
    train_proxies,
)
from quadmix_assets.proxy.objective import weighted_mean
from quadmix_assets.proxy.stream import manifest_token_stream
from quadmix_assets.proxy.tokenizer import eos_id


# ---------------------------------------------------------------------------------------------- scoring
def choose(scores: np.ndarray) -> np.ndarray:
    """Index of the best choice along the last axis (first index on ties)."""
    return np.argmax(np.asarray(scores), axis=-1)


@dataclass
class MCItem:
    pairs: list[Pair]  # one (context, continuation) per choice
    gold: int
    norm: list[int]  # UTF-8 bytes of each choice's scored text (for acc_norm)


@dataclass
class HeldoutSet:
    name: str
    lm_pairs: list[Pair]  # (EOS,) + text tokens
    mc: list[MCItem] | None = None
    n_examples: int = 0
    n_heldout: int = 0  # held-out examples before the cap


def heldout_only(table: pa.Table) -> pa.Table:
    """The rows of a target table whose ``half`` is ``heldout``."""
    return table.filter(pc.equal(table["half"], "heldout"))


def heldout_eval_data(target_table: pa.Table, tokenizer, *, max_examples: int | None, seed: int,
                      sets: Sequence[str] | None = None) -> dict[str, HeldoutSet]:
    """Tokenised held-out evaluation data per set (module docstring). The target half is filtered out
    first; ``max_examples`` caps each set by a seeded subset."""
    held = heldout_only(target_table)
    eos = eos_id(tokenizer)
    names = sorted(set(held["set"].to_pylist())) if sets is None else list(sets)
    out: dict[str, HeldoutSet] = {}
    for name in names:
        rows = held.filter(pc.equal(held["set"], name)).to_pylist()
        n_all = len(rows)
        if max_examples is not None and n_all > max_examples:
            pick = np.sort(np.random.default_rng(seed).choice(n_all, int(max_examples), replace=False))
            rows = [rows[i] for i in pick]
        texts = [r["text"] for r in rows]
        lm = [((eos,), e.ids) for e in tokenizer.encode_batch(texts)] if texts else []
        mc = None
        if rows and rows[0].get("multiple_choice") and rows[0].get("choices") is not None:
            mc = []
            for r in rows:
                choices, gold = list(r["choices"]), int(r["gold"])
                if r.get("prefix") is not None:
                    ctx = [eos] + tokenizer.encode(r["prefix"]).ids
                    conts = [" " + ch for ch in choices]
                    items = [(ctx, tokenizer.encode(t).ids) for t in conts]
                    norm = [len(t.encode("utf-8")) for t in conts]
                else:  # the options are contexts; the shared continuation is scored
                    text, opt = r["text"], choices[gold]
                    if not text.startswith(opt):
                        raise ValueError(f"{name}: text does not start with its gold option")
                    cont_ids = tokenizer.encode(text[len(opt):]).ids
                    items = [([eos] + tokenizer.encode(o).ids, cont_ids) for o in choices]
                    norm = [len(text[len(opt):].encode("utf-8"))] * len(choices)
                mc.append(MCItem(pairs=items, gold=gold, norm=norm))
        out[name] = HeldoutSet(name=name, lm_pairs=lm, mc=mc, n_examples=len(rows), n_heldout=n_all)
    return out


def lm_sequences(hs: HeldoutSet) -> list[np.ndarray]:
    """The held-out texts of a set as token sequences ``EOS + text`` (what the loss is computed on)."""
    return [np.asarray([*ctx, *cont], dtype=np.int64) for ctx, cont in hs.lm_pairs]


def evaluate_heldout(heldout: Mapping[str, HeldoutSet],
                     logprob_fn: Callable[[Sequence[Pair]], tuple[np.ndarray, np.ndarray]],
                     loss_fn: Callable[[Mapping[str, list[np.ndarray]]], Mapping[str, np.ndarray]]) -> dict[str, dict]:
    """Per set: ``loss`` (K,) mean token loss; for multiple-choice sets ``accuracy`` and
    ``accuracy_norm`` (K,). ``loss_fn({set: token sequences}) -> {set: (K,)}`` (e.g.
    :func:`~quadmix_assets.proxy.model.evaluate_losses` bound to a model state) is called once with every
    set's texts (:func:`lm_sequences`); ``logprob_fn(pairs) -> (lp (K, n), n_tokens (n,))`` (e.g.
    :func:`~quadmix_assets.proxy.model.continuation_logprobs`) once with every choice of every set."""
    losses = loss_fn({name: lm_sequences(hs) for name, hs in heldout.items()})
    pairs: list[Pair] = []
    spans: dict[str, list] = {}
    for name, hs in heldout.items():
        spans[name] = []
        for it in hs.mc or []:
            b = len(pairs)
            pairs.extend(it.pairs)
            spans[name].append((b, len(pairs)))
    lp = np.asarray(logprob_fn(pairs)[0], dtype=np.float64) if pairs else None
    out: dict[str, dict] = {}
    for name, hs in heldout.items():
        r: dict = {"loss": np.asarray(losses[name], dtype=np.float64), "n_examples": hs.n_examples,
                   "n_heldout": hs.n_heldout}
        if hs.mc:
            hits = np.zeros(lp.shape[0])
            hits_n = np.zeros(lp.shape[0])
            for it, (c0, c1) in zip(hs.mc, spans[name]):
                sc = lp[:, c0:c1]  # (K, n_choices)
                hits += choose(sc) == it.gold
                hits_n += choose(sc / np.maximum(np.asarray(it.norm, float), 1.0)) == it.gold
            r["accuracy"] = hits / len(hs.mc)
            r["accuracy_norm"] = hits_n / len(hs.mc)
            r["chance"] = float(np.mean([1.0 / len(it.pairs) for it in hs.mc]))
        out[name] = r
    return out


# ---------------------------------------------------------------------------------------------- training
def fit_to(arr: np.ndarray, n_seqs: int) -> np.ndarray:
    """``n_seqs`` windows from ``arr``, wrapping around (window i = window i mod len) when it is short."""
    if len(arr) == 0:
        raise ValueError("empty token stream")
    return arr[np.arange(int(n_seqs)) % len(arr)]


def eval_config(config: ProxyConfig, tokenizer, budget_tokens: int | None) -> ProxyConfig:
    """The evaluation model: ``config`` sized to the tokenizer's vocabulary, with its steps set so that
    ``steps * batch_size * (seq_len + 1)`` is the token budget (rounded down, at least one step)."""
    cfg = replace(config, vocab_size=int(tokenizer.get_vocab_size()))
    if budget_tokens is not None:
        steps = max(1, int(budget_tokens) // (cfg.batch_size * (cfg.seq_len + 1)))
        cfg = replace(cfg, steps=steps, warmup_steps=min(cfg.warmup_steps, max(1, steps // 10)))
    return cfg


@dataclass
class Comparison:
    rows: list[dict]
    sets: list[str]
    mc_sets: list[str]
    config: ProxyConfig
    budget_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def compare_methods(manifests: Mapping[str, pa.Table], read_texts: Callable[[str, Sequence[int]], list[str]],
                    tokenizer, target_table: pa.Table, config: ProxyConfig, *, budget_tokens: int | None = None,
                    max_examples: int | None = 200, seed: int = 0, group_size: int | None = None, device=None,
                    max_batch_tokens: int | None = None, judge: Mapping[str, float] | None = None,
                    log: Callable[[str], None] = lambda s: None) -> Comparison:
    """Train one model per named manifest at one budget and judge each on the held-out half (module
    docstring). Returns the table rows (one per method, plus a ``chance`` row) and timings. ``judge``:
    the judge's sets and weights (default: every set with a held-out half, weight 1); a method's
    ``avg_loss`` is the weighted mean of its per-set held-out losses."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    cfg = eval_config(config, tokenizer, budget_tokens)
    n_seqs = cfg.steps * cfg.batch_size
    budget = n_seqs * (cfg.seq_len + 1)
    names = list(manifests)
    if not names:
        raise ValueError("no methods to compare")
    batches, stream_info = [], {}
    for name in names:
        arr = manifest_token_stream(manifests[name], read_texts, tokenizer, seed=seed, budget_tokens=budget,
                                    seq_len=cfg.seq_len)
        if len(arr) == 0:
            raise ValueError(f"method {name!r}: its manifest yields no complete {cfg.seq_len + 1}-token window")
        batches.append(fit_to(arr, n_seqs))
        stream_info[name] = {"available_tokens": int(arr.size), "epochs": float(n_seqs / len(arr)),
                             "manifest_documents": int(manifests[name].num_rows)}
        log(f"  stream {name}: {arr.size:,} tokens available of {budget:,} ({n_seqs / len(arr):.2f} epochs)")
    timings["streams"] = time.perf_counter() - t
    t = time.perf_counter()
    held = heldout_eval_data(target_table, tokenizer, max_examples=max_examples, seed=seed,
                             sets=sorted(judge) if judge else None)
    timings["heldout_tokenise"] = time.perf_counter() - t
    n_params = sum(int(np.prod(s)) for s in _shapes(cfg))
    log(f"training {len(names)} evaluation models stacked ({n_params / 1e6:.2f}M parameters each, {cfg.steps} steps x "
        f"{cfg.batch_size} x {cfg.seq_len + 1} = {budget:,} tokens each)")
    t = time.perf_counter()
    run = train_proxies(cfg, np.stack(batches), seeds=[cfg.seed] * len(names), group_size=group_size, device=device)
    timings["train"] = time.perf_counter() - t
    log(f"  trained in {run.wall_s:.0f}s, {run.tokens_per_s:,.0f} tokens/s on {run.device}")
    t = time.perf_counter()
    res = evaluate_heldout(held,
                           lambda pairs: continuation_logprobs(run.state, pairs, max_batch_tokens=max_batch_tokens, device=device),
                           lambda seqs: evaluate_losses(run.state, seqs, device=device, max_logits=MAX_LOGITS))
    timings["evaluate"] = time.perf_counter() - t
    sets = sorted(held)
    mc_sets = [s for s in sets if "accuracy" in res[s]]
    rows = []
    for k, name in enumerate(names):
        losses = {s: float(res[s]["loss"][k]) for s in sets}
        acc = {s: float(res[s]["accuracy"][k]) for s in mc_sets}
        acc_n = {s: float(res[s]["accuracy_norm"][k]) for s in mc_sets}
        rows.append({"method": name, **stream_info[name], "train_tokens": int(budget),
                     "final_train_loss": float(run.final_train_loss[k]), "finite": bool(run.finite[k]),
                     "heldout_loss": losses, "avg_loss": weighted_mean(losses, dict(judge) if judge else None),
                     "mc_accuracy": acc, "avg_mc_accuracy": float(np.mean(list(acc.values()))) if acc else None,
                     "mc_accuracy_norm": acc_n,
                     "avg_mc_accuracy_norm": float(np.mean(list(acc_n.values()))) if acc_n else None})
    chance = {s: res[s]["chance"] for s in mc_sets}
    rows.append({"method": "chance", "heldout_loss": {}, "avg_loss": None, "mc_accuracy": chance,
                 "avg_mc_accuracy": float(np.mean(list(chance.values()))) if chance else None,
                 "mc_accuracy_norm": chance, "avg_mc_accuracy_norm": float(np.mean(list(chance.values()))) if chance else None})
    info = {"examples_per_set": {s: held[s].n_examples for s in sets},
            "heldout_examples_per_set": {s: held[s].n_heldout for s in sets},
            "parameters_per_model": n_params, "tokens_per_s": float(run.tokens_per_s), "device": run.device,
            "max_examples": max_examples, "seed": int(seed),
            "judge_weights": {s: float((judge or {}).get(s, 1.0)) for s in sets}}
    return Comparison(rows=rows, sets=sets, mc_sets=mc_sets, config=cfg, budget_tokens=int(budget), timings=timings,
                      info=info)


def _shapes(cfg: ProxyConfig):
    from quadmix_assets.proxy.model import _param_shapes

    return _param_shapes(cfg).values()


# ---------------------------------------------------------------------------------------------- tables
def _short(name: str) -> str:
    return {"arc_challenge": "arc_c", "arc_easy": "arc_e", "commonsense_qa": "csqa", "jeopardy_all": "jeopardy",
            "lambada_openai": "lambada", "openbook_qa": "obqa", "triviaqa_sm_sub": "triviaqa", "winogrande": "wino",
            "mmlu_redux": "mmlu"}.get(name, name)


def _fmt(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def markdown_tables(comp: Comparison) -> str:
    """Two markdown tables: held-out loss per set (+ average) and MC accuracy per set (+ average)."""
    lines = ["Held-out mean token loss (lower is better)", ""]
    head = ["method"] + [_short(s) for s in comp.sets] + ["avg"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in comp.rows:
        if r["method"] == "chance":
            continue
        lines.append("| " + " | ".join([r["method"]] + [_fmt(r["heldout_loss"].get(s)) for s in comp.sets]
                                        + [_fmt(r["avg_loss"])]) + " |")
    lines += ["", "Held-out multiple-choice accuracy %, log-likelihood (sum over choice tokens)", ""]
    head = ["method"] + [_short(s) for s in comp.mc_sets] + ["avg"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in comp.rows:
        lines.append("| " + " | ".join([r["method"]] + [_fmt(r["mc_accuracy"].get(s), True) for s in comp.mc_sets]
                                        + [_fmt(r["avg_mc_accuracy"], True)]) + " |")
    lines += ["", "Summary", ""]
    head = ["method", "avg held-out loss", "avg MC acc %", "avg MC acc_norm %", "final train loss", "epochs over mixture"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in comp.rows:
        lines.append("| " + " | ".join([r["method"], _fmt(r["avg_loss"]), _fmt(r["avg_mc_accuracy"], True),
                                        _fmt(r.get("avg_mc_accuracy_norm"), True), _fmt(r.get("final_train_loss")),
                                        f"{r['epochs']:.2f}" if r.get("epochs") is not None else "-"]) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- seeds
def across_seeds(comps: Sequence[Comparison], baseline: str = "random") -> list[dict]:
    """Per method over S comparisons (one evaluation model per method and seed): mean and standard error
    of the average held-out loss, and the *paired* difference against ``baseline`` (method minus baseline,
    seed by seed: the same data order and initial weights), its standard error and ratio."""
    methods = [r["method"] for r in comps[0].rows if r["method"] != "chance"]
    per = {m: np.array([next(r["avg_loss"] for r in c.rows if r["method"] == m) for c in comps]) for m in methods}
    S = len(comps)

    def se(x):
        return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")

    out = []
    for m in methods:
        row = {"method": m, "seeds": S, "mean_loss": float(per[m].mean()), "se_loss": se(per[m]),
               "losses": [float(v) for v in per[m]]}
        if baseline in per and m != baseline:
            d = per[m] - per[baseline]
            row |= {"paired_diff": float(d.mean()), "paired_se": se(d),
                    "paired_t": float(d.mean() / se(d)) if S > 1 and se(d) > 0 else float("nan")}
        out.append(row)
    return out


def seeds_table(rows: list[dict], baseline: str = "random") -> str:
    head = ["method", "mean avg held-out loss ± SE", f"paired difference vs {baseline} ± SE", "difference / SE", "per seed"]
    lines = [f"Across {rows[0]['seeds']} seeds (evaluation models with different initial weights and data order)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: r["mean_loss"]):
        diff = (f"{r['paired_diff']:+.4f} ± {r['paired_se']:.4f}" if "paired_diff" in r else "-")
        t = f"{r['paired_t']:+.1f}" if np.isfinite(r.get("paired_t", float("nan"))) else "-"
        lines.append("| " + " | ".join([r["method"], f"{r['mean_loss']:.4f} ± {r['se_loss']:.4f}", diff, t,
                                        " ".join(f"{v:.4f}" for v in r["losses"])]) + " |")
    return "\n".join(lines) + "\n"


def optimum_vs_controls(comps: Sequence[Comparison], optimum: str = "quadmix") -> list[dict]:
    """QuaDMix (``optimum``) against every other method (the controls: random, english-random, each
    ``<criterion>-only``, criteria-mean, DSIR, RegMix), *paired* over the S comparisons: per seed the
    difference ``optimum - control`` of the average held-out loss (same seed: the same data order and
    initial weights), its mean, its standard error across seeds (``sd(d, ddof=1) / sqrt(S)``), the
    ratio of the two, and how many seeds the optimum wins. Empty when the optimum is not compared."""
    methods = [r["method"] for r in comps[0].rows if r["method"] != "chance"]
    if optimum not in methods:
        return []
    per = {m: np.array([next(r["avg_loss"] for r in c.rows if r["method"] == m) for c in comps]) for m in methods}
    S = len(comps)
    out = []
    for m in methods:
        if m == optimum:
            continue
        d = per[optimum] - per[m]
        se = float(np.std(d, ddof=1) / np.sqrt(S)) if S > 1 else float("nan")
        out.append({"control": m, "seeds": S, "diffs": [float(v) for v in d], "mean_diff": float(d.mean()),
                    "se_diff": se, "t": float(d.mean() / se) if S > 1 and se > 0 else float("nan"),
                    "optimum_wins": int((d < 0).sum()), "control_mean": float(per[m].mean()),
                    "optimum_mean": float(per[optimum].mean())})
    return out


def controls_table(rows: list[dict], optimum: str = "quadmix") -> str:
    """The paired table of :func:`optimum_vs_controls` (negative: the optimum's held-out loss is lower)."""
    if not rows:
        return ""
    S = rows[0]["seeds"]
    head = ["control", "control mean loss", f"{optimum} - control, per seed", "mean ± SE (paired)", "mean / SE",
            f"seeds {optimum} wins"]
    lines = [f"{optimum} against each control, paired over {S} seed(s) (same data order and initial weights per seed; "
             f"negative = {optimum} has the lower held-out loss)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        se = f"{r['se_diff']:.4f}" if np.isfinite(r["se_diff"]) else "-"
        t = f"{r['t']:+.1f}" if np.isfinite(r["t"]) else "-"
        lines.append("| " + " | ".join([r["control"], f"{r['control_mean']:.4f}", " ".join(f"{v:+.4f}" for v in r["diffs"]),
                                        f"{r['mean_diff']:+.4f} ± {se}", t, f"{r['optimum_wins']}/{S}"]) + " |")
    return "\n".join(lines) + "\n"
