"""Criterion cards of a finished storage root, computed read-only with the library exactly as
criteria_evaluation does (nothing is written to the storage): ``python benchmarks/criterion_cards.py STORAGE
PRESET [OUT.json] [--no-edu-prompt]`` prints each card's figures and warnings; OUT.json gets the report and
OUT.png its picture."""
import json, sys, time
import numpy as np
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring import cards
from quadmix_assets.scoring.criteria import criteria, teacher_criteria
from quadmix_assets.storage import layout

root, preset = sys.argv[1], sys.argv[2]
settings = QuadmixSettings.from_env(storage_root=root, preset=preset)
storage = settings.storage()
config = settings.config()
shards = sorted(p.split("/")[-1][:-8] for p in storage.list("documents", ".parquet"))
names = storage.read_json(layout.model_card("domain_classifier"))["domain_names"]
t = time.time()
view = cards.load_corpus_view(storage, shards, [c.name for c in criteria()], names)
auc = storage.read_json(layout.criteria_report())["roc_auc"]
edu = {}
if "--no-edu-prompt" not in sys.argv:
    texts, ref = cards.load_fineweb_edu_prompt_scores(settings.data_dir)
    for c in criteria():
        score, _ = c.make_scorer(settings, storage)
        edu[c.name] = cards.edu_prompt_agreement(np.asarray(score(texts).values), ref)
students = {c.name: cards.student_status(c.name, config.teacher(c.name).mode,
            storage.read_json(layout.model_card(c.student)) if storage.exists(layout.model_card(c.student)) else None)
            for c in teacher_criteria()}
report = cards.build_cards([(c.name, c.description) for c in criteria()], view, seed=config.preset.seed,
                           roc_auc_human=auc, edu_prompt=edu, students=students, left_out=config.alpha_left_out)
print(f"{len(shards)} shards, {view.n} docs, {time.time() - t:.1f}s")
for name, c in report["cards"].items():
    fw = (c["sources"] or {}).get("shares", {}).get("fineweb", {})
    e, d = c["buckets"]["effective"], c["domains"]["effective"]
    print(f"{name:10s} AUC {c['roc_auc_human']:.3f} eduSp {(c['edu_prompt'] or {}).get('spearman', float('nan')):.3f} "
          f"cov {c['coverage']:.3f} fineweb top {fw.get('top', float('nan')):.3f} rand {fw.get('random', float('nan')):.3f} "
          f"corpus {fw.get('corpus', float('nan')):.3f} auc_src {fw.get('auc', float('nan')):.3f} | eff buckets top {e['top']:.1f} rand {e['random']:.1f} "
          f"corpus {e['corpus']:.1f} | eff domains top {d['top']:.1f} rand {d['random']:.1f} | eff src top {c['sources']['effective']['top']:.2f} "
          f"rand {c['sources']['effective']['random']:.2f} | eta2 bucket {c['buckets']['eta_squared']:.3f} src {c['sources']['eta_squared']:.3f} "
          f"| largest bucket gain {c['buckets']['largest_gain']['label']} {c['buckets']['largest_gain']['gain']:+.3f}")
    for w in c["verdict"]["warnings"]:
        print("   WARN", w)
if len(sys.argv) > 3 and sys.argv[3].endswith(".json"):
    json.dump(report, open(sys.argv[3], "w"), indent=1, default=float)
    open(sys.argv[3][:-5] + ".png", "wb").write(cards.cards_png(report))
