"""Criterion cards (quadmix_assets.scoring.cards) on real documents: three shards of the bundled corpus with
their recorded sources, WebOrganizer topics as domains, token estimates, and scores computed from the texts.

The card's warning must fire for a score that tracks the legal-keyword FineWeb pages, for one that tracks a
single topic and for a teacher criterion whose student lost its teacher (the student cards as the
``<criterion>_student`` assets record them), and must not fire for a random score or for a real score made
balanced across sources and domains."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from quadmix_assets.corpus import estimate_tokens
from quadmix_assets.scoring import cards
from quadmix_assets.scoring.cards import CorpusView, build_cards, criterion_card, student_status
from quadmix_assets.scoring.domain_classifier import load_topic_names
from quadmix_assets.scoring.heuristics import heuristic_score, heuristic_signals
from quadmix_assets.reporting.plots import PNG_SIGNATURE

SEED = 20250423
LEGAL = re.compile(r"\b(?:court|courts|law|laws|legal|attorney|attorneys|lawyer|plaintiff|defendant|statute|judge|"
                   r"jury|lawsuit|litigation|contract|liability|counsel|appeal|ruling)\b", re.IGNORECASE)

# student cards as the `<criterion>_student` assets write them (models/<criterion>_student/model.json, `report`),
# the figures of the cpu preset's demo run: AskLLM's student lost its teacher, Edu's kept it
ASKLLM_STUDENT = {"mode": "distill", "report": {"kind": "fasttext", "spearman": 0.06008432716666964, "n_test": 85, "n_train": 299}}
EDU_STUDENT = {"mode": "distill", "report": {"kind": "fasttext", "spearman": 0.5684108177203564, "n_test": 157, "n_train": 643}}


@pytest.fixture(scope="module")
def view(corpus, topic_labels, data_root) -> CorpusView:
    names = load_topic_names(data_root)
    tokens = np.asarray(estimate_tokens([d["text"] for d in corpus]).to_numpy(zero_copy_only=False), dtype=np.float64)
    return CorpusView(
        n_tokens=tokens,
        source=np.asarray([d["source"] for d in corpus], dtype=object),
        domain=np.asarray([topic_labels.get(d["id"], -1) for d in corpus], dtype=np.int64),
        domain_names=list(names),
    )


@pytest.fixture(scope="module")
def heuristic(corpus) -> np.ndarray:
    return np.asarray(heuristic_score(heuristic_signals([d["text"] for d in corpus])), dtype=np.float64)


def legal_keyword_density(texts) -> np.ndarray:
    return np.asarray([len(LEGAL.findall(t)) / max(len(t.split()), 1) for t in texts], dtype=np.float64)


def within_bucket_percentile(scores: np.ndarray, view: CorpusView) -> np.ndarray:
    """``scores`` re-expressed as the token percentile within each document's bucket (ties broken at random):
    same order inside a bucket, every bucket's tokens spread evenly over the range (balanced by construction)."""
    buckets = cards.bucket_labels(view.source, view.domain, view.domain_names, view.n_tokens)
    rng = np.random.default_rng(11)
    out = np.empty_like(scores)
    for b in np.unique(buckets):
        idx = np.flatnonzero(buckets == b)
        idx = idx[np.lexsort((rng.random(idx.size), scores[idx]))]
        w = view.n_tokens[idx]
        out[idx] = (np.cumsum(w) - 0.5 * w) / w.sum()
    return out


def card(name, scores, view, **kw):
    return criterion_card(name, f"test score {name}", scores, view, seed=SEED, **kw)


def test_corpus_slice_has_every_source(view):
    assert set(view.source) == {"weborganizer", "fineweb", "commoncrawl-raw"} and view.n > 2000
    buckets = cards.bucket_labels(view.source, view.domain, view.domain_names, view.n_tokens)
    # the largest source by tokens is split by topic; the others are one bucket each
    assert "fineweb" in set(buckets) and "commoncrawl-raw" in set(buckets) and "weborganizer" not in set(buckets)
    assert len(set(buckets)) > 20


def test_a_score_tracking_the_legal_keyword_source_warns(corpus, view):
    c = card("legal", legal_keyword_density([d["text"] for d in corpus]), view)
    gain = c["sources"]["largest_gain"]
    assert gain["label"] == "fineweb" and gain["top"] > gain["random"] + 0.15, gain
    assert c["sources"]["shares"]["fineweb"]["auc"] > 0.7
    assert c["verdict"]["warn"] and c["verdict"]["lean_judged"] and not c["verdict"]["unreliable"]
    assert any("'fineweb'" in w and "legal-keyword" in w for w in c["verdict"]["warnings"]), c["verdict"]
    assert c["buckets"]["effective"]["top"] < 0.5 * c["buckets"]["effective"]["random"]  # and narrow
    assert any("effective domains/sources" in w for w in c["verdict"]["warnings"])
    # the random quarter and the corpus agree on the source's share; the top quarter does not
    fw = c["sources"]["shares"]["fineweb"]
    assert abs(fw["random"] - fw["corpus"]) < 0.03 < fw["top"] - fw["corpus"]


def test_random_and_balanced_scores_do_not_warn(corpus, view, heuristic):
    rng = np.random.default_rng(7)
    rand = card("random", rng.random(view.n), view)
    assert not rand["verdict"]["warn"] and rand["verdict"]["lean_judged"], rand["verdict"]
    eff = rand["buckets"]["effective"]
    assert eff["top"] == pytest.approx(eff["random"], rel=0.15)
    legal = legal_keyword_density([d["text"] for d in corpus])
    for name, scores in (("balanced-legal", within_bucket_percentile(legal, view)),
                         ("balanced-heuristic", within_bucket_percentile(heuristic, view))):
        c = card(name, scores, view)
        assert not c["verdict"]["warn"], (name, c["verdict"])
        assert c["buckets"]["largest_gain"]["gain"] < 0.08 and c["buckets"]["eta_squared"] < 0.05


def test_a_student_that_lost_its_teacher_is_unreliable_and_warns(view, heuristic):
    lost = student_status("askllm", "distill", ASKLLM_STUDENT)
    assert lost["unreliable"] and "0.06" in lost["why"] and "loses its teacher" in lost["why"]
    kept = student_status("edu", "distill", EDU_STUDENT)
    assert not kept["unreliable"] and kept["teacher_student_spearman"] == pytest.approx(0.568, abs=1e-3)
    assert not student_status("askllm", "direct", {"mode": "direct"})["unreliable"]
    few = student_status("askllm", "distill", {"mode": "distill", "report": {"spearman": 1.0, "n_test": 2}})
    assert few["unreliable"] and "2 held-out" in few["why"]  # a perfect rho on 2 documents is no evidence
    assert student_status("askllm", "distill", None)["unreliable"]
    balanced = within_bucket_percentile(heuristic, view)  # the same balanced score, first without a student
    assert not card("x", balanced, view, student=kept)["verdict"]["warn"]
    c = card("askllm", balanced, view, student=lost)  # a column of alpha: said loudly (never silently)
    assert c["verdict"]["unreliable"] and c["verdict"]["warn"] and c["verdict"]["warnings"] == cards.alpha_warnings(["askllm"], {"askllm": lost})
    assert c["verdict"]["warnings"][0].startswith("askllm IS A COLUMN OF ALPHA in this run, but its distilled student loses its teacher")
    assert c["alpha"] == {"in_alpha": True, "left_out": None}
    assert "**UNRELIABLE**" in cards.card_markdown(c) and "**USED IN ALPHA although unreliable**" in cards.card_markdown(c)
    out = card("askllm", balanced, view, student=lost, left_out="its student lost its teacher")
    assert out["verdict"]["unreliable"] and out["verdict"]["warnings"] == [f"{lost['why']} (left out of alpha: its student lost its teacher)"]
    assert out["alpha"] == {"in_alpha": False, "left_out": "its student lost its teacher"}
    md = cards.card_markdown(out)
    assert "**Left out of alpha**: its student lost its teacher" in md and "USED IN ALPHA" not in md
    assert cards.alpha_warnings(["dclm"], {"askllm": lost}) == []  # not a column: no alpha warning


def test_cards_from_the_registry_view_coverage_and_picture(corpus, view, heuristic):
    rng = np.random.default_rng(3)
    partial = heuristic.copy()
    partial[rng.random(view.n) < 0.1] = np.nan  # a shard-like hole: 10% of the documents unscored
    view = dataclasses.replace(view, scores={"heuristic": partial, "legal": legal_keyword_density([d["text"] for d in corpus]),
                                             "askllm": rng.random(view.n)})
    report = build_cards([("heuristic", "h"), ("legal", "l"), ("askllm", "a")], view, seed=SEED,
                         roc_auc_human={"heuristic": 0.81}, students={"askllm": student_status("askllm", "distill", ASKLLM_STUDENT)})
    assert list(report["cards"]) == ["heuristic", "legal", "askllm"]
    assert report["cards"]["heuristic"]["coverage"] == pytest.approx(np.isfinite(partial).mean())
    assert report["cards"]["heuristic"]["documents_scored"] == int(np.isfinite(partial).sum())
    assert report["unreliable"] == ["askllm"]
    assert any(w.startswith("legal:") for w in report["warnings"]) and any(w.startswith("askllm IS A COLUMN OF ALPHA") for w in report["warnings"])
    for c in report["cards"].values():
        for part in ("sources", "buckets", "domains"):
            assert sum(x["top"] for x in c[part]["shares"].values()) == pytest.approx(1.0)
            assert sum(x["corpus"] for x in c[part]["shares"].values()) == pytest.approx(1.0)
    rows = cards.summary_rows(report)
    assert [r[0] for r in rows] == ["heuristic", "legal", "askllm"] and rows[0][1] == "0.810"
    png = cards.cards_png(report)
    assert png.startswith(PNG_SIGNATURE) and png == cards.cards_png(report)  # same report, same bytes


def test_top_quarter_and_effective_number():
    s = np.array([5.0, 1.0, np.nan, 3.0, 3.0, 3.0, 0.0, 2.0, np.nan])
    top = cards.top_quarter(s, seed=0)
    assert top.size == 2 and top[0] == 0 and s[top[1]] == 3.0  # one of the tied threes, chosen by the seed
    picks = {int(cards.top_quarter(s, seed=k)[1]) for k in range(30)}
    assert picks == {3, 4, 5}  # ties never follow storage order
    assert cards.effective_number(np.ones(7)) == pytest.approx(7.0)
    assert cards.effective_number(np.array([1.0, 0.0, 0.0])) == pytest.approx(1.0)


def test_fineweb_edu_prompt_scores_and_agreement(data_root, heuristic):
    texts, scores = cards.load_fineweb_edu_prompt_scores(data_root)
    assert len(texts) == scores.size == 150 and set(np.unique(scores)) <= {2.0, 3.0, 4.0, 5.0}
    h = np.asarray(heuristic_score(heuristic_signals(texts)))
    got = cards.edu_prompt_agreement(h, scores)
    assert got["n"] == 150 and -1 <= got["spearman"] <= 1
    assert cards.edu_prompt_agreement(scores + 0.1, scores)["spearman"] == pytest.approx(1.0)
