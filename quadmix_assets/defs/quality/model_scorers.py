"""Stage 2c: the criteria's models (QUADMIX.md §1), generated from the criterion registry: the model asset of
every :class:`~quadmix_assets.scoring.criteria.Model` a criterion declares (``dclm_classifier``,
``edu_teacher``, ...: one factory calling the model's builder), and every teacher criterion's distilled
student.

Each teacher criterion is a heavy *teacher*. Per the run configuration (preset or settings), it either
scores every document with its teacher ("direct") or annotates a seeded sample of the corpus with it and
a fast fastText *student* scores every shard ("distill"), recording the teacher-student Spearman on
held-out sample docs. The scoring assets themselves are ``defs/quality/scores.py``'s (one factory for all).
"""

import tempfile
from pathlib import Path

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
from quadmix_assets.scoring.criteria import Criterion, Model, model_specs, teacher_criteria
from quadmix_assets.scoring.distill import corpus_sample, train_student
from quadmix_assets.scoring.stored_models import upload_model_dir
from quadmix_assets.storage import layout

STUDENT_VERSION = "distill-student-v1"


def model_asset(model: Model) -> AssetsDefinition:
    """The model asset of one :class:`~quadmix_assets.scoring.criteria.Model` of the registry: it calls the
    model's builder (library code), which trains or imports the model into ``models/<name>/``."""

    accelerated = {"op_tags": pod_tags("gpu"), "pool": step_pool("gpu")} if model.accelerator else {"op_tags": pod_tags("model")}

    @asset(
        name=model.name,
        group_name="models",
        code_version=model.version,
        kinds=set(model.kinds),
        description=model.description,
        **accelerated,
    )
    def _model(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
        built = model.build(settings, settings.storage())
        path = {"path": MetadataValue.path(built.path)} if built.path else {}
        return MaterializeResult(metadata={**path, **uri_metadata(built.uri), **built.metadata})

    return _model


#: the model asset of every Model in the registry (dclm_classifier, edu_teacher, ...), in registry order
MODEL_ASSETS: dict[str, AssetsDefinition] = {m.name: model_asset(m) for m in model_specs()}


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
