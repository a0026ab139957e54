"""Stage 6b: the search rounds and the optimum.

``mixture_rounds`` proposes the next round's configs around the regressor's predicted best (plus fresh
exploration) and registers them as `mixtures` partitions (origin ``round``, with their round number); it
proposes nothing once ``search_rounds`` rounds exist or when the predicted gain is below the measured proxy
noise. ``mixture_search`` (QUADMIX.md §5) takes the element-wise mean of the top k of fresh configs ranked
by the final regressor and registers it as a new partition that says how it was found; the blocking
regressor check keeps it from running when the regressor is not trustworthy.
"""

import hashlib

from dagster import AssetKey, AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from quadmix_assets import keys
from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.dagster_support.partitions import add_partitions, mixtures_partitions
from quadmix_assets.dagster_support.file_records import step_files
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import uri_metadata
from quadmix_assets.mixing import MixtureSpec
from quadmix_assets.mixing.store import last_round, register_specs
from quadmix_assets.proxy.optimise import document_table, predict_arrays, propose_round, search, space_of, training_set
from quadmix_assets.proxy.features import config_arrays
from quadmix_assets.proxy.surrogate import Surrogate
from quadmix_assets.reporting import markdown_table
from quadmix_assets.storage import content_hash, layout

SEARCH_VERSION = "mixture-search-v2"
ROUNDS_VERSION = "mixture-rounds-v2"  # v2: the decision stored for the loop (search/rounds.json)
SEARCH_SEED_OFFSET = 1  # fresh configs: never the seed the K training configs were drawn with


def _surrogate(storage):
    return Surrogate.from_json(storage.read_bytes(layout.surrogate_model()).decode("utf-8")), storage.read_json(layout.regressor_report())


def _add_partitions(context: AssetExecutionContext, ids: list[str]) -> None:
    add_partitions(context.instance, mixtures_partitions, ids)


def _decided(storage, current: int, regressor_version: str, why: str, data_version: str, store: bool = True) -> MaterializeResult:
    """No new round: the decision is stored (the loop's policy reads it; ``store=False`` keeps the stored one)
    and shown."""
    if store or not storage.exists(layout.rounds_decision()):
        uri = storage.write_json(layout.rounds_decision(), {"round": current, "proposed": 0, "regressor_version": regressor_version,
                                                            "mixtures": [], "why": why})
    else:  # kept: recorded as this materialization's file (the loop asks for this only while it is intact)
        uri = storage.uri(layout.rounds_decision())
        if (files := step_files()) is not None:
            data = storage.read_bytes(layout.rounds_decision())
            files.record(layout.rounds_decision(), len(data), hashlib.sha256(data).hexdigest())
    return MaterializeResult(metadata={"path": MetadataValue.path(uri), **uri_metadata(uri), "round": current,
                                       "proposed": 0, "why": why,
                                       "regressor_version": regressor_version}, data_version=DataVersion(data_version))


@asset(
    group_name="optimisation",
    op_tags=pod_tags("fanin"),
    code_version=ROUNDS_VERSION,
    deps=[AssetKey(keys.MIXTURE_REGRESSOR), AssetKey(keys.MIXTURE_CONFIGS)],
    kinds={"json"},
    description="The next search round: `round_size` configs near the regressor's predicted best plus fresh "
    "exploration, registered as mixture partitions with their round; nothing once `search_rounds` rounds "
    "exist or when the predicted gain is below the measured proxy noise.",
)
def mixture_rounds(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    current = last_round(storage)
    sur, report = _surrogate(storage)
    ts = training_set(storage)
    best_measured = float(ts.y.min())
    noise = storage.read_json(layout.proxy_noise()) if storage.exists(layout.proxy_noise()) else {}
    version = report["regressor_version"]
    if current >= preset.search_rounds:  # every round exists: the last round's stored proposal stays as it is
        return _decided(storage, current, version, f"{current} of {preset.search_rounds} rounds exist", f"rounds-{current}",
                        store=False)
    nxt = current + 1
    docs, _, _ = document_table(storage, preset.feature_docs, preset.seed)
    seed = preset.seed + 1000 * nxt
    configs, predicted, info = propose_round(sur, docs, space_of(storage), n=preset.round_size,
                                             explore_share=preset.round_explore_share,
                                             pool=max(preset.round_size, min(preset.search_samples, 20_000)), seed=seed)
    # predicted gain, model against model: the prediction for the best measured config minus the best
    # candidate's (a measured minimum is biased low by noise)
    best_cfg = ts.specs[int(ts.y.argmin())].params
    pred_best_measured = float(predict_arrays(sur, docs, config_arrays([best_cfg]))[0])
    gain = pred_best_measured - info["best_predicted_loss"]
    noise_sd = noise.get("noise_sd")
    factor = preset.round_min_gain_noise
    if factor is not None and noise_sd is not None and gain < factor * noise_sd:
        why = (f"predicted gain {gain:.4f} over the best measured config (predicted {pred_best_measured:.4f}, measured "
               f"{best_measured:.4f}) is below {factor:g} x the proxy noise (SD {noise_sd:.4f}): no round {nxt}")
        return _decided(storage, current, version, why, f"rounds-{current}-stopped")
    entries = []
    for i, (p, pred) in enumerate(zip(configs, predicted)):
        kind = "near the predicted best" if i < info["exploit"] else "fresh exploration"
        spec = MixtureSpec(name=f"round{nxt}-{i:04d}", origin="round", params=p,
                           description=f"round {nxt}: {kind} (regressor {report['regressor_version'][:8]}, predicted loss {pred:.4f})")
        entries.append(spec.to_dict() | {"round": nxt, "predicted_loss": float(pred), "kind": kind,
                                         "proposed_by": {"regressor_version": report["regressor_version"], **info}})
    uri = register_specs(storage, entries)
    _add_partitions(context, [e["mixture_id"] for e in entries])
    storage.write_json(layout.rounds_decision(), {"round": nxt, "proposed": len(entries), "regressor_version": version,
                                                  "mixtures": [e["mixture_id"] for e in entries], "why": ""})
    rows = [[e["mixture_id"], e["name"], e["kind"], f"{e['predicted_loss']:.4g}"] for e in entries]
    return MaterializeResult(
        metadata={"path": MetadataValue.path(uri), **uri_metadata(uri), "round": nxt, "proposed": len(entries),
                  "regressor_version": report["regressor_version"], "best_measured_loss": best_measured,
                  "predicted_gain": gain,
                  "best_predicted_loss": info["best_predicted_loss"], "mixtures": MetadataValue.json([e["mixture_id"] for e in entries]),
                  "configs": MetadataValue.md(markdown_table(["mixture", "name", "kind", "predicted loss"], rows))},
        data_version=DataVersion(content_hash(entries)),
    )


@asset(
    group_name="optimisation",
    op_tags=pod_tags("fanin"),
    code_version=SEARCH_VERSION,
    deps=[AssetKey(keys.MIXTURE_REGRESSOR), AssetKey(keys.MIXTURE_CONFIGS)],
    kinds={"json"},
    description="The optimum: the mean of the top-k of `search_samples` fresh configs ranked by the regressor, "
    "registered as a new mixture partition (origin `search`) naming the regressor that found it.",
)
def mixture_search(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    sur, report = _surrogate(storage)
    docs, _, _ = document_table(storage, preset.feature_docs, preset.seed)
    seed = preset.seed + SEARCH_SEED_OFFSET
    best, info = search(sur, docs, space_of(storage), n=preset.search_samples, top_k=preset.search_top_k, seed=seed)
    found_by = {"regressor_version": report["regressor_version"], "regressor_cv_spearman": report["cv_spearman"],
                "regressor_model": report["chosen"], "regressor_configs": len(report["mixture_ids"]),
                "regressor_rounds": report["rounds"], **info}
    spec = MixtureSpec(
        name=f"search-{report['regressor_version'][:8]}",
        origin="search",
        params=best,
        description=f"mean of the top {info['top_k']} of {info['n']:,} fresh configs (seed {seed}) ranked by regressor "
        f"{report['regressor_version'][:8]} ({report['chosen']}, CV Spearman {report['cv_spearman']:.3f}); "
        f"predicted target loss {info['predicted_loss_of_mean']:.4f}",
    )
    entry = spec.to_dict() | {"found_by": found_by}
    register_specs(storage, [entry])
    result = {"mixture_id": spec.mixture_id, "spec": entry,
              "provenance": provenance(context, SEARCH_VERSION, params={"n": info["n"], "top_k": info["top_k"], "seed": seed},
                                       models={"regressor": report["regressor_version"]})}
    uri = storage.write_json(layout.search_result(), result)
    _add_partitions(context, [spec.mixture_id])
    # no `exports` partition here: the loop adds one for the mixture it chooses to export (the optimum, or the
    # best measured config when the optimum measured worse by more than the noise), so the UI lists only exports
    p = best
    rows = [[m, f"{p.lam[m]:.3g}", f"{p.omega[m]:.3f}", f"{p.eta[m]:.3f}", f"{p.eps[m]:.4f}",
             " ".join(f"{a:.2f}" for a in p.alpha[m])] for m in range(p.n_domains)]
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri), **uri_metadata(uri),
            "mixture_id": spec.mixture_id,
            "name": spec.name,
            "origin": "search",
            "regressor_version": report["regressor_version"],
            "regressor_cv_spearman": report["cv_spearman"],
            "searched_configs": info["n"],
            "top_k": info["top_k"],
            "predicted_loss_of_optimum": info["predicted_loss_of_mean"],
            "predicted_loss_top_k": MetadataValue.json(info["top_predicted_losses"]),
            "median_predicted_loss": info["median_predicted_loss"],
            "params": MetadataValue.md(markdown_table(["domain", "lambda", "omega", "eta", "eps", "alpha"], rows)),
        },
        data_version=DataVersion(content_hash(entry)),
    )
