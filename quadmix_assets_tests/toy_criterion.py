"""A toy quality criterion that exists only in the tests: the share of letters among a text's characters.

``python -m quadmix_assets_tests.toy_criterion OUT.json CORPUS_GLOB STORAGE [--plain-only] [--entry-point]``
registers it and the toy criterion with a trained model (``toy_model_criterion.TOYFIT``; with
``--entry-point`` that one must already be in the registry, loaded from the ``quadmix.criteria`` entry-point
group when the registry was built), with ``--plain-only`` after removing every built-in criterion that needs
a trained model or a teacher, *then* imports the code location, and writes what the generated graph, checks,
conditions, jobs and runner stage list say about them; then materializes the toy model and both scoring
assets (and their checks) for the corpus' first shard, and with ``--plain-only`` also ``criteria_evaluation``
and its criterion cards, the normaliser, the mixture configs and one mixture's scores (cheap then: no
built-in model to train). A separate process, because the code location reads the registry when it is
imported.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from quadmix_assets.scoring.criteria import Criterion, Scored, register_criterion, unregister_criterion
from quadmix_assets_tests import toy_model_criterion as toyfit

NAME = "toy"


def _letters_share(settings, storage):
    def score(texts: list[str]) -> Scored:
        return Scored(np.asarray([sum(ch.isalpha() for ch in t) / max(len(t), 1) for t in texts], dtype=np.float64))

    return score, {"toy": "letters-share-v1"}


TOY = Criterion(NAME, "Share of letters among the characters (a test-only criterion)", (0.0, 1.0), "quality-toy-v1",
                scorer=_letters_share)


def main(out_path: str, corpus_glob: str, storage_root: str, plain_only: bool, entry_point: bool = False) -> None:
    from quadmix_assets.scoring import criteria as registry

    if plain_only:
        for name in ("dclm", "edu", "askllm"):
            unregister_criterion(name)
    if entry_point:  # loaded from the quadmix.criteria entry point when the registry was imported
        assert toyfit.NAME in registry.CRITERIA, registry.CRITERIA
    else:
        register_criterion(toyfit.TOYFIT)
    register_criterion(TOY)

    from dagster import AssetKey, DagsterInstance

    from quadmix_assets import runner
    from quadmix_assets.definitions import build_definitions
    from quadmix_assets.dagster_support.partitions import shards_partitions
    from quadmix_assets.dagster_support.resources import QuadmixSettings
    from quadmix_assets.scoring import criteria as registry
    from quadmix_assets.storage import layout

    # the toy model's option set the generic way (the settings' per-criterion mapping)
    settings = QuadmixSettings.from_env(corpus_glob=corpus_glob, storage_root=storage_root, preset="test",
                                        criteria={toyfit.NAME: {"docs": "30"}})
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    key = AssetKey(f"quality_{NAME}")
    fit_key, model_key = AssetKey(f"quality_{toyfit.NAME}"), AssetKey(toyfit.MODEL)
    out: dict = {
        "criteria": list(registry.CRITERIA),
        "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
        "toy_parents": sorted(p.to_user_string() for p in graph.get(key).parent_keys),
        "toy_group": graph.get(key).group_name,
        "toy_condition": graph.get(key).automation_condition.get_label(),
        "toy_checks": sorted(k.name for k in graph.asset_check_keys if k.asset_key == key),
        "evaluation_parents": sorted(p.to_user_string() for p in graph.get(AssetKey("criteria_evaluation")).parent_keys),
        "normaliser_parents": sorted(p.to_user_string() for p in graph.get(AssetKey("quality_normaliser")).parent_keys),
        "jobs_with_toy": sorted(
            j.name for j in defs.get_repository_def().get_all_jobs()
            if not j.name.startswith("__") and key in j.asset_layer.executable_asset_keys
        ),
        "runner_students": runner.distilled_students(),
        "toyfit_parents": sorted(p.to_user_string() for p in graph.get(fit_key).parent_keys),
        "toyfit_model_group": graph.get(model_key).group_name,
        "toyfit_model_kinds": sorted(graph.get(model_key).kinds),
        "toyfit_checks": sorted(k.name for k in graph.asset_check_keys if k.asset_key == fit_key),
        "jobs_with_toyfit_model": sorted(
            j.name for j in defs.get_repository_def().get_all_jobs()
            if not j.name.startswith("__") and model_key in j.asset_layer.executable_asset_keys
        ),
        "toyfit_options": dict(settings.config().criterion(toyfit.NAME)),
        "preset_dict_toyfit_docs": settings.run_preset().to_dict().get("toyfit_docs"),
    }
    instance = DagsterInstance.ephemeral()
    shard = settings.shards()[0].key
    instance.add_dynamic_partitions(shards_partitions.name, [r.key for r in settings.shards()])
    job = defs.resolve_implicit_global_asset_job_def()
    per_shard = ["documents", f"quality_{NAME}", f"quality_{toyfit.NAME}"] + (
        ["domain_labels", "quality_heuristic", "quality_langid"] if plain_only else [])
    models = [model_key] + ([AssetKey("domain_classifier")] if plain_only else [])
    result = job.execute_in_process(instance=instance, asset_selection=models)
    out["models_materialized"] = result.success
    out["toyfit_model_metadata"] = [
        {k: v.value for k, v in m.materialization.metadata.items() if k in ("n_train", "dagster/uri")}
        for m in result.get_asset_materialization_events() if m.materialization.asset_key == model_key
    ]
    result = job.execute_in_process(instance=instance, partition_key=shard, asset_selection=[AssetKey(k) for k in per_shard])
    out["materialized"] = result.success
    out["toy_row_count_metadata"] = [
        m.materialization.metadata["dagster/row_count"].value for m in result.get_asset_materialization_events()
        if m.materialization.asset_key == key
    ]
    out["toy_check_passed"] = [e.passed for e in result.get_asset_check_evaluations() if e.asset_key == key]
    storage = settings.storage()
    table = storage.read_parquet(layout.attribute(f"quality_{NAME}", shard))
    out["toy_rows"] = table.num_rows
    out["toy_documents"] = storage.read_parquet(layout.documents(shard), columns=["id"]).num_rows
    out["toy_score_range"] = [float(np.min(table["score"])), float(np.max(table["score"]))]
    out["toy_provenance_models"] = storage.provenance(layout.attribute(f"quality_{NAME}", shard)).get("models")
    fit = storage.read_parquet(layout.attribute(f"quality_{toyfit.NAME}", shard))
    out["toyfit_rows"] = fit.num_rows
    out["toyfit_score_range"] = [float(np.min(fit["score"])), float(np.max(fit["score"]))]
    out["toyfit_check_passed"] = [e.passed for e in result.get_asset_check_evaluations() if e.asset_key == fit_key]
    out["toyfit_provenance_models"] = storage.provenance(layout.attribute(f"quality_{toyfit.NAME}", shard)).get("models")
    if plain_only:
        result = job.execute_in_process(instance=instance, asset_selection=[AssetKey("criteria_evaluation")])
        out["evaluation_ok"] = result.success
        report = storage.read_json(layout.criteria_report())
        out["evaluation_roc_auc"] = report["roc_auc"]
        out["evaluation_spearman"] = sorted(report["spearman_corpus"])
        cards = storage.read_json(layout.criterion_cards())  # the criterion cards, generated from the registry
        out["cards"] = cards["criteria"] if set(cards["criteria"]) == set(cards["cards"]) else None
        out["toy_card"] = {k: cards["cards"][NAME][k] for k in ("coverage", "documents", "roc_auc_human", "edu_prompt", "verdict")}
        out["cards_check"] = [[e.check_name, e.passed, e.severity.value] for e in result.get_asset_check_evaluations()]
        md = next(m.materialization.metadata for m in result.get_asset_materialization_events()
                  if m.materialization.asset_key == AssetKey("criteria_evaluation"))
        out["cards_metadata"] = sorted(k for k in md if k.startswith("card") or k == "criterion_cards")
        # the normaliser ranks every registered criterion; the mixtures draw one alpha column per criterion
        result = job.execute_in_process(instance=instance, asset_selection=[AssetKey("quality_normaliser"),
                                                                             AssetKey("mixture_configs")])
        out["normaliser_and_configs_ok"] = result.success
        out["normaliser_criteria"] = storage.read_json(layout.normaliser_card())["criteria"]
        ranks = storage.read_parquet(layout.attribute(layout.RANKS_ATTRIBUTE, shard))
        out["rank_columns"] = ranks.column_names
        configs = storage.read_json(layout.mixture_configs())
        out["mixture_space_criteria"] = configs["space"]["criteria"]
        drawn = next(c for c in configs["configs"] if c["origin"] == "random_draw")
        out["drawn_alpha_width"] = sorted({len(row) for row in drawn["params"]["alpha"]})
        result = job.execute_in_process(instance=instance, partition_key=drawn["mixture_id"],
                                        asset_selection=[AssetKey("mixture_scores")])
        out["mixture_scores_ok"] = result.success
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], "--plain-only" in sys.argv[4:], "--entry-point" in sys.argv[4:])
