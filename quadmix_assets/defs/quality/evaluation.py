"""Every quality criterion of the registry together, and their evaluation: ROC-AUC against the DCLM human
quality votes (scored exactly as the pipeline scores the corpus: each criterion's own scorer, teacher or
distilled student) and pairwise Spearman over the corpus; and a *criterion card* per criterion
(:mod:`quadmix_assets.scoring.cards`: Spearman with the FineWeb-Edu prompt scores, coverage, which sources and
domains its top quarter holds, whether its distilled student keeps its teacher), with a check that warns
when a criterion mostly detects one source or domain or its student has lost its teacher."""

import itertools

import numpy as np
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets.dagster_support import conditions
from quadmix_assets.dagster_support.current import PER_SHARD_ASSETS, SCORED_ATTRIBUTES, select_shards
from quadmix_assets.dagster_support.k8s import pod_tags, step_pool
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import uri_metadata
from quadmix_assets.reporting import markdown_table
from quadmix_assets.reporting.plots import try_png_markdown
from quadmix_assets.scoring import cards as criterion_cards
from quadmix_assets.scoring.criteria import criteria
from quadmix_assets.scoring.evaluation import load_dclm_human_labels, roc_auc, spearman
from quadmix_assets.storage import layout

EVALUATION_VERSION = "criteria-evaluation-v3"  # v3: the criterion cards and their check
CARDS_CHECK = "criterion_cards_sound"

__all__ = ["QUALITY_ASSETS", "criteria_evaluation"]


@asset(
    group_name="quality",
    op_tags=pod_tags("gpu"),
    pool=step_pool("gpu"),
    code_version=EVALUATION_VERSION,
    automation_condition=conditions.CRITERIA,
    deps=[AssetKey(m) for m in conditions.criteria_scorer_models()]
    + [AssetDep(AssetKey(c.attribute), partition_mapping=AllPartitionMapping()) for c in criteria()],
    kinds={"json"},
    description="Each criterion's ROC-AUC against the DCLM human quality votes, and the pairwise Spearman "
    "correlation of the criteria over the corpus; a criterion card per criterion (Spearman with the "
    "FineWeb-Edu prompt scores, coverage, the sources and domains of its top quarter against a random "
    "quarter, whether its distilled student keeps its teacher): evaluation/cards.json.",
    check_specs=[
        AssetCheckSpec(
            CARDS_CHECK,
            asset="criteria_evaluation",
            description="Warns when a criterion mostly detects one source or domain (its top quarter holds 15 "
            "points more of one source's or bucket's tokens than a random quarter, or under half its effective "
            "buckets), or scores with a distilled student that lost its teacher (docs/criteria.md).",
        )
    ],
)
def criteria_evaluation(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    judged = [c for c in criteria() if c.human_votes]
    names = [c.name for c in criteria()]
    texts, labels = load_dclm_human_labels(settings.data_dir)
    edu_texts, edu_scores = criterion_cards.load_fineweb_edu_prompt_scores(settings.data_dir)
    auc, models, edu_prompt = {}, {}, {}
    for c in judged:
        score, versions = c.make_scorer(settings, storage)
        auc[c.name] = float(roc_auc(np.asarray(score(texts).values), np.asarray(labels)))
        edu_prompt[c.name] = criterion_cards.edu_prompt_agreement(np.asarray(score(edu_texts).values), edu_scores)
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
    report_uri = storage.write_json(layout.criteria_report(), report)
    cards = _criterion_cards(context, settings, storage, shard_keys, auc, edu_prompt)
    rows = [[c.name, f"{auc[c.name]:.3f}", c.description] for c in judged]
    return MaterializeResult(
        metadata={
            **{f"roc_auc_{c}": v for c, v in auc.items()},
            "roc_auc": MetadataValue.md(markdown_table(["criterion", "ROC-AUC (human votes)", "what"], rows)),
            "spearman_corpus": MetadataValue.json(rho),
            "n_human_labels": len(labels),
            **uri_metadata(report_uri),
            **cards["metadata"],
        },
        check_results=[cards["check"]],
    )


def _criterion_cards(context, settings: QuadmixSettings, storage, shards: list[str], auc: dict, edu_prompt: dict) -> dict:
    """Every registered criterion's card (scoring/cards.py), written to evaluation/cards.json; the asset's
    metadata (summary table with the picture, one card each) and the check result."""
    config = settings.config()
    names_path = layout.model_card("domain_classifier")
    domain_names = storage.read_json(names_path).get("domain_names", []) if storage.exists(names_path) else []
    view = criterion_cards.load_corpus_view(storage, shards, [c.name for c in criteria()], domain_names)
    students = criterion_cards.stored_student_statuses(storage, config)
    report = criterion_cards.build_cards(
        [(c.name, c.description) for c in criteria()], view, seed=config.preset.seed, roc_auc_human=auc,
        edu_prompt=edu_prompt, students=students, left_out=config.alpha_left_out,
    )
    report["shards"] = list(shards)
    report["provenance"] = provenance(context, EVALUATION_VERSION)
    storage.write_json(layout.criterion_cards(), report)
    summary = markdown_table(criterion_cards.SUMMARY_HEADER, criterion_cards.summary_rows(report))
    picture = try_png_markdown(lambda: criterion_cards.cards_png(report), "criterion cards", context.log.warning)
    warnings = report["warnings"]
    metadata = {
        "criterion_cards": MetadataValue.md(
            summary + ("\n\n" + picture if picture else "")
            + ("\n\nWarnings:\n\n" + "\n".join(f"- {w}" for w in warnings) if warnings else "\n\nNo warning.")
        ),
        **{f"card_{name}": MetadataValue.md(criterion_cards.card_markdown(card)) for name, card in report["cards"].items()},
        "card_warnings": MetadataValue.json(warnings),
        "criteria_unreliable": MetadataValue.json(report["unreliable"]),
        "alpha_criteria": MetadataValue.json(report["alpha"]),
        "criteria_left_out": MetadataValue.json(report["left_out"]),
        "unreliable_in_alpha": MetadataValue.json(report["unreliable_in_alpha"]),
        **{f"edu_prompt_spearman_{c}": float(v["spearman"]) for c, v in edu_prompt.items()},
    }
    check = AssetCheckResult(
        check_name=CARDS_CHECK,
        passed=not warnings,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(warnings) if warnings else "no criterion mostly detects one source or domain, no student lost its teacher",
        metadata={
            "warnings": MetadataValue.json(warnings),
            "unreliable": MetadataValue.json(report["unreliable"]),
            "rule": MetadataValue.json(report["rule"]),
        },
    )
    return {"metadata": metadata, "check": check}
