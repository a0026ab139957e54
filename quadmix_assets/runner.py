"""Materialize the whole graph in-process, stage by stage, into a persistent Dagster instance.

Stages: models -> every shard (documents, domain labels, quality scores) -> normaliser, criteria
evaluation and mixture configs -> every mixture (scores, manifest). Each shard and each mixture is one
run of its partitioned job, so a bad shard fails alone and the others go on; the UI shows every run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import DagsterInstance

from quadmix_assets.defs.partitions import shards_partitions
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.definitions import build_definitions
from quadmix_assets.storage import layout


# Dagster's console logger at WARNING: warnings (quarantined records, left-out shards) and errors show,
# per-step debug lines do not; every event is still in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class RunSummary:
    shards_ok: list[str] = field(default_factory=list)
    shards_failed: dict[str, str] = field(default_factory=dict)
    mixtures_ok: list[str] = field(default_factory=list)
    mixtures_failed: dict[str, str] = field(default_factory=dict)
    checks_run: int = 0
    checks_failed: list[str] = field(default_factory=list)  # "check[partition]: severity"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.mixtures_ok) and not self.mixtures_failed


def _failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            return data.error.message.strip().splitlines()[0] if data and data.error else "step failed"
    return "run failed"


def _metadata(result, asset_name: str) -> dict:
    for mat in result.get_asset_materialization_events():
        m = mat.materialization
        if m.asset_key.path[-1] == asset_name:
            return {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return {}


def run_pipeline(
    settings: QuadmixSettings,
    instance: DagsterInstance,
    log: Callable[[str], None] = lambda s: print(s, flush=True),
) -> RunSummary:
    summary = RunSummary()
    start = time.perf_counter()
    os.environ.setdefault("TQDM_DISABLE", "1")  # model loaders' progress bars; the runner prints progress
    defs = build_definitions(settings)
    refs = settings.shards()
    known = set(instance.get_dynamic_partitions(shards_partitions.name))
    new = [r.key for r in refs if r.key not in known]
    if new:
        instance.add_dynamic_partitions(shards_partitions.name, new)
    preset = settings.run_preset()
    log(f"quadmix: {len(refs)} shard(s) from {settings.corpus_glob}")
    log(f"         storage {settings.storage_root}, preset {preset.name} (K={preset.n_configs}), instance {instance.root_directory}")

    def execute(job_name: str, partition_key: str | None = None):
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            instance=instance, partition_key=partition_key, raise_on_error=False, run_config=QUIET
        )
        for evaluation in result.get_asset_check_evaluations():
            summary.checks_run += 1
            if not evaluation.passed:
                where = f"[{partition_key}]" if partition_key else ""
                severity = evaluation.severity.value
                summary.checks_failed.append(f"{evaluation.check_name}{where}: {severity}")
                if severity == "ERROR":
                    metadata = {k: getattr(v, "value", getattr(v, "data", v)) for k, v in evaluation.metadata.items()}
                    log(f"  check {evaluation.check_name}{where} FAILED: {metadata}")
        return result

    t = time.perf_counter()
    result = execute("models_job")
    if not result.success:
        raise RuntimeError(f"training the classifiers failed: {_failure_message(result)}")
    dom = _metadata(result, "domain_classifier")
    log(
        f"[models] domain classifier test accuracy {dom.get('test_accuracy', float('nan')):.3f}, "
        f"DCLM classifier ready ({time.perf_counter() - t:.1f}s)"
    )

    def per_shard(job_name: str, stage: str, keys: list[str]) -> None:
        for i, key in enumerate(keys, 1):
            t = time.perf_counter()
            result = execute(job_name, key)
            if result.success:
                md = _metadata(result, "documents")
                what = f"{md.get('documents')} docs, {md.get('quarantined')} quarantined" if md else "scored"
                log(f"[{stage} {i}/{len(keys)}] {key}: {what} ({time.perf_counter() - t:.1f}s)")
            else:
                summary.shards_failed[key] = _failure_message(result)
                log(f"[{stage} {i}/{len(keys)}] {key}: FAILED: {summary.shards_failed[key]}")

    per_shard("shard_fast_job", "shard", [r.key for r in refs])
    ok_keys = [r.key for r in refs if r.key not in summary.shards_failed]

    t = time.perf_counter()
    result = execute("distill_job")
    if not result.success:
        raise RuntimeError(f"distilling the transformer criteria failed: {_failure_message(result)}")
    parts = []
    for name in ("edu_student", "askllm_student"):
        md = _metadata(result, name)
        if md.get("mode") == "distill":
            parts.append(
                f"{name[:-8]}: teacher {md.get('teacher_docs_per_s', 0):.1f} docs/s on {md.get('sample_docs')} docs, "
                f"teacher-student rho {md.get('teacher_student_spearman_heldout', float('nan')):.2f}"
            )
        else:
            parts.append(f"{name[:-8]}: direct")
    log(f"[distill] {'; '.join(parts)} ({time.perf_counter() - t:.1f}s)")
    per_shard("shard_model_job", "transformer scores", ok_keys)
    summary.shards_ok = [k for k in ok_keys if k not in summary.shards_failed]

    t = time.perf_counter()
    result = execute("refresh_job")
    if not result.success:
        raise RuntimeError(f"normaliser / mixture configs failed: {_failure_message(result)}")
    norm = _metadata(result, "quality_normaliser")
    ev = _metadata(result, "criteria_evaluation")
    aucs = ", ".join(f"{k[8:]} {v:.3f}" for k, v in ev.items() if k.startswith("roc_auc_"))
    log(f"[normaliser] version {norm.get('normaliser_version')} over {norm.get('documents')} docs; ROC-AUC vs human votes: {aucs} ({time.perf_counter() - t:.1f}s)")

    storage = settings.storage()
    configs = storage.read_json(layout.mixture_configs())["configs"]
    for i, cfg in enumerate(configs, 1):
        t = time.perf_counter()
        result = execute("mixture_job", cfg["mixture_id"])
        if result.success:
            md = _metadata(result, "mixture_manifest")
            summary.mixtures_ok.append(cfg["mixture_id"])
            log(
                f"[mixture {i}/{len(configs)}] {cfg['mixture_id']} {cfg['name']}: {md.get('documents_selected')} docs, "
                f"{md.get('tokens_after')} tokens ({time.perf_counter() - t:.1f}s)"
            )
        else:
            summary.mixtures_failed[cfg["mixture_id"]] = _failure_message(result)
            log(f"[mixture {i}/{len(configs)}] {cfg['mixture_id']}: FAILED: {summary.mixtures_failed[cfg['mixture_id']]}")
    summary.seconds = time.perf_counter() - start
    log(
        f"done in {summary.seconds:.0f}s: {len(summary.shards_ok)} shard(s) ok, {len(summary.shards_failed)} failed; "
        f"{len(summary.mixtures_ok)} mixture(s) ok, {len(summary.mixtures_failed)} failed; "
        f"{summary.checks_run - len(summary.checks_failed)}/{summary.checks_run} asset checks passed"
        + (f" ({sum(f.endswith('WARN') for f in summary.checks_failed)} warnings, see the UI)" if summary.checks_failed else "")
    )
    sys.stdout.flush()
    return summary
