"""The loop driven by the ``quadmix_loop`` sensor alone gives what ``quadmix run`` gives (issue: one
orchestrator). Each tick of the sensor is evaluated as the daemon evaluates it; every run it requests is
executed as a run launcher would (its job, partition or range, and tags, nothing else); no ``quadmix``
code chooses anything in between. The same optimum and byte-identical export files as the runner's."""

from __future__ import annotations

from quadmix_assets_tests.pipeline.conftest import evaluate_sensor
from dagster import DagsterInstance, SensorResult, SkipReason

from quadmix_assets.definitions import build_definitions
from quadmix_assets.defs.operations.loop import loop_sensor
from .conftest import assert_same_export, evaluate_sensor, make_settings

MAX_TICKS = 60


def drive(settings, instance) -> tuple[list[str], str]:
    """Tick the sensor and run what it requests until it says the loop is finished; (jobs run, last skip)."""
    defs = build_definitions(settings)
    ran: list[str] = []
    for _ in range(MAX_TICKS):
        result = evaluate_sensor(loop_sensor, instance=instance, resources={"settings": settings}, definitions=defs)
        if isinstance(result, SkipReason):
            return ran, result.skip_message or ""
        assert isinstance(result, SensorResult) and result.run_requests, result
        for request in result.run_requests:
            job = defs.resolve_job_def(request.job_name)
            run = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags,
                                         raise_on_error=False)
            assert run.success, (request.job_name, request.partition_key)
            ran.append(request.job_name)
    raise AssertionError(f"the loop did not finish in {MAX_TICKS} ticks: {ran}")


def test_the_sensor_alone_reaches_the_same_export_as_quadmix_run(demo_run, two_shard_corpus, tmp_path):
    settings, _, summary, _ = demo_run
    other = make_settings(str(two_shard_corpus / "*.jsonl.gz"), tmp_path / "storage")
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        ran, last = drive(other, instance)
        assert "the loop is finished: exported" in last and summary.optimum in last, last
        # the stages in the loop's order, the rounds and the optimum's own mixture and proxy included
        assert ran[0] == "models_job" and ran[-1] == "export_job"
        # rounds_job twice: round 2's proposal, then (before the export) "every round exists" recorded after the
        # final regressor, so the finished run shows nothing stale (test_finished_run_fresh.py)
        assert ran.count("rounds_job") == 2 and ran.count("search_job") == 1 and ran.count("noise_job") == 1
        assert instance.get_dynamic_partitions("exports") == [summary.optimum]
        # a further tick starts nothing: the loop is finished and stays so
        again = evaluate_sensor(loop_sensor, instance=instance, resources={"settings": other}, definitions=build_definitions(other))
        assert isinstance(again, SkipReason)
    assert_same_export(settings.storage(), other.storage(), summary.optimum)
