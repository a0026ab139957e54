"""Reading shards: documents, quarantine, stats, and every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quadmix_assets.corpus import (
    DOCUMENT_SCHEMA,
    QUARANTINE_SCHEMA,
    ShardError,
    ShardRead,
    estimate_tokens,
    read_shard,
)
from quadmix_assets.method.ids import hash_ids
from quadmix_assets.settings import data_dir

REAL_SHARD = Path(data_dir()) / "corpus" / "webtext" / "shard-00000.jsonl.gz"


# ------------------------------------------------------------------------------------------ helpers


def write_lines(path: Path, lines: list[bytes | str | dict], *, gz: bool = False) -> str:
    out = []
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        out.append(line.encode("utf-8") if isinstance(line, str) else line)
    data = b"\n".join(out) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def check_invariants(r: ShardRead) -> None:
    """Nothing dropped silently, schemas in place, row/id_hash/n_tokens consistent."""
    s = r.stats
    assert s["records_read"] == s["documents"] + s["quarantined"]
    assert s["documents"] == r.documents.num_rows and s["quarantined"] == r.quarantine.num_rows
    assert sum(s["quarantined_by_reason"].values()) == s["quarantined"]
    assert r.quarantine.schema == QUARANTINE_SCHEMA
    assert r.documents.schema.names[:6] == DOCUMENT_SCHEMA.names
    for f in DOCUMENT_SCHEMA:
        assert r.documents.schema.field(f.name).type == f.type
    d = r.documents.to_pydict()
    assert d["row"] == list(range(r.documents.num_rows))
    assert d["id_hash"] == hash_ids(d["id"]).tolist()
    assert all(t >= 1 for t in d["n_tokens"])
    assert s["tokens"] == sum(d["n_tokens"])
    assert len(set(d["id"])) == len(d["id"])
    assert all(t.strip() for t in d["text"])


def only_row(r: ShardRead) -> dict:
    rows = r.quarantine.to_pylist()
    assert len(rows) == 1, rows
    return rows[0]


# ------------------------------------------------------------------------------------------ tokens


def test_estimate_tokens():
    texts = ["a", "abcd", "abcde", "é" * 5, "x" * 400, "日本語テキスト"]
    assert estimate_tokens(pa.array(texts)).to_pylist() == [1, 1, 2, 2, 100, 2]
    assert estimate_tokens(pa.array([""])).to_pylist() == [1]
    chunked = pa.chunked_array([pa.array(["abcdefgh"]), pa.array(["abcdefghi"])])
    assert estimate_tokens(chunked).to_pylist() == [2, 3]
    assert estimate_tokens(["abcde"]).type == pa.int64()


# ------------------------------------------------------------------------------------------ good input


def test_reads_ids_text_records_and_extra_fields(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [
        {"id": "a", "text": "hello world", "url": "http://a", "score": 1.5},
        "",
        {"id": 7, "text": "  padded text  ", "url": "http://b", "score": 2.0},
    ])
    r = read_shard(p)
    check_invariants(r)
    assert r.stats["format"] == "jsonl" and r.stats["blank_lines"] == 1
    assert r.documents.column_names == ["id", "id_hash", "text", "n_tokens", "row", "record", "url", "score"]
    rows = r.documents.to_pylist()
    assert [x["id"] for x in rows] == ["a", "7"]  # integer ids become strings
    assert rows[1]["text"] == "  padded text  "  # kept as-is, not stripped
    assert [x["record"] for x in rows] == [1, 3]  # 1-based line numbers, blank line counted
    assert [x["n_tokens"] for x in rows] == [3, 4]
    assert r.documents.schema.field("score").type == pa.float64()
    assert r.quarantine.num_rows == 0 and r.stats["quarantined_by_reason"] == {}


def test_crlf_bom_and_missing_final_newline(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "one"}\r\n{"id": "b", "text": "two"}')
    r = read_shard(str(p))
    check_invariants(r)
    assert r.documents["id"].to_pylist() == ["a", "b"]
    assert r.documents["text"].to_pylist() == ["one", "two"]


def test_text_and_id_fields_are_configurable_and_clashing_names_prefixed(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [
        {"doc_id": "d1", "content": "body", "id": "other", "text": "t", "row": 5, "record": "r", "n_tokens": 9},
    ])
    r = read_shard(p, text_field="content", id_field="doc_id")
    check_invariants(r)
    row = r.documents.to_pylist()[0]
    assert row["id"] == "d1" and row["text"] == "body"
    assert row["doc_id"] == "d1"  # the original id field is kept
    assert (row["orig_id"], row["orig_text"], row["orig_row"], row["orig_record"], row["orig_n_tokens"]) == (
        "other", "t", 5, "r", 9)
    assert "content" not in r.documents.column_names


def test_mixed_type_extra_field_stored_as_json_strings(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [
        {"id": "a", "text": "x", "meta": 1, "n": 1, "tags": ["a"]},
        {"id": "b", "text": "y", "meta": "one", "n": 2},
        {"id": "c", "text": "z", "meta": {"k": [1, 2]}, "n": None, "tags": ["b", "c"]},
        {"id": "d", "text": "w", "n": 4},
    ])
    r = read_shard(p)
    check_invariants(r)
    schema = r.documents.schema
    assert schema.field("meta").type == pa.string()
    assert r.documents["meta"].to_pylist() == ["1", '"one"', '{"k": [1, 2]}', None]
    assert [json.loads(v) if v else None for v in r.documents["meta"].to_pylist()] == [1, "one", {"k": [1, 2]}, None]
    assert schema.field("n").type == pa.int64() and r.documents["n"].to_pylist() == [1, 2, None, 4]
    assert schema.field("tags").type == pa.list_(pa.string())
    assert r.documents["tags"].to_pylist() == [["a"], None, ["b", "c"], None]


def test_missing_id_is_derived_from_content_and_stable(tmp_path):
    text = "some document without an id"
    expected = "sha256-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    p1 = write_lines(tmp_path / "a.jsonl", [{"text": text}, {"id": None, "text": "other text"}])
    p2 = write_lines(tmp_path / "b.jsonl", [{"text": "x"}, {"text": text, "url": "u"}])
    r1, r2 = read_shard(p1), read_shard(p2)
    check_invariants(r1)
    ids1 = r1.documents["id"].to_pylist()
    assert ids1[0] == expected
    assert ids1[1] == "sha256-" + hashlib.sha256(b"other text").hexdigest()[:16]
    assert r2.documents["id"].to_pylist()[1] == expected  # same content, same id, wherever it is
    assert read_shard(p1).documents["id"].to_pylist() == ids1


def test_real_shard(tmp_path):
    if not REAL_SHARD.is_file():
        pytest.skip(f"real corpus not found at {REAL_SHARD} (set QUADMIX_DATA_DIR)")
    with gzip.open(REAL_SHARD, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    r = read_shard(str(REAL_SHARD))
    check_invariants(r)
    assert r.stats["records_read"] == len(records)
    # Expected, independently: every record with non-blank text, first occurrence of each id.
    seen, expected = set(), []
    for rec in records:
        if rec["text"].strip() and rec["id"] not in seen:
            seen.add(rec["id"])
            expected.append(rec["id"])
    assert r.documents["id"].to_pylist() == expected
    assert r.documents.num_rows == len(expected) > 800
    assert r.stats["quarantined"] == len(records) - len(expected)
    assert r.documents.column_names == ["id", "id_hash", "text", "n_tokens", "row", "record", "url", "source"]
    first = r.documents.slice(0, 1).to_pylist()[0]
    assert first["text"] == records[first["record"] - 1]["text"]
    assert first["n_tokens"] == max(1, -(-len(first["text"]) // 4))


def test_memory_url(tmp_path):
    url = f"memory://quadmix-test-{uuid.uuid4().hex}/shard.jsonl.gz"
    with fsspec.open(url, "wb", compression="gzip") as f:
        f.write(b'{"id": "m1", "text": "in memory"}\nnot json\n{"id": "m2", "text": "also"}\n')
    try:
        r = read_shard(url)
        check_invariants(r)
        assert r.documents["id"].to_pylist() == ["m1", "m2"]
        assert only_row(r)["reason"] == "malformed_json"
        assert only_row(r)["source"] == url
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory://"))


# ------------------------------------------------------------------------------------------ bad JSONL records


def test_malformed_json(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [{"id": "a", "text": "ok"}, '{"id": "b", "text": "unterminated', {"id": "c", "text": "ok"}])
    r = read_shard(p)
    check_invariants(r)
    q = only_row(r)
    assert (q["reason"], q["record"], q["source"]) == ("malformed_json", 2, p)
    assert q["raw"] == '{"id": "b", "text": "unterminated'
    assert "JSON" in q["detail"]
    assert r.documents["id"].to_pylist() == ["a", "c"]


def test_invalid_utf8(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [b'{"id": "a", "text": "bad \xff\xfe byte"}', {"id": "b", "text": "fine"}])
    r = read_shard(p)
    check_invariants(r)
    q = only_row(r)
    assert (q["reason"], q["record"]) == ("invalid_utf8", 1)
    assert "\ufffd" in q["raw"] and q["raw"].startswith('{"id": "a"')
    assert r.documents["id"].to_pylist() == ["b"]


def test_lone_surrogate_escape_is_invalid_utf8(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", ['{"id": "a", "text": "x \\ud800 y"}', '{"id": "b", "text": "ok \\ud83d\\ude00"}'])
    r = read_shard(p)
    check_invariants(r)
    assert only_row(r)["reason"] == "invalid_utf8"
    assert r.documents["text"].to_pylist() == ["ok \U0001F600"]


def test_not_an_object(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", ["[1, 2, 3]", '"just a string"', {"id": "a", "text": "ok"}])
    r = read_shard(p)
    check_invariants(r)
    assert r.quarantine["reason"].to_pylist() == ["not_an_object", "not_an_object"]
    assert r.quarantine["record"].to_pylist() == [1, 2]


def test_missing_text(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [{"id": "a", "body": "no text field"}, {"id": "b", "text": "ok"}])
    r = read_shard(p)
    check_invariants(r)
    q = only_row(r)
    assert q["reason"] == "missing_text" and "'text'" in q["detail"]


def test_empty_and_whitespace_text(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [
        {"id": "a", "text": ""}, {"id": "b", "text": "   \n\t "}, {"id": "c", "text": "\u3000\u2003"}, {"id": "d", "text": " x "},
    ])
    r = read_shard(p)
    check_invariants(r)
    assert r.quarantine["reason"].to_pylist() == ["empty_text"] * 3
    assert r.quarantine["record"].to_pylist() == [1, 2, 3]
    assert r.documents["id"].to_pylist() == ["d"]


@pytest.mark.parametrize("value", [42, None, ["a", "b"], {"t": "x"}, True])
def test_non_string_text(tmp_path, value):
    p = write_lines(tmp_path / "s.jsonl", [{"id": "a", "text": value}, {"id": "b", "text": "ok"}])
    r = read_shard(p)
    check_invariants(r)
    q = only_row(r)
    assert (q["reason"], q["record"]) == ("non_string_text", 1)
    assert r.documents["id"].to_pylist() == ["b"]


@pytest.mark.parametrize("value", [["x"], {"a": 1}, 1.5, True, "", "  "])
def test_bad_id(tmp_path, value):
    p = write_lines(tmp_path / "s.jsonl", [{"id": value, "text": "t"}, {"id": "b", "text": "ok"}])
    r = read_shard(p)
    check_invariants(r)
    assert only_row(r)["reason"] == "bad_id"
    assert r.documents["id"].to_pylist() == ["b"]


def test_duplicate_ids_keep_the_first(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [
        {"id": "a", "text": "first"}, {"id": "b", "text": "other"}, {"id": "a", "text": "second"},
        {"id": 7, "text": "int"}, {"id": "7", "text": "str"}, {"text": "same"}, {"text": "same"},
    ])
    r = read_shard(p)
    check_invariants(r)
    assert r.documents["id"].to_pylist()[:3] == ["a", "b", "7"]
    assert r.documents["text"].to_pylist() == ["first", "other", "int", "same"]
    assert r.quarantine["reason"].to_pylist() == ["duplicate_id"] * 3
    assert r.quarantine["record"].to_pylist() == [3, 5, 7]
    assert "line 1" in r.quarantine["detail"][0].as_py()


def test_raw_is_capped(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", ["{" + "x" * 5000])
    r = read_shard(p, max_raw_chars=100)
    assert only_row(r)["raw"] == "{" + "x" * 99


def test_every_reason_in_one_file_is_accounted_for(tmp_path):
    lines = [{"id": "ok1", "text": "fine"}, "{bad", b"\xc3\x28", "[]", {"id": "x"}, {"id": "y", "text": 3},
             {"id": "z", "text": " "}, {"id": [1], "text": "t"}, {"id": "ok1", "text": "again"}, "", {"text": "fine 2"}]
    r = read_shard(write_lines(tmp_path / "s.jsonl", lines))
    check_invariants(r)
    assert r.stats["records_read"] == 10 and r.stats["blank_lines"] == 1
    assert r.stats["quarantined_by_reason"] == {
        "malformed_json": 1, "invalid_utf8": 1, "not_an_object": 1, "missing_text": 1, "non_string_text": 1,
        "empty_text": 1, "bad_id": 1, "duplicate_id": 1}
    assert r.documents["record"].to_pylist() == [1, 11]


# ------------------------------------------------------------------------------------------ whole-file problems


def test_truncated_gzip_keeps_documents_before_the_cut(tmp_path):
    rng = random.Random(0)
    recs = [{"id": f"d{i}", "text": "".join(rng.choice("abcdefghij klmnop") for _ in range(300))} for i in range(400)]
    lines = [json.dumps(r) for r in recs]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(data[: len(data) * 3 // 5])
    r = read_shard(str(p))
    check_invariants(r)
    k = r.documents.num_rows
    assert 100 < k < 400
    assert r.documents["id"].to_pylist() == [f"d{i}" for i in range(k)]
    assert r.documents["record"].to_pylist() == list(range(1, k + 1))
    q = only_row(r)
    assert (q["reason"], q["record"]) == ("truncated_gzip", k + 1)
    assert str(k + 1) in q["detail"]
    assert lines[k].startswith(q["raw"])  # the partial line that was cut
    assert r.stats["records_read"] == k + 1


def test_gz_name_but_not_gzip_is_a_shard_error(tmp_path):
    p = tmp_path / "plain.jsonl.gz"
    p.write_bytes(b'{"id": "a", "text": "not compressed"}\n')
    with pytest.raises(ShardError, match="plain.jsonl.gz"):
        read_shard(str(p))


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", "gzip-empty"])
def test_empty_file(tmp_path, content):
    name = "e.jsonl.gz" if content == "gzip-empty" else "e.jsonl"
    p = tmp_path / name
    p.write_bytes(gzip.compress(b"") if content == "gzip-empty" else content)
    r = read_shard(str(p))
    check_invariants(r)
    assert r.documents.num_rows == 0 and r.documents.schema == DOCUMENT_SCHEMA
    q = only_row(r)
    assert (q["reason"], q["record"]) == ("empty_file", -1)
    assert r.stats["blank_lines"] == (3 if content == b"\n\n  \n" else 0)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_shard(str(tmp_path / "nope.jsonl"))


# ------------------------------------------------------------------------------------------ Parquet


def test_parquet_without_text_column_is_a_shard_error(tmp_path):
    p = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), p)
    with pytest.raises(ShardError) as err:
        read_shard(str(p))
    msg = str(err.value)
    assert "no_text.parquet" in msg and "'text'" in msg and "'body'" in msg and "'id'" in msg
    assert isinstance(err.value, ValueError)


def test_corrupt_parquet_is_a_shard_error(tmp_path):
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(ShardError, match="bad.parquet"):
        read_shard(str(p))


def test_parquet_nulls_and_blank_text_quarantined_row_by_row(tmp_path):
    p = tmp_path / "s.parquet"
    t = pa.table({
        "id": pa.array([1, 2, 3, None, 5, 1], pa.int64()),
        "text": ["one", None, "  ", "no id here", "five", "dup of 1"],
        "lang": ["en", "fr", "de", "en", "it", "en"],
        "record": [10, 20, 30, 40, 50, 60],
    })
    pq.write_table(t, p, row_group_size=2)
    r = read_shard(str(p))
    check_invariants(r)
    assert r.stats["format"] == "parquet" and r.stats["records_read"] == 6
    assert r.quarantine["reason"].to_pylist() == ["non_string_text", "empty_text", "duplicate_id"]
    assert r.quarantine["record"].to_pylist() == [1, 2, 5]  # 0-based row index in the file
    assert json.loads(r.quarantine["raw"][0].as_py())["lang"] == "fr"
    d = r.documents.to_pydict()
    assert d["id"] == ["1", "sha256-" + hashlib.sha256(b"no id here").hexdigest()[:16], "5"]
    assert d["record"] == [0, 3, 4]
    assert d["lang"] == ["en", "en", "it"] and d["orig_record"] == [10, 40, 50]
    assert r.documents.column_names == ["id", "id_hash", "text", "n_tokens", "row", "record", "lang", "orig_record"]


def test_parquet_non_string_text_column(tmp_path):
    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": [1, None]}), p)
    r = read_shard(str(p))
    check_invariants(r)
    assert r.documents.num_rows == 0
    assert r.quarantine["reason"].to_pylist() == ["non_string_text"] * 2


def test_parquet_bad_ids_and_invalid_utf8_binary_text(tmp_path):
    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": pa.array([[1], [2], None]), "text": pa.array([b"ok", b"x", b"\xff"])}), p)
    r = read_shard(str(p))
    check_invariants(r)
    assert r.quarantine["reason"].to_pylist() == ["bad_id", "bad_id", "invalid_utf8"]
    assert r.documents.num_rows == 0


def test_empty_parquet(tmp_path):
    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), p)
    r = read_shard(str(p))
    check_invariants(r)
    assert only_row(r)["reason"] == "empty_file"
