"""Reading the web corpus: find shard files and turn each into a documents table plus a quarantine table.

A plain library (no Dagster):

- :func:`list_shards` expands a glob of ``.jsonl``, ``.jsonl.gz``, ``.json.gz``, ``.ndjson`` or ``.parquet``
  files (a local path or any fsspec URL) into :class:`ShardRef` objects with stable, unique keys;
  :func:`file_fingerprint` gives a shard's content version (SHA-256 of its bytes).
- :func:`read_shard` reads one shard into a :class:`ShardRead`: ``documents`` (``id``, ``id_hash``, ``text``,
  ``n_tokens``, ``row``, ``record``, then the record's other fields), ``quarantine`` (``source``, ``record``,
  ``reason``, ``detail``, ``raw``: every record that did not become a document, and why) and ``stats``.
  Records are never dropped silently. :class:`ShardError` means the whole shard is unusable. The read is
  bounded by :class:`ReadLimits` and takes the shard's fingerprint in the same pass (``ShardRead.fingerprint``).
- :func:`estimate_tokens` is the tokenizer-free token estimate, ``max(1, ceil(characters / 4))``.
"""

from quadmix_assets.corpus.reader import (
    DOCUMENT_SCHEMA,
    QUARANTINE_SCHEMA,
    REASONS,
    ReadLimits,
    ShardError,
    ShardRead,
    read_shard,
)
from quadmix_assets.corpus.shards import SUPPORTED_EXTENSIONS, ShardRef, file_fingerprint, list_shards
from quadmix_assets.corpus.tokens import estimate_tokens

__all__ = [
    "DOCUMENT_SCHEMA",
    "QUARANTINE_SCHEMA",
    "REASONS",
    "ReadLimits",
    "SUPPORTED_EXTENSIONS",
    "ShardError",
    "ShardRead",
    "ShardRef",
    "estimate_tokens",
    "file_fingerprint",
    "list_shards",
    "read_shard",
]
