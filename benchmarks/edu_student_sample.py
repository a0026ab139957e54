"""How large a sample the Edu teacher must annotate for its fastText student to keep it, and not to lean.

On a finished storage root (read only): the Edu teacher (its stored head) scores the seeded annotation sample
of the largest size asked for (:func:`~quadmix_assets.scoring.distill.corpus_sample`; a smaller sample is a
prefix of a larger one); for each size and for 4 and 2 score bins a student is trained as the run trains it
(:func:`~quadmix_assets.scoring.distill.train_student`) and scores the whole corpus. Printed: the held-out
teacher-student Spearman and the share, by tokens, of the student's top quarter held by the legal-keyword
FineWeb pages (source ``fineweb``), against a random quarter's (:func:`~quadmix_assets.scoring.cards.composition`,
the card's own figure); and the teacher's own share on its sample.

    .venv/bin/python benchmarks/edu_student_sample.py STORAGE [SIZES (800,1600,3200)] [PRESET (cpu)]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring import cards
from quadmix_assets.scoring.criteria import load_edu_teacher
from quadmix_assets.scoring.distill import corpus_sample, train_student
from quadmix_assets.storage import layout

LEGAL_SOURCE = "fineweb"


def main() -> None:
    root = sys.argv[1]
    sizes = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "800,1600,3200").split(",")]
    settings = QuadmixSettings.from_env(storage_root=root, preset=sys.argv[3] if len(sys.argv) > 3 else "cpu")
    storage = settings.storage()
    seed = settings.config().preset.seed
    shards = storage.read_json(layout.normaliser_card())["shards"]  # the shards the run's mixtures draw from
    docs = storage.dataset([layout.documents(k) for k in shards]).to_table(columns=["id", "text", "source", "n_tokens"])
    texts = docs["text"].to_pylist()
    source = np.asarray(docs["source"].to_pylist(), dtype=object)
    n_tokens = docs["n_tokens"].to_numpy().astype(np.float64)
    row = {i: k for k, i in enumerate(docs["id"].to_pylist())}

    def legal_share(scores: np.ndarray) -> str:
        shares = cards.composition(scores, source, n_tokens, seed)["shares"][LEGAL_SOURCE]
        return f"{shares['top']:.3f} (random quarter {shares['random']:.3f})"

    teacher = load_edu_teacher(settings, storage)
    sample_ids, sample_texts = corpus_sample(storage, shards, max(sizes), seed)
    t0 = time.perf_counter()
    teacher_scores = np.asarray(teacher.score(sample_texts)[0], dtype=np.float64)
    print(f"teacher: {len(sample_texts):,} documents in {time.perf_counter() - t0:.0f} s")
    on_sample = np.full(len(texts), np.nan)
    on_sample[[row[i] for i in sample_ids]] = teacher_scores
    print(f"teacher, top quarter of its sample: legal share {legal_share(on_sample)}")
    by_id = dict(zip(sample_ids, teacher_scores))
    for n in sizes:
        ids, sample = corpus_sample(storage, shards, n, seed)
        y = np.asarray([by_id[i] for i in ids])
        for bins in (4, 2):
            student, report = train_student(sample, y, ids, seed=seed, n_bins=bins)
            scores = np.asarray(student.score(texts), dtype=np.float64)
            print(f"sample {n:,}, {bins} bins: held-out teacher-student Spearman {report['spearman']:.3f} "
                  f"({report['n_test']} documents); student's top quarter, whole corpus: legal share {legal_share(scores)}")


if __name__ == "__main__":
    main()
