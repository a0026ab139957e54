"""Keys that become parts of storage paths (shard, mixture, export and model names), and paths that must
stay under a storage root.

A key is one path component: 1 to 128 characters from ``[A-Za-z0-9._-]``, starting with a letter, a digit
or ``_`` (so never ``.``, ``..``, a hidden name or something that reads as an option), no ``/``, ``\\``,
``:``, NUL or whitespace. Partition keys come from corpus file names, the shard sensor, the UI and the
CLI, so every one of them is checked where it enters and again where a path is built
(:mod:`quadmix_assets.storage.layout`, :class:`quadmix_assets.storage.StorageRoot`).

A plain library (no Dagster).
"""

from __future__ import annotations

import hashlib
import posixpath
import re

MAX_KEY_LENGTH = 128
KEY_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,%d}" % (MAX_KEY_LENGTH - 1))
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
#: characters of the short hash appended to a derived key
HASH_LENGTH = 8


class UnsafeKeyError(ValueError):
    """A key that cannot be used as a path component (``../x``, ``/abs``, ``a/b``, empty, too long...)."""


class PathEscapeError(ValueError):
    """A relative path that would leave its storage root (``..`` components, absolute paths, URLs)."""


def is_safe_key(key: object) -> bool:
    return isinstance(key, str) and KEY_PATTERN.fullmatch(key) is not None


def check_key(key: object, kind: str = "key") -> str:
    """``key`` itself when it is a safe path component, else :class:`UnsafeKeyError` saying why."""
    if is_safe_key(key):
        return key  # type: ignore[return-value]
    if not isinstance(key, str):
        why = f"must be a string, not {type(key).__name__}"
    elif not key:
        why = "is empty"
    elif len(key) > MAX_KEY_LENGTH:
        why = f"is longer than {MAX_KEY_LENGTH} characters"
    elif "/" in key or "\\" in key:
        why = "contains a path separator"
    elif key in (".", ".."):
        why = "is a relative directory reference"
    elif key[0] in ".-":
        why = f"starts with {key[0]!r}"
    else:
        bad = sorted(set(_UNSAFE_CHARS.findall(key)))
        why = f"contains {', '.join(repr(c) for c in bad)}"
    shown = key if not isinstance(key, str) or len(key) <= 200 else key[:200] + "..."
    raise UnsafeKeyError(
        f"unsafe {kind} key {shown!r}: it {why}; keys become file names under the storage root and must "
        f"match {KEY_PATTERN.pattern} (1-{MAX_KEY_LENGTH} characters, no path separators)"
    )


def derive_key(name: str) -> str:
    """A safe key for ``name``: ``name`` itself when it is safe, else its characters outside
    ``[A-Za-z0-9._-]`` as ``_`` (and a leading ``.``/``-`` as ``_``), cut to fit, plus ``-`` and the first
    8 hex digits of sha256(name), so two names that sanitise alike still get different keys."""
    if is_safe_key(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]
    stem = _UNSAFE_CHARS.sub("_", name)
    if stem[:1] in (".", "-"):
        stem = "_" + stem[1:]
    stem = stem[: MAX_KEY_LENGTH - HASH_LENGTH - 1]
    key = f"{stem}-{digest}" if stem else f"_-{digest}"
    return check_key(key)


def check_relpath(relpath: str) -> str:
    """``relpath`` as a clean relative POSIX path (``a/b/c``) that cannot leave the folder it is joined to.

    Refused with :class:`PathEscapeError`: absolute paths, ``..`` or ``.`` components, empty components
    (``a//b``), backslashes, NUL, URLs (``s3://...``) and drive letters. ``""`` is the root itself.
    """
    if not isinstance(relpath, str):
        raise PathEscapeError(f"storage path must be a string, not {type(relpath).__name__}")
    if relpath == "":
        return ""
    problem = None
    if relpath.startswith("/"):
        problem = "is absolute"
    elif "\x00" in relpath:
        problem = "contains NUL"
    elif "\\" in relpath:
        problem = "contains a backslash"
    elif "://" in relpath or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", relpath):
        problem = "is a URL or has a drive letter"
    else:
        parts = relpath.rstrip("/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            problem = "has an empty, '.' or '..' component"
    if problem is None:
        normal = posixpath.normpath(relpath)
        if normal.startswith("../") or normal == ".." or posixpath.isabs(normal):  # pragma: no cover - belt and braces
            problem = "resolves outside the root"
    if problem:
        raise PathEscapeError(f"storage path {relpath!r} {problem}: refused, every path must stay under the storage root")
    return relpath.rstrip("/")


def is_within(path: str, root: str) -> bool:
    """Whether the POSIX ``path`` is ``root`` or lies under it, after normalising both (component-wise:
    ``/data/quadmix-evil`` is not under ``/data/quadmix``)."""
    p, r = posixpath.normpath(path), posixpath.normpath(root)
    if r == "/":
        return p.startswith("/")
    return p == r or p.startswith(r + "/")
