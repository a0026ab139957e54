"""Stage 6a: the LightGBM regressor from config numbers to proxy target loss (QUADMIX.md §5).

Fitted on every drawn or searched mixture whose proxy run finished with finite losses on the current
manifest (baselines rank without domains, so their numbers are not points of the search space); refitted
whenever proxy runs are added. A seeded share of the configs is held out to judge it; a blocking check
stops the search from promoting an optimum when the held-out Spearman rho is below the floor.
"""


import math
import tempfile
from pathlib import Path

import numpy as np
from dagster import (
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

from quadmix_assets.defs.k8s import pod_tags
from quadmix_assets.defs.labels import _markdown_table
from quadmix_assets.defs.mixtures import all_spec_dicts, mixture_configs
from quadmix_assets.defs.provenance import provenance
from quadmix_assets.defs.proxies import manifest_version, proxy_run
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.method import QuadMixParams
from quadmix_assets.mixing import MixtureSpec
from quadmix_assets.reporting.plots import png_markdown, predicted_vs_actual_png
from quadmix_assets.proxy.regressor import cross_validated_spearman, fit_regressor, save_booster
from quadmix_assets.storage import StorageRoot, content_hash, layout

REGRESSOR_VERSION = "mixture-regressor-v1"
MIN_POINTS = 4
REGRESSION_ORIGINS = ("random_draw", "search")


def training_points(storage: StorageRoot) -> tuple[list[MixtureSpec], np.ndarray, dict]:
    """Specs and target losses the regressor learns from, and counts of what was left out and why."""
    specs, y = [], []
    left_out = {"baseline": 0, "no_proxy_run": 0, "stale_proxy_run": 0, "failed_proxy_run": 0}
    for d in all_spec_dicts(storage):
        spec = MixtureSpec.from_dict(d)
        if not spec.domain_aware or spec.origin not in REGRESSION_ORIGINS:
            left_out["baseline"] += 1
            continue
        if not storage.exists(layout.proxy_run(spec.mixture_id)):
            left_out["no_proxy_run"] += 1
            continue
        run = storage.read_json(layout.proxy_run(spec.mixture_id))
        if run["manifest_version"] != manifest_version(storage, spec.mixture_id):
            left_out["stale_proxy_run"] += 1
            continue
        if run["status"] != "ok" or run["target_loss"] is None or not math.isfinite(run["target_loss"]):
            left_out["failed_proxy_run"] += 1
            continue
        specs.append(spec)
        y.append(float(run["target_loss"]))
    return specs, np.asarray(y, dtype=np.float64), left_out


def spearman_floor(settings: QuadmixSettings) -> float | None:
    return settings.run_preset().regressor_min_spearman


def below_floor(spearman: float | None, floor: float | None) -> bool:
    """Whether a held-out Spearman fails the floor (an undefined rho fails any floor)."""
    if floor is None:
        return False
    return spearman is None or not math.isfinite(spearman) or spearman < floor


def _plot_md(report: dict) -> str:
    png = predicted_vs_actual_png(report["valid_predicted"], report["valid_actual"])
    return png_markdown(png, "regressor: predicted vs actual target loss on held-out configs")


@asset(
    group_name="optimisation",
    op_tags=pod_tags("fanin"),
    code_version=REGRESSOR_VERSION,
    deps=[mixture_configs, AssetDep(proxy_run, partition_mapping=AllPartitionMapping())],
    kinds={"lightgbm"},
    description="LightGBM from a config's M*(N+4) numbers to its proxy's target loss, with a seeded held-out "
    "split (Spearman rho, MAE, feature importance, predicted-vs-actual plot); text-format model.",
)
def mixture_regressor(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    specs, y, left_out = training_points(storage)
    if len(specs) < MIN_POINTS:
        raise ValueError(f"only {len(specs)} finished proxy runs of drawn configs ({left_out}); need >= {MIN_POINTS}: materialize proxy_run first")
    X = np.stack([s.params.to_vector() for s in specs])
    names = QuadMixParams.feature_names(specs[0].params.n_domains, specs[0].params.n_criteria)
    booster, report = fit_regressor(X, y, feature_names=names, seed=preset.seed, valid_fraction=preset.regressor_valid_fraction)
    cv = cross_validated_spearman(X, y, seed=preset.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.txt"
        save_booster(booster, path)
        text = path.read_text()
        uri = storage.write_file(layout.regressor_model(), path)
    version = content_hash({"model": text})
    report |= cv
    report |= {
        "regressor_version": version,
        "mixture_ids": [s.mixture_id for s in specs],
        "valid_mixture_ids": [specs[i].mixture_id for i in report["valid_rows"]],
        "left_out": left_out,
        "target_loss_min": float(y.min()),
        "target_loss_max": float(y.max()),
        "provenance": provenance(context, REGRESSOR_VERSION, params={"seed": preset.seed, "valid_fraction": preset.regressor_valid_fraction},
                                 inputs={"proxy_runs": {s.mixture_id: storage.file_sha256(layout.proxy_run(s.mixture_id)) for s in specs}}),
    }
    storage.write_json(layout.regressor_report(), report)
    top = list(report["importance_gain"].items())[:12]
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri),
            "regressor_version": version,
            "configs": len(specs),
            "n_train": report["n_train"],
            "n_valid": report["n_valid"],
            "spearman_heldout": report["spearman"],
            "mae_heldout": report["mae"],
            "mae_constant_predictor": report["mae_constant"],
            "cv_spearman": report["cv_spearman"],
            "cv_mae": report["cv_mae"],
            "best_iteration": report["best_iteration"],
            "target_loss_range": MetadataValue.json([report["target_loss_min"], report["target_loss_max"]]),
            "left_out": MetadataValue.json(left_out),
            "feature_importance": MetadataValue.md(_markdown_table(["feature", "gain"], [[n, f"{g:.4g}"] for n, g in top])),
            "predicted_vs_actual": MetadataValue.md(_plot_md(report)),
        },
        data_version=DataVersion(version),
    )


@asset_check(
    asset=mixture_regressor,
    blocking=True,
    description="Blocking: the regressor's held-out Spearman rho reaches the configured floor "
    "(`regressor_min_spearman`); below it the search does not run and no optimum is promoted.",
)
def regressor_fit_quality(settings: QuadmixSettings) -> AssetCheckResult:
    storage = settings.storage()
    report = storage.read_json(layout.regressor_report())
    floor = spearman_floor(settings)
    rho = report["spearman"]
    return AssetCheckResult(
        passed=not below_floor(rho, floor),
        severity=AssetCheckSeverity.ERROR,
        metadata={"spearman_heldout": rho if rho is not None else float("nan"),
                  "floor": floor if floor is not None else "none", "n_valid": report["n_valid"],
                  "cv_spearman": report.get("cv_spearman", float("nan")), "regressor_version": report["regressor_version"]},
    )
