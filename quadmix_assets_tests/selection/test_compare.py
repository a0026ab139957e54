import numpy as np
import pyarrow as pa
import pytest
import torch

from quadmix_assets.proxy.model import (continuation_logprobs, evaluate_losses, forward, init_params, preset,
                                        train_proxies)
from quadmix_assets.proxy.targets import TargetExample, TargetSet, target_table
from quadmix_assets.proxy.tokenizer import eos_id
from quadmix_assets.selection.compare import (HeldoutSet, MCItem, choose, compare_methods, evaluate_heldout, fit_to,
                                              heldout_eval_data, markdown_tables)
from quadmix_assets.selection.dsir import manifest_from

from .conftest import make_pool

CFG = preset("cpu-tiny", vocab_size=300, seq_len=32, batch_size=4, steps=3, warmup_steps=1, d_model=32, d_ff=64, n_heads=2)


def _state(K=2, cfg=CFG):
    p = init_params(cfg, list(range(K)))
    return {"config": cfg.__dict__, "params": p}


def test_choose_and_accuracy_with_fake_logprobs():
    assert choose(np.array([[-3.0, -1.0, -2.0], [-1.0, -1.0, -5.0]])).tolist() == [1, 0]  # ties: first index
    # two models; each pair's score is looked up from a table, so the right answer is known by hand
    items = [MCItem(pairs=[((0,), (1,)), ((0,), (2,)), ((0,), (3,))], gold=1, norm=[1, 1, 1]),
             MCItem(pairs=[((0,), (4,)), ((0,), (5,))], gold=0, norm=[1, 1])]
    hs = {"mc": HeldoutSet(name="mc", lm_pairs=[((0,), (7, 7))], mc=items, n_examples=2)}
    score = {1: (-5.0, -1.0), 2: (-1.0, -2.0), 3: (-9.0, -3.0), 4: (-2.0, -2.0), 5: (-1.0, -8.0), 7: (-3.0, -6.0)}
    seen = []

    def fake(pairs):
        seen.append(len(pairs))
        lp = np.array([[score[p[1][0]][k] for p in pairs] for k in range(2)])
        return lp, np.array([len(p[1]) for p in pairs])

    def fake_loss(seqs):
        seen.append({k: [list(s) for s in v] for k, v in seqs.items()})
        return {k: np.array([1.5, 3.0]) for k in seqs}

    res = evaluate_heldout(hs, fake, fake_loss)
    # the texts in one loss call (EOS + text), every choice of every set in one log-prob call
    assert seen == [{"mc": [[0, 7, 7]]}, 5]
    # model 0: item 1 scores (-5, -1, -9) -> picks 1 (gold 1, right); item 2 (-2, -1) -> picks 1 (gold 0, wrong)
    # model 1: item 1 scores (-1, -2, -3) -> picks 0 (wrong); item 2 (-2, -8) -> picks 0 (right)
    assert res["mc"]["accuracy"].tolist() == [0.5, 0.5]
    assert res["mc"]["loss"].tolist() == [3.0 / 2, 6.0 / 2]  # the loss evaluator's
    assert res["mc"]["chance"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_length_normalised_accuracy():
    items = [MCItem(pairs=[((0,), (1,)), ((0,), (2,))], gold=1, norm=[1, 10])]
    hs = {"s": HeldoutSet(name="s", lm_pairs=[], mc=items, n_examples=1)}
    res = evaluate_heldout(hs, lambda pairs: (np.array([[-2.0, -5.0]]), np.array([1, 1])), lambda seqs: {"s": np.zeros(1)})
    assert res["s"]["accuracy"].tolist() == [0.0]  # sum: -2 beats -5
    assert res["s"]["accuracy_norm"].tolist() == [1.0]  # per byte: -0.5 beats -2


def test_continuation_logprobs_match_direct_computation():
    st = _state(K=2)
    rng = np.random.default_rng(0)
    pairs = [(list(rng.integers(0, 300, size=int(a))), list(rng.integers(0, 300, size=int(b))))
             for a, b in [(1, 5), (4, 2), (10, 1), (3, 30), (40, 4)]]
    lp, n = continuation_logprobs(st, pairs, max_batch_tokens=64)
    for i, (ctx, cont) in enumerate(pairs):
        cont = cont[:CFG.seq_len]  # a long continuation keeps its first seq_len tokens
        s = ctx[-(CFG.seq_len + 1 - len(cont)):] + cont  # a long context is cut from the left
        nc = len(cont)
        assert len(s) <= CFG.seq_len + 1
        x = torch.tensor(s)[None, None].expand(2, 1, -1)
        logp = torch.log_softmax(forward(st["params"], CFG, x[..., :-1]).float(), -1)[:, 0]
        tok = logp.gather(-1, torch.tensor(s[1:])[None, :, None].expand(2, -1, 1))[..., 0]
        want = tok[:, len(s) - 1 - nc:].sum(-1).double().numpy()
        assert n[i] == nc
        assert np.allclose(lp[:, i], want, atol=1e-4)
    # a held-out text scored as (EOS, text) gives exactly evaluate_losses' mean token loss
    seqs = [np.array([0] + list(rng.integers(1, 300, size=k))) for k in (5, 17, 50)]
    lp, n = continuation_logprobs(st, [((s[0],), s[1:]) for s in seqs])
    ref = evaluate_losses(st, {"x": seqs})["x"]
    assert np.allclose(-lp.sum(1) / n.sum(), ref, atol=1e-5)
    more = {"x": seqs, "y": [np.array([0] + list(rng.integers(1, 300, size=k))) for k in (3, 60, 9, 33)]}
    # bounded logits (one proxy, one sequence per pass: RegMix's hundreds of proxies) give the same losses
    got, want = evaluate_losses(st, more, max_logits=CFG.seq_len * CFG.vocab_size), evaluate_losses(st, more)
    assert set(got) == {"x", "y"} and all(np.allclose(got[k], want[k], atol=1e-5) for k in want)


def test_mc_accuracy_of_a_model_that_learned_the_answer(tokenizer):
    # train a tiny model on a text that always says "the answer is oven"; it must then prefer "oven"
    text = " ".join(["the answer is oven ."] * 400)
    ids = np.array([eos_id(tokenizer)] + tokenizer.encode(text).ids)
    cfg = preset("cpu-tiny", vocab_size=tokenizer.get_vocab_size(), seq_len=16, batch_size=8, steps=60, warmup_steps=5,
                 lr=1e-2, d_model=32, d_ff=64, n_heads=2)
    n = len(ids) // 17
    run = train_proxies(cfg, ids[: n * 17].reshape(1, n, 17))
    sets = {"quiz": TargetSet("quiz", [TargetExample(text="the answer is " + c, choices=("goal", "oven", "team"), gold=g,
                                                       prefix="the answer is") for c, g in (("oven", 1),) * 30],
                              multiple_choice=True)}
    table = target_table(sets)
    held = heldout_eval_data(table, tokenizer, max_examples=None, seed=0)
    assert held["quiz"].n_examples == held["quiz"].n_heldout > 0
    res = evaluate_heldout(held, lambda p: continuation_logprobs(run.state, p), lambda seqs: evaluate_losses(run.state, seqs))
    assert res["quiz"]["accuracy"].tolist() == [1.0]
    # the gold index moved: now the model is always wrong
    sets["quiz"].examples = [TargetExample(text="the answer is goal", choices=("goal", "oven", "team"), gold=0,
                                           prefix="the answer is")] * 30
    held = heldout_eval_data(target_table(sets), tokenizer, max_examples=None, seed=0)
    res = evaluate_heldout(held, lambda p: continuation_logprobs(run.state, p), lambda seqs: evaluate_losses(run.state, seqs))
    assert res["quiz"]["accuracy"].tolist() == [0.0]


class SpyTokenizer:
    """A tokenizer that records every text it is asked to encode."""

    def __init__(self, tok):
        self.tok = tok
        self.seen: list[str] = []

    def encode(self, text):
        self.seen.append(text)
        return self.tok.encode(text)

    def encode_batch(self, texts):
        self.seen.extend(texts)
        return self.tok.encode_batch(texts)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def _targets_with_markers(n=40):
    """Two sets (one MC, one plain); every target-half string carries the marker TARGETHALF."""
    sets = {"plain": TargetSet("plain", [TargetExample(text=f"the team won match {i}") for i in range(n)]),
            "mc": TargetSet("mc", [TargetExample(text=f"q{i} Answer: oven", choices=("oven", "goal", "salt"), gold=0,
                                                 prefix=f"q{i} Answer:") for i in range(n)], multiple_choice=True)}
    t = target_table(sets)
    is_target = np.array([h == "target" for h in t["half"].to_pylist()])
    assert 0 < is_target.sum() < len(is_target)

    def mark(col):
        vals = t[col].to_pylist()
        out = []
        for v, tg in zip(vals, is_target):
            if tg and v is not None:
                v = [f"TARGETHALF {c}" for c in v] if isinstance(v, list) else f"TARGETHALF {v}"
            out.append(v)
        return pa.array(out, t.schema.field(col).type)

    for col in ("text", "prefix", "choices"):
        t = t.set_column(t.schema.get_field_index(col), col, mark(col))
    return t


def test_heldout_only_and_cap(tokenizer):
    t = _targets_with_markers()
    spy = SpyTokenizer(tokenizer)
    held = heldout_eval_data(t, spy, max_examples=5, seed=1)
    assert spy.seen and not any("TARGETHALF" in s for s in spy.seen)
    assert held["plain"].n_examples == 5 and held["plain"].n_heldout > 5
    assert len(held["mc"].mc) == 5
    again = heldout_eval_data(t, tokenizer, max_examples=5, seed=1)
    assert [p[1] for p in again["plain"].lm_pairs] == [p[1] for p in held["plain"].lm_pairs]
    other = heldout_eval_data(t, tokenizer, max_examples=5, seed=2)
    assert [p[1] for p in other["plain"].lm_pairs] != [p[1] for p in held["plain"].lm_pairs]


def test_compare_methods_table(tokenizer):
    table, _, read = make_pool((30, 30, 30), seed=0)
    d = table["domain"].to_numpy()
    manifests = {"math": manifest_from(table, np.flatnonzero(d == 0)),
                 "cooking": manifest_from(table, np.flatnonzero(d == 1)[:3])}  # tiny: wraps around
    t = _targets_with_markers()
    spy = SpyTokenizer(tokenizer)
    logs = []
    comp = compare_methods(manifests, read, spy, t, CFG, budget_tokens=4 * 33 * 5, max_examples=8, seed=0,
                           log=logs.append)
    assert not any("TARGETHALF" in s for s in spy.seen)
    assert comp.config.steps == 5 and comp.config.vocab_size == tokenizer.get_vocab_size()
    assert comp.budget_tokens == 5 * 4 * 33
    assert [r["method"] for r in comp.rows] == ["math", "cooking", "chance"]
    assert comp.sets == ["mc", "plain"] and comp.mc_sets == ["mc"]
    for r in comp.rows[:2]:
        assert set(r["heldout_loss"]) == {"mc", "plain"} and set(r["mc_accuracy"]) == {"mc"}
        assert np.isfinite(r["avg_loss"]) and 0 <= r["avg_mc_accuracy"] <= 1
        assert r["train_tokens"] == comp.budget_tokens
    assert comp.rows[0]["epochs"] == pytest.approx(1.0)
    assert comp.rows[1]["epochs"] > 1.0  # the three-document mixture is repeated
    assert comp.rows[2]["avg_mc_accuracy"] == pytest.approx(1 / 3)
    assert comp.info["examples_per_set"] == {"mc": 8, "plain": 8}
    md = markdown_tables(comp)
    assert md.count("| math |") == 3 and "| chance |" in md


def test_fit_to_wraps():
    a = np.arange(6).reshape(3, 2)
    assert fit_to(a, 5)[:, 0].tolist() == [0, 2, 4, 0, 2]
    with pytest.raises(ValueError):
        fit_to(a[:0], 2)


def test_across_seeds_gives_mean_se_and_paired_difference():
    from quadmix_assets.selection.compare import Comparison, across_seeds, seeds_table

    def comp(losses):
        rows = [{"method": m, "avg_loss": v} for m, v in losses.items()] + [{"method": "chance", "avg_loss": None}]
        return Comparison(rows=rows, sets=[], mc_sets=[], config=None, budget_tokens=0)

    comps = [comp({"random": 6.0, "quadmix": 5.9}), comp({"random": 6.2, "quadmix": 6.05}), comp({"random": 6.1, "quadmix": 6.0})]
    rows = {r["method"]: r for r in across_seeds(comps)}
    assert rows["random"]["mean_loss"] == pytest.approx(6.1) and rows["random"]["seeds"] == 3
    assert rows["random"]["se_loss"] == pytest.approx(np.std([6.0, 6.2, 6.1], ddof=1) / np.sqrt(3))
    d = np.array([-0.1, -0.15, -0.1])
    assert rows["quadmix"]["paired_diff"] == pytest.approx(d.mean())
    assert rows["quadmix"]["paired_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert "paired_diff" not in rows["random"]
    table = seeds_table(list(rows.values()))
    assert table.index("| quadmix") < table.index("| random") and "paired difference vs random" in table


def test_quadmix_against_each_control_is_paired_per_seed():
    from quadmix_assets.selection.compare import Comparison, controls_table, optimum_vs_controls

    losses = {"random": [5.0, 5.2, 4.9], "english-random": [5.1, 5.0, 4.8], "dclm-only": [4.7, 4.9, 4.6],
              "quadmix": [4.6, 4.95, 4.5]}
    comps = [Comparison(rows=[{"method": m, "avg_loss": v[i]} for m, v in losses.items()] + [{"method": "chance", "avg_loss": None}],
                        sets=[], mc_sets=[], config=None, budget_tokens=0) for i in range(3)]
    rows = {r["control"]: r for r in optimum_vs_controls(comps)}
    assert set(rows) == {"random", "english-random", "dclm-only"}
    d = np.array(losses["quadmix"]) - np.array(losses["dclm-only"])
    assert rows["dclm-only"]["diffs"] == pytest.approx(d.tolist())
    assert rows["dclm-only"]["mean_diff"] == pytest.approx(d.mean())
    assert rows["dclm-only"]["se_diff"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert rows["dclm-only"]["optimum_wins"] == 2 and rows["random"]["optimum_wins"] == 3
    table = controls_table(list(rows.values()))
    assert "| english-random |" in table and "2/3" in table and "paired over 3 seed(s)" in table
    # without the optimum there is nothing to pair
    assert optimum_vs_controls([Comparison(rows=[{"method": "random", "avg_loss": 1.0}], sets=[], mc_sets=[], config=None,
                                           budget_tokens=0)]) == []
