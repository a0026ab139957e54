"""The loop's decisions (quadmix_assets.loop.policy) on plain facts: the stage order, what a failure does,
when the rounds stop, the search, the fallback and the refresh policy. The facts here are a table of
states; the pipeline tests (test_loop_sensor.py, the runner's) check them against a real instance."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from quadmix_assets.loop.policy import (
    BEST_MEASURED,
    EXPORT_MARGIN_NOISE,
    SEARCH_OPTIMUM,
    SELECTED_AS_TAG,
    SELECTION_TAG,
    compare_to_best,
    Finished,
    RefreshPolicy,
    State,
    Status,
    Step,
    next_step,
)

C, M, S, F = State.CURRENT, State.MISSING, State.STALE, State.FAILED
DRAWS = ["d0", "d1", "d2", "d3"]
BASE = ["random"]


@dataclass
class Table:
    """Facts as a table: every job (partition) current unless set otherwise."""

    states: dict = field(default_factory=dict)
    search_rounds: int = 2
    registered: list = field(default_factory=lambda: DRAWS + BASE)
    rounds: dict = field(default_factory=lambda: {k: 1 for k in DRAWS})
    trained: list = field(default_factory=lambda: list(DRAWS))
    reg: dict | None = None
    decision: dict | None = None
    found: dict | None = None
    losses: dict = field(default_factory=dict)
    noise: float | None = 0.01
    exported: dict = field(default_factory=dict)
    previous: tuple | None = None
    share: float = 0.0
    stale: dict = field(default_factory=dict)  # one-run job -> Dagster's stale causes (dependency, partition)

    def shards(self):
        return ["s0", "s1"]

    def status(self, job, key=None):
        st = self.states.get((job, key), self.states.get(job, C))
        return Status(st, "" if st is C else f"{job} {st.value}")

    def mixtures(self):
        return list(self.registered)

    def last_round(self):
        return max([r for k, r in self.rounds.items() if k in self.registered], default=0)

    def training_ids(self):
        return list(self.trained)

    def regressor(self):
        return self.reg

    def rounds_decision(self):
        return self.decision

    def search_result(self):
        return self.found

    def proxy_loss(self, m):
        return self.losses.get(m)

    def best_measured(self):
        ids = [k for k in self.trained if k in self.losses]
        if not ids:
            return None, None
        best = min(ids, key=self.losses.get)
        return best, self.losses[best]

    def noise_sd(self):
        return self.noise

    def stale_because(self, job):
        return list(self.stale.get(job, []))

    def new_share(self):
        return self.share

    def exported_as(self, m):
        return self.exported.get(m)

    def previous_export(self):
        return self.previous


def reg(ids, version="r1", passed=True):
    return {"mixture_ids": list(ids), "regressor_version": version, "gate": {"passed": passed, "reason": "CV Spearman 0.1 is below 0.4"}}


def test_the_stages_come_in_order_and_each_waits_for_the_one_before():
    f = Table(states={"models_job": M})
    assert next_step(f).job == "models_job"
    f = Table(states={("shard_fast_job", "s1"): M, "distill_job": M})
    step = next_step(f)
    assert (step.job, step.keys, step.add_partitions) == ("shard_fast_job", ("s1",), {"shards": ("s1",)})
    f = Table(states={"distill_job": M, ("mixture_job", "d0"): M})
    assert next_step(f).job == "distill_job"
    f = Table(states={("mixture_job", "d2"): M, ("proxy_job", "d2"): M})
    step = next_step(f)
    assert step.job == "mixture_job" and step.keys == ("d2",) and step.group > 1
    f = Table(states={("proxy_job", "d1"): M, ("proxy_job", "random"): M, "noise_job": M})
    step = next_step(f)
    assert step.job == "proxy_job" and step.keys == ("d1", "random")


def test_a_failed_partition_is_left_out_and_a_failed_one_run_stage_stops_the_loop():
    f = Table(states={("shard_fast_job", "s0"): F, ("shard_model_job", "s1"): M, ("shard_model_job", "s0"): M})
    step = next_step(f)
    assert step.job == "shard_model_job" and step.keys == ("s1",)  # only the shard that was scored
    f = Table(states={("shard_fast_job", "s0"): F, ("shard_fast_job", "s1"): F})
    assert next_step(f) == Finished(stopped={"shards": "no shard could be read and scored"})
    done = next_step(Table(states={"distill_job": F}))
    assert isinstance(done, Finished) and list(done.stopped) == ["distill"]
    f = Table(states={("proxy_job", "d0"): F, ("proxy_job", "d1"): M})
    assert next_step(f).keys == ("d1",)


def test_the_rounds_refit_then_propose_then_stop_at_the_preset_count():
    f = Table()
    assert next_step(f).job == "regressor_job"  # no regressor yet
    f.reg = reg(DRAWS)
    assert next_step(f).job == "rounds_job"
    # round 2 registered: its mixtures and proxies first, then no more rounds (2 of 2): the search
    f.registered += ["r0", "r1"]
    f.rounds.update({"r0": 2, "r1": 2})
    f.decision = {"regressor_version": "r1", "proposed": 2}
    f.states[("mixture_job", "r0")] = M
    assert next_step(f).keys == ("r0",)
    del f.states[("mixture_job", "r0")]
    f.trained += ["r0", "r1"]
    step = next_step(f)
    assert step.job == "search_job"  # the regressor is refitted on every round by the search


def test_a_round_stopped_by_the_regressor_is_not_asked_again():
    f = Table(search_rounds=3, reg=reg(DRAWS), decision={"regressor_version": "r1", "proposed": 0, "why": "gain below noise"})
    step = next_step(f)
    assert step.job == "search_job" and "current regressor" in step.why  # straight to the search
    f.decision = {"regressor_version": "r0", "proposed": 0}  # decided by an older regressor: ask again
    assert next_step(f).job == "rounds_job"
    f = Table(search_rounds=3, reg=reg(DRAWS), states={"rounds_job": F})
    assert next_step(f).job == "search_job"


def test_the_optimum_is_made_measured_then_exported():
    f = Table(search_rounds=1, reg=reg(DRAWS), losses={"d0": 6.0, "d1": 6.1, "opt": 6.01},
              found={"mixture_id": "opt", "spec": {"found_by": {"regressor_version": "r1"}}})
    f.registered.append("opt")
    f.states[("mixture_job", "opt")] = M
    assert next_step(f).keys == ("opt",)
    f.states[("mixture_job", "opt")] = C
    f.states[("proxy_job", "opt")] = M
    assert next_step(f).keys == ("opt",) and next_step(f).job == "proxy_job"
    f.states[("proxy_job", "opt")] = C
    step = next_step(f)
    assert isinstance(step, Step) and step.job == "export_job" and step.keys == ("opt",)
    assert step.tags[SELECTED_AS_TAG] == SEARCH_OPTIMUM and step.add_partitions == {"exports": ("opt",)}
    assert json.loads(step.tags[SELECTION_TAG])["worse"] is False  # 6.01 - 6.0 <= sqrt(2) x 0.01
    f.exported["opt"] = SEARCH_OPTIMUM
    done = next_step(f)
    assert done == Finished(export="opt", selected_as=SEARCH_OPTIMUM)
    assert "within the noise of the best measured config d0" in done.notes[0]


def test_a_regressor_not_promoted_exports_the_best_measured_config_labelled():
    f = Table(search_rounds=1, reg=reg(DRAWS, passed=False), losses={"d0": 6.0, "d1": 5.9})
    step = next_step(f)
    assert step.job == "export_job" and step.keys == ("d1",)
    assert step.tags[SELECTED_AS_TAG].startswith("best measured config (proxy loss 5.9); regressor not promoted: CV Spearman")
    f = Table(search_rounds=1, reg=reg(DRAWS, passed=False), trained=[])
    assert isinstance(next_step(f), Finished) and next_step(f).export is None


def test_an_optimum_worse_than_the_best_measured_by_more_than_the_margin_is_not_exported():
    f = Table(search_rounds=1, reg=reg(DRAWS), losses={"d0": 6.0, "opt": 6.05}, noise=0.01,
              found={"mixture_id": "opt", "spec": {"found_by": {"regressor_version": "r1"}}})
    step = next_step(f)  # by default: worse by 0.05 > sqrt(2) x 0.01
    assert step.keys == ("d0",) and "worse than the best measured" in step.tags[SELECTED_AS_TAG]
    step = next_step(f, RefreshPolicy(export_margin_noise=2.0))
    assert step.keys == ("d0",) and "worse than the best measured" in step.tags[SELECTED_AS_TAG]
    assert next_step(f, RefreshPolicy(export_margin_noise=10.0)).keys == ("opt",)
    assert next_step(f, RefreshPolicy(export_margin_noise=None)).keys == ("opt",)  # no margin: the search's pick


def test_the_issue_case_exports_the_best_measured_config_labelled_with_why():
    """The measured case: the optimum's proxy 6.939 (rank 13 of 25), the best measured 6.864; with a noise SD
    of 0.02 the difference 0.075 is above sqrt(2) x 0.02 = 0.028: the best measured config is exported."""
    f = Table(search_rounds=1, reg=reg(DRAWS), losses={"d0": 6.948, "d1": 6.864, "d2": 6.95, "d3": 6.898, "opt": 6.939},
              noise=0.02, found={"mixture_id": "opt", "spec": {"found_by": {"regressor_version": "r1"}}})
    f.registered.append("opt")
    step = next_step(f)
    assert step.job == "export_job" and step.keys == ("d1",)
    label = step.tags[SELECTED_AS_TAG]
    assert label.startswith(f"{BEST_MEASURED} (proxy loss 6.864); the search optimum opt measured proxy loss 6.9390")
    assert "by 0.0750 > 1.41 x noise SD 0.0200 = 0.0283" in label
    rec = json.loads(step.tags[SELECTION_TAG])
    assert rec["optimum"] == "opt" and rec["best_measured"] == "d1" and rec["worse"] is True
    assert math.isclose(rec["threshold"], math.sqrt(2) * 0.02)
    f.exported["d1"] = label
    done = next_step(f)
    assert done.export == "d1" and done.selected_as == label and "worse than the best measured config d1" in done.notes[0]
    # the exported config's measured loss is within the noise of the best measured config's (it is that config)
    assert f.losses[done.export] - min(f.losses[k] for k in f.trained) <= EXPORT_MARGIN_NOISE * f.noise


def test_the_export_rule_on_its_own_facts():
    sd = 0.01
    edge = math.sqrt(2) * sd
    assert compare_to_best("o", 6.0 + edge * 0.99, "b", 6.0, sd, EXPORT_MARGIN_NOISE)["worse"] is False
    assert compare_to_best("o", 6.0 + edge * 1.01, "b", 6.0, sd, EXPORT_MARGIN_NOISE)["worse"] is True
    same = compare_to_best("o", 5.9, "o", 5.9, sd, EXPORT_MARGIN_NOISE)
    assert same["worse"] is False and "has the lowest measured proxy loss" in same["why"]
    for missing in ({"optimum_loss": None}, {"best_loss": None}, {"noise_sd": None}, {"margin": None}):
        args = {"optimum": "o", "optimum_loss": 7.0, "best": "b", "best_loss": 6.0, "noise_sd": sd, "margin": 1.0} | missing
        out = compare_to_best(**args)
        assert out["worse"] is False and "not compared" in out["why"], missing
    # the noise not measured: the optimum stands (nothing says it is worse than noise)
    f = Table(search_rounds=1, reg=reg(DRAWS), losses={"d0": 6.0, "opt": 6.5}, noise=None,
              found={"mixture_id": "opt", "spec": {"found_by": {"regressor_version": "r1"}}})
    assert next_step(f).keys == ("opt",)


def test_a_refresh_re_exports_the_exported_mixture_and_retrains_only_when_the_policy_says():
    stale = {("proxy_job", k): S for k in DRAWS + BASE}
    f = Table(search_rounds=1, states=dict(stale), previous=("d0", "best measured config"), share=0.1)
    step = next_step(f)
    assert step.job == "export_job" and step.keys == ("d0",) and step.tags[SELECTED_AS_TAG] == "best measured config"
    f.exported["d0"] = "best measured config"
    assert next_step(f).export == "d0"
    # a large share of new documents, or "always": the stale proxies are retrained
    assert next_step(Table(states=dict(stale), previous=("d0", "x"), share=0.5)).job == "proxy_job"
    assert next_step(Table(states=dict(stale), previous=("d0", "x")), RefreshPolicy(reoptimise="always")).job == "proxy_job"
    # never exported: nothing to re-export, so the proxies are retrained
    assert next_step(Table(states=dict(stale))).job == "proxy_job"
