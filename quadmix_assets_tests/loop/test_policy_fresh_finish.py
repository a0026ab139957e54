"""A finished loop leaves nothing stale that it caused itself: the final regressor is recorded again (the same
regressor) before the export when Dagster sees it stale only because of proxies it does not learn from (the
optimum's, trained after the search), and only then. On plain facts (the pipeline test
test_finished_run_fresh.py checks it against Dagster's own stale-status resolver)."""

from __future__ import annotations

from quadmix_assets.loop.policy import SEARCH_OPTIMUM, Finished, State, Step, next_step
from quadmix_assets_tests.loop.test_policy import DRAWS, Table, reg


def _measured_optimum(**stale) -> Table:
    f = Table(search_rounds=1, reg=reg(DRAWS), losses={"d0": 6.0, "d1": 6.1, "opt": 6.01},
              found={"mixture_id": "opt", "spec": {"found_by": {"regressor_version": "r1"}}}, stale=stale)
    f.registered.append("opt")
    return f


def test_the_regressor_is_recorded_again_when_only_the_optimums_proxy_came_after_it():
    f = _measured_optimum(regressor_job=[("proxy_run", "opt")])
    step = next_step(f)
    assert isinstance(step, Step) and step.job == "regressor_job" and not step.partitioned, step
    f.stale = {}  # recorded again: fresh
    step = next_step(f)
    assert step.job == "export_job" and step.keys == ("opt",)
    f.exported["opt"] = SEARCH_OPTIMUM
    assert next_step(f) == Finished(export="opt", selected_as=SEARCH_OPTIMUM)


def test_a_regressor_stale_for_any_other_reason_is_not_recorded_again_by_the_export():
    # a proxy it learns from changed, a new code version, another input: those are the loop's own decisions
    # (refit, search again), never an unchanged record
    for causes in ([("proxy_run", "d0")], [("proxy_run", "opt"), ("proxy_noise", None)],
                   [("has a new code version", None)]):
        f = _measured_optimum(regressor_job=causes)
        assert next_step(f).job == "export_job", causes
    f = _measured_optimum(regressor_job=[("proxy_run", "opt")])
    f.states["regressor_job"] = State.FAILED
    assert next_step(f).job == "export_job"
