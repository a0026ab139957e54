"""Every mixture's checks are its own: a run over a range of mixture partitions records one evaluation per
mixture, against that mixture's partition and the materialization it judged (the UI shows each mixture's
pass, warning or failure, never "skipped"), and the run's summary lists exactly the mixtures the checks
warned about. Read back from the instance as Dagster's UI reads it (the asset check partition records)."""

from __future__ import annotations

from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from quadmix_assets.dagster_support.partitions import mixtures_partitions

#: every check on a mixtures-partitioned asset: (asset, check)
MIXTURE_CHECKS = (
    ("mixture_scores", "mixture_covers_corpus"),
    ("mixture_manifest", "mixture_manifest_valid"),
    ("proxy_run", "proxy_loss_finite"),
)
DONE = (AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED)


def _latest_evaluations(instance, check_key: AssetCheckKey) -> dict:
    """partition -> the latest execution record of the check on it (what the UI shows per partition)."""
    out: dict = {}
    for rec in instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100_000):
        out.setdefault(rec.partition, rec)  # newest first
    return out


def test_every_mixture_check_is_recorded_against_its_own_partition(demo_run):
    _, instance, summary, lines = demo_run
    mixtures = instance.get_dynamic_partitions(mixtures_partitions.name)
    assert len(mixtures) > 8
    # the run judged several mixtures per Dagster run (ranges over its 2 workers): the case that recorded
    # one result naming no mixture
    ranged = [r for r in instance.get_runs() if r.tags.get("dagster/asset_partition_range_start")
              and r.job_name == "mixture_job"]
    assert ranged, "no run over a range of mixtures: the test would not see the range case"
    for asset, name in MIXTURE_CHECKS:
        key = AssetCheckKey(AssetKey(asset), name)
        latest = _latest_evaluations(instance, key)
        assert None not in latest, f"{name}: a result that names no mixture"
        infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info([key])}
        for mixture in mixtures:
            rec = latest.get(mixture)
            assert rec is not None, f"{name}[{mixture}]: never evaluated"
            assert rec.status in DONE, f"{name}[{mixture}]: {rec.status} (the UI shows it skipped)"
            evaluation = rec.evaluation
            assert evaluation.partition == mixture and evaluation.asset_key == AssetKey(asset)
            # it judged the mixture's latest materialization, so the UI shows it as the current result
            info = infos[mixture]
            assert info.is_current, f"{name}[{mixture}] judged an older materialization"
            assert evaluation.target_materialization_data is not None
            assert evaluation.target_materialization_data.storage_id == info.latest_materialization_storage_id


def test_summary_lists_exactly_the_mixtures_the_checks_warned_about(demo_run):
    _, instance, summary, lines = demo_run
    warned: dict[str, list[str]] = {}
    for asset, name in MIXTURE_CHECKS:
        for partition, rec in _latest_evaluations(instance, AssetCheckKey(AssetKey(asset), name)).items():
            ev = rec.evaluation
            if not ev.passed and ev.severity == AssetCheckSeverity.WARN:
                warned.setdefault(name, []).append(partition)
    # the warnings counted in the run's summary, by check, each naming its mixture (other checks, unpartitioned,
    # may warn too: they are listed under their own name)
    by_check = summary.warnings_by_check()
    names = {name for _, name in MIXTURE_CHECKS}
    assert {k: sorted(v) for k, v in by_check.items() if k in names} == {k: sorted(v) for k, v in warned.items()}
    done = next(line for line in lines if line.startswith("done in "))
    n = sum(len(v) for v in by_check.values())
    assert n == len(summary.check_warnings()) and (f"({n} warnings)" in done) == bool(n), done
    for name, partitions in warned.items():
        listed = next(line for line in lines if line.startswith(f"  warnings of {name} "))
        assert sorted(listed.split(": ", 1)[1].split(", ")) == sorted(partitions), listed
    # a mixture with a corpus domain that got no tokens is flagged as a WARN of its own manifest check
    for rec in _latest_evaluations(instance, AssetCheckKey(AssetKey("mixture_manifest"), "mixture_manifest_valid")).values():
        ev = rec.evaluation
        uncovered = ev.metadata["domains_without_tokens"].value
        assert ev.passed == (not uncovered and ev.metadata["tokens"].value > 0), (rec.partition, uncovered)
        if uncovered and ev.metadata["rows_point_at_ids"].value and ev.metadata["copies_at_least_one"].value:
            assert ev.severity == AssetCheckSeverity.WARN and rec.partition in warned.get("mixture_manifest_valid", [])
