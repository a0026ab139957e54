"""The Edu stand-in as PRESET builds it (label set LABELS, default the FineWeb-Edu rubric points), judged on a
finished storage root (read only): the head's held-out figures; Spearman of the teacher and of its distilled
fastText student with the 150 FineWeb-Edu prompt scores; the teacher's top-quarter share of the legal-keyword
FineWeb pages on a seeded 2,000-document sample of the stored corpus (with the stored heuristic and edu
scores on the same sample); the student's held-out teacher-student Spearman and its card on the whole corpus.
One torch thread.

    .venv/bin/python benchmarks/edu_stand_in.py STORAGE PRESET [LABELS]
"""
import sys, time, json
import numpy as np, torch
torch.set_num_threads(1)
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring import cards
from quadmix_assets.scoring.criteria import criteria
from quadmix_assets.scoring.edu_scorer import TextEncoder, load_edu_training_set, train_edu_head
from quadmix_assets.scoring.distill import corpus_sample, train_student
from quadmix_assets.scoring.sampling import sample_for_annotation
from quadmix_assets.scoring.evaluation import spearman
from quadmix_assets.storage import layout
labels = sys.argv[3] if len(sys.argv) > 3 else "fineweb_edu_rubric"
settings = QuadmixSettings.from_env(storage_root=sys.argv[1], preset=sys.argv[2])
storage = settings.storage(); cfg = settings.config()
seed = settings.run_preset().seed
opts = cfg.criterion("edu"); print("seed", seed, "opts", opts, flush=True)
shards = sorted(p.split("/")[-1][:-8] for p in storage.list("documents", ".parquet"))
names = storage.read_json(layout.model_card("domain_classifier"))["domain_names"]
view = cards.load_corpus_view(storage, shards, [c.name for c in criteria()], names)
all_ids = storage.dataset([layout.documents(k) for k in shards]).to_table(columns=["id"])["id"].to_pylist()
texts_all = storage.dataset([layout.documents(k) for k in shards]).to_table(columns=["text"])["text"].to_pylist()
enc = TextEncoder(max_length=opts["max_length"])
ids, texts, y = load_edu_training_set(settings.data_dir, labels)
keep = np.sort(sample_for_annotation(ids, min(opts["train_docs"], len(ids)), seed=seed))
t = time.process_time()
ex, _ = enc.encode([texts[i] for i in keep])
head, rep = train_edu_head(ex, y[keep], [ids[i] for i in keep], seed=seed)
print("head", labels, rep, f"cpu {time.process_time()-t:.0f}s", flush=True)
tp, ref = cards.load_fineweb_edu_prompt_scores(settings.data_dir)
ep, _ = enc.encode(tp)
print("teacher prompt spearman", spearman(head.predict(ep), ref), flush=True)
# teacher on a seeded corpus sample of 2000 (contains the 800-doc distill sample)
sidx = np.sort(sample_for_annotation(all_ids, 2000, seed=seed))
es, _ = enc.encode([texts_all[i] for i in sidx])
ts = head.predict(es).astype(np.float64)
sub = cards.CorpusView(view.n_tokens[sidx], view.source[sidx], view.domain[sidx], view.domain_names, {})
for nm, s in (("edu teacher (2000-doc sample)", ts), ("heuristic (same sample)", view.scores["heuristic"][sidx]),
              ("edu stored (same sample)", view.scores["edu"][sidx])):
    c = cards.criterion_card(nm, "", s, sub, seed=seed); fw = c["sources"]["shares"]["fineweb"]
    print(f"{nm}: fineweb top {fw['top']:.3f} rand {fw['random']:.3f} effb {c['buckets']['effective']['top']:.1f}/{c['buckets']['effective']['random']:.1f} warn={c['verdict']['warnings']}", flush=True)
# distill as the pipeline does: teacher on corpus_sample(sample), fastText student
d_ids, d_texts = corpus_sample(storage, shards, opts["sample"], seed)
pos = {d: k for k, d in enumerate(np.asarray(all_ids)[sidx])}
d_scores = ts[[pos[d] for d in d_ids]]
student, srep = train_student(d_texts, d_scores, d_ids, seed=seed)
print("student", {k: v for k, v in srep.items() if k in ("spearman", "n_test", "n_train")}, flush=True)
ss = student.score(texts_all).astype(np.float64)
print("student prompt spearman", spearman(student.score(tp), ref), flush=True)
st = cards.student_status("edu", "distill", {"mode": "distill", "report": srep})
c = cards.criterion_card("edu", "", ss, view, seed=seed, student=st); fw = c["sources"]["shares"]["fineweb"]
print(f"edu student full corpus: fineweb top {fw['top']:.3f} rand {fw['random']:.3f} effb {c['buckets']['effective']['top']:.1f}/{c['buckets']['effective']['random']:.1f} warn={c['verdict']['warnings']}", flush=True)
