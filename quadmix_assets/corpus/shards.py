"""Finding corpus shards: expand a glob (local or any fsspec URL) into stable, unique shard keys.

A shard key becomes a partition key and a file name under the storage root, so it is always a safe key
(:func:`quadmix_assets.storage.keys.check_key`): a file name that is not one gets a key derived from it
(sanitised name + ``-`` + 8 hex digits of its SHA-256), and :class:`ShardRef` keeps the original name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import fsspec

from quadmix_assets.storage.keys import HASH_LENGTH, MAX_KEY_LENGTH, check_key, derive_key

# Longest first, so ``.jsonl.gz`` is stripped whole rather than as ``.gz``.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".jsonl.gz",
    ".ndjson.gz",
    ".json.gz",
    ".parquet",
    ".ndjson",
    ".jsonl",
)
PARQUET_EXTENSIONS: tuple[str, ...] = (".parquet",)

FINGERPRINT_BLOCK = 8 * 1024 * 1024
_GLOB_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class ShardRef:
    """One shard file: ``key`` is stable, unique within a listing and a safe path component (a partition
    key); ``path`` is openable with fsspec (a plain local path, or a URL with its protocol); ``name`` is the
    file's own name (what the key was derived from when the name is not a safe key)."""

    key: str
    path: str
    name: str = ""

    def __post_init__(self):
        check_key(self.key, "shard")
        if not self.name:
            object.__setattr__(self, "name", self.path.rstrip("/").rsplit("/", 1)[-1])


def supported_extension(path: str) -> str | None:
    """The supported extension ``path`` ends with (lower-cased), or ``None``."""
    lower = path.lower()
    for ext in SUPPORTED_EXTENSIONS:
        if lower.endswith(ext):
            return ext
    return None


def is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_EXTENSIONS)


def shard_key(path: str) -> str:
    """The file name without its supported extension when that is a safe key; otherwise a key derived from
    it (:func:`~quadmix_assets.storage.keys.derive_key`: characters outside ``[A-Za-z0-9._-]`` as ``_``, cut
    to fit, plus ``-`` and 8 hex digits of the stem's SHA-256)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    ext = supported_extension(name)
    stem = name[: -len(ext)] if ext else name
    return derive_key(stem)


def _path_hash(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:8]


def list_shards(corpus_glob: str, storage_options: dict[str, Any] | None = None) -> list[ShardRef]:
    """Expand ``corpus_glob`` into shards with a supported extension, sorted by path.

    A directory (no glob characters) lists the files directly inside it. When several files give the same
    key, each of them gets ``-`` plus the first 8 hex digits of the SHA-256 of its path appended.
    Raises ``ValueError`` when nothing supported matches.
    """
    fs, pattern = fsspec.core.url_to_fs(corpus_glob, **(storage_options or {}))
    if not _GLOB_MAGIC.search(pattern) and fs.isdir(pattern):
        pattern = pattern.rstrip("/") + "/*"
    found = fs.glob(pattern, detail=True)
    files = sorted(p for p, info in found.items() if info.get("type", "file") != "directory")
    supported = [p for p in files if supported_extension(p)]
    if not supported:
        extra = f" ({len(files)} file(s) matched, none ending in {', '.join(SUPPORTED_EXTENSIONS)})" if files else ""
        raise ValueError(f"corpus glob {corpus_glob!r} matched no shard files{extra}")

    local = "file" in (fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,))
    paths = [p if local else fs.unstrip_protocol(p) for p in supported]
    keys = [shard_key(p) for p in paths]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    room = MAX_KEY_LENGTH - HASH_LENGTH - 1
    keys = [f"{k[:room]}-{_path_hash(p)}" if counts[k] > 1 else k for k, p in zip(keys, paths)]
    if len(set(keys)) != len(keys):  # pragma: no cover - would need a SHA-256 prefix clash
        raise ValueError(f"corpus glob {corpus_glob!r}: could not make shard keys unique")
    return [ShardRef(k, p, p.rstrip("/").rsplit("/", 1)[-1]) for k, p in zip(keys, paths)]


def file_fingerprint(path: str, storage_options: dict[str, Any] | None = None) -> str:
    """``"sha256:<hex>"`` of the file's raw (still compressed) bytes: the shard's content version."""
    digest = hashlib.sha256()
    with fsspec.open(path, "rb", **(storage_options or {})) as f:
        while block := f.read(FINGERPRINT_BLOCK):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
