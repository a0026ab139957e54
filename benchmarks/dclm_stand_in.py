"""The DCLM stand-in for one or more positive WebOrganizer format sets, trained here (seed of PRESET) on the
bundled reference corpus and judged on a finished storage root (read only): ROC-AUC against the 499 DCLM
human votes and the criterion card of its scores over the stored corpus (share of the legal-keyword FineWeb
pages in its top quarter, warnings), next to the stored heuristic and dclm scores.

    .venv/bin/python benchmarks/dclm_stand_in.py STORAGE PRESET 0,7,11,22 [5,7,17,22 0,7,11,22@0.8 0,7,11,22/4 ...]

(a set's ``@c`` sets the positives' minimum WebOrganizer format confidence, default 0.5; ``/b`` matches the
negatives' lengths in ``b`` bins, default none; ``#k`` trains with the preset's seed + k, to see the spread
over seeds)
"""
import sys, time
import numpy as np
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring import cards
from quadmix_assets.scoring.criteria import criteria
from quadmix_assets.scoring.dclm_classifier import train_dclm_classifier, dclm_scores
from quadmix_assets.scoring.evaluation import load_dclm_human_labels, roc_auc
from quadmix_assets.scoring.reference_data import load_reference_corpus
from quadmix_assets.storage import layout
settings = QuadmixSettings.from_env(storage_root=sys.argv[1], preset=sys.argv[2])
storage = settings.storage()
shards = sorted(p.split("/")[-1][:-8] for p in storage.list("documents", ".parquet"))
names = storage.read_json(layout.model_card("domain_classifier"))["domain_names"]
view = cards.load_corpus_view(storage, shards, [c.name for c in criteria()], names)
texts_all = storage.dataset([layout.documents(k) for k in shards]).to_table(columns=["text"])["text"].to_pylist()
corpus = load_reference_corpus(settings.data_dir)
ht, hy = load_dclm_human_labels(settings.data_dir)
seed = settings.run_preset().seed
def card(name, s):
    c = cards.criterion_card(name, "", s, view, seed=seed)
    fw = c["sources"]["shares"]["fineweb"]
    return f"fineweb top {fw['top']:.3f} rand {fw['random']:.3f} effb top {c['buckets']['effective']['top']:.1f} rand {c['buckets']['effective']['random']:.1f} warn={c['verdict']['warnings']}"
print("heuristic", card("heuristic", view.scores["heuristic"]))
print("dclm (stored scores)", card("dclm", view.scores["dclm"]))
for spec in sys.argv[3:]:
    # "0,7,11,22", "0,7,11,22@0.7" (minimum format confidence), "0,7,11,22/4" (negatives matched in 4 length
    # bins), "0,7,11,22#1" (the preset's seed + 1: another negative draw and fastText initialisation)
    spec, _, offset = spec.partition("#")
    spec, _, bins = spec.partition("/")
    fmt_spec, _, conf = spec.partition("@")
    fm = tuple(int(x) for x in fmt_spec.split(","))
    extra = ({"min_confidence": float(conf)} if conf else {}) | ({"length_bins": int(bins)} if bins else {})
    t=time.time()
    m, rep = train_dclm_classifier(corpus["id"].to_pylist(), corpus["text"].to_pylist(), settings.data_dir, seed=seed + int(offset or 0), epoch=settings.config().criterion("dclm")["epochs"], formats=fm, **extra)
    auc = roc_auc(dclm_scores(m, ht), hy)
    s = dclm_scores(m, texts_all).astype(np.float64)
    print(f"formats {fm} {extra} seed +{offset or 0}: n_pos {rep['n_pos']} n_neg {rep['n_neg']} test auc {rep['auc']:.3f} human AUC {auc:.3f} | {card('dclm', s)} ({time.time()-t:.0f}s)", flush=True)
