"""Declarative automation: which assets Dagster keeps current by itself, and on what signal.

Every condition here is evaluated by ``quadmix_automation_sensor`` (``defs/operations/automation.py``; stopped by
default, since the ``quadmix_loop`` sensor keeps every stage current; turn it on to add these). The signals are Dagster's own event log: a parent's new materialization, or a changed
``code_version`` on the asset itself (a model's new version reaches its consumers as a new
materialization of the model asset). The guards keep a request from starting while its inputs are
missing or being written, and never twice for the same signal (``since_last_handled``).

What is automated, and what is not:

* ``documents`` re-runs when its code version changes. A new or replaced corpus file is not a signal
  here: the shard sensor finds it (by content hash) and runs the whole ``shard_job`` for it.
* ``domain_labels`` and ``quality_*`` (per shard) re-run when their shard's documents, their model
  (classifier, teacher or student) or their own code version changes. New partitions are left to the
  shard sensor (no "newly missing" trigger), so a new shard is never requested twice.
* ``criteria_evaluation`` re-runs when shard scores or the scorers change. A shard that is missing (a
  bad file that failed) does not block it; missing models do.
* ``mixture_scores`` re-runs, for every mixture, when the normaliser or the mixture configs update, when
  its code version changes, and for a mixture partition that is new (configs or the search registered
  it). New shard scores alone do not trigger it: they reach the mixtures through the normaliser, which
  is refitted by the nightly refresh (below), so "the next refresh" updates the
  normaliser, then the mixtures.
* ``mixture_manifest`` follows its ``mixture_scores`` partition (eager) and its own code version.
* ``quality_normaliser`` and ``mixture_configs`` (corpus-wide refits) are the nightly refresh: at the
  refresh cron's tick (``QUADMIX_REFRESH_CRON``, default ``0 3 * * *``) each is requested when it is stale,
  i.e. never materialized, or a parent updated or its code version changed since it was last requested or
  updated, and no parent is being written (a refit then would leave that shard out: it waits for the
  next tick). Nothing else refits them by itself.

Not automated, on purpose: the models (``domain_classifier``, ``dclm_classifier``, ``edu_teacher``, every
teacher criterion's student such as ``edu_student`` and ``askllm_student``: training and distillation cost minutes to hours and change every
score downstream), and the optimisation loop (``target_sets``, ``proxy_tokenizer``,
``proxy_run``, ``mixture_regressor``, ``mixture_search``, ``mixture_export``: a proxy training per
mixture is the most expensive step of the method and is run deliberately, by ``quadmix run`` or from
the UI). Their UI still marks them stale when a parent or their code version changed.
"""

import os

from dagster import AssetSelection, AutomationCondition

from quadmix_assets.scoring.criteria import criteria

AC = AutomationCondition


def criteria_scorer_models() -> list[str]:
    """The model assets the registered criteria's scorers read (a plain criterion's models, a teacher
    criterion's student), in registry order: the unpartitioned parents of ``criteria_evaluation``."""
    return list(dict.fromkeys(m for c in criteria() for m in c.scorer_models))


#: the parents whose update re-scores every mixture
MIXTURE_INPUTS = AssetSelection.assets("quality_normaliser", "mixture_configs")
#: unpartitioned parents of criteria_evaluation (the scorers); its per-shard parents may be missing
CRITERIA_MODELS = AssetSelection.assets(*criteria_scorer_models())


def _guarded(trigger: AutomationCondition, missing: AutomationCondition, label: str) -> AutomationCondition:
    """``trigger`` since this asset was last requested or updated, while no parent is missing (as
    ``missing`` counts them) or in progress and the asset itself is not in progress."""
    return (
        trigger.since_last_handled()
        & ~missing
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label(label)


#: when the corpus refresh runs (read when the code location loads)
REFRESH_CRON = os.environ.get("QUADMIX_REFRESH_CRON", "0 3 * * *")


#: quality_normaliser, mixture_configs (the nightly corpus refresh): at each tick of the cron, when stale (never
#: materialized, or a parent updated or the code version changed since last handled) and nothing in progress
REFRESH = (
    AC.cron_tick_passed(REFRESH_CRON)
    & (AC.missing() | (AC.any_deps_updated() | AC.code_version_changed()).since_last_handled())
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label("refresh_when_stale")

#: documents: only a new code version (new or replaced files are the shard sensor's)
DOCUMENTS = (AC.code_version_changed().since_last_handled() & ~AC.in_progress()).with_label("documents_code_changed")

#: domain_labels, quality_*: their shard's documents, their model, or their code changed
SHARD_ATTRIBUTE = _guarded(
    AC.any_deps_updated() | AC.code_version_changed(), AC.any_deps_missing(), "shard_attribute_current"
)

#: criteria_evaluation: shard scores or scorers changed; missing shards do not block, missing models do
CRITERIA = _guarded(
    AC.any_deps_updated() | AC.code_version_changed(),
    AC.any_deps_missing().allow(CRITERIA_MODELS),
    "criteria_current",
)

#: mixture_scores: normaliser or configs updated, code changed, or a new mixture partition
MIXTURE_SCORES = _guarded(
    AC.newly_missing() | AC.any_deps_updated().allow(MIXTURE_INPUTS) | AC.code_version_changed(),
    AC.any_deps_missing().allow(MIXTURE_INPUTS),
    "mixture_scores_current",
)

#: mixture_manifest: eager on its scores partition, or its code changed
MIXTURE_MANIFEST = _guarded(
    AC.newly_missing() | AC.any_deps_updated() | AC.code_version_changed(),
    AC.any_deps_missing(),
    "mixture_manifest_current",
)
