"""Every quality criterion together, and their evaluation: ROC-AUC against the DCLM human quality votes
(scored exactly as the pipeline scores the corpus: teacher or distilled student) and pairwise Spearman."""

import itertools

import numpy as np
from dagster import AllPartitionMapping, AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from quadmix_assets.defs import conditions
from quadmix_assets.defs.current import PER_SHARD_ASSETS, SCORED_ATTRIBUTES, select_shards
from quadmix_assets.defs.k8s import pod_tags
from quadmix_assets.reporting import markdown_table
from quadmix_assets.defs.model_scorers import MODEL_QUALITY_ASSETS, askllm_student, criterion_scorer, edu_student
from quadmix_assets.defs.models import load_stored_model
from quadmix_assets.defs.provenance import provenance
from quadmix_assets.defs.quality import FAST_QUALITY_ASSETS, dclm_classifier
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.scoring.criteria import CRITERIA, DESCRIPTIONS, attribute_name
from quadmix_assets.scoring.dclm_classifier import dclm_scores
from quadmix_assets.scoring.evaluation import load_dclm_human_labels, roc_auc, spearman
from quadmix_assets.scoring.heuristics import heuristic_score, heuristic_signals
from quadmix_assets.scoring.langid import LanguageScorer
from quadmix_assets.storage import layout

EVALUATION_VERSION = "criteria-evaluation-v2"

#: the per-shard raw-score asset of every criterion, in CRITERIA order
QUALITY_ASSETS = {c: {**FAST_QUALITY_ASSETS, **MODEL_QUALITY_ASSETS}[c] for c in CRITERIA}


@asset(
    group_name="quality",
    op_tags=pod_tags("gpu"),
    code_version=EVALUATION_VERSION,
    automation_condition=conditions.CRITERIA,
    deps=[dclm_classifier, edu_student, askllm_student]
    + [AssetDep(a, partition_mapping=AllPartitionMapping()) for a in QUALITY_ASSETS.values()],
    kinds={"json"},
    description="Each criterion's ROC-AUC against the DCLM human quality votes, and the pairwise Spearman "
    "correlation of the criteria over the corpus.",
)
def criteria_evaluation(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    texts, labels = load_dclm_human_labels(settings.data_dir)
    model, card = load_stored_model(storage, "dclm_classifier")
    langid = LanguageScorer(settings.langid_model)
    human_scores = {
        "dclm": dclm_scores(model, texts),
        "heuristic": heuristic_score(heuristic_signals(texts)),
        "langid": langid.score(texts),
    }
    models = {"dclm_classifier": card["sha256"], "langid": langid.model_version}
    for c in MODEL_QUALITY_ASSETS:
        score, versions = criterion_scorer(settings, storage, c)
        human_scores[c] = score(texts)[0]
        models.update(versions)
    auc = {c: float(roc_auc(np.asarray(human_scores[c]), np.asarray(labels))) for c in CRITERIA}
    selection = select_shards(context, settings, SCORED_ATTRIBUTES, PER_SHARD_ASSETS)
    shard_keys = selection.shards
    corpus_scores = {}
    for c in CRITERIA:
        paths = [layout.attribute(attribute_name(c), k) for k in shard_keys]
        paths = [p for p in paths if storage.exists(p)]
        corpus_scores[c] = (
            storage.dataset(paths).to_table(columns=["score"])["score"].to_numpy() if paths else np.array([])
        )
    rho = {}
    if len({v.size for v in corpus_scores.values()}) == 1:
        for a, b in itertools.combinations(CRITERIA, 2):
            rho[f"{a}~{b}"] = float(spearman(corpus_scores[a], corpus_scores[b]))
    report = {
        "human_labels": {"file": "labels/dclm_human_majority_data.jsonl", "n": len(labels), "positives": int(np.sum(labels))},
        "roc_auc": auc,
        "spearman_corpus": rho,
        "models": models,
        "provenance": provenance(context, EVALUATION_VERSION),
    }
    storage.write_json(layout.criteria_report(), report)
    rows = [[c, f"{auc[c]:.3f}", DESCRIPTIONS[c]] for c in CRITERIA]
    return MaterializeResult(
        metadata={
            **{f"roc_auc_{c}": auc[c] for c in CRITERIA},
            "roc_auc": MetadataValue.md(markdown_table(["criterion", "ROC-AUC (human votes)", "what"], rows)),
            "spearman_corpus": MetadataValue.json(rho),
            "n_human_labels": len(labels),
        }
    )
