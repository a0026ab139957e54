"""A mixture's per-document scores: the merged quality ``qbar``, its in-domain token-weighted rank ``r`` and
the expected copy count ``S(r)`` of one config, computed from the documents' features when needed.

They are never stored per mixture: at K configs over N documents that is K x N rows (71 mixtures of the
bundled corpus took 45 MB, more than the documents with their text). What is stored per mixture is the
manifest of the selected rows and the small summary :func:`scores_summary` gives (``mixture_scores``'s
card); the data view, ``quadmix show`` and the manifest compute the scores again from the same features
(the numbers are a pure function of the features and the config, so they are the same each time).

These are the in-memory (numpy) engine's steps over a features table
(:func:`~quadmix_assets.mixing.features.document_features`); the out-of-core engine
(:mod:`~quadmix_assets.mixing.fanin_duckdb`) gives the same numbers batch by batch and adds its batches'
sums with :func:`new_summary` and :func:`add_to_summary`. Production reaches both through
:func:`quadmix_assets.mixing.fanin.open_fan_in`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from quadmix_assets.method import aggregate, sampling_frequency

from .specs import MixtureSpec, global_params

__all__ = ["MANIFEST_COLUMNS", "SCORE_COLUMNS", "add_to_summary", "manifest_table", "new_summary", "score_documents",
           "scores_summary"]

#: the columns :func:`score_documents` returns, in order
SCORE_COLUMNS = ("shard", "row", "id", "id_hash", "n_tokens", "domain", "qbar", "r", "expected")
#: a manifest's columns: the selected documents and their copies
MANIFEST_COLUMNS = ("id", "shard", "row", "n_tokens", "domain", "copies")


def score_documents(features: pa.Table, spec: MixtureSpec, criteria: Sequence[str]) -> pa.Table:
    """``qbar``, ``r`` and ``expected`` of every document of ``features`` (a
    :func:`~quadmix_assets.mixing.features.document_features` table) under ``spec``, with the documents'
    shard, row, id, key, tokens and domain (:data:`SCORE_COLUMNS`). A config that is not per domain
    ranks every document as one domain with its first row of parameters; ``domain`` is still the label."""
    ranks = np.column_stack([features[f"s_{c}"].to_numpy() for c in criteria]) if criteria else np.empty((features.num_rows, 0))
    tokens = features["n_tokens"].to_numpy()
    labels = features["domain"].to_numpy().astype(np.int64)
    if spec.domain_aware:
        domains, params = labels, spec.params
    else:
        domains, params = np.zeros(labels.size, dtype=np.int64), global_params(spec.params)
    qbar, r = aggregate(ranks, domains, tokens, params)
    expected = sampling_frequency(r, domains, params)
    table = features.select(list(SCORE_COLUMNS[:6]))
    for name, values in (("qbar", qbar), ("r", r), ("expected", expected)):
        table = table.append_column(name, pa.array(values, pa.float64()))
    return table


def new_summary(n_domains: int) -> dict:
    """An empty :func:`scores_summary` (every count 0) for :func:`add_to_summary` to fill."""
    return {"documents": 0, "tokens": 0, "expected_tokens": 0.0, "per_domain": [
        {"domain": m, "documents": 0, "tokens": 0, "expected_tokens": 0.0} for m in range(n_domains)]}


def add_to_summary(summary: dict, dom: np.ndarray, tokens: np.ndarray, expected: np.ndarray) -> None:
    """Add documents (domain labels, tokens, expected copies) to ``summary`` in place."""
    n_domains = len(summary["per_domain"])
    if dom.size and (int(dom.min()) < 0 or int(dom.max()) >= n_domains):
        raise ValueError(f"domain labels outside [0, {n_domains})")
    docs = np.bincount(dom, minlength=n_domains)
    tok = np.bincount(dom, weights=tokens, minlength=n_domains)
    exp = np.bincount(dom, weights=expected * tokens, minlength=n_domains)
    summary["documents"] += int(dom.size)
    summary["tokens"] += int(tokens.sum())
    summary["expected_tokens"] += float(np.dot(expected, tokens))
    for m, d in enumerate(summary["per_domain"]):
        d["documents"] += int(docs[m])
        d["tokens"] += int(tok[m])
        d["expected_tokens"] += float(exp[m])


def scores_summary(scores: pa.Table, n_domains: int) -> dict:
    """What the mixture's card keeps of its scores: documents, tokens and expected tokens (``sum S x
    tokens``) in all and per domain label (every domain ``0 .. n_domains - 1``, empty ones included)."""
    out = new_summary(n_domains)
    add_to_summary(out, scores["domain"].to_numpy().astype(np.int64), scores["n_tokens"].to_numpy().astype(np.float64),
         scores["expected"].to_numpy())
    return out


def manifest_table(scores: pa.Table, copies: np.ndarray) -> pa.Table:
    """The manifest of a mixture from its scores (:func:`score_documents`) and drawn copies: the rows with
    copies > 0 (:data:`MANIFEST_COLUMNS`)."""
    selected = np.flatnonzero(copies > 0)
    manifest = scores.select(list(MANIFEST_COLUMNS[:-1])).take(selected)
    return manifest.append_column("copies", pa.array(copies[selected].astype(np.int32)))
