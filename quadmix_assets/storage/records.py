"""What a written file was (size and sha256, recorded when it was written), and whether the stored file is
still that file.

Every file an asset writes goes through :class:`~quadmix_assets.storage.root.StorageRoot`, which tells
the asset layer its size and sha256 in the same pass that writes it; the asset's materialization keeps them
(``quadmix/files``). Resume (:mod:`quadmix_assets.resume`) asks :func:`find_damage` before it trusts an
output: the instance's records say what was written, only the files say what is there now.

The check is meant to run on every resume, so it reads as little as it can:

- the size of every recorded file, always (one ``stat`` each locally; on an object store one listing per
  folder holding several recorded files, else one ``HEAD`` each): a missing or truncated file is caught
  whatever its size;
- the content (sha256) of a file when its modification time is later than the materialization that
  recorded it (something wrote it since: a file written by the step itself is in place before its
  materialization is), or when the time is unknown; and, on a local root, of every file up to
  :data:`ALWAYS_HASH_BYTES` whatever its time, since local times can be set back (``cp -p``,
  ``rsync -a``, ``tar``, ``touch -d``): the small files are most of the files and hashing them costs
  milliseconds. Object stores set an object's time themselves on every write, so there a replaced object
  is always newer than its record and nothing else is read.

What is not caught: a local file over :data:`ALWAYS_HASH_BYTES` replaced by other bytes of exactly the same
size with its old modification time put back. A plain library: no Dagster.
"""

from __future__ import annotations

import datetime as _dt
import os
import stat
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quadmix_assets.storage.keys import PathEscapeError
from quadmix_assets.storage.root import StorageRoot

#: local files up to this size are hashed on every check, whatever their modification time
ALWAYS_HASH_BYTES = 4 * 1024 * 1024
#: on an object store, a folder holding at least this many recorded files is listed once rather than
#: asking for each file (one request per 1,000 files instead of one per file)
LIST_FOLDER_FROM = 4


@dataclass(frozen=True)
class FileRecord:
    """One written file: its size and sha256 (hex) when written; ``shared``: a file several assets
    rewrite (only its existence is asked: another writer's later version is not damage)."""

    size: int
    sha256: str
    shared: bool = False

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"size": self.size, "sha256": self.sha256}
        if self.shared:
            doc["shared"] = True
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FileRecord:
        return cls(size=int(doc["size"]), sha256=str(doc["sha256"]), shared=bool(doc.get("shared", False)))


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from what filesystems put in ``info()``: a number, a datetime (s3fs'
    ``LastModified``) or an ISO string (gcsfs' ``updated``); None when it is none of them."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, _dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)).timestamp()
    if isinstance(value, str):
        try:
            return _timestamp(_dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def modified_time(info: Mapping[str, Any]) -> float | None:
    """The modification time in an fsspec ``info()`` / ``ls(detail=True)`` entry (None when not given:
    then the content is always hashed). Creation times are not taken: an overwritten file may keep one."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "modified"):
        if name in info and (t := _timestamp(info[name])) is not None:
            return t
    return None


#: what is found of a recorded file: (size, modification time or None), None when missing, or why it
#: could not be looked at
Found = tuple[int, float | None] | str | None


def _stat_local(storage: StorageRoot, relpaths: list[str]) -> dict[str, Found]:
    out: dict[str, Found] = {}
    for rel in relpaths:
        try:
            st = os.stat(storage.path(rel))
        except FileNotFoundError:
            out[rel] = None
            continue
        except OSError as exc:
            out[rel] = f"{type(exc).__name__}: {exc}"
            continue
        out[rel] = None if stat.S_ISDIR(st.st_mode) else (st.st_size, st.st_mtime)
    return out


def _stat_remote(storage: StorageRoot, relpaths: list[str]) -> dict[str, Found]:
    """Size and time of each file on an object store, listing a folder once where it holds several of
    them. The filesystem's listing cache is dropped first: the files may have changed under another
    process (what this check is for), and fsspec keeps filesystems, and their caches, per process."""
    fs = storage.fs
    by_folder: dict[str, list[str]] = defaultdict(list)
    for rel in relpaths:
        by_folder[storage.path(rel).rsplit("/", 1)[0]].append(rel)
    out: dict[str, Found] = {}
    for folder, rels in by_folder.items():
        fs.invalidate_cache(folder)
        entries: dict[str, Mapping[str, Any]] | None = None
        if len(rels) >= LIST_FOLDER_FROM:
            try:
                entries = {fs._strip_protocol(e["name"]).rstrip("/"): e for e in fs.ls(folder, detail=True)}  # noqa: SLF001
            except FileNotFoundError:
                entries = {}
        for rel in rels:
            path = storage.path(rel)
            if entries is not None:
                info = entries.get(path)
            else:
                try:
                    info = fs.info(path)
                except FileNotFoundError:
                    info = None
            if info is None or info.get("type") == "directory":
                out[rel] = None
            else:
                out[rel] = (int(info["size"]), modified_time(info))
    return out


def find_damage(storage: StorageRoot, files: Mapping[str, Mapping[str, Any] | FileRecord],
                written_at: float | None) -> tuple[str, str] | None:
    """The first recorded file (in path order) that is not what was written, and what is wrong with it
    (``"is missing"``, ``"was truncated (812 of 90233 bytes)"``...); None when every one is intact.

    ``files``: relative path -> :class:`FileRecord` (or its JSON form, as the materialization keeps it);
    ``written_at``: when the record was made (the materialization's timestamp, seconds since the epoch),
    or None to hash every file. See the module docstring for what is read.
    """
    records = {rel: r if isinstance(r, FileRecord) else FileRecord.from_json(r) for rel, r in files.items()}
    rels = sorted(records)
    for rel in rels:
        try:
            storage.path(rel)
        except PathEscapeError as exc:  # a record never names one; refused all the same
            return rel, f"is not a path under the storage root ({exc})"
    try:
        stats = (_stat_local if storage.is_local else _stat_remote)(storage, rels)
    except OSError as exc:  # an object store that cannot be listed: the first file stands for all
        stats = {rel: f"{type(exc).__name__}: {exc}" for rel in rels}
    for rel in rels:
        rec, found = records[rel], stats.get(rel)
        if found is None:
            return rel, "is missing"
        if isinstance(found, str):
            return rel, f"cannot be looked at ({found})"
        if rec.shared:
            continue
        size, mtime = found
        if size < rec.size:
            return rel, f"was truncated ({size} of {rec.size} bytes)"
        if size != rec.size:
            return rel, f"has another size ({size} bytes, {rec.size} written)"
        newer = mtime is None or written_at is None or mtime > written_at
        if not (newer or (storage.is_local and size <= ALWAYS_HASH_BYTES)):
            continue
        try:
            sha = storage.file_sha256(rel)
        except OSError as exc:
            return rel, f"cannot be read ({type(exc).__name__}: {exc})"
        if sha != rec.sha256:
            return rel, f"was replaced (same size, sha256 {sha[:12]}... where {rec.sha256[:12]}... was written)"
    return None
