"""Stage 2a: the domain classifier (fastText on the 24 WebOrganizer topics) and per-shard domain labels."""


import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from dagster import AssetKey, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from quadmix_assets import keys
from quadmix_assets.dagster_support.models import import_model_file, load_stored_model
from quadmix_assets.dagster_support import conditions
from quadmix_assets.dagster_support.partitions import shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.shard_attributes import score_shard
from quadmix_assets.dagster_support.table_metadata import uri_metadata
from quadmix_assets.scoring.domain_classifier import (
    load_topic_names,
    predict_domains,
    train_domain_classifier,
)
from quadmix_assets.scoring.fasttext_model import save_model
from quadmix_assets.scoring.reference_data import load_jsonl_gz, load_reference_corpus
from quadmix_assets.storage import layout
from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.reporting import markdown_table

DOMAIN_CLASSIFIER_VERSION = "domain-classifier-v1"
DOMAIN_LABELS_VERSION = "domain-labels-v1"


@asset(
    group_name="models",
    op_tags=pod_tags("model"),
    code_version=DOMAIN_CLASSIFIER_VERSION,
    kinds={"fasttext"},
    description="fastText classifier of the 24 WebOrganizer topics, trained on the bundled labelled web "
    "text with a held-out split by id (or imported from the configured `domain_model`).",
)
def domain_classifier(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    names = load_topic_names(settings.data_dir)
    if settings.domain_model:
        import_model_file(storage, "domain_classifier", settings.domain_model)
        report = {"source": settings.domain_model, "trained_here": False}
    else:
        corpus = load_reference_corpus(settings.data_dir)
        labels = {
            r["id"]: int(r["topic_id"])
            for r in load_jsonl_gz(f"{settings.data_dir}/labels/weborganizer_topics.jsonl.gz")
        }
        ids = corpus["id"].to_pylist()
        keep = [i for i, doc_id in enumerate(ids) if doc_id in labels]
        texts = corpus["text"].take(keep).to_pylist()
        kept_ids = [ids[i] for i in keep]
        topics = np.array([labels[i] for i in kept_ids], dtype=np.int64)
        model, report = train_domain_classifier(
            texts, topics, kept_ids, test_fraction=0.1, seed=preset.seed, epoch=preset.domain_epochs, topic_names=names
        )
        report = {k: v for k, v in report.items() if k != "train_seconds"}  # keep the card reproducible
        report = {**report, "trained_here": True, "training_data": "weborganizer_topics x corpus/webtext"}
        with tempfile.TemporaryDirectory() as d:
            local = Path(d) / "model.bin"
            save_model(model, str(local))
            storage.write_file(layout.model_file("domain_classifier"), local)
    sha = storage.file_sha256(layout.model_file("domain_classifier"))
    card = {"name": "domain_classifier", "sha256": sha, "domain_names": names, "n_domains": len(names), "report": report}
    storage.write_json(layout.model_card("domain_classifier"), card)
    model_uri = storage.uri(layout.model_file("domain_classifier"))
    metadata = {
        "path": MetadataValue.path(model_uri), **uri_metadata(model_uri),
        "model_sha256": sha,
        "n_domains": len(names),
    }
    if report.get("trained_here"):
        per_class = report.get("per_class_f1", {})
        metadata.update(
            {
                "test_accuracy": float(report["accuracy"]),
                "test_macro_f1": float(report["macro_f1"]),
                "n_train": int(report["n_train"]),
                "n_test": int(report["n_test"]),
                "per_class_f1": MetadataValue.md(
                    markdown_table(["domain", "F1"], [[k, f"{v:.3f}"] for k, v in per_class.items()])
                ),
            }
        )
    return MaterializeResult(metadata=metadata, data_version=None)


@asset(
    partitions_def=shards_partitions,
    group_name="labels",
    op_tags=pod_tags("shard"),
    code_version=DOMAIN_LABELS_VERSION,
    automation_condition=conditions.SHARD_ATTRIBUTE,
    deps=[AssetKey(keys.DOCUMENTS), domain_classifier],
    kinds={"parquet"},
    description="Domain id (0..M-1) and confidence of every document of a shard, aligned with its documents.",
)
def domain_labels(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    model, card = load_stored_model(storage, "domain_classifier")

    def label(texts: list[str]) -> pa.Table:
        domain, confidence = predict_domains(model, texts)
        return pa.table(
            {
                "domain": pa.array(np.asarray(domain, dtype=np.int16)),
                "domain_confidence": pa.array(np.asarray(confidence, dtype=np.float32)),
            }
        )

    result = score_shard(
        context,
        settings,
        attribute="domain",
        step_version=DOMAIN_LABELS_VERSION,
        scorer=label,
        models={"domain_classifier": card["sha256"]},
        summary_column="domain_confidence",
    )
    table = storage.read_parquet(layout.attribute("domain", context.partition_key), columns=["domain"])
    counts = np.bincount(table["domain"].to_numpy(), minlength=card["n_domains"])
    names = card["domain_names"]
    top = sorted(((int(c), names[i]) for i, c in enumerate(counts) if c), reverse=True)
    return MaterializeResult(
        metadata={**result.metadata, "documents_per_domain": MetadataValue.json({n: c for c, n in top})},
        data_version=result.data_version,
    )
