"""Annotate-then-distill: seeded order-independent sampling, fastText and embedding students."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from quadmix_assets.scoring.distill import (  # noqa: E402
    Student,
    pick_scoring_mode,
    quantile_bins,
    sample_for_annotation,
    train_student,
)
from quadmix_assets.scoring.evaluation import spearman  # noqa: E402


def test_sample_is_seeded_order_independent_and_monotone():
    ids = [f"doc-{i}" for i in range(1000)]
    a = sample_for_annotation(ids, 100, seed=3)
    assert len(a) == 100 and np.all(np.diff(a) > 0)
    rev = ids[::-1]
    b = sample_for_annotation(rev, 100, seed=3)
    assert {ids[i] for i in a} == {rev[i] for i in b}
    bigger = sample_for_annotation(ids, 200, seed=3)
    assert set(a) <= set(bigger)
    assert set(sample_for_annotation(ids, 100, seed=4)) != set(a)
    assert len(sample_for_annotation(ids, 5000, seed=0)) == 1000
    assert len(sample_for_annotation(ids, 0, seed=0)) == 0


def test_quantile_bins_and_mode_rule():
    edges, bins = quantile_bins(np.array([0, 0, 0, 0, 1, 2, 3, 5.0]), 4)
    assert np.all(np.diff(edges) > 0) and bins.min() == 0 and bins.max() == len(edges)
    edges, bins = quantile_bins(np.zeros(10), 4)
    assert len(edges) == 0 and np.all(bins == 0)
    assert pick_scoring_mode(1000, 10.0, 200) == "direct"
    assert pick_scoring_mode(1000, 10.0, 50) == "distill"
    assert pick_scoring_mode(1000, 0.0, 50) == "distill"


@pytest.fixture(scope="module")
def annotated(data_root):
    """A seeded sample of the bundled LLM-scored documents: the LLM's 0-5 (legal usefulness) scores are the teacher."""
    from quadmix_assets.scoring.edu_scorer import load_edu_training_set

    ids, texts, scores = load_edu_training_set(data_root, "legal_usefulness")
    idx = sample_for_annotation(ids, 1200, seed=0)
    return [ids[i] for i in idx], [texts[i] for i in idx], scores[idx]


def test_fasttext_student_tracks_teacher(tmp_path, annotated):
    ids, texts, teacher = annotated
    student, report = train_student(texts, teacher, ids, kind="fasttext", seed=0)
    assert report["n_train"] + report["n_test"] == len(ids) and report["n_test"] > 150
    assert report["spearman"] > 0.3, report
    s = student.score(texts[:50])
    assert s.dtype == np.float32 and s.min() >= teacher.min() - 1e-5 and s.max() <= teacher.max() + 1e-5
    assert len(student.meta["values"]) == len(student.meta["labels"]) >= 2
    path = tmp_path / "student.bin"
    student.save(path)
    assert path.stat().st_size < 30 * 2**20
    again = Student.load(path)
    np.testing.assert_allclose(again.score(texts[:50]), s, atol=1e-6)
    assert again.model_version == student.model_version
    # deterministic training: same seed, same model version
    assert train_student(texts, teacher, ids, kind="fasttext", seed=0)[0].model_version == student.model_version


def test_embedding_student_tracks_teacher(tmp_path, annotated):
    pytest.importorskip("transformers")
    import torch

    from quadmix_assets.scoring.edu_scorer import TextEncoder

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        enc = TextEncoder(max_length=64, batch_size=16)
        ids, texts, teacher = (x[:240] for x in annotated)
        student, report = train_student(texts, teacher, ids, kind="embedding", encoder=enc)
        assert report["spearman"] > 0.2, report
        path = tmp_path / "student.npz"
        student.save(path)
        again = Student.load(path, encoder=enc)
        np.testing.assert_allclose(again.score(texts[:5]), student.score(texts[:5]), atol=1e-6)
        assert again.model_version == student.model_version
    finally:
        torch.set_num_threads(old)
    with pytest.raises(ValueError, match="unknown student kind"):
        train_student(texts[:10], teacher[:10], ids[:10], kind="nope")


def test_student_teacher_spearman_is_on_held_out_ids(annotated):
    ids, texts, teacher = annotated
    # a teacher score the student cannot learn (pure noise) gives ~0 held-out correlation
    noise = np.random.default_rng(0).random(len(ids))
    _, report = train_student(texts, noise, ids, kind="fasttext", seed=0, epoch=5)
    assert abs(report["spearman"]) < 0.2
    assert spearman(noise, noise) == pytest.approx(1.0)
