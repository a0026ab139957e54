"""A mixture's per-document scores: the merged quality ``qbar``, its in-domain token-weighted rank ``r`` and
the expected copy count ``S(r)`` of one config, computed from the documents' features when needed.

They are never stored per mixture: at K configs over N documents that is K x N rows (71 mixtures of the
bundled corpus took 45 MB, more than the documents with their text). What is stored per mixture is the
manifest of the selected rows and the small summary :func:`scores_summary` gives (``mixture_scores``'s
card); the data view, ``quadmix show`` and the manifest compute the scores again from the same features
(the numbers are a pure function of the features and the config, so they are the same each time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from quadmix_assets.method import aggregate, sampling_frequency

from .specs import MixtureSpec, global_params

__all__ = ["SCORE_COLUMNS", "score_documents", "scores_summary"]

#: the columns :func:`score_documents` returns, in order
SCORE_COLUMNS = ("shard", "row", "id", "id_hash", "n_tokens", "domain", "qbar", "r", "expected")


def score_documents(features: pa.Table, spec: MixtureSpec, criteria: Sequence[str]) -> pa.Table:
    """``qbar``, ``r`` and ``expected`` of every document of ``features`` (a
    :func:`~quadmix_assets.mixing.catalog.document_features` table) under ``spec``, with the documents'
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


def scores_summary(scores: pa.Table, n_domains: int) -> dict:
    """What the mixture's card keeps of its scores: documents, tokens and expected tokens (``sum S x
    tokens``) in all and per domain label (every domain ``0 .. n_domains - 1``, empty ones included)."""
    dom = scores["domain"].to_numpy().astype(np.int64)
    tokens = scores["n_tokens"].to_numpy().astype(np.float64)
    expected = scores["expected"].to_numpy()
    if dom.size and (int(dom.min()) < 0 or int(dom.max()) >= n_domains):
        raise ValueError(f"domain labels outside [0, {n_domains})")
    docs = np.bincount(dom, minlength=n_domains)
    tok = np.bincount(dom, weights=tokens, minlength=n_domains)
    exp = np.bincount(dom, weights=expected * tokens, minlength=n_domains)
    return {
        "documents": int(dom.size),
        "tokens": int(tokens.sum()),
        "expected_tokens": float(np.dot(expected, tokens)),
        "per_domain": [{"domain": m, "documents": int(docs[m]), "tokens": int(tok[m]), "expected_tokens": float(exp[m])}
                       for m in range(n_domains)],
    }
