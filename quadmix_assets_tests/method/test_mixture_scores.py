"""The per-mixture scores computed when needed (``mixing.scores``) and the check that a stale scores card
stops the manifest."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from dagster import Failure

from quadmix_assets.defs.mixtures.mixtures import _check_card_current
from quadmix_assets.method import ParamSpace, aggregate, sampling_frequency
from quadmix_assets.mixing import drawn_specs, global_params
from quadmix_assets.mixing.scores import SCORE_COLUMNS, score_documents, scores_summary

CRITERIA = ("a", "b", "c")


def _features(n: int = 500, n_domains: int = 4, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols = {"shard": pa.array([f"s{i % 3}" for i in range(n)]), "row": pa.array(np.arange(n, dtype=np.int64)),
            "id": pa.array([f"doc{i}" for i in range(n)]), "id_hash": pa.array(rng.integers(0, 2**63, n, dtype=np.int64)),
            "n_tokens": pa.array(rng.integers(0, 400, n, dtype=np.int64)),
            "domain": pa.array(rng.integers(0, n_domains - 1, n).astype(np.int32))}  # the last domain stays empty
    for c in CRITERIA:
        cols[f"s_{c}"] = pa.array(np.round(rng.random(n), 2))  # ties
    return pa.table(cols)


@pytest.mark.parametrize("domain_aware", [True, False])
def test_score_documents_is_the_method_on_the_features(domain_aware):
    feats = _features()
    spec = drawn_specs(ParamSpace(4, len(CRITERIA)), 1, seed=3)[0]
    if not domain_aware:
        spec = dataclasses.replace(spec, domain_aware=False)
    got = score_documents(feats, spec, CRITERIA)
    assert tuple(got.column_names) == SCORE_COLUMNS and got.num_rows == feats.num_rows
    ranks = np.column_stack([feats[f"s_{c}"].to_numpy() for c in CRITERIA])
    labels = feats["domain"].to_numpy().astype(np.int64)
    dom = labels if domain_aware else np.zeros_like(labels)
    params = spec.params if domain_aware else global_params(spec.params)
    qbar, r = aggregate(ranks, dom, feats["n_tokens"].to_numpy(), params)
    assert np.array_equal(got["qbar"].to_numpy(), qbar) and np.array_equal(got["r"].to_numpy(), r)
    assert np.array_equal(got["expected"].to_numpy(), sampling_frequency(r, dom, params))
    assert got["domain"].to_pylist() == feats["domain"].to_pylist()  # the label, also for one global rank


def test_scores_summary_sums_per_domain_and_keeps_empty_domains():
    feats = _features()
    spec = drawn_specs(ParamSpace(4, len(CRITERIA)), 1, seed=5)[0]
    scores = score_documents(feats, spec, CRITERIA)
    card = scores_summary(scores, 4)
    tokens = feats["n_tokens"].to_numpy()
    assert card["documents"] == feats.num_rows and card["tokens"] == int(tokens.sum())
    assert card["expected_tokens"] == pytest.approx(float(np.dot(scores["expected"].to_numpy(), tokens)), rel=1e-12)
    assert [d["domain"] for d in card["per_domain"]] == [0, 1, 2, 3]
    assert card["per_domain"][3] == {"domain": 3, "documents": 0, "tokens": 0, "expected_tokens": 0.0}
    assert sum(d["expected_tokens"] for d in card["per_domain"]) == pytest.approx(card["expected_tokens"], rel=1e-12)
    with pytest.raises(ValueError, match="outside"):
        scores_summary(scores, 2)


def test_a_stale_scores_card_stops_the_manifest():
    card = {"shard_fingerprints": {"s0": "f0", "s1": "f1"}, "normaliser_version": "n1"}
    _check_card_current("m", card, {"s0": "f0", "s1": "f1", "s2": "f2"}, "n1")  # current: passes
    with pytest.raises(Failure, match="s1"):
        _check_card_current("m", card, {"s0": "f0", "s1": "changed"}, "n1")
    with pytest.raises(Failure, match="s0"):
        _check_card_current("m", card, {"s1": "f1"}, "n1")  # a shard left out since
    with pytest.raises(Failure, match="normaliser"):
        _check_card_current("m", card, {"s0": "f0", "s1": "f1"}, "n2")
