"""Stage 2b: quality criteria per shard (DCLM-style fastText, Gopher/C4 heuristics, language id), and
their evaluation against human quality votes."""


import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from quadmix_assets.defs.corpus import documents
from quadmix_assets.defs.models import import_model_file, load_stored_model
from quadmix_assets.defs import conditions
from quadmix_assets.defs.partitions import shards_partitions
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.defs.shard_attributes import score_shard
from quadmix_assets.scoring.criteria import DESCRIPTIONS, attribute_name
from quadmix_assets.scoring.dclm_classifier import dclm_scores, train_dclm_classifier
from quadmix_assets.scoring.fasttext_model import save_model
from quadmix_assets.scoring.heuristics import heuristic_score, heuristic_signals
from quadmix_assets.scoring.langid import LanguageScorer
from quadmix_assets.scoring.reference_data import load_reference_corpus
from quadmix_assets.storage import layout
from quadmix_assets.defs.k8s import pod_tags

DCLM_CLASSIFIER_VERSION = "dclm-classifier-v1"
QUALITY_VERSIONS = {"dclm": "quality-dclm-v1", "heuristic": "quality-heuristic-v1", "langid": "quality-langid-v1"}
EVALUATION_VERSION = "criteria-evaluation-v1"


@asset(
    group_name="models",
    op_tags=pod_tags("model"),
    code_version=DCLM_CLASSIFIER_VERSION,
    kinds={"fasttext"},
    description="DCLM-style fastText classifier, high-quality reference text vs random web, trained on the "
    "bundled data (reference positives documented in quadmix_assets.scoring.dclm_classifier), or imported "
    "from the configured `dclm_model`.",
)
def dclm_classifier(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    if settings.dclm_model:
        import_model_file(storage, "dclm_classifier", settings.dclm_model)
        report = {"source": settings.dclm_model, "trained_here": False}
    else:
        corpus = load_reference_corpus(settings.data_dir)
        model, report = train_dclm_classifier(
            corpus["id"].to_pylist(), corpus["text"].to_pylist(), settings.data_dir, seed=preset.seed, epoch=preset.dclm_epochs
        )
        report = {k: v for k, v in report.items() if k != "train_seconds"}
        report = {**report, "trained_here": True}
        with tempfile.TemporaryDirectory() as d:
            local = Path(d) / "model.bin"
            save_model(model, str(local))
            storage.write_file(layout.model_file("dclm_classifier"), local)
    sha = storage.file_sha256(layout.model_file("dclm_classifier"))
    storage.write_json(layout.model_card("dclm_classifier"), {"name": "dclm_classifier", "sha256": sha, "report": report})
    metadata = {"path": MetadataValue.path(storage.uri(layout.model_file("dclm_classifier"))), "model_sha256": sha}
    for key in ("accuracy", "auc", "n_train", "n_test", "n_pos", "n_neg"):
        if key in report:
            metadata[f"test_{key}" if key in ("accuracy", "auc") else key] = report[key]
    return MaterializeResult(metadata=metadata)


def _score_table(score: np.ndarray, extra: pa.Table | None = None) -> pa.Table:
    table = pa.table({"score": pa.array(np.asarray(score, dtype=np.float32))})
    if extra is not None:
        for name in extra.column_names:
            table = table.append_column(name, extra[name])
    return table


@asset(
    partitions_def=shards_partitions,
    group_name="quality",
    op_tags=pod_tags("shard"),
    code_version=QUALITY_VERSIONS["dclm"],
    automation_condition=conditions.SHARD_ATTRIBUTE,
    deps=[documents, dclm_classifier],
    kinds={"parquet"},
    description=DESCRIPTIONS["dclm"],
)
def quality_dclm(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    model, card = load_stored_model(settings.storage(), "dclm_classifier")
    return score_shard(
        context,
        settings,
        attribute=attribute_name("dclm"),
        step_version=QUALITY_VERSIONS["dclm"],
        scorer=lambda texts: _score_table(dclm_scores(model, texts)),
        models={"dclm_classifier": card["sha256"]},
        summary_column="score",
    )


@asset(
    partitions_def=shards_partitions,
    group_name="quality",
    op_tags=pod_tags("shard"),
    code_version=QUALITY_VERSIONS["heuristic"],
    automation_condition=conditions.SHARD_ATTRIBUTE,
    deps=[documents],
    kinds={"parquet"},
    description=DESCRIPTIONS["heuristic"] + " (the individual signals are kept as columns).",
)
def quality_heuristic(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    def score(texts: list[str]) -> pa.Table:
        signals = heuristic_signals(texts)
        return _score_table(heuristic_score(signals), signals)

    return score_shard(
        context,
        settings,
        attribute=attribute_name("heuristic"),
        step_version=QUALITY_VERSIONS["heuristic"],
        scorer=score,
        models={},
        summary_column="score",
    )


@asset(
    partitions_def=shards_partitions,
    group_name="quality",
    op_tags=pod_tags("shard"),
    code_version=QUALITY_VERSIONS["langid"],
    automation_condition=conditions.SHARD_ATTRIBUTE,
    deps=[documents],
    kinds={"parquet"},
    description=DESCRIPTIONS["langid"],
)
def quality_langid(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    scorer = LanguageScorer(settings.langid_model)
    return score_shard(
        context,
        settings,
        attribute=attribute_name("langid"),
        step_version=QUALITY_VERSIONS["langid"],
        scorer=lambda texts: _score_table(scorer.score(texts)),
        models={"langid": scorer.model_version},
        summary_column="score",
    )


FAST_QUALITY_ASSETS = {"dclm": quality_dclm, "heuristic": quality_heuristic, "langid": quality_langid}
