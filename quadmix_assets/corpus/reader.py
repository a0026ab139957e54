"""Reading one corpus shard (JSONL, gzipped JSONL or Parquet) into a documents table and a quarantine table.

Nothing is dropped silently: every record either becomes a document or gets a quarantine row saying why,
so ``stats["records_read"] == stats["documents"] + stats["quarantined"]`` always holds. Blank JSONL lines
are not records (they are counted in ``stats["blank_lines"]``). A shard with no records at all is reported
as one ``empty_file`` quarantine row (``record == -1``), which counts as the one record it yielded.

Problems that make the whole shard unusable (an unreadable Parquet file, a Parquet file without the text
column, a ``.gz`` file that is not gzip at all) raise :class:`ShardError`; a missing file raises the usual
``FileNotFoundError``.

Input is bounded by :class:`ReadLimits`: a line longer than ``max_line_bytes`` is quarantined
(``line_too_long``) without being held in memory; a record nested deeper than ``max_depth`` is quarantined
(``too_deep``, also for JSON too deep for the parser); past ``max_shard_bytes`` decompressed bytes or
``max_records`` records reading stops with one ``shard_limit`` row (the documents before it are kept);
beyond ``max_quarantine_rows`` quarantine rows are counted in the stats but not stored. Lines are
assembled in linear time however long they are.

The shard's fingerprint (``"sha256:<hex>"`` of the raw, still compressed bytes, as
:func:`~quadmix_assets.corpus.shards.file_fingerprint` gives it) is taken in the same pass that reads the
bytes (``ShardRead.fingerprint``, ``stats["fingerprint"]``, ``ShardError.fingerprint``), so the documents
can never be stored under another version's fingerprint.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quadmix_assets.corpus.shards import is_parquet
from quadmix_assets.corpus.tokens import estimate_tokens
from quadmix_assets.method.ids import hash_ids

#: The leading columns of every documents table, in this order (none ever holds a null); the source
#: record's other fields follow.
DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("id_hash", pa.uint64()),
        pa.field("text", pa.string()),
        pa.field("n_tokens", pa.int64()),
        pa.field("row", pa.int64()),
        pa.field("record", pa.int64()),
    ]
)

#: The quarantine table: one row per record (or whole-file problem) that did not become a document.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("record", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),
    ]
)

#: Quarantine reason codes.
REASONS: tuple[str, ...] = (
    "malformed_json",  # the line is not valid JSON
    "invalid_utf8",  # the line is not valid UTF-8 (or a string holds a lone UTF-16 surrogate escape)
    "not_an_object",  # valid JSON, but not an object
    "missing_text",  # no text field
    "non_string_text",  # text is null, a number, a list, ...
    "empty_text",  # text is empty or only whitespace
    "bad_id",  # id is not a string or integer (list, object, float, bool) or is blank
    "duplicate_id",  # a later record reusing an id already used in this shard (the first is kept)
    "truncated_gzip",  # the compressed stream ended early; documents before that point are kept
    "corrupt_gzip",  # the compressed stream is damaged part-way; documents before that point are kept
    "empty_file",  # zero bytes, no non-blank lines, or a Parquet file with no rows
    "line_too_long",  # a JSONL line longer than ReadLimits.max_line_bytes (only its start is kept in raw)
    "too_deep",  # a record nested deeper than ReadLimits.max_depth (or too deep for the JSON parser)
    "shard_limit",  # more than max_records records or max_shard_bytes bytes: the rest of the shard is not read
)


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what one shard may cost to read (see the module docstring; docs/resume-and-faults.md, "Bad input")."""

    max_line_bytes: int = 16 * 1024 * 1024  # one JSONL line (record)
    max_shard_bytes: int = 4 * 1024**3  # decompressed JSONL bytes, or the Parquet file's size
    max_records: int = 1_000_000  # records per shard
    max_depth: int = 32  # JSON nesting depth of a record (the record object itself is depth 1)
    max_quarantine_rows: int = 10_000  # quarantine rows stored per shard; the rest are only counted

    def __post_init__(self):
        for name in ("max_line_bytes", "max_shard_bytes", "max_records", "max_depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ReadLimits.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.max_quarantine_rows) < 0:
            raise ValueError(f"ReadLimits.max_quarantine_rows must be >= 0, got {self.max_quarantine_rows}")

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}

PREFIX_FOR_CLASHES = "orig_"
READ_BLOCK = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_MISSING = object()


class ShardError(ValueError):
    """The whole shard is unusable (unreadable file, no text column, ...); the message names the file.

    ``fingerprint`` is the fingerprint of the bytes that were found unusable (when they could be read)."""

    def __init__(self, message: str, fingerprint: str | None = None):
        super().__init__(message)
        self.fingerprint = fingerprint


@dataclass
class ShardRead:
    """What reading one shard gave: documents, quarantined records and counts."""

    documents: pa.Table
    quarantine: pa.Table
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """``"sha256:<hex>"`` of the raw bytes these documents were read from (hashed in the same pass)."""
        return self.stats["fingerprint"]


def empty_documents() -> pa.Table:
    return DOCUMENT_SCHEMA.empty_table()


def derive_id(text: str) -> str:
    """The content-based id of a record without one: ``"sha256-"`` + the first 16 hex of SHA-256(text)."""
    return "sha256-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_shard(
    path: str,
    *,
    text_field: str = "text",
    id_field: str = "id",
    storage_options: dict[str, Any] | None = None,
    max_raw_chars: int = 2000,
    limits: ReadLimits | None = None,
) -> ShardRead:
    """Read one shard (``.parquet`` by extension, otherwise JSON lines, gzip when the name ends in ``.gz``).

    Returns the documents (``DOCUMENT_SCHEMA`` then the record's other fields), the quarantine table
    (``QUARANTINE_SCHEMA``, at most ``limits.max_quarantine_rows`` rows) and stats: ``records_read``,
    ``documents``, ``quarantined`` (all of them, stored or not), ``quarantine_rows_stored``,
    ``quarantine_rows_not_stored``, ``quarantined_by_reason``, ``tokens``, ``blank_lines``, ``bytes_read``
    (decompressed), ``format``, ``path``, ``fingerprint``, ``limits``.
    """
    options = dict(storage_options or {})
    limits = limits or ReadLimits()
    quarantine = _Quarantine(path, max_raw_chars, limits.max_quarantine_rows)
    with _HashingReader.open(path, options) as raw:
        if is_parquet(path):
            fmt = "parquet"
            documents, records_read, nbytes = _read_parquet(path, raw, text_field, id_field, quarantine, limits)
            blank = 0
        else:
            fmt = "jsonl"
            documents, records_read, blank, nbytes = _read_jsonl(path, raw, text_field, id_field, quarantine, limits)
        fingerprint = raw.finish()
    if records_read == 0:
        quarantine.add(-1, "empty_file", "the shard holds no records (zero bytes, only blank lines or no rows)", b"")
        records_read = 1
    q_table = quarantine.table()
    stats = {
        "path": path,
        "format": fmt,
        "fingerprint": fingerprint,
        "records_read": records_read,
        "documents": documents.num_rows,
        "quarantined": quarantine.count,
        "quarantine_rows_stored": q_table.num_rows,
        "quarantine_rows_not_stored": quarantine.count - q_table.num_rows,
        "quarantined_by_reason": dict(quarantine.by_reason),
        "tokens": int(pc.sum(documents["n_tokens"]).as_py() or 0),
        "blank_lines": blank,
        "bytes_read": nbytes,
        "limits": limits.to_dict(),
    }
    return ShardRead(documents=documents, quarantine=q_table, stats=stats)


# --------------------------------------------------------------------------------------------- raw bytes


class _HashingReader(io.RawIOBase):
    """A file's raw bytes, hashed as they are read (so the fingerprint is of exactly the bytes parsed)."""

    def __init__(self, f):
        self._f = f
        self._digest = hashlib.sha256()
        self.tell_bytes = 0

    @classmethod
    @contextmanager
    def open(cls, path: str, options: dict[str, Any]):
        with fsspec.open(path, "rb", **options) as f:  # no decompression: the raw bytes
            yield cls(f)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._digest.update(data)
        self.tell_bytes += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def finish(self) -> str:
        """Hash what is left unread (a shard whose reading stopped early) and return the fingerprint."""
        while self.read(READ_BLOCK):
            pass
        return "sha256:" + self._digest.hexdigest()


# --------------------------------------------------------------------------------------------- quarantine


class _Quarantine:
    def __init__(self, source: str, max_raw_chars: int, max_rows: int | None = None):
        self.source = source
        self.max_raw_chars = max(0, int(max_raw_chars))
        self.max_rows = None if max_rows is None else max(0, int(max_rows))
        self.count = 0
        self.by_reason: dict[str, int] = {}
        self.records: list[int] = []
        self.reasons: list[str] = []
        self.details: list[str] = []
        self.raws: list[str] = []

    def add(self, record: int, reason: str, detail: str, raw: bytes | str) -> None:
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if self.max_rows is not None and len(self.records) >= self.max_rows:
            return  # counted, not stored
        limit = self.max_raw_chars
        if isinstance(raw, (bytes, bytearray, memoryview)):
            # 4 bytes per character at most, and an invalid byte becomes one U+FFFD: enough to fill the limit.
            raw = bytes(raw[: limit * 4]).decode("utf-8", "replace")
        self.records.append(record)
        self.reasons.append(reason)
        self.details.append(detail)
        self.raws.append(raw[:limit])

    def table(self) -> pa.Table:
        n = len(self.records)
        return pa.Table.from_arrays(
            [
                pa.array([self.source] * n, pa.string()),
                pa.array(self.records, pa.int64()),
                pa.array(self.reasons, pa.string()),
                pa.array(self.details, pa.string()),
                pa.array(self.raws, pa.string()),
            ],
            schema=QUARANTINE_SCHEMA,
        )


# --------------------------------------------------------------------------------------------- shared


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _column_names(fields: list[str], text_field: str, id_field: str) -> list[tuple[str, str]]:
    """(source field, output column) for the fields kept beside our columns, clashes prefixed ``orig_``."""
    reserved = set(DOCUMENT_SCHEMA.names)
    used: set[str] = set(reserved)
    out = []
    for name in fields:
        if name == text_field or (name == id_field and id_field == "id"):
            continue
        new = name
        while new in used:
            new = PREFIX_FOR_CLASHES + new
        used.add(new)
        out.append((name, new))
    return out


def _documents_table(ids: list[str], texts, records, extras: list[tuple[str, pa.Array | pa.ChunkedArray]]):
    n = len(ids)
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.string())
    columns = [
        pa.array(ids, pa.string()),
        pa.array(hash_ids(ids), pa.uint64()),
        texts,
        estimate_tokens(texts),
        pa.array(np.arange(n, dtype=np.int64)),
        pa.array(np.asarray(records, dtype=np.int64)),
    ]
    fields = list(DOCUMENT_SCHEMA)
    for name, arr in extras:
        columns.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# --------------------------------------------------------------------------------------------- JSON lines


def _flat_type(t: pa.DataType) -> bool:
    """A scalar type or a list of scalars: what every Parquet reader reads back as an ordinary column."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return not pa.types.is_nested(t)


def _extra_array(values: list[Any]) -> pa.Array:
    """Arrow's inferred type for one extra field when it is a scalar or a list of scalars; JSON strings when
    the values are nested deeper (objects, lists of lists) or their types do not agree."""
    try:
        arr = pa.array(values)
        if _flat_type(arr.type):
            return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError):
        pass
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], pa.string())


def _depth_over(obj: dict, limit: int) -> bool:
    """Whether the record ``obj`` (depth 1) nests containers deeper than ``limit`` (iterative: no recursion)."""
    stack = [(v, 2) for v in obj.values() if isinstance(v, (dict, list))]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _open_text_stream(raw: _HashingReader, path: str):
    """The decompressed stream over ``raw`` and its read function (gzip when the name ends in ``.gz``)."""
    if path.lower().endswith(".gz"):
        f = gzip.GzipFile(fileobj=raw, mode="rb")
        # read1 on a gzip stream returns what was decompressed so far, so a truncated tail loses nothing.
        return f, f.read1
    return raw, raw.read


def _read_jsonl(path, raw: _HashingReader, text_field, id_field, quarantine: _Quarantine, limits: ReadLimits):
    ids: list[str] = []
    texts: list[str] = []
    records: list[int] = []
    extras: dict[str, list[Any]] = {}
    seen: dict[str, int] = {}
    records_read = 0
    blank = 0
    lineno = 0
    add = quarantine.add
    loads = json.loads
    max_line = int(limits.max_line_bytes)
    max_depth = int(limits.max_depth)
    max_records = int(limits.max_records)
    max_bytes = int(limits.max_shard_bytes)

    def handle(line: bytes, lineno: int) -> None:
        nonlocal records_read
        records_read += 1
        if lineno == 1 and line.startswith(_BOM):
            line = line[3:]
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as e:
            add(lineno, "invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line: {e.reason}", line)
            return
        try:
            obj = loads(s)
        except RecursionError:
            add(lineno, "too_deep", f"nested too deeply for the JSON parser (limit: depth {max_depth})", line)
            return
        except ValueError as e:
            add(lineno, "malformed_json", f"not valid JSON: {e}", line)
            return
        if not isinstance(obj, dict):
            add(lineno, "not_an_object", f"expected a JSON object, got {_json_type(obj)}", line)
            return
        if (b"\\ud" in line or b"\\uD" in line) and _has_surrogate(obj):
            add(lineno, "invalid_utf8", "a string holds a lone UTF-16 surrogate escape (not encodable as UTF-8)", line)
            return
        text = obj.get(text_field, _MISSING)
        if text is _MISSING:
            add(lineno, "missing_text", f"no {text_field!r} field (fields: {sorted(obj)[:20]})", line)
            return
        if not isinstance(text, str):
            add(lineno, "non_string_text", f"{text_field!r} is {_json_type(text)}, not a string", line)
            return
        if not text.strip():
            what = "empty" if not text else "only whitespace"
            add(lineno, "empty_text", f"{text_field!r} is {what}", line)
            return
        raw_id = obj.get(id_field)
        if raw_id is None:
            doc_id = derive_id(text)
        elif isinstance(raw_id, str):
            if not raw_id.strip():
                add(lineno, "bad_id", f"{id_field!r} is a blank string", line)
                return
            doc_id = raw_id
        elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
            doc_id = str(raw_id)
        else:
            add(lineno, "bad_id", f"{id_field!r} is {_json_type(raw_id)}, expected a string or an integer", line)
            return
        if line.count(b"{") + line.count(b"[") > max_depth and _depth_over(obj, max_depth):
            add(lineno, "too_deep", f"the record nests objects/lists deeper than {max_depth} levels", line)
            return
        first = seen.get(doc_id)
        if first is not None:
            add(lineno, "duplicate_id", f"id {doc_id!r} already used by line {first}", line)
            return
        seen[doc_id] = lineno
        n = len(ids)
        for key, value in obj.items():
            if key == text_field or (key == id_field and id_field == "id"):
                continue
            col = extras.get(key)
            if col is None:
                col = extras[key] = [None] * n
            elif len(col) < n:
                col.extend([None] * (n - len(col)))
            col.append(value)
        ids.append(doc_id)
        texts.append(text)
        records.append(lineno)

    def too_long(lineno: int, length: int, head: bytes) -> None:
        nonlocal records_read
        records_read += 1
        add(lineno, "line_too_long", f"the line has {length} bytes, more than max_line_bytes={max_line}; "
            "only its start is shown in raw", head)

    head_bytes = quarantine.max_raw_chars * 4
    stop: tuple[str, str] | None = None
    decoded_any = False
    total = 0
    pending = bytearray()  # the partial last line so far (appended to: linear in the line's length)
    skipping = -1  # >= 0: length so far of an over-long line being skipped (its start is in `long_head`)
    long_head = b""
    stream, read = _open_text_stream(raw, path)
    while stop is None:
        try:
            chunk = read(READ_BLOCK)
        except EOFError as e:
            stop = ("truncated_gzip", str(e))
            break
        except (gzip.BadGzipFile, zlib.error) as e:
            if not decoded_any:
                raise ShardError(f"shard {path} cannot be decompressed: {e}", fingerprint=raw.finish()) from e
            stop = ("corrupt_gzip", str(e))
            break
        if not chunk:
            break
        decoded_any = True
        over_bytes = total + len(chunk) > max_bytes
        if over_bytes:
            chunk = chunk[: max_bytes - total]
        total += len(chunk)
        parts = chunk.split(b"\n")
        tail = parts.pop()
        for i, line in enumerate(parts):
            if i == 0:
                if skipping >= 0:  # the end of an over-long line
                    lineno += 1
                    if records_read >= max_records:
                        stop = ("shard_limit", f"more than max_records={max_records} records")
                        break
                    too_long(lineno, skipping + len(line), (long_head + line[: head_bytes - len(long_head)]))
                    skipping = -1
                    continue
                if pending:
                    pending += line
                    line = bytes(pending)
                    pending.clear()
            lineno += 1
            if not line.strip():
                blank += 1
                continue
            if records_read >= max_records:
                stop = ("shard_limit", f"more than max_records={max_records} records")
                break
            if len(line) > max_line:
                too_long(lineno, len(line), line[:head_bytes])
            else:
                handle(line, lineno)
        if stop is not None:
            lineno -= 1  # the line that was not read gets the stop row's number below
            break
        if skipping >= 0:
            skipping += len(tail)
            if len(long_head) < head_bytes:
                long_head += tail[: head_bytes - len(long_head)]
        else:
            pending += tail
            if len(pending) > max_line:
                skipping, long_head = len(pending), bytes(pending[:head_bytes])
                pending.clear()
        if over_bytes:
            stop = ("shard_limit", f"more than max_shard_bytes={max_bytes} decompressed bytes")
    if stop is None and records_read >= max_records and (skipping >= 0 or pending.strip()):
        stop = ("shard_limit", f"more than max_records={max_records} records")
    if stop is not None:
        lineno += 1
        records_read += 1
        reason, err = stop
        leftover = long_head if skipping >= 0 else bytes(pending[:head_bytes])
        if reason == "shard_limit":
            detail = f"the shard has {err}: reading stopped at line {lineno}; the {len(ids)} documents before it are kept"
        else:
            what = "ended early" if reason == "truncated_gzip" else "is damaged"
            detail = (f"the compressed stream {what} at line {lineno} ({err}); the {len(ids)} documents before it are kept"
                      + (f"; the partial line ({max(skipping, len(pending))} bytes) is shown in raw" if leftover else ""))
        add(lineno, reason, detail, leftover)
    elif skipping >= 0:
        too_long(lineno + 1, skipping, long_head)
    elif pending.strip():
        handle(bytes(pending), lineno + 1)
    elif pending:
        blank += 1

    n = len(ids)
    fields = _column_names(list(extras), text_field, id_field)
    extra_arrays = []
    for src, name in fields:
        col = extras[src]
        if len(col) < n:
            col.extend([None] * (n - len(col)))
        extra_arrays.append((name, _extra_array(col)))
    return _documents_table(ids, texts, records, extra_arrays), records_read, blank, total


# --------------------------------------------------------------------------------------------- Parquet


def _is_stringlike(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or getattr(pa.types, "is_string_view", lambda _: False)(t)
        or (pa.types.is_dictionary(t) and _is_stringlike(t.value_type))
    )


def _is_binarylike(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or getattr(pa.types, "is_binary_view", lambda _: False)(t)
    )


def _as_utf8(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list[tuple[int, str]]]:
    """Cast a string or binary column to ``string``; rows that are not valid UTF-8 become null and are listed."""
    try:
        out = pc.cast(col, pa.string())
        out.validate(full=True)
        return out, []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = []
    bad = []
    for i, v in enumerate(pc.cast(col, pa.binary()).to_pylist()):
        if v is None:
            values.append(None)
            continue
        try:
            values.append(v.decode("utf-8"))
        except UnicodeDecodeError as e:
            values.append(None)
            bad.append((i, f"invalid UTF-8 at byte {e.start}: {e.reason}"))
    return pa.chunked_array([pa.array(values, pa.string())]), bad


def _read_parquet(path, raw: _HashingReader, text_field, id_field, quarantine: _Quarantine, limits: ReadLimits):
    # the whole file is read (and hashed) once, then parsed from memory: the table is in memory anyway
    data = raw.read(int(limits.max_shard_bytes) + 1)
    if len(data) > limits.max_shard_bytes:
        raise ShardError(f"Parquet shard {path} is larger than max_shard_bytes={limits.max_shard_bytes}",
                         fingerprint=raw.finish())
    if not data:
        return empty_documents(), 0, 0
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ShardError(f"Parquet shard {path} cannot be read: {e}", fingerprint=raw.finish()) from e
    del data
    n = table.num_rows
    if text_field not in table.column_names:
        raise ShardError(
            f"Parquet shard {path} has no text column {text_field!r}; columns present: {table.column_names}",
            fingerprint=raw.finish(),
        )
    if n == 0:
        return empty_documents(), 0, raw.tell_bytes
    nbytes = raw.tell_bytes
    cut = None
    if n > limits.max_records:
        cut = n
        table = table.slice(0, int(limits.max_records))
        n = table.num_rows

    reasons = np.full(n, None, dtype=object)
    details = np.full(n, None, dtype=object)

    def mark(mask: np.ndarray, reason: str, detail: str) -> None:
        sel = mask & (reasons == None)  # noqa: E711 - elementwise on an object array
        reasons[sel] = reason
        details[sel] = detail

    # ---- text
    tcol = table.column(text_field)
    ttype = tcol.type
    if _is_stringlike(ttype) or _is_binarylike(ttype):
        text, bad_utf8 = _as_utf8(tcol)
        for i, msg in bad_utf8:
            reasons[i] = "invalid_utf8"
            details[i] = f"{text_field!r} {msg}"
        mark(pc.is_null(text).to_numpy(zero_copy_only=False), "non_string_text", f"{text_field!r} is null")
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)
        mark(pc.fill_null(blank, False).to_numpy(zero_copy_only=False), "empty_text", f"{text_field!r} is empty or only whitespace")
    else:
        text = pa.chunked_array([pa.nulls(n, pa.string())])
        mark(tcol.is_null().to_numpy(zero_copy_only=False), "non_string_text", f"{text_field!r} is null")
        mark(np.ones(n, dtype=bool), "non_string_text", f"{text_field!r} column has type {ttype}, not a string")

    # ---- ids
    ids: list[Any]
    if id_field in table.column_names:
        icol = table.column(id_field)
        itype = icol.type
        if _is_stringlike(itype) or _is_binarylike(itype):
            id_arr, bad_utf8 = _as_utf8(icol)
            for i, msg in bad_utf8:
                if reasons[i] is None:
                    reasons[i] = "bad_id"
                    details[i] = f"{id_field!r} {msg}"
            blank_id = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(id_arr)), 0), False)
            mark(blank_id.to_numpy(zero_copy_only=False), "bad_id", f"{id_field!r} is a blank string")
            ids = id_arr.to_pylist()
        elif pa.types.is_integer(itype):
            ids = pc.cast(icol, pa.string()).to_pylist()
        elif pa.types.is_null(itype):
            ids = [None] * n
        else:
            mark(icol.is_valid().to_numpy(zero_copy_only=False), "bad_id",
                 f"{id_field!r} column has type {itype}, expected strings or integers")
            ids = [None] * n
    else:
        ids = [None] * n

    # ---- derive missing ids, drop duplicates (first kept)
    ok = np.flatnonzero(reasons == None)  # noqa: E711
    need = [i for i in ok if ids[i] is None]
    if need:
        for i, t in zip(need, text.take(pa.array(need, pa.int64())).to_pylist()):
            ids[i] = derive_id(t)
    seen: dict[str, int] = {}
    for i in ok:
        first = seen.get(ids[i])
        if first is not None:
            reasons[i] = "duplicate_id"
            details[i] = f"id {ids[i]!r} already used by row {first}"
        else:
            seen[ids[i]] = int(i)

    # ---- quarantine rows, in row order
    bad_idx = np.flatnonzero(reasons != None)  # noqa: E711
    if len(bad_idx):
        limit = quarantine.max_raw_chars
        rows = table.take(pa.array(bad_idx, pa.int64())).to_pylist()
        for i, row in zip(bad_idx, rows):
            short = {k: (v[:limit] if isinstance(v, (str, bytes)) else v) for k, v in row.items()}
            raw = json.dumps(short, ensure_ascii=False, default=repr)
            quarantine.add(int(i), str(reasons[i]), str(details[i]), raw)

    keep = np.flatnonzero(reasons == None)  # noqa: E711
    keep_arr = pa.array(keep, pa.int64())
    kept = table.take(keep_arr)
    extras = [(name, kept.column(src)) for src, name in _column_names(table.column_names, text_field, id_field)]
    documents = _documents_table([ids[i] for i in keep], text.take(keep_arr), keep, extras)
    if cut is not None:
        quarantine.add(n, "shard_limit", f"the shard has {cut} rows, more than max_records={limits.max_records}: "
                       f"rows {n}..{cut - 1} are not read; the {documents.num_rows} documents before them are kept", "")
        n += 1
    return documents, n, nbytes

