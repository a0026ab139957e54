"""Which shards a fan-in may use: only those whose stored data still describe the current corpus file.

A shard enters a fan-in (the normaliser, the distillation and tokenizer samples, the mixtures) only when

- its latest per-shard runs did not fail (``failed``: what the orchestrator knows, passed in),
- its documents exist and the fingerprint recorded with them (taken in the same pass that read the
  file) equals the fingerprint of the corpus file now, and
- each attribute the fan-in needs exists, was computed from those same documents (its recorded
  documents fingerprint) and has one row per document.

Everything else is left out with a reason, so callers can list it; nothing is dropped silently. A stored
file that cannot be read (truncated, overwritten) is left out as that file, not as a changed corpus file.
A plain library: no Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from quadmix_assets.corpus.shards import ShardRef, file_fingerprint
from quadmix_assets.storage import layout
from quadmix_assets.storage.root import StorageRoot


@dataclass
class ShardSelection:
    """The shards a fan-in may use (``shards``, in the given order, with their ``fingerprints``) and the
    ones it must leave out (``left_out``: shard key -> reason)."""

    shards: list[str] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)


def _documents_fingerprint(prov: Mapping) -> str | None:
    inputs = prov.get("inputs", {}) or {}
    return inputs.get("documents_fingerprint", inputs.get("fingerprint"))


def _attributes_problem(storage: StorageRoot, key: str, docs: str, recorded: str | None,
                        attributes: Sequence[str]) -> str | None:
    """Why one of the shard's ``attributes`` is not usable with its documents (None: all are)."""
    path = docs
    try:
        n_docs = storage.parquet_rows(docs)
        for name in attributes:
            path = layout.attribute(name, key)
            if not storage.exists(path):
                return f"no {name} attribute"
            made_from = _documents_fingerprint(storage.provenance(path))
            if made_from != recorded:
                return f"{name} attribute was computed from other documents ({made_from})"
            n = storage.parquet_rows(path)
            if n != n_docs:
                return f"{name} attribute has {n} rows for {n_docs} documents"
    except (OSError, ValueError, pa.ArrowException) as exc:
        return f"stored file {path} cannot be read: {type(exc).__name__}: {exc}"
    return None


def current_shards(
    storage: StorageRoot,
    refs: Iterable[ShardRef],
    attributes: Sequence[str] = (),
    *,
    failed: Mapping[str, str] | None = None,
    fingerprint: Callable[[str], str] = file_fingerprint,
) -> ShardSelection:
    """Split ``refs`` into the shards whose documents and ``attributes`` are current and the rest (see the
    module docstring). ``failed`` maps shard keys whose latest run failed to a message."""
    failed = dict(failed or {})
    out = ShardSelection()
    for ref in refs:
        key = ref.key
        if key in failed:
            out.left_out[key] = f"latest run failed: {failed[key]}"
            continue
        docs = layout.documents(key)
        if not storage.exists(docs):
            out.left_out[key] = "no documents"
            continue
        try:
            recorded = storage.provenance(docs).get("inputs", {}).get("fingerprint")
        except (OSError, ValueError, pa.ArrowException) as exc:
            out.left_out[key] = f"stored file {docs} cannot be read: {type(exc).__name__}: {exc}"
            continue
        try:
            now = fingerprint(ref.path)
        except OSError as exc:
            out.left_out[key] = f"corpus file {ref.path} cannot be read: {type(exc).__name__}: {exc}"
            continue
        if recorded != now:
            out.left_out[key] = (f"stale: documents were read from {recorded}, the corpus file {ref.path} is now "
                                 f"{now}")
            continue
        problem = None
        if attributes:
            problem = _attributes_problem(storage, key, docs, recorded, attributes)
        if problem:
            out.left_out[key] = problem
            continue
        out.shards.append(key)
        out.fingerprints[key] = recorded
    return out
