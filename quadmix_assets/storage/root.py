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
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from quadmix_assets.storage.keys import PathEscapeError, check_relpath, is_within

PROVENANCE_KEY = b"quadmix"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every content hash is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(obj: Any, length: int = 16) -> str:
    """First ``length`` hex digits of sha256 over the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


class StorageRoot:
    """Relative paths under ``url`` (a folder or any fsspec URL such as ``s3://bucket/prefix``)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None):
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
            if rel.endswith(suffix) and ".tmp-" not in rel:
                out.append(rel.lstrip("/"))
        return sorted(out)

    # atomic writes -------------------------------------------------------------------------------
    @contextmanager
    def _aside(self, relpath: str):
        final = self.path(relpath)
        parent = final.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
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

    def write_bytes(self, relpath: str, data: bytes) -> str:
        with self._aside(relpath) as tmp:
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
        return self.uri(relpath)

    def read_bytes(self, relpath: str) -> bytes:
        with self.fs.open(self.path(relpath), "rb") as f:
            return f.read()

    def write_json(self, relpath: str, obj: Any) -> str:
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"
        return self.write_bytes(relpath, text.encode("utf-8"))

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
        """Copy a local file (a trained model, say) into the root atomically."""
        return self.write_bytes(relpath, Path(local_file).read_bytes())

    # reads ---------------------------------------------------------------------------------------
    def read_parquet(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(relpath), columns=columns, filesystem=self.fs)

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
