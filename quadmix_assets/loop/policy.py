"""The loop's decisions, in one place: what to run next, when a round is complete, whether another round
is worth it, search, fallback and export.

:func:`next_step` looks at the facts of a storage root and its Dagster instance (:class:`Facts`, read by
the Dagster layer: ``quadmix_assets.defs.operations.loop``) and returns the next :class:`Step` (a job and the
partitions it runs), or :class:`Finished` when nothing is left. It keeps no state of its own: called
again after a step ran, it sees that step's outputs and moves on. Whoever executes the steps takes the
same decisions on the same inputs: ``quadmix run`` (in this process or its workers), the
``quadmix_loop`` sensor under the Dagster daemon (a run launcher: local processes or Kubernetes Jobs),
and therefore a launch from the UI.

The stages, in order (each waits for the ones before it):

1. ``models``: the domain and DCLM-style classifiers and the Edu teacher (``models_job``);
2. ``shards``: every corpus shard's documents, domain label and fast scores (``shard_fast_job``);
3. ``distill``: the transformer criteria's students (``distill_job``);
4. ``shard models``: every scored shard's transformer criteria (``shard_model_job``);
5. ``normaliser``: the global normaliser, criteria evaluation and mixture configs (``refresh_job``);
6. ``mixtures``: every registered mixture (drawn configs, baselines, later rounds, the optimum):
   scores and manifest (``mixture_job``);
7. ``proxy setup``: target sets and the proxies' tokenizer (``proxy_setup_job``);
8. ``proxies``: every mixture with a manifest that has no proxy yet (``proxy_job``, consecutive
   partitions stacked in one run); a proxy made stale by a corpus refresh is retrained only when the
   refresh policy says so (:class:`RefreshPolicy`);
9. ``noise``: the noise ceiling (``noise_job``);
10. ``rounds``: while fewer than the preset's ``search_rounds`` rounds are registered, refit the
    regressor on every finished training proxy (``regressor_job``) and let it propose the next round
    (``rounds_job``); a round whose predicted gain is below the proxy noise is not proposed, and the
    rounds stop there. A proposed round's mixtures and proxies are stages 6 and 8 again;
11. ``search``: the final regressor and, if its blocking check passes, the optimum (``search_job``),
    which registers a mixture: its manifest and proxy are stages 6 and 8 again;
12. ``export``: the search optimum; when the regressor was not promoted, or when the optimum's own proxy
    measured worse than the best measured config by more than the noise (:func:`compare_to_best`: more
    than ``export_margin_noise`` x the proxy noise SD, sqrt(2) by default), the best measured config,
    labelled so (``export_job``).

A partition whose run failed is left out of its stage (the rest go on); a failed one-run stage stops the
loop (``models``, ``distill``, ``normaliser``, ``proxy setup``) or ends the rounds (``regressor``,
``rounds``) or falls back to the best measured config (``search``).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

#: run tag naming why a mixture is exported (read by the export asset)
SELECTED_AS_TAG = "quadmix/selected_as"
#: the label of an export chosen by the search
SEARCH_OPTIMUM = "search optimum"
#: the label every export of the best measured config starts with (the reason follows)
BEST_MEASURED = "best measured config"
#: run tag holding the comparison the export was chosen by (JSON of :func:`compare_to_best`; the export records it)
SELECTION_TAG = "quadmix/selection"
#: the default margin, in proxy noise SDs, by which the optimum's measured loss may exceed the best measured
#: config's before the best measured config is exported instead: sqrt(2), one SD of the difference of two
#: proxy losses that each carry the measured seed noise (docs/method.md, "Which mixture is exported")
EXPORT_MARGIN_NOISE = math.sqrt(2)

#: (stage, job) of the one-run stages whose failure stops the loop
_STOPPING = {"models_job": "models", "distill_job": "distill", "refresh_job": "normaliser", "proxy_setup_job": "proxy setup"}


class State(enum.Enum):
    """How a job's outputs (for one partition, or the job's only run) stand."""

    CURRENT = "current"  # made with these settings from the current inputs, files intact
    MISSING = "missing"  # never made, made with other settings or code, or its files are damaged: make it
    STALE = "stale"  # made with these settings, but an input changed since (a corpus refresh)
    FAILED = "failed"  # its latest run failed: left out until asked again


@dataclass(frozen=True)
class Status:
    state: State
    why: str = ""

    @property
    def current(self) -> bool:
        return self.state is State.CURRENT


class Facts(Protocol):
    """What the policy reads. The Dagster layer answers from the instance and the storage root."""

    search_rounds: int  # the preset's rounds of proxies (1: the random draws only)

    def shards(self) -> list[str]:
        """The corpus' shard keys, in order."""

    def status(self, job: str, key: str | None = None) -> Status:
        """How ``job``'s outputs for partition ``key`` (None: an unpartitioned job) stand."""

    def mixtures(self) -> list[str]:
        """Every registered mixture id, in registration order (empty before the mixture configs exist)."""

    def last_round(self) -> int:
        """The highest search round registered (1: the random draws; 0: none)."""

    def training_ids(self) -> list[str]:
        """The configs the regressor learns from that have a finished proxy (draws and rounds)."""

    def regressor(self) -> dict | None:
        """The stored regressor report (``mixture_ids``, ``regressor_version``, ``gate``), if any."""

    def rounds_decision(self) -> dict | None:
        """The stored decision of the last ``rounds_job`` (``regressor_version``, ``proposed``, ``why``)."""

    def search_result(self) -> dict | None:
        """The stored search result (``mixture_id``, the spec with ``found_by.regressor_version``)."""

    def proxy_loss(self, mixture_id: str) -> float | None:
        """A mixture's measured proxy target loss (None: none finished)."""

    def best_measured(self) -> tuple[str | None, float | None]:
        """The training config with the lowest measured proxy loss, and that loss."""

    def noise_sd(self) -> float | None:
        """The measured proxy noise SD (None: not measured)."""

    def new_share(self) -> float:
        """The share of the corpus' documents that no stale proxy's mixture was drawn from (a refresh)."""

    def exported_as(self, mixture_id: str) -> str | None:
        """Why the current export of ``mixture_id`` was selected (its ``selected_as``), if it is current."""

    def previous_export(self) -> tuple[str, str] | None:
        """The latest export's mixture and why it was selected, current or not (None: never exported)."""

    def stale_because(self, job: str) -> list[tuple[str, str | None]]:
        """Why Dagster's stale status (the UI's badge) says a one-run job's output is stale: per cause the
        dependency and its partition, or (reason, None) for a cause naming no dependency; empty: fresh."""


@dataclass(frozen=True)
class RefreshPolicy:
    """When a corpus refresh reruns the proxies, the regressor and the search.

    After a refresh (new or changed shards) the mixtures are redrawn from the new corpus and the selected
    mixture is exported again at once: its parameters applied to the new corpus, no proxy trained. The
    proxies made stale by the refresh are retrained (and with them the regressor, rounds and search) when
    ``reoptimise`` is ``always``, or when the share of documents new to them reaches
    ``reoptimise_new_share``; ``never`` keeps the measured proxies until asked (``quadmix run
    --reoptimise``). A proxy that is missing (never trained, other settings, damaged files) is always
    trained."""

    reoptimise: str = "share"  # "share" | "always" | "never"
    reoptimise_new_share: float = 0.25
    # export the best measured config when the optimum's measured loss is worse than its by more than this x the
    # proxy noise SD (None: always the optimum when the regressor is promoted)
    export_margin_noise: float | None = EXPORT_MARGIN_NOISE

    def retrain_stale(self, facts: Facts) -> bool:
        if self.reoptimise == "always":
            return True
        if self.reoptimise == "never":
            return False
        return facts.new_share() >= self.reoptimise_new_share


@dataclass(frozen=True)
class Step:
    """Run ``job`` for ``keys`` (partition keys; ``(None,)`` for an unpartitioned job)."""

    stage: str
    job: str
    keys: tuple[str | None, ...] = (None,)
    tags: dict = field(default_factory=dict)
    why: str = ""
    group: int = 1  # at most this many consecutive partitions per Dagster run (stacked proxies, mixtures)
    add_partitions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # dynamic partitions to add first

    @property
    def partitioned(self) -> bool:
        return self.keys != (None,)


@dataclass(frozen=True)
class Finished:
    """Nothing is left to run. ``export``: the exported mixture (None: none), ``selected_as`` why;
    ``stopped``: the stage that stopped the loop and why (empty when it ran to the end)."""

    export: str | None = None
    selected_as: str = ""
    stopped: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = field(default=(), compare=False)  # why, in words (the run's summary prints them)


#: the stages whose outputs are kept per partition or once, in the loop's order: (label, job, partitions:
#: None for a one-run job, else the partitions it runs over: "shards", "scored shards" or "mixtures")
STAGES: tuple[tuple[str, str, str | None], ...] = (
    ("models", "models_job", None),
    ("shard", "shard_fast_job", "shards"),
    ("distill", "distill_job", None),
    ("transformer scores", "shard_model_job", "scored shards"),
    ("normaliser", "refresh_job", None),
    ("mixture", "mixture_job", "mixtures"),
    ("targets", "proxy_setup_job", None),
    ("proxies", "proxy_job", "made mixtures"),
    ("noise", "noise_job", None),
)

#: proxy partitions per Dagster run at most (the preset's ``proxy_group_size`` stacks within a run)
PROXY_GROUP = 64
#: mixture partitions per Dagster run at most
MIXTURE_GROUP = 256


def _todo(facts: Facts, job: str, keys: Sequence[str], retrain_stale: bool = True) -> tuple[list[str], list[str]]:
    """(keys to run, keys whose latest run failed)."""
    todo, failed = [], []
    for key in keys:
        st = facts.status(job, key)
        if st.state is State.FAILED:
            failed.append(key)
        elif st.state is State.MISSING or (st.state is State.STALE and (retrain_stale or "code version" in st.why)):
            todo.append(key)
    return todo, failed


def _once(facts: Facts, stage: str, job: str) -> Step | Finished | None:
    """A one-run stage: its step, a stop (failed), or None (current)."""
    st = facts.status(job)
    if st.state is State.FAILED and job in _STOPPING:
        return Finished(stopped={_STOPPING[job]: st.why})
    if st.state in (State.MISSING, State.STALE):
        return Step(stage, job, why=st.why)
    return None


def ok_shards(facts: Facts) -> list[str]:
    """The shards whose fast scores (documents, domain label, fast criteria) are current."""
    return [k for k in facts.shards() if facts.status("shard_fast_job", k).current]


def ok_mixtures(facts: Facts) -> list[str]:
    """The registered mixtures whose scores and manifest are current."""
    return [k for k in facts.mixtures() if facts.status("mixture_job", k).current]


def next_step(facts: Facts, policy: RefreshPolicy = RefreshPolicy()) -> Step | Finished:
    """The first thing the loop still has to do, or :class:`Finished`."""
    if (s := _once(facts, "models", "models_job")) is not None:
        return s
    shards = facts.shards()
    if not shards:
        return Finished(stopped={"shards": "the corpus has no shard"})
    todo, _ = _todo(facts, "shard_fast_job", shards)
    if todo:
        return Step("shard", "shard_fast_job", tuple(todo), why="documents, domain labels and fast scores",
                    add_partitions={"shards": tuple(todo)})
    scored = ok_shards(facts)
    if not scored:
        return Finished(stopped={"shards": "no shard could be read and scored"})
    if (s := _once(facts, "distill", "distill_job")) is not None:
        return s
    todo, _ = _todo(facts, "shard_model_job", scored)
    if todo:
        return Step("transformer scores", "shard_model_job", tuple(todo))
    if (s := _once(facts, "normaliser", "refresh_job")) is not None:
        return s

    todo, _ = _todo(facts, "mixture_job", facts.mixtures())
    if todo:
        return Step("mixture", "mixture_job", tuple(todo), group=MIXTURE_GROUP, add_partitions={"mixtures": tuple(todo)})
    mixtures = ok_mixtures(facts)
    if not mixtures:
        return Finished(stopped={"mixtures": "no mixture was made"})
    if (s := _once(facts, "proxy setup", "proxy_setup_job")) is not None:
        return s
    previous = facts.previous_export()
    retrain = previous is None or policy.retrain_stale(facts)
    todo, _ = _todo(facts, "proxy_job", mixtures, retrain_stale=retrain)
    if todo:
        return Step("proxies", "proxy_job", tuple(todo), group=PROXY_GROUP)
    if not retrain and any(facts.status("proxy_job", k).state is State.STALE for k in mixtures):
        return _refresh_export(facts, previous)
    noise = facts.status("noise_job")
    # the noise ceiling retrains a seeded subset of the drawn configs: later rounds' proxies do not change it
    # (nor does Dagster count them as its inputs); a new corpus, settings or code version does
    if noise.state is State.MISSING or (noise.state is State.STALE and _changed_inputs(noise.why)):
        return Step("noise", "noise_job", why=noise.why)

    if (s := _rounds(facts)) is not None:
        return s
    return _search_and_export(facts, policy)


def _changed_inputs(why: str) -> bool:
    """A stale reason that is a new corpus or a new code version, not only a parent's new partitions."""
    return "another set of shards" in why or "code version" in why


def _refresh_export(facts: Facts, previous: tuple[str, str]) -> Step | Finished:
    """After a corpus refresh the policy does not reoptimise for: the exported mixture's parameters applied
    to the refreshed corpus (its mixture redrawn in stage 6) and exported again, under the same label."""
    mixture_id, selected_as = previous
    if not facts.status("mixture_job", mixture_id).current:
        return Finished(stopped={"export": f"the exported mixture {mixture_id} could not be redrawn on the refreshed corpus"})
    if facts.exported_as(mixture_id) == selected_as:
        return Finished(export=mixture_id, selected_as=selected_as, notes=("refreshed: proxies not retrained",))
    return Step("export", "export_job", (mixture_id,), tags={SELECTED_AS_TAG: selected_as},
                add_partitions={"exports": (mixture_id,)}, why="the exported mixture applied to the refreshed corpus")


def rounds_done(facts: Facts) -> str | None:
    """Why no further round is proposed (None: one may be)."""
    if facts.last_round() >= facts.search_rounds:
        return f"{facts.last_round()} of {facts.search_rounds} rounds exist"
    for job in ("regressor_job", "rounds_job"):
        if facts.status(job).state is State.FAILED:
            return f"{job} failed: {facts.status(job).why}"
    reg, decision = facts.regressor(), facts.rounds_decision()
    if (reg is not None and decision is not None and regressor_is_current(facts)
            and decision.get("regressor_version") == reg.get("regressor_version") and not decision.get("proposed")):
        return decision.get("why") or "the regressor proposed no round"
    return None


def regressor_is_current(facts: Facts) -> bool:
    """The stored regressor was fitted on exactly the training configs with a finished proxy now."""
    reg = facts.regressor()
    return reg is not None and sorted(reg.get("mixture_ids") or []) == sorted(facts.training_ids())


def _rounds(facts: Facts) -> Step | None:
    if rounds_done(facts) is not None:
        return None
    if not regressor_is_current(facts):
        return Step("rounds", "regressor_job", why=f"refit on {len(facts.training_ids())} finished proxies")
    reg, decision = facts.regressor(), facts.rounds_decision()
    if decision is None or decision.get("regressor_version") != reg.get("regressor_version"):
        return Step("rounds", "rounds_job", why=f"round {facts.last_round() + 1}")
    return None  # this regressor's round is registered: its mixtures and proxies are stages 6 and 8


def _search_and_export(facts: Facts, policy: RefreshPolicy) -> Step | Finished:
    if not facts.training_ids():
        return Finished(stopped={"search": "no finished proxy of a drawn config to learn from"})
    search_failed = facts.status("search_job").state is State.FAILED
    if not search_failed and not regressor_is_current(facts):
        return Step("search", "search_job", why="the final regressor and the optimum")
    reg = facts.regressor() or {}
    gate = reg.get("gate") or {}
    found = facts.search_result()
    if not search_failed and gate.get("passed") and (
            found is None or found["spec"]["found_by"]["regressor_version"] != reg.get("regressor_version")):
        return Step("search", "search_job", why="the optimum of the current regressor")
    decision = export_decision(facts, policy, search_failed)
    selected, selected_as, notes = decision["export"], decision["selected_as"], decision["notes"]
    if selected is None:
        return Finished(stopped={"search": selected_as}, notes=notes)
    if facts.exported_as(selected) == selected_as:
        return Finished(export=selected, selected_as=selected_as, notes=notes)
    if not search_failed and ((s := _record_regressor_again(facts)) is not None or (s := _record_rounds_again(facts)) is not None):
        return s
    return Step("export", "export_job", (selected,), tags=selection_tags(selected_as, decision["comparison"]),
                add_partitions={"exports": (selected,)}, why=selected_as)


def _record_regressor_again(facts: Facts) -> Step | None:
    """The final regressor, recorded again before the export when Dagster sees it as stale only because
    proxies it does not learn from were trained after it (the optimum's own proxy, measured after the
    search): Dagster's regressor depends on every ``proxy_run`` partition, so without this a finished run
    shows it stale. The regressor learns from the same finished proxies, so the refit writes the same bytes
    and has the same version: no decision changes, and whatever was decided from it stays fresh."""
    if not regressor_is_current(facts) or facts.status("regressor_job").state is State.FAILED:
        return None
    causes = facts.stale_because("regressor_job")
    learns_from = set((facts.regressor() or {}).get("mixture_ids") or [])
    if causes and all(dep == "proxy_run" and key is not None and key not in learns_from for dep, key in causes):
        return Step("search", "regressor_job",
                    why="the same regressor recorded again after the proxies it does not learn from (the optimum's)")
    return None


def _record_rounds_again(facts: Facts) -> Step | None:
    """With every round registered, the last round's proposal is recorded again (``rounds_job``: "every
    round exists", the stored proposal kept as it is) when Dagster sees it stale only because the final
    regressor, refitted on that round's proxies, came after it. Nothing is proposed or written."""
    if facts.last_round() < facts.search_rounds or facts.status("rounds_job").state is State.FAILED:
        return None
    causes = facts.stale_because("rounds_job")
    if causes and all(c == ("mixture_regressor", None) for c in causes):
        return Step("search", "rounds_job", why="every round exists: recorded after the final regressor")
    return None


def compare_to_best(optimum: str, optimum_loss: float | None, best: str | None, best_loss: float | None,
                    noise_sd: float | None, margin: float | None) -> dict:
    """The export rule on measured facts: is the search optimum's measured proxy loss worse than the best
    measured config's by more than the noise? ``worse`` when ``optimum_loss - best_loss > margin x noise_sd``
    (``margin`` sqrt(2) by default: the difference of two proxy losses, each with the measured seed noise SD,
    has SD sqrt(2) x noise SD). Nothing to compare (a loss or the noise not measured, no margin): not worse.
    Returns the facts, the ``threshold``, ``worse`` and ``why`` (one sentence)."""
    out = {"optimum": optimum, "optimum_loss": optimum_loss, "best_measured": best, "best_measured_loss": best_loss,
           "noise_sd": noise_sd, "margin_noise_sd": margin, "threshold": None, "worse_by": None, "worse": False}
    missing = [name for name, v in (("the optimum's proxy loss", optimum_loss), ("a measured config", best_loss),
                                    ("the proxy noise", noise_sd), ("a margin", margin)) if v is None]
    if missing:
        out["why"] = f"the optimum was not compared with the best measured config (no {', no '.join(missing)})"
        return out
    threshold = margin * noise_sd
    diff = optimum_loss - best_loss
    out.update(threshold=threshold, worse_by=diff, worse=bool(diff > threshold))
    if best == optimum or diff <= 0:
        out["why"] = f"the search optimum {optimum} has the lowest measured proxy loss ({optimum_loss:.4f})"
    elif out["worse"]:
        out["why"] = (f"the search optimum {optimum} measured proxy loss {optimum_loss:.4f}, worse than the best measured "
                      f"config {best} ({best_loss:.4f}) by {diff:.4f} > {margin:.3g} x noise SD {noise_sd:.4f} = {threshold:.4f}")
    else:
        out["why"] = (f"the search optimum {optimum}'s measured proxy loss {optimum_loss:.4f} is within the noise of the best "
                      f"measured config {best}'s ({best_loss:.4f}): {diff:.4f} <= {margin:.3g} x noise SD {noise_sd:.4f} = {threshold:.4f}")
    return out


def selection_tags(label: str, comparison: dict | None) -> dict[str, str]:
    """The export step's run tags: why the mixture is exported, and the comparison it was chosen by."""
    tags = {SELECTED_AS_TAG: label}
    if comparison is not None:
        tags[SELECTION_TAG] = json.dumps(comparison, sort_keys=True)
    return tags


def export_decision(facts: Facts, policy: RefreshPolicy, search_failed: bool = False) -> dict:
    """What the loop exports, as a dict: ``export`` (the mixture, or None when there is nothing to export),
    ``selected_as`` (why), ``notes`` (the run's summary prints them) and ``comparison``.

    The search optimum when the regressor was promoted and the optimum's measured proxy loss is within the
    noise of the best measured config's (:func:`compare_to_best`, whose result is ``comparison``; None when
    the optimum was not compared); else the best measured config, labelled with the reason (``best measured
    config (proxy loss ...): why``)."""
    reg = facts.regressor() or {}
    gate = reg.get("gate") or {}
    found = facts.search_result()
    best, best_loss = facts.best_measured()
    why_not, comparison = None, None
    if search_failed:
        why_not = f"regressor not promoted: the search failed ({facts.status('search_job').why})"
    elif not gate.get("passed"):
        why_not = "regressor not promoted: " + (gate.get("reason") or "the regressor was not promoted")
    elif found is not None:
        optimum = found["mixture_id"]
        if not facts.status("mixture_job", optimum).current:
            return {"export": None, "selected_as": f"the optimum's mixture {optimum} could not be made", "notes": (),
                    "comparison": None}
        comparison = compare_to_best(optimum, facts.proxy_loss(optimum), best, best_loss, facts.noise_sd(),
                                     policy.export_margin_noise)
        if comparison["worse"]:
            why_not = comparison["why"]
        else:
            return {"export": optimum, "selected_as": SEARCH_OPTIMUM, "notes": (comparison["why"],), "comparison": comparison}
    if best is None:
        return {"export": None, "selected_as": f"no optimum and no measured config to fall back on ({why_not})", "notes": (),
                "comparison": comparison}
    label = f"{BEST_MEASURED} (proxy loss {best_loss:.4g}); {why_not}"
    return {"export": best, "selected_as": label, "notes": (why_not or "",), "comparison": comparison}
