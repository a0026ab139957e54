"""Gopher / C4 heuristic signals and the soft heuristic score."""

from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from quadmix_assets.scoring.evaluation import roc_auc
from quadmix_assets.scoring.heuristics import (
    DUP_NGRAM_NS,
    RULES,
    SIGNAL_COLUMNS,
    TOP_NGRAM_NS,
    heuristic_score,
    heuristic_signals,
    rule_pass_values,
)

PROSE = (
    "The committee met on Tuesday to discuss the budget for the coming year. Members agreed that "
    "the library should have longer opening hours, and that funding for the school programme be "
    "increased. A final vote will take place next month, after the public consultation closes.\n"
    "Residents can send comments by post or in person at the town hall, which is open every day."
)


def _row(text: str) -> dict:
    return heuristic_signals([text]).to_pylist()[0]


def test_columns_and_types():
    tab = heuristic_signals([PROSE, "", "a"])
    assert isinstance(tab, pa.Table)
    assert tuple(tab.column_names) == SIGNAL_COLUMNS
    assert tab.num_rows == 3
    assert {r.column for r in RULES} <= set(SIGNAL_COLUMNS)
    for r in RULES:
        assert r.lo < r.hi and r.scale > 0 and r.weight > 0
    empty = tab.to_pylist()[1]
    assert empty["n_words"] == 0 and empty["mean_word_length"] == 0.0


def test_handmade_signals():
    r = _row(PROSE)
    assert r["n_words"] == len(PROSE.split())
    assert r["stop_word_count"] == sum(w in {"the", "be", "to", "of", "and", "that", "have", "with"} for w in PROSE.lower().split())
    assert r["terminal_punct_line_frac"] == 1.0 and r["dup_line_frac"] == 0.0
    assert r["lorem_ipsum"] == 0 and r["curly_brace_count"] == 0 and r["policy_line_frac"] == 0.0

    spam = "\n".join(["• Buy now...", "• Buy now...", "• Cheap pills #1 #2 #3", "Lorem ipsum dolor {x}", "We use cookies. Privacy Policy", "Enable JavaScript to view"])
    s = _row(spam)
    assert s["n_lines"] == 6
    assert s["bullet_line_frac"] == pytest.approx(3 / 6)
    assert s["ellipsis_line_frac"] == pytest.approx(2 / 6)
    assert s["dup_line_frac"] == pytest.approx(1 / 6)
    assert s["dup_line_char_frac"] == pytest.approx(len("• Buy now...") / sum(len(x) for x in spam.split("\n")))
    assert s["hash_word_ratio"] == pytest.approx(3 / len(spam.split()))
    assert s["ellipsis_word_ratio"] == pytest.approx(2 / len(spam.split()))
    assert s["lorem_ipsum"] == 1 and s["curly_brace_count"] == 1
    assert s["policy_line_frac"] == pytest.approx(1 / 6) and s["javascript_line_frac"] == pytest.approx(1 / 6)
    assert s["alpha_word_frac"] == pytest.approx(1 - 6 / len(spam.split()))  # three "•", "#1", "#2", "#3"
    assert heuristic_score(heuristic_signals([spam]))[0] < heuristic_score(heuristic_signals([PROSE]))[0]


def _naive_dup(words, n):
    seen, covered = set(), np.zeros(len(words), bool)
    for i in range(len(words) - n + 1):
        g = tuple(words[i : i + n])
        if g in seen:
            covered[i : i + n] = True
        seen.add(g)
    tot = sum(map(len, words))
    return sum(len(w) for w, c in zip(words, covered) if c) / tot if tot else 0.0


def _naive_top(words, n):
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    g, c = Counter(grams).most_common(1)[0]  # ties -> first seen
    tot = sum(map(len, words))
    return min(1.0, sum(map(len, g)) * c / tot) if tot else 0.0


def test_vectorised_ngram_signals_match_a_naive_reference(corpus):
    texts = [d["text"] for d in corpus[:150]] + ["a b c d e f " * 20, "x " * 40, "one two"]
    rows = heuristic_signals(texts).to_pylist()
    for text, row in zip(texts, rows):
        words = text.lower().split()
        for n in DUP_NGRAM_NS:
            assert row[f"dup_{n}gram_char_frac"] == pytest.approx(_naive_dup(words, n), abs=1e-12)
        for n in TOP_NGRAM_NS:
            assert row[f"top_{n}gram_char_frac"] == pytest.approx(_naive_top(words, n), abs=1e-12)
        lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
        assert row["n_lines"] == len(lines)
        if lines:
            assert row["dup_line_frac"] == pytest.approx((len(lines) - len(set(lines))) / len(lines))
        if words:
            has_letter = (any(c.isalnum() and not c.isdecimal() and c != "_" for c in w) for w in words)
            assert row["alpha_word_frac"] == pytest.approx(sum(has_letter) / len(words))
            assert row["mean_word_length"] == pytest.approx(sum(map(len, words)) / len(words))


def test_rule_pass_values_shape():
    sig = {r.column: np.array([0.0]) for r in RULES}
    sig["n_words"] = np.array([500.0])
    sig["mean_word_length"] = np.array([5.0])
    sig["alpha_word_frac"] = np.array([1.0])
    sig["stop_word_count"] = np.array([40.0])
    sig["terminal_punct_line_frac"] = np.array([1.0])
    assert heuristic_score(sig)[0] == pytest.approx(1.0)  # the ideal document
    p = rule_pass_values({**sig, "dup_line_frac": np.array([0.0, 0.15, 0.3, 0.4, 0.9])}, [r for r in RULES if r.name == "gopher_dup_lines"])
    v = p["gopher_dup_lines"]
    assert v[0] == 1.0 and v[2] == pytest.approx(0.9)  # 0.9 at the threshold
    assert np.all(np.diff(v) < 0)  # strictly decreasing: no ties
    assert v[3] == pytest.approx(0.9 * math.exp(-1))


def test_score_ranks_raw_crawl_below_curated_web(corpus):
    texts = [d["text"] for d in corpus]
    src = np.array([d["source"] for d in corpus])  # evaluation only
    t0 = time.process_time()
    score = heuristic_score(heuristic_signals(texts))
    cpu = time.process_time() - t0
    assert score.dtype == np.float64 and (score >= 0).all() and (score <= 1).all()
    raw, curated = score[src == "commoncrawl-raw"], score[src == "weborganizer"]
    assert raw.size > 50 and curated.size > 500
    assert curated.mean() - raw.mean() > 0.03, (curated.mean(), raw.mean())
    keep = (src == "commoncrawl-raw") | (src == "weborganizer")
    assert roc_auc(score[keep], src[keep] == "weborganizer") > 0.7
    assert len(np.unique(score)) > 0.95 * len(score)  # few ties
    # ~11M characters; the whole 57M-character corpus must stay well under a minute on one core
    assert cpu < 20, f"{cpu:.1f}s CPU for {sum(map(len, texts)) / 1e6:.1f}M characters"
