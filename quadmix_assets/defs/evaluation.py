"""Every quality criterion of the registry together, and their evaluation: ROC-AUC against the DCLM human
quality votes (scored exactly as the pipeline scores the corpus: each criterion's own scorer, teacher or
distilled student) and pairwise Spearman over the corpus."""

import itertools

import numpy as np
from dagster import AllPartitionMapping, AssetDep, AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from quadmix_assets.defs import conditions
from quadmix_assets.defs.current import PER_SHARD_ASSETS, SCORED_ATTRIBUTES, select_shards
from quadmix_assets.defs.k8s import pod_tags, step_pool
from quadmix_assets.defs.provenance import provenance
from quadmix_assets.defs.quality import QUALITY_ASSETS
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.reporting import markdown_table
from quadmix_assets.scoring.criteria import criteria
from quadmix_assets.scoring.evaluation import load_dclm_human_labels, roc_auc, spearman
from quadmix_assets.storage import layout

EVALUATION_VERSION = "criteria-evaluation-v2"

__all__ = ["QUALITY_ASSETS", "criteria_evaluation"]


@asset(
    group_name="quality",
    op_tags=pod_tags("gpu"),
    pool=step_pool("gpu"),
    code_version=EVALUATION_VERSION,
    automation_condition=conditions.CRITERIA,
    deps=[AssetKey(m) for m in conditions.criteria_scorer_models()]
    + [AssetDep(a, partition_mapping=AllPartitionMapping()) for a in QUALITY_ASSETS.values()],
    kinds={"json"},
    description="Each criterion's ROC-AUC against the DCLM human quality votes, and the pairwise Spearman "
    "correlation of the criteria over the corpus.",
)
def criteria_evaluation(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    judged = [c for c in criteria() if c.human_votes]
    names = [c.name for c in criteria()]
    texts, labels = load_dclm_human_labels(settings.data_dir)
    auc, models = {}, {}
    for c in judged:
        score, versions = c.make_scorer(settings, storage)
        auc[c.name] = float(roc_auc(np.asarray(score(texts).values), np.asarray(labels)))
        models.update(versions)
    selection = select_shards(context, settings, SCORED_ATTRIBUTES, PER_SHARD_ASSETS)
    shard_keys = selection.shards
    corpus_scores = {}
    for c in criteria():
        paths = [layout.attribute(c.attribute, k) for k in shard_keys]
        paths = [p for p in paths if storage.exists(p)]
        corpus_scores[c.name] = (
            storage.dataset(paths).to_table(columns=["score"])["score"].to_numpy() if paths else np.array([])
        )
    rho = {}
    if len({v.size for v in corpus_scores.values()}) == 1:
        for a, b in itertools.combinations(names, 2):
            rho[f"{a}~{b}"] = float(spearman(corpus_scores[a], corpus_scores[b]))
    report = {
        "human_labels": {"file": "labels/dclm_human_majority_data.jsonl", "n": len(labels), "positives": int(np.sum(labels))},
        "roc_auc": auc,
        "spearman_corpus": rho,
        "models": models,
        "provenance": provenance(context, EVALUATION_VERSION),
    }
    storage.write_json(layout.criteria_report(), report)
    rows = [[c.name, f"{auc[c.name]:.3f}", c.description] for c in judged]
    return MaterializeResult(
        metadata={
            **{f"roc_auc_{c}": v for c, v in auc.items()},
            "roc_auc": MetadataValue.md(markdown_table(["criterion", "ROC-AUC (human votes)", "what"], rows)),
            "spearman_corpus": MetadataValue.json(rho),
            "n_human_labels": len(labels),
        }
    )
