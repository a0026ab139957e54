"""Finding corpus shards: expand a glob (local or any fsspec URL) into stable, unique shard keys."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import fsspec

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
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_GLOB_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class ShardRef:
    """One shard file: ``key`` is stable and unique within a listing (a partition key); ``path`` is openable
    with fsspec (a plain local path, or a URL with its protocol)."""

    key: str
    path: str


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
    """The file name without its supported extension, with characters outside ``[A-Za-z0-9._-]`` as ``_``."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    ext = supported_extension(name)
    stem = name[: -len(ext)] if ext else name
    return _UNSAFE.sub("_", stem) or "_"


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
    keys = [f"{k}-{_path_hash(p)}" if counts[k] > 1 else k for k, p in zip(keys, paths)]
    if len(set(keys)) != len(keys):  # pragma: no cover - would need a SHA-256 prefix clash
        raise ValueError(f"corpus glob {corpus_glob!r}: could not make shard keys unique")
    return [ShardRef(k, p) for k, p in zip(keys, paths)]


def file_fingerprint(path: str, storage_options: dict[str, Any] | None = None) -> str:
    """``"sha256:<hex>"`` of the file's raw (still compressed) bytes: the shard's content version."""
    digest = hashlib.sha256()
    with fsspec.open(path, "rb", **(storage_options or {})) as f:
        while block := f.read(FINGERPRINT_BLOCK):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
