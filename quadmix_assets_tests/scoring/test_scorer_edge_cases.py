"""Every plain scorer (heuristics, the fastText-based ones) is safe on empty, one-word and huge documents,
and on chunks of any size (issue 17: a chunk with <= 8 words in total crashed the heuristic scorer)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quadmix_assets.corpus import read_shard
from quadmix_assets.scoring.distill import train_student
from quadmix_assets.scoring.fasttext_model import predict_proba, train_fasttext
from quadmix_assets.scoring.heuristics import SIGNAL_COLUMNS, heuristic_score, heuristic_signals
from quadmix_assets.scoring.langid import LanguageScorer

WORDS = st.sampled_from(["the", "page", "not", "found", "a", "of", "data", "#", "...", "{", "lorem", "ipsum", "é", "日本"])
DOC = st.one_of(
    st.just(""),
    st.text(max_size=40),  # any characters, mostly without spaces: zero or one word
    st.lists(WORDS, max_size=30).map(" ".join),
    st.lists(st.lists(WORDS, max_size=8).map(" ".join), max_size=6).map("\n".join),
)
EDGE = ["", " ", "\n\n", "word", "Page not found", "\x00", "a\x00b", "\u2028", "x" * 200_000, "hello world " * 50_000]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _check_scores(v: np.ndarray, n: int) -> None:
    assert v.shape[0] == n
    assert np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1))


# ------------------------------------------------------------------------------------------ heuristics


def test_a_513_document_shard_with_a_tiny_last_chunk_scores(tmp_path, data_root):
    """512 real documents fill one scoring chunk; the 513th, "Page not found", is a chunk of 3 words."""
    with gzip.open(data_root / "corpus" / "webtext" / "shard-00000.jsonl.gz", "rb") as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()][:512]
    lines.append(json.dumps({"id": "404", "text": "Page not found"}).encode())
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    docs = read_shard(str(path)).documents
    assert docs.num_rows == 513
    signals = heuristic_signals(docs["text"])
    assert signals.num_rows == 513 and tuple(signals.column_names) == SIGNAL_COLUMNS
    score = heuristic_score(signals)
    _check_scores(score, 513)
    assert signals["n_words"][512].as_py() == 3
    # scored alone, the last document gets the same signals as inside the shard
    assert heuristic_signals(["Page not found"]).to_pylist()[0] == signals.slice(512).to_pylist()[0]


@pytest.mark.parametrize("n_words", range(0, 12))
def test_every_chunk_size_below_the_longest_ngram(n_words):
    texts = ["w%d" % (i % 3) for i in range(n_words)]  # one word per document
    one = heuristic_signals([" ".join(texts)])  # all words in one document
    many = heuristic_signals(texts)
    assert one.num_rows == 1 and many.num_rows == n_words
    _check_scores(heuristic_score(one), 1)
    _check_scores(heuristic_score(many), n_words)


@SETTINGS
@given(st.lists(DOC, max_size=12), st.integers(min_value=0, max_value=520))
def test_heuristics_any_documents_any_batch(docs, pad):
    """Any documents, any position in a chunk (padding moves them across the 512-document boundary):
    finite signals, a score in [0, 1], and each document's signals do not depend on its neighbours."""
    texts = ["filler text"] * pad + docs
    signals = heuristic_signals(texts)
    assert signals.num_rows == len(texts)
    for c in SIGNAL_COLUMNS:
        assert np.all(np.isfinite(signals[c].to_numpy().astype(np.float64)))
    _check_scores(heuristic_score(signals), len(texts))
    rows = signals.slice(pad).to_pylist()
    assert rows == heuristic_signals(docs).to_pylist()


def test_heuristics_edge_documents_and_a_huge_one():
    signals = heuristic_signals(EDGE)
    _check_scores(heuristic_score(signals), len(EDGE))
    assert signals["n_words"].to_pylist()[:4] == [0, 0, 0, 1]


# ------------------------------------------------------------------------------------------ fastText


@pytest.fixture(scope="module")
def tiny_fasttext():
    texts = ["the council met to discuss the budget", "buy cheap pills now", "a clear guide to the data", "click here win"] * 10
    labels = ["1", "0", "1", "0"] * 10
    return train_fasttext(texts, labels, dim=8, epoch=2, seed=0)


@pytest.fixture(scope="module")
def langid():
    return LanguageScorer()


@pytest.fixture(scope="module")
def student():
    texts = [f"document number {i} about {'data' if i % 2 else 'spam'} " * (1 + i % 3) for i in range(40)]
    model, _ = train_student(texts, np.linspace(0, 1, 40), [f"d{i}" for i in range(40)], seed=0)
    return model


def _all_fasttext_scores(model, langid, student, texts) -> list[np.ndarray]:
    return [predict_proba(model, texts, ["1", "0"])[:, 0], langid.score(texts), student.score(texts)]


def test_fasttext_scorers_on_edge_documents(tiny_fasttext, langid, student):
    for v in _all_fasttext_scores(tiny_fasttext, langid, student, EDGE):
        assert v.shape == (len(EDGE),) and np.all(np.isfinite(v))
    p = predict_proba(tiny_fasttext, EDGE, ["1", "0"])
    _check_scores(p.ravel(), 2 * len(EDGE))
    _check_scores(langid.score(EDGE), len(EDGE))
    assert predict_proba(tiny_fasttext, [], ["1", "0"]).shape == (0, 2) and langid.score([]).shape == (0,)


@SETTINGS
@given(docs=st.lists(DOC, max_size=8))
def test_fasttext_scorers_any_documents(tiny_fasttext, langid, student, docs):
    for v in _all_fasttext_scores(tiny_fasttext, langid, student, docs):
        assert v.shape == (len(docs),) and np.all(np.isfinite(v))
