"""Stage 6b: the search (QUADMIX.md §5): rank fresh configs from the same space with the regressor, take
the element-wise mean of the top k, and register it as a new `mixtures` partition that says how it was
found. Refuses to promote when the regressor's held-out Spearman rho is below the floor."""


from dagster import AssetExecutionContext, DataVersion, Failure, MaterializeResult, MetadataValue, asset

from quadmix_assets.defs.k8s import pod_tags
from quadmix_assets.defs.labels import _markdown_table
from quadmix_assets.defs.mixtures import mixture_configs, searched_specs
from quadmix_assets.defs.partitions import mixtures_partitions
from quadmix_assets.defs.provenance import provenance
from quadmix_assets.defs.regressor import below_floor, mixture_regressor, spearman_floor
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.method import ParamSpace
from quadmix_assets.mixing import MixtureSpec
from quadmix_assets.proxy.regressor import load_booster, search
from quadmix_assets.storage import content_hash, layout

SEARCH_VERSION = "mixture-search-v1"
SEARCH_SEED_OFFSET = 1  # fresh configs: never the seed the K training configs were drawn with


@asset(
    group_name="optimisation",
    op_tags=pod_tags("fanin"),
    code_version=SEARCH_VERSION,
    deps=[mixture_regressor, mixture_configs],
    kinds={"json"},
    description="The optimum: the mean of the top-k of `search_samples` fresh configs ranked by the regressor, "
    "registered as a new mixture partition (origin `search`) naming the regressor that found it.",
)
def mixture_search(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    report = storage.read_json(layout.regressor_report())
    floor = spearman_floor(settings)
    if below_floor(report["spearman"], floor):
        raise Failure(
            description=f"not promoting a search result: regressor {report['regressor_version']} has held-out "
            f"Spearman rho {report['spearman']} < floor {floor} (regressor_min_spearman)",
            metadata={"spearman_heldout": report["spearman"], "floor": floor},
        )
    space_doc = storage.read_json(layout.mixture_configs())["space"]
    space = ParamSpace(space_doc["n_domains"], len(space_doc["criteria"]), omega_max=space_doc["omega_max"],
                       lambda_scale=space_doc["lambda_scale"])
    with storage.local_file(layout.regressor_model()) as path:
        booster = load_booster(path)
    seed = preset.seed + SEARCH_SEED_OFFSET
    best, info = search(booster, space, n=preset.search_samples, seed=seed, top_k=preset.search_top_k)
    found_by = {"regressor_version": report["regressor_version"], "regressor_spearman_heldout": report["spearman"],
                "regressor_configs": len(report["mixture_ids"]), **info}
    spec = MixtureSpec(
        name=f"search-{report['regressor_version'][:8]}",
        origin="search",
        params=best,
        description=f"mean of the top {info['top_k']} of {info['n']:,} fresh configs (seed {seed}) ranked by regressor "
        f"{report['regressor_version']} (held-out Spearman {report['spearman']:.3f}); predicted target loss {info['predicted_loss_of_mean']:.4f}",
    )
    entry = spec.to_dict() | {"found_by": found_by}
    previous = [d for d in searched_specs(storage) if d["mixture_id"] != spec.mixture_id]
    storage.write_json(layout.searched_configs(), {"configs": previous + [entry]})
    result = {"mixture_id": spec.mixture_id, "spec": entry,
              "provenance": provenance(context, SEARCH_VERSION, params={"n": info["n"], "top_k": info["top_k"], "seed": seed},
                                       models={"regressor": report["regressor_version"]})}
    uri = storage.write_json(layout.search_result(), result)
    known = set(context.instance.get_dynamic_partitions(mixtures_partitions.name))
    if spec.mixture_id not in known:
        context.instance.add_dynamic_partitions(mixtures_partitions.name, [spec.mixture_id])
    p = best
    rows = [[m, f"{p.lam[m]:.3g}", f"{p.omega[m]:.3f}", f"{p.eta[m]:.3f}", f"{p.eps[m]:.4f}",
             " ".join(f"{a:.2f}" for a in p.alpha[m])] for m in range(p.n_domains)]
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri),
            "mixture_id": spec.mixture_id,
            "name": spec.name,
            "origin": "search",
            "regressor_version": report["regressor_version"],
            "regressor_spearman_heldout": report["spearman"],
            "searched_configs": info["n"],
            "top_k": info["top_k"],
            "predicted_loss_of_optimum": info["predicted_loss_of_mean"],
            "predicted_loss_top_k": MetadataValue.json(info["top_predicted_losses"]),
            "median_predicted_loss": info["median_predicted_loss"],
            "params": MetadataValue.md(_markdown_table(["domain", "lambda", "omega", "eta", "eps", "alpha"], rows)),
        },
        data_version=DataVersion(content_hash(entry)),
    )
