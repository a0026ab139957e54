"""The criterion cards in the test-preset graph: `quadmix run`'s pipeline (the shared two-shard demo run)
materializes `criteria_evaluation` with a card per registered criterion, its check, the UI metadata (table,
picture, one card each) and, for a student measured on too few held-out documents (the test preset distils on
a handful), the warning in the run's output."""

from __future__ import annotations

from dagster import AssetKey

from quadmix_assets.scoring.criteria import CRITERIA, teacher_criteria
from quadmix_assets.storage import layout


def test_criterion_cards_materialize_with_the_check_and_the_reason_in_the_output(demo_run):
    settings, instance, summary, lines = demo_run
    report = settings.storage().read_json(layout.criterion_cards())
    assert report["criteria"] == list(CRITERIA) and set(report["cards"]) == set(CRITERIA)
    evaluation = settings.storage().read_json(layout.criteria_report())
    for name, card in report["cards"].items():
        assert card["coverage"] == 1.0 and card["documents"] == report["documents"] > 1000, name
        assert card["roc_auc_human"] == evaluation["roc_auc"][name]
        assert card["edu_prompt"]["n"] == 150 and -1 <= card["edu_prompt"]["spearman"] <= 1
        assert card["verdict"]["lean_judged"], name  # two shards: a top quarter of hundreds of documents
        assert set(card["sources"]["shares"]) == {"weborganizer", "fineweb", "commoncrawl-raw"}
        assert card["buckets"]["effective"]["top"] > 0
    # every teacher criterion's student card is read; the test preset's students are measured on a handful of
    # held-out documents, so each is marked unreliable, and says why in the check, the metadata and the output
    students = {c.name for c in teacher_criteria()}
    for name in students:
        st = report["cards"][name]["student"]
        assert st["mode"] == "distill" and st["n_heldout"] < 30 and st["unreliable"], st
    assert set(report["unreliable"]) == students
    assert any(f.startswith("criterion_cards_sound") and f.endswith("WARN") for f in summary.checks_failed), summary.checks_failed
    printed = [line for line in lines if line.startswith("[criteria] WARNING")]
    for name in students:  # the test preset mixes every criterion: an unreliable column of alpha is said so
        assert any(line.startswith(f"[criteria] WARNING {name} IS A COLUMN OF ALPHA in this run, but its distilled student")
                   for line in printed), printed
    event = instance.get_latest_materialization_event(AssetKey("criteria_evaluation"))
    md = event.asset_materialization.metadata
    assert "data:image/png;base64," in md["criterion_cards"].value
    assert {f"card_{c}" for c in CRITERIA} <= set(md)
    assert "**UNRELIABLE**" in md["card_askllm"].value
    assert sorted(md["criteria_unreliable"].value) == sorted(students)
    assert sorted(md["unreliable_in_alpha"].value) == sorted(students) and md["criteria_left_out"].value == {}
    assert "**USED IN ALPHA although unreliable**" in md["card_askllm"].value
