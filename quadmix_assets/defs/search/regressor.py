"""Stage 6a: the regressor from configs to proxy target loss (QUADMIX.md §5).

Fitted on every config of the registered rounds (random draws, then later rounds' proposals) whose proxy
finished on the current manifest; baselines (no domains) and the promoted optimum are never training
points. Candidates (model x feature set: the raw config numbers and/or the statistics of the sampled
mixture) are compared by repeated K-fold CV Spearman rho and the best is refitted on all points
(:mod:`quadmix_assets.proxy.surrogate`; saved as JSON). A blocking check compares the CV Spearman with the
measured noise ceiling (``proxy_noise``): below ``regressor_ceiling_share`` of it, no optimum is promoted.
"""


import math

from dagster import (
    AssetKey,
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from quadmix_assets import keys
from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import uri_metadata
from quadmix_assets.proxy.optimise import fit, training_set
from quadmix_assets.proxy.regression_gate import gate
from quadmix_assets.reporting import markdown_table
from quadmix_assets.storage import content_hash, layout

REGRESSOR_VERSION = "mixture-regressor-v2"
MIN_POINTS = 4


def _num(v) -> float:
    return float(v) if v is not None and math.isfinite(v) else float("nan")


@asset(
    group_name="optimisation",
    op_tags=pod_tags("fanin"),
    code_version=REGRESSOR_VERSION,
    deps=[AssetKey(keys.MIXTURE_CONFIGS), AssetDep(AssetKey(keys.PROXY_RUN), partition_mapping=AllPartitionMapping()), AssetKey(keys.PROXY_NOISE)],
    kinds={"scikitlearn"},
    description="Regressor from a config (its numbers and the statistics of the mixture it samples) to its "
    "proxy's target loss; model and features chosen by repeated K-fold CV Spearman, shown beside the "
    "measured noise ceiling; JSON, never pickled.",
)
def mixture_regressor(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    ts = training_set(storage)
    if len(ts.specs) < MIN_POINTS:
        raise ValueError(f"only {len(ts.specs)} finished proxy runs of drawn configs ({ts.left_out}); need >= {MIN_POINTS}: "
                         "materialize proxy_run first")
    sur, _ = fit(storage, preset, ts)
    noise = storage.read_json(layout.proxy_noise()) if storage.exists(layout.proxy_noise()) else {}
    verdict = gate(sur.report["cv_spearman"], noise.get("repeat_spearman"), preset)
    text = sur.to_json()
    version = content_hash({"surrogate": text})
    uri = storage.write_bytes(layout.surrogate_model(), text.encode("utf-8"))
    report = {
        **sur.report,
        "regressor_version": version,
        "model": sur.model_name,
        "feature_set": sur.feature_set,
        "spearman": sur.report["cv_spearman"],  # the judged figure: repeated K-fold CV Spearman
        "mixture_ids": [s.mixture_id for s in ts.specs],
        "rounds": sorted(set(ts.rounds)),
        "points_per_round": {str(r): ts.rounds.count(r) for r in sorted(set(ts.rounds))},
        "left_out": ts.left_out,
        "target_loss_min": float(ts.y.min()),
        "target_loss_max": float(ts.y.max()),
        "noise_ceiling": noise.get("repeat_spearman"),
        "gate": verdict,
        "provenance": provenance(context, REGRESSOR_VERSION, params={"seed": preset.seed, "folds": preset.regressor_cv_folds,
                                                                     "repeats": preset.regressor_cv_repeats,
                                                                     "feature_docs": preset.feature_docs},
                                 inputs={"proxy_runs": {s.mixture_id: storage.file_sha256(layout.proxy_run(s.mixture_id)) for s in ts.specs}}),
    }
    storage.write_json(layout.regressor_report(), report)
    rows = [[k, f"{v['cv_spearman']:.3f} ± {v['cv_spearman_sd']:.3f}", f"{v['cv_mae']:.4f}", f"{v['cv_mae_constant']:.4f}"]
            for k, v in sur.report["candidates"].items()]
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri), **uri_metadata(uri),
            "regressor_version": version,
            "configs": len(ts.specs),
            "rounds": MetadataValue.json(report["points_per_round"]),
            "chosen": sur.report["chosen"],
            "cv_spearman": _num(sur.report["cv_spearman"]),
            "cv_spearman_sd": _num(sur.report["cv_spearman_sd"]),
            "cv_mae": _num(sur.report["cv_mae"]),
            "cv_mae_constant_predictor": _num(sur.report["cv_mae_constant"]),
            "noise_ceiling_repeat_spearman": _num(noise.get("repeat_spearman")),
            "share_of_noise_ceiling": _num(verdict.get("share_of_ceiling")),
            "gate": verdict["reason"],
            "candidates": MetadataValue.md(markdown_table(["model/features", "CV Spearman (mean ± SD over repeats)", "CV MAE",
                                                           "constant MAE"], rows)),
            "feature_importance": MetadataValue.md(markdown_table(["feature", "importance"], [[n, f"{g:.4g}"] for n, g in
                                                                                          sur.report["importance"].items()])),
        },
        data_version=DataVersion(version),
    )


@asset_check(
    asset=mixture_regressor,
    blocking=True,
    description="Blocking: the regressor's repeated-CV Spearman rho reaches `regressor_ceiling_share` of the "
    "measured noise ceiling (the repeat Spearman of proxy_noise; the fixed `regressor_min_spearman` floor "
    "when no ceiling is measured). Below it the search does not promote an optimum.",
)
def regressor_fit_quality(settings: QuadmixSettings) -> AssetCheckResult:
    storage = settings.storage()
    report = storage.read_json(layout.regressor_report())
    verdict = report["gate"]
    return AssetCheckResult(
        passed=bool(verdict["passed"]),
        severity=AssetCheckSeverity.ERROR,
        metadata={"cv_spearman": _num(report["cv_spearman"]), "noise_ceiling": _num(report.get("noise_ceiling")),
                  "threshold": _num(verdict.get("threshold")), "reason": verdict["reason"],
                  "regressor_version": report["regressor_version"], "chosen": report["chosen"]},
    )
