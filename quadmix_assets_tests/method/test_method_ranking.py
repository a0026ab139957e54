"""Worse-than ranks and the Normaliser (QUADMIX.md section 2)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quadmix_assets.method import Normaliser, worse_than_rank
from quadmix_assets_tests.method import reference as ref

# scores from a few distinct values (many ties) or arbitrary finite floats (incl. +-inf)
few_values = st.sampled_from([-2.5, -0.0, 0.0, 0.1, 0.7, 3.0, 1e300])
any_score = st.floats(allow_nan=False, allow_infinity=True, width=64)


@st.composite
def corpus(draw, score=None, max_size=40):
    n = draw(st.integers(0, max_size))
    element = score if score is not None else st.one_of(few_values, any_score)
    scores = draw(st.lists(element, min_size=n, max_size=n))
    tokens = draw(st.lists(st.integers(0, 7), min_size=n, max_size=n))
    return scores, tokens


def test_small_example_by_hand():
    s = worse_than_rank([3.0, 1.0, 2.0, 3.0], [10, 5, 0, 5])
    # greater than 3: none; than 1: 10 + 0 + 5 = 15 of 20; than 2: 15 of 20
    assert s.tolist() == [0.0, 0.75, 0.75, 0.0]
    assert s.dtype == np.float64


@settings(max_examples=200, deadline=None)
@given(corpus())
def test_matches_reference_exactly_integer_tokens(data):
    scores, tokens = data
    got = worse_than_rank(np.array(scores), np.array(tokens, dtype=np.int64))
    assert got.tolist() == ref.worse_than_rank(scores, tokens)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(few_values, st.floats(0, 1e6, allow_nan=False)), min_size=1, max_size=30)
)
def test_matches_reference_float_tokens(pairs):
    scores = [p[0] for p in pairs]
    tokens = [p[1] for p in pairs]
    got = worse_than_rank(scores, tokens)
    np.testing.assert_allclose(got, ref.worse_than_rank(scores, tokens), rtol=1e-12, atol=1e-15)


def test_seeded_numpy_against_reference():
    rng = np.random.default_rng(2024)
    for n in (1, 2, 57, 400):
        scores = rng.integers(0, 6, n).astype(float) / 5  # heavy ties, like integer classifier scores
        tokens = rng.integers(0, 3000, n)
        tokens[rng.random(n) < 0.2] = 0
        assert worse_than_rank(scores, tokens).tolist() == ref.worse_than_rank(scores.tolist(), tokens.tolist())


def test_zero_tokens_use_counts():
    s = worse_than_rank([1.0, 2.0, 3.0, 2.0], [0, 0, 0, 0])
    assert s.tolist() == [0.75, 0.25, 0.0, 0.25]


def test_empty_and_errors():
    assert worse_than_rank([], []).shape == (0,)
    with pytest.raises(ValueError, match="NaN"):
        worse_than_rank([1.0, np.nan], [1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        worse_than_rank([1.0, 2.0], [1, -1])
    with pytest.raises(ValueError, match="length"):
        worse_than_rank([1.0, 2.0], [1])
    with pytest.raises(ValueError):
        worse_than_rank([1.0, 2.0], [1.0, np.inf])


def test_properties_on_large_random_input():
    rng = np.random.default_rng(0)
    n = 200_000
    scores = rng.normal(size=n).round(2)
    tokens = rng.integers(0, 1000, n)
    s = worse_than_rank(scores, tokens)
    assert s.min() == 0.0 and s.max() < 1.0
    order = np.argsort(scores)
    assert (np.diff(s[order]) <= 0).all()  # higher score, better (lower) rank
    top = scores == scores.max()
    assert (s[top] == 0).all()


# ---------------------------------------------------------------------------- Normaliser
@settings(max_examples=200, deadline=None)
@given(corpus())
def test_normaliser_exact_equals_worse_than_rank(data):
    scores, tokens = data
    if not scores:
        with pytest.raises(ValueError):
            Normaliser.fit(scores, tokens)
        return
    norm = Normaliser.fit(scores, tokens)
    assert norm.exact and norm.n_reference_docs == len(scores)
    np.testing.assert_array_equal(norm.transform(scores), worse_than_rank(scores, tokens))


@settings(max_examples=150, deadline=None)
@given(corpus(score=few_values, max_size=25), st.lists(st.one_of(few_values, any_score), max_size=10))
def test_normaliser_unseen_values(data, queries):
    scores, tokens = data
    if not scores:
        return
    norm = Normaliser.fit(scores, tokens)
    got = norm.transform(queries).tolist()
    assert got == [ref.share_greater_than(q, scores, tokens) for q in queries]


def test_normaliser_below_and_above_range():
    norm = Normaliser.fit([1.0, 2.0, 3.0], [1, 1, 2])
    assert norm.transform([0.0, 1.5, 2.5, 3.5, -np.inf, np.inf]).tolist() == [1.0, 0.75, 0.5, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError):
        norm.transform([np.nan])


def test_normaliser_sampled_mode():
    rng = np.random.default_rng(5)
    n = 60_000
    scores = rng.random(n)
    tokens = np.ones(n, dtype=np.int64)
    norm = Normaliser.fit(scores, tokens, max_exact=1000, sample_size=10_000, seed=1)
    assert not norm.exact and norm.n_reference_docs == 10_000
    assert norm.values.shape == (10_000,)
    # DKW: sup |F_sample - F| <= sqrt(ln(2/delta) / (2 k)); k = 10,000, delta = 1e-6 -> 0.027
    bound = math.sqrt(math.log(2 / 1e-6) / (2 * 10_000))
    err = np.abs(norm.transform(scores) - worse_than_rank(scores, tokens)).max()
    assert err < bound
    # seeded: the same seed gives the same reference, another seed another one
    assert Normaliser.fit(scores, tokens, max_exact=1000, sample_size=10_000, seed=1) == norm
    assert Normaliser.fit(scores, tokens, max_exact=1000, sample_size=10_000, seed=2) != norm
    with pytest.raises(ValueError, match="10,000|10000"):
        Normaliser.fit(scores, tokens, max_exact=1000, sample_size=9_999)
    # a sample as large as the corpus is exact
    small = Normaliser.fit(scores[:12_000], tokens[:12_000], max_exact=1000, sample_size=20_000)
    assert small.exact and small.n_reference_docs == 12_000


def test_normaliser_table_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    scores = rng.integers(0, 50, 500) / 7
    tokens = rng.integers(0, 100, 500)
    norm = Normaliser.fit(scores, tokens)
    table = norm.to_table()
    assert table.column_names == ["value", "share_greater"]
    assert table.schema.field("value").type == pa.float64()
    back = Normaliser.from_table(table)
    assert back == norm and back.exact and back.n_reference_docs == 500
    assert back.total_tokens == float(tokens.sum())
    # through a file too (metadata must survive)
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "norm.parquet")
    again = Normaliser.from_table(pq.read_table(tmp_path / "norm.parquet"))
    assert again == norm
    np.testing.assert_array_equal(again.transform(scores), worse_than_rank(scores, tokens))
    with pytest.raises(ValueError, match="metadata"):
        Normaliser.from_table(pa.table({"value": [1.0], "share_greater": [0.0]}))


def test_normaliser_is_frozen():
    norm = Normaliser.fit([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError):
        norm.values[0] = 5.0


def test_normaliser_pickle():
    import pickle

    norm = Normaliser.fit([1.0, 2.0, 2.0], [3, 1, 1])
    back = pickle.loads(pickle.dumps(norm))
    assert back == norm and not back.values.flags.writeable
    assert back.transform([1.5]).tolist() == [0.4]
