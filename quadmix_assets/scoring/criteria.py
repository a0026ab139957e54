"""The quality criteria registry: one record per criterion, the one place a criterion is defined.

Each :class:`Criterion` says what the criterion is (name, description, range of its raw score; higher =
better), how to build its scorer (``scorer``: a factory taking the settings and the storage root), which
stored models it needs (asset names, trained or imported before any shard is scored), whether it is a
heavy *teacher* with a distilled *student* (:class:`Teacher`: how to load the teacher, its mode and sample
size defaults from the preset) and whether it is judged against the DCLM human quality votes.

Everything else is generated from the registry: the per-shard scoring asset ``quality_<name>`` and its
check, the ``<name>_student`` asset of a teacher criterion, the criteria evaluation, the automation
conditions, the jobs and the stage list of ``quadmix run``. The order of :data:`CRITERIA` is the column
order of alpha (QUADMIX.md §1).

Adding a criterion = one :func:`register_criterion` call (for a built-in one: an entry in ``_BUILTIN``
below) + one scorer module. Register before the code location is imported (``quadmix_assets.definitions``
reads the registry when it loads); :func:`unregister_criterion` removes an entry again (tests).

Library code: nothing here imports Dagster. ``settings`` is the settings resource, used only by attribute
(``langid_model``, ``edu_model``, ``config()``...), never imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from quadmix_assets.storage import StorageRoot, layout


@dataclass(frozen=True)
class Scored:
    """What a scorer returns for a batch of texts: the raw scores (one per text), extra columns kept
    beside the score in the attribute file, and the throughput of a transformer teacher (or None)."""

    values: np.ndarray
    columns: pa.Table | None = None
    stats: Any = None  # transformer_common.InferenceStats of a teacher call


#: ``score(texts) -> Scored``
ScoreFn = Callable[[list[str]], Scored]
#: ``factory(settings, storage) -> (score function, {model name: version})``
ScorerFactory = Callable[[Any, StorageRoot], tuple[ScoreFn, dict[str, str]]]


@dataclass(frozen=True)
class TeacherConfig:
    """The per-criterion settings of a teacher criterion, resolved from the preset and the overrides."""

    mode: str  # "direct": the teacher scores every document; "distill": a fastText student does
    sample: int  # documents the teacher annotates for its student


MODES = ("direct", "distill")


@dataclass(frozen=True)
class Teacher:
    """A heavy scorer (a transformer) that can be distilled into a fast student.

    ``load(settings, storage)`` returns an object with ``score(texts) -> (values, InferenceStats)`` and a
    ``model_version``; ``defaults(preset)`` gives the preset's :class:`TeacherConfig`."""

    load: Callable[[Any, StorageRoot], Any]
    defaults: Callable[[Any], TeacherConfig]


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    score_range: tuple[float, float]
    version: str  # code version of the per-shard scoring step
    scorer: ScorerFactory | None = None  # a plain criterion's scorer (teacher criteria: teacher or student)
    models: tuple[str, ...] = ()  # model assets the scorer (or the teacher) reads
    teacher: Teacher | None = None
    accelerator: bool = False  # heavy: scored on a GPU pod, in the model-scoring job
    human_votes: bool = True  # judged by ROC-AUC against the DCLM human quality votes
    note: str = ""  # appended to the scoring asset's description

    def __post_init__(self):
        if (self.scorer is None) == (self.teacher is None):
            raise ValueError(f"criterion {self.name!r}: give exactly one of `scorer` (plain) or `teacher`")
        if not self.name.isidentifier() or not self.name.islower():
            raise ValueError(f"criterion name {self.name!r} must be a lower-case identifier")

    @property
    def attribute(self) -> str:
        """The per-shard attribute folder (and asset name) of its raw scores."""
        return attribute_name(self.name)

    @property
    def student(self) -> str | None:
        """The model asset of a teacher criterion's distilled student (None for a plain criterion)."""
        return f"{self.name}_student" if self.teacher is not None else None

    @property
    def scorer_models(self) -> tuple[str, ...]:
        """The model assets the pipeline's scorer reads (a teacher criterion: its student's card)."""
        return (self.student,) if self.teacher is not None else self.models

    def make_scorer(self, settings, storage: StorageRoot) -> tuple[ScoreFn, dict[str, str]]:
        """``(score(texts) -> Scored, model versions)`` exactly as the pipeline scores the corpus."""
        if self.teacher is None:
            return self.scorer(settings, storage)
        return _teacher_or_student(self, settings, storage)


def attribute_name(criterion: str) -> str:
    """The per-shard attribute folder of a criterion's raw scores."""
    return f"quality_{criterion}"


def _teacher_or_student(c: Criterion, settings, storage: StorageRoot) -> tuple[ScoreFn, dict[str, str]]:
    """The teacher itself in 'direct' mode, else the distilled student (its card says which)."""
    from quadmix_assets.scoring.distill import Student
    from quadmix_assets.scoring.stored_models import local_model_dir

    card = storage.read_json(layout.model_card(c.student))
    if card.get("mode") == "direct":
        teacher = c.teacher.load(settings, storage)

        def score_teacher(texts: list[str]) -> Scored:
            values, stats = teacher.score(texts)
            return Scored(values, stats=stats)

        return score_teacher, {f"{c.name}_teacher": teacher.model_version}
    with local_model_dir(storage, c.student) as d:
        student = Student.load(d / "student.bin")
    return (lambda texts: Scored(student.score(texts))), {
        f"{c.name}_teacher": card["teacher"],
        f"{c.name}_student": student.model_version,
    }


# ------------------------------------------------------------------------------------- the scorers
def _dclm(settings, storage: StorageRoot):
    from quadmix_assets.scoring.dclm_classifier import dclm_scores
    from quadmix_assets.scoring.stored_models import load_stored_model

    model, card = load_stored_model(storage, "dclm_classifier")
    return (lambda texts: Scored(dclm_scores(model, texts))), {"dclm_classifier": card["sha256"]}


def _heuristic(settings, storage: StorageRoot):
    from quadmix_assets.scoring.heuristics import heuristic_score, heuristic_signals

    def score(texts: list[str]) -> Scored:
        signals = heuristic_signals(texts)
        return Scored(heuristic_score(signals), columns=signals)

    return score, {}


def _langid(settings, storage: StorageRoot):
    from quadmix_assets.scoring.langid import LanguageScorer

    scorer = LanguageScorer(settings.langid_model)
    return (lambda texts: Scored(scorer.score(texts))), {"langid": scorer.model_version}


def load_edu_teacher(settings, storage: StorageRoot):
    """The Edu teacher (:func:`~quadmix_assets.scoring.edu_scorer.make_edu_scorer`, the one Edu factory): a
    configured sequence-classification model, or the encoder + the head the ``edu_teacher`` asset trained."""
    from quadmix_assets.scoring.edu_scorer import make_edu_scorer
    from quadmix_assets.scoring.stored_models import local_model_dir

    max_length = settings.run_preset().edu_max_length
    if settings.edu_model:
        return make_edu_scorer(settings.edu_model, max_length=max_length)
    with local_model_dir(storage, "edu_teacher") as d:
        return make_edu_scorer(settings.edu_encoder, head=d / "head.npz", max_length=max_length)


def load_askllm_teacher(settings, storage: StorageRoot):
    from quadmix_assets.scoring.askllm import AskLLMScorer

    return AskLLMScorer(
        settings.askllm_model, gguf_file=settings.askllm_gguf_file, max_doc_tokens=settings.run_preset().askllm_max_doc_tokens
    )


TEACHER_NOTE = " (teacher or distilled student, per the scoring mode)."

_BUILTIN: tuple[Criterion, ...] = (
    Criterion(
        "dclm",
        "DCLM-style fastText classifier: P(high-quality reference text) vs random web",
        (0.0, 1.0),
        "quality-dclm-v1",
        scorer=_dclm,
        models=("dclm_classifier",),
    ),
    Criterion(
        "heuristic",
        "Gopher / C4 heuristic rules combined into one soft pass score",
        (0.0, 1.0),
        "quality-heuristic-v1",
        scorer=_heuristic,
        note=" (the individual signals are kept as columns).",
    ),
    Criterion(
        "langid",
        "fastText language id (lid.176): probability that the text is English (FineWeb's language_score)",
        (0.0, 1.0),
        "quality-langid-v1",
        scorer=_langid,
    ),
    Criterion(
        "edu",
        "FineWeb-Edu-style encoder + regression head: predicted 0-5 LLM usefulness score",
        (0.0, 5.0),
        "quality-edu-v1",
        models=("edu_teacher",),
        teacher=Teacher(load=load_edu_teacher, defaults=lambda p: TeacherConfig(mode=p.edu_mode, sample=p.edu_sample)),
        accelerator=True,
        note=TEACHER_NOTE,
    ),
    Criterion(
        "askllm",
        "AskLLM: an instruction LLM's P(yes) to 'is this informative pre-training data?'",
        (0.0, 1.0),
        "quality-askllm-v1",
        teacher=Teacher(load=load_askllm_teacher, defaults=lambda p: TeacherConfig(mode=p.askllm_mode, sample=p.askllm_sample)),
        accelerator=True,
        note=TEACHER_NOTE,
    ),
)

REGISTRY: dict[str, Criterion] = {c.name: c for c in _BUILTIN}

#: the criteria names in registry order (= alpha's columns); rebound by (un)register_criterion
CRITERIA: tuple[str, ...] = tuple(REGISTRY)


def _refresh() -> None:
    global CRITERIA
    CRITERIA = tuple(REGISTRY)


def register_criterion(criterion: Criterion) -> Criterion:
    """Add ``criterion`` at the end of the registry (its score becomes alpha's last column). Do it before
    the code location (``quadmix_assets.definitions``) is imported: the graph is generated when it loads."""
    if criterion.name in REGISTRY:
        raise ValueError(f"criterion {criterion.name!r} is already registered")
    REGISTRY[criterion.name] = criterion
    _refresh()
    return criterion


def unregister_criterion(name: str) -> None:
    """Remove a registered criterion (for tests that registered one)."""
    REGISTRY.pop(name)
    _refresh()


def criteria() -> list[Criterion]:
    """Every registered criterion, in alpha's column order."""
    return list(REGISTRY.values())


def get_criterion(name: str) -> Criterion:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown criterion {name!r}; registered: {', '.join(REGISTRY)}") from None


def teacher_criteria() -> list[Criterion]:
    """The criteria with a teacher and a distilled student, in registry order."""
    return [c for c in REGISTRY.values() if c.teacher is not None]


def teacher_configs(preset, modes: Mapping[str, str | None] | None = None) -> dict[str, TeacherConfig]:
    """Every teacher criterion's :class:`TeacherConfig`: the preset's defaults, ``modes`` overriding the
    mode (None: keep the preset's). A mode other than 'direct' / 'distill' is refused."""
    modes = dict(modes or {})
    unknown = sorted(set(k for k, v in modes.items() if v is not None) - {c.name for c in teacher_criteria()})
    if unknown:
        raise ValueError(f"scoring mode given for {unknown}: not teacher criteria ({[c.name for c in teacher_criteria()]})")
    out = {}
    for c in teacher_criteria():
        cfg = c.teacher.defaults(preset)
        if modes.get(c.name) is not None:
            cfg = TeacherConfig(mode=modes[c.name], sample=cfg.sample)
        if cfg.mode not in MODES:
            raise ValueError(f"{c.name}_mode must be 'direct' or 'distill', got {cfg.mode!r}")
        out[c.name] = cfg
    return out


# kept for readers of the old parallel dicts (reporting, tests): views of the registry
def descriptions() -> dict[str, str]:
    return {c.name: c.description for c in REGISTRY.values()}


def score_ranges() -> dict[str, tuple[float, float]]:
    return {c.name: c.score_range for c in REGISTRY.values()}


__all__ = [
    "CRITERIA",
    "Criterion",
    "MODES",
    "REGISTRY",
    "Scored",
    "Teacher",
    "TeacherConfig",
    "attribute_name",
    "criteria",
    "get_criterion",
    "register_criterion",
    "teacher_configs",
    "teacher_criteria",
    "unregister_criterion",
]
