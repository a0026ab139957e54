"""A storage root: relative paths under a local folder or an fsspec URL, written atomically.

Every relative path is checked before use (:func:`quadmix_assets.storage.keys.check_relpath`) and the
joined path must lie under the root: ``..``, absolute paths and URLs are refused with
:class:`~quadmix_assets.storage.keys.PathEscapeError`, so nothing is read or written outside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from quadmix_assets import libc
from quadmix_assets.storage.keys import PathEscapeError, check_relpath, is_within

PROVENANCE_KEY = b"quadmix"
#: the mark in the name of every file or folder written aside (never read or listed as output)
TMP_MARK = ".tmp-"
COPY_BLOCK = 8 * 1024 * 1024
_RENAME_EXCHANGE = 2


#: told of every file a :class:`StorageRoot` has written, once it is in place: ``(relative path, size in
#: bytes, sha256 hex, shared)``; ``shared``: a file other writers rewrite too (see :meth:`StorageRoot.write_bytes`)
WriteCallback = Callable[[str, int, str, bool], None]


class StorageNotWritable(OSError):
    """The storage root cannot be written (read-only, full, unreachable); the message names the root."""


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    try:
        fn = libc.function("renameat2")
        if fn is None:
            return False
        at_fdcwd = -100
        return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0
    except OSError:
        return False


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every content hash is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(obj: Any, length: int = 16) -> str:
    """First ``length`` hex digits of sha256 over the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


class StorageRoot:
    """Relative paths under ``url`` (a folder or any fsspec URL such as ``s3://bucket/prefix``).

    ``on_write``: told the size and sha256 of every file once it is in place (the asset layer records
    them in the materialization, so a resumed run can tell a damaged file from a current one:
    :mod:`quadmix_assets.storage.records`). The hash is taken over the bytes as they are written, in the
    same pass, and only when someone listens.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None,
                 on_write: WriteCallback | None = None):
        url = str(url)
        if not url.strip():
            raise PathEscapeError("storage root is empty")
        if "\x00" in url or any(part == ".." for part in url.split("://", 1)[-1].split("/")):
            raise PathEscapeError(f"storage root {url!r} has a '..' component or NUL: give it without them")
        self.storage_options = dict(storage_options or {})
        self.fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
        self.is_local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        if self.is_local and "://" not in url:
            url = os.path.abspath(url)  # a relative folder means the same folder whatever the cwd later
            self.fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
        self.url = url.rstrip("/") or url
        self._root = root.rstrip("/") or root
        self.on_write = on_write
        #: folders being written aside by :meth:`replace_dir` -> the folder they become
        self._staged: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"StorageRoot({self.url!r})"

    # paths ---------------------------------------------------------------------------------------
    def _rel(self, relpath: str) -> str:
        rel = check_relpath(relpath)
        if not is_within(f"{self._root}/{rel}", self._root):  # pragma: no cover - check_relpath refuses first
            raise PathEscapeError(f"storage path {relpath!r} resolves outside the storage root {self.url!r}")
        return rel

    def path(self, relpath: str) -> str:
        """The filesystem path (without protocol) of ``relpath``; refused unless it stays under the root."""
        rel = self._rel(relpath)
        return f"{self._root}/{rel}" if rel else self._root

    def uri(self, relpath: str) -> str:
        """The full URL of ``relpath``, for metadata and users."""
        rel = self._rel(relpath)
        return f"{self.url}/{rel}" if rel else self.url

    def exists(self, relpath: str) -> bool:
        return self.fs.exists(self.path(relpath))

    def list(self, prefix: str, suffix: str = "") -> list[str]:
        """Relative paths of the files under ``prefix`` ending in ``suffix``, sorted."""
        base = self.path(prefix)
        if not self.fs.exists(base):
            return []
        root = self.path("").rstrip("/") + "/"
        out = []
        for p in self.fs.find(base):
            rel = p[len(root):] if p.startswith(root) else p
            if rel.endswith(suffix) and TMP_MARK not in rel:
                out.append(rel.lstrip("/"))
        return sorted(out)

    # atomic writes -------------------------------------------------------------------------------
    @contextmanager
    def _aside(self, relpath: str):
        final = self.path(relpath)
        parent = final.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{final}{TMP_MARK}{uuid.uuid4().hex}"
        try:
            yield tmp
            if self.is_local:
                os.replace(tmp, final)
            else:
                self.fs.mv(tmp, final)
        except BaseException:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            finally:
                raise

    def _written(self, relpath: str, size: int, sha256: str | None, shared: bool) -> None:
        """Tell ``on_write`` of a file now in place, under the name it has once a :meth:`replace_dir`
        it was written into is switched in."""
        if self.on_write is None or sha256 is None:
            return
        rel = self._rel(relpath)
        for staged, final in self._staged.items():
            if rel.startswith(staged + "/"):
                rel = final + rel[len(staged):]
                break
        self.on_write(rel, size, sha256, shared)

    def write_bytes(self, relpath: str, data: bytes, *, shared: bool = False) -> str:
        """Write ``data`` atomically. ``shared``: a file several assets rewrite (a registry each adds to,
        such as ``mixtures/searched.json``); its record says so, and a resumed run then asks only that it
        exists, since another writer's later version is not damage."""
        sha = hashlib.sha256(data).hexdigest() if self.on_write is not None else None
        with self._aside(relpath) as tmp:
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
        self._written(relpath, len(data), sha, shared)
        return self.uri(relpath)

    def read_bytes(self, relpath: str) -> bytes:
        with self.fs.open(self.path(relpath), "rb") as f:
            return f.read()

    def write_json(self, relpath: str, obj: Any, *, shared: bool = False) -> str:
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"
        return self.write_bytes(relpath, text.encode("utf-8"), shared=shared)

    def read_json(self, relpath: str) -> Any:
        return json.loads(self.read_bytes(relpath))

    def write_parquet(self, relpath: str, table: pa.Table, provenance: Mapping[str, Any]) -> str:
        """Write ``table`` atomically with ``provenance`` in its schema metadata; same inputs, same bytes."""
        meta = dict(table.schema.metadata or {})
        meta[PROVENANCE_KEY] = canonical_json(provenance).encode("utf-8")
        table = table.replace_schema_metadata(meta)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", row_group_size=256 * 1024)
        return self.write_bytes(relpath, buf.getvalue())

    def write_file(self, relpath: str, local_file: str | Path) -> str:
        """Copy a local file (a trained model, say) into the root atomically, block by block (never whole
        in memory)."""
        with open(local_file, "rb") as src:
            return self.write_stream(relpath, src)

    def write_stream(self, relpath: str, src) -> str:
        """Copy a readable binary file object into the root atomically, block by block (hashed on the way
        when ``on_write`` listens: the file is read once)."""
        digest = hashlib.sha256() if self.on_write is not None else None
        size = 0
        with self._aside(relpath) as tmp:
            with self.fs.open(tmp, "wb") as dst:
                if digest is None:
                    shutil.copyfileobj(src, dst, COPY_BLOCK)
                else:
                    while block := src.read(COPY_BLOCK):
                        digest.update(block)
                        dst.write(block)
                        size += len(block)
        self._written(relpath, size, digest.hexdigest() if digest is not None else None, False)
        return self.uri(relpath)

    @contextmanager
    def replace_dir(self, relpath: str):
        """Write a whole folder aside and switch it in at the end: yields the relative path to write into.

        Locally the new folder is swapped with the old one in one step (``renameat2(RENAME_EXCHANGE)``
        where the kernel has it, else two renames with nothing half-written in between) and the old one is
        removed; a failure leaves the old folder untouched. On object stores, which cannot rename a
        folder, the old folder is removed first and the new files are written in place (readers see no
        folder, or a folder without its ``manifest.json`` written last, never old files under a new one).
        """
        rel = relpath.strip("/")
        if not self.is_local:
            if self.fs.exists(self.path(rel)):
                self.fs.rm(self.path(rel), recursive=True)
            yield rel
            return
        staged_rel = f"{rel}{TMP_MARK}{uuid.uuid4().hex}"
        staged, final = self.path(staged_rel), self.path(rel)
        os.makedirs(staged, exist_ok=True)
        self._staged[self._rel(staged_rel)] = self._rel(rel)  # files written in it are recorded under ``rel``
        try:
            yield staged_rel
            if os.path.isdir(final):
                if not _exchange(staged, final):
                    old = f"{final}{TMP_MARK}old-{uuid.uuid4().hex}"
                    os.replace(final, old)
                    os.replace(staged, final)
                    staged = old
                shutil.rmtree(staged, ignore_errors=True)  # the old folder now
            else:
                os.replace(staged, final)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        finally:
            self._staged.pop(self._rel(staged_rel), None)

    # housekeeping --------------------------------------------------------------------------------
    def temp_files(self) -> list[str]:
        """Full paths of leftover ``*.tmp-*`` files and folders (from killed writers), outermost only."""
        root = self.path("")
        if not self.fs.exists(root):
            return []
        found = []
        for p in sorted(self.fs.find(root, withdirs=True)):
            name = p.rstrip("/").rsplit("/", 1)[-1]
            if TMP_MARK in name and not any(p.startswith(f + "/") for f in found):
                found.append(p)
        return found

    def clean_temp(self) -> list[str]:
        """Remove leftover ``*.tmp-*`` files and folders; returns what was removed. Call it only when no
        other writer is at work under this root (``quadmix run`` does, at start)."""
        removed = []
        for p in self.temp_files():
            try:
                self.fs.rm(p, recursive=True)
                removed.append(p)
            except FileNotFoundError:
                pass
        return removed

    def check_writable(self, min_free_bytes: int = 64 * 1024 * 1024) -> None:
        """Raise :class:`StorageNotWritable` unless a file can be written, read back and removed under the
        root (and, when local, ``min_free_bytes`` are free): a read-only or full storage is reported before
        any work is done, not after minutes of model training."""
        probe = f".quadmix-write-probe{TMP_MARK}{uuid.uuid4().hex}"
        data = os.urandom(64 * 1024)
        try:
            self.fs.makedirs(self.path(""), exist_ok=True)
            with self.fs.open(self.path(probe), "wb") as f:
                f.write(data)
            with self.fs.open(self.path(probe), "rb") as f:
                ok = f.read() == data
            self.fs.rm(self.path(probe))
        except OSError as exc:
            try:
                if self.fs.exists(self.path(probe)):
                    self.fs.rm(self.path(probe))
            except OSError:
                pass
            raise StorageNotWritable(f"storage {self.url} is not writable: {type(exc).__name__}: {exc}") from exc
        if not ok:
            raise StorageNotWritable(f"storage {self.url}: a file written could not be read back unchanged")
        if self.is_local:
            free = shutil.disk_usage(self.path("")).free
            if free < min_free_bytes:
                raise StorageNotWritable(
                    f"storage {self.url} has only {free / 2**20:.0f} MiB free (at least {min_free_bytes / 2**20:.0f} MiB needed)"
                )

    # reads ---------------------------------------------------------------------------------------
    def read_parquet(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(relpath), columns=columns, filesystem=self.fs)

    def parquet_rows(self, relpath: str) -> int:
        """The row count of a Parquet file, from its footer (no column is read)."""
        return pq.read_metadata(self.path(relpath), filesystem=self.fs).num_rows

    def provenance(self, relpath: str) -> dict:
        """The provenance recorded in a Parquet file written by :meth:`write_parquet`."""
        schema = pq.read_schema(self.path(relpath), filesystem=self.fs)
        raw = (schema.metadata or {}).get(PROVENANCE_KEY)
        return json.loads(raw) if raw else {}

    def dataset(self, relpaths: Iterable[str]) -> pads.Dataset:
        """A lazy pyarrow dataset over Parquet files (scan only the columns you need)."""
        return pads.dataset([self.path(p) for p in relpaths], format="parquet", filesystem=self.fs)

    @contextmanager
    def local_file(self, relpath: str):
        """A local path for ``relpath`` (the file itself when local, else a temporary copy)."""
        if self.is_local:
            yield self.path(relpath)
            return
        with tempfile.TemporaryDirectory() as d:
            local = os.path.join(d, os.path.basename(relpath))
            self.fs.get(self.path(relpath), local)
            yield local

    def file_sha256(self, relpath: str) -> str:
        h = hashlib.sha256()
        with self.fs.open(self.path(relpath), "rb") as f:
            for block in iter(lambda: f.read(1 << 23), b""):
                h.update(block)
        return h.hexdigest()
