"""Input limits (issue 17): bombs, very long lines, deep nesting and huge quarantines stay bounded, and the
fingerprint is taken over exactly the bytes that were read."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quadmix_assets.corpus import ShardError, file_fingerprint, read_shard
from quadmix_assets.corpus import reader
from quadmix_assets.corpus.reader import ReadLimits

from .test_reader import REAL_SHARD, write_lines


def check_accounting(r) -> None:
    s = r.stats
    assert s["records_read"] == s["documents"] + s["quarantined"]
    assert sum(s["quarantined_by_reason"].values()) == s["quarantined"]
    assert s["quarantine_rows_stored"] == r.quarantine.num_rows
    assert s["quarantine_rows_stored"] + s["quarantine_rows_not_stored"] == s["quarantined"]
    assert r.quarantine.num_rows <= s["limits"]["max_quarantine_rows"]


def gzip_bomb(path: Path) -> Path:
    """About 200 KB of gzip that expands to 8 million short JSON lines (112 MB), all the same document."""
    block = b'{"text":"a"}\n' * 100_000
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    path.write_bytes(b"".join([c.compress(block) for _ in range(80)] + [c.flush()]))
    return path


def test_gzip_bomb_is_cut_at_the_record_limit_in_seconds(tmp_path):
    bomb = gzip_bomb(tmp_path / "bomb.jsonl.gz")
    assert bomb.stat().st_size < 250_000
    t = time.perf_counter()
    r = read_shard(str(bomb), limits=ReadLimits(max_records=100_000, max_quarantine_rows=1000))
    seconds = time.perf_counter() - t
    check_accounting(r)
    s = r.stats
    assert s["records_read"] == 100_001 and s["documents"] == 1
    assert s["quarantined_by_reason"] == {"duplicate_id": 99_999, "shard_limit": 1}
    assert r.quarantine.num_rows == 1000 and s["quarantine_rows_not_stored"] == 99_000
    assert s["fingerprint"] == file_fingerprint(str(bomb))  # the whole file is hashed, read or not
    assert seconds < 30, seconds


def test_gzip_bomb_is_cut_at_the_byte_limit(tmp_path):
    bomb = gzip_bomb(tmp_path / "bomb.jsonl.gz")
    r = read_shard(str(bomb), limits=ReadLimits(max_shard_bytes=1_000_000, max_quarantine_rows=100_000))
    check_accounting(r)
    s = r.stats
    assert s["bytes_read"] == 1_000_000 and s["quarantined_by_reason"]["shard_limit"] == 1
    assert s["records_read"] == 1_000_000 // 13 + 1  # whole lines within the limit, then the stop row
    last = r.quarantine.to_pylist()[-1]
    assert last["reason"] == "shard_limit" and "max_shard_bytes=1000000" in last["detail"]


def test_deep_nesting_is_quarantined_and_good_records_kept(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    lines = [
        {"id": "a", "text": "first"},
        deep,  # a 100,000-deep array on its own
        '{"id": "b", "text": "second", "x": ' + deep + "}",  # inside a record
        {"id": "c", "text": "sixty levels", "meta": json.loads("[" * 59 + "1" + "]" * 59)},
        {"id": "d", "text": "ten levels", "meta": json.loads('{"k": ' * 9 + "1" + "}" * 9)},
        {"id": "e", "text": "last"},
    ]
    p = write_lines(tmp_path / "deep.jsonl", lines)
    t = time.perf_counter()
    r = read_shard(p)
    assert time.perf_counter() - t < 10
    check_accounting(r)
    assert r.documents["id"].to_pylist() == ["a", "d", "e"]
    assert r.quarantine["reason"].to_pylist() == ["too_deep"] * 3 and r.quarantine["record"].to_pylist() == [2, 3, 4]
    # nested extra fields are stored as JSON strings: the Parquet file stays readable
    assert r.documents.schema.field("meta").type == pa.string()
    assert json.loads(r.documents["meta"][1].as_py()) == json.loads('{"k": ' * 9 + "1" + "}" * 9)
    pq.write_table(r.documents, tmp_path / "docs.parquet")
    assert pq.read_table(tmp_path / "docs.parquet").num_rows == 3


def test_nested_extra_fields_become_json_strings_lists_of_scalars_stay(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [
        {"id": "a", "text": "x", "obj": {"k": 1}, "tags": ["a", "b"], "grid": [[1, 2], [3]]},
        {"id": "b", "text": "y", "obj": {"k": 2, "j": [1]}, "tags": [], "grid": None},
    ])
    r = read_shard(p)
    t = r.documents
    assert t.schema.field("obj").type == pa.string() and t.schema.field("grid").type == pa.string()
    assert t.schema.field("tags").type == pa.list_(pa.string())
    assert [json.loads(v) for v in t["obj"].to_pylist()] == [{"k": 1}, {"k": 2, "j": [1]}]
    assert t["grid"].to_pylist() == ["[[1, 2], [3]]", None]


def test_depth_limit_is_configurable(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", [{"id": "a", "text": "x", "m": {"a": {"b": 1}}}, {"id": "b", "text": "y", "m": {"a": 1}}])
    r = read_shard(p, limits=ReadLimits(max_depth=2))
    assert r.documents["id"].to_pylist() == ["b"] and r.quarantine["reason"].to_pylist() == ["too_deep"]


def test_over_long_lines_are_quarantined_without_being_held(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "READ_BLOCK", 4096)  # the long line spans many read blocks
    long_text = "y" * 50_000
    p = write_lines(tmp_path / "s.jsonl", [
        {"id": "a", "text": "short"},
        {"id": "b", "text": long_text},
        {"id": "c", "text": "after"},
        {"id": "d", "text": "z" * 3000},  # within one block, still over the limit
        {"id": "e", "text": long_text},  # the last line, no final newline
    ])
    Path(p).write_bytes(Path(p).read_bytes().rstrip(b"\n"))
    r = read_shard(p, limits=ReadLimits(max_line_bytes=2000), max_raw_chars=100)
    check_accounting(r)
    assert r.documents["id"].to_pylist() == ["a", "c"] and r.documents["record"].to_pylist() == [1, 3]
    q = r.quarantine.to_pylist()
    assert [x["reason"] for x in q] == ["line_too_long"] * 3 and [x["record"] for x in q] == [2, 4, 5]
    assert q[0]["raw"] == '{"id": "b", "text": "' + "y" * 79 and str(len(long_text) + 23) in q[0]["detail"]


def test_line_assembly_is_linear_in_the_line_length(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "READ_BLOCK", 64 * 1024)
    text = "word " * 6_000_000  # 30 MB in one line: ~460 blocks (joining the leftover each time was quadratic)
    p = tmp_path / "long.jsonl"
    p.write_text(json.dumps({"id": "a", "text": text}) + "\n" + json.dumps({"id": "b", "text": "next"}) + "\n")
    t = time.perf_counter()
    r = read_shard(str(p), limits=ReadLimits(max_line_bytes=64 * 1024 * 1024))
    assert time.perf_counter() - t < 10
    assert r.documents["id"].to_pylist() == ["a", "b"] and len(r.documents["text"][0].as_py()) == len(text)


def test_quarantine_rows_beyond_the_cap_are_counted(tmp_path):
    p = write_lines(tmp_path / "s.jsonl", ["{bad"] * 50 + [{"id": "a", "text": "ok"}])
    r = read_shard(p, limits=ReadLimits(max_quarantine_rows=5))
    check_accounting(r)
    assert r.quarantine.num_rows == 5 and r.stats["quarantined"] == 50 and r.stats["quarantine_rows_not_stored"] == 45
    assert r.stats["quarantined_by_reason"] == {"malformed_json": 50}


def test_parquet_record_and_size_limits(tmp_path):
    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(10)], "text": ["t"] * 10}), p)
    r = read_shard(str(p), limits=ReadLimits(max_records=4))
    check_accounting(r)
    assert r.documents["id"].to_pylist() == ["d0", "d1", "d2", "d3"]
    assert r.quarantine["reason"].to_pylist() == ["shard_limit"] and r.stats["records_read"] == 5
    with pytest.raises(ShardError, match="max_shard_bytes") as err:
        read_shard(str(p), limits=ReadLimits(max_shard_bytes=100))
    assert err.value.fingerprint == file_fingerprint(str(p))


@pytest.mark.parametrize("kind", ["gz", "plain", "parquet", "truncated"])
def test_fingerprint_is_of_the_bytes_read(tmp_path, kind):
    lines = [{"id": f"d{i}", "text": f"document {i} " * 20} for i in range(300)]
    if kind == "parquet":
        p = tmp_path / "s.parquet"
        pq.write_table(pa.Table.from_pylist(lines), p)
    else:
        data = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
        p = tmp_path / ("s.jsonl" if kind == "plain" else "s.jsonl.gz")
        z = gzip.compress(data)
        p.write_bytes(data if kind == "plain" else z[: len(z) // 2] if kind == "truncated" else z)
    r = read_shard(str(p))
    assert r.fingerprint == r.stats["fingerprint"] == file_fingerprint(str(p))


def test_not_gzip_error_carries_the_fingerprint(tmp_path):
    p = tmp_path / "garbage.jsonl.gz"
    p.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ShardError, match="garbage.jsonl.gz") as err:
        read_shard(str(p))
    assert err.value.fingerprint == file_fingerprint(str(p))


def test_real_shard_fingerprint_and_limits_recorded():
    r = read_shard(str(REAL_SHARD))
    assert r.fingerprint == file_fingerprint(str(REAL_SHARD))
    assert r.stats["limits"] == ReadLimits().to_dict() and r.stats["quarantined_by_reason"] == {"empty_text": 1}


LINE = st.one_of(
    st.builds(lambda i, t: json.dumps({"id": f"d{i}", "text": t}), st.integers(0, 30), st.text(min_size=0, max_size=60)),
    st.sampled_from(["", "  ", "{bad", "[1, 2]", '{"text": 5}']),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE, max_size=25), st.integers(1, 70), st.integers(20, 200), st.booleans())
def test_any_read_block_size_gives_the_same_result(tmp_path_factory, lines, block, max_line, final_newline):
    """Lines split anywhere across read blocks, with and without over-long lines, read the same as in one block."""
    p = tmp_path_factory.mktemp("blocks") / "s.jsonl"
    p.write_bytes(("\n".join(lines) + ("\n" if final_newline else "")).encode())
    limits = ReadLimits(max_line_bytes=max_line)
    whole = read_shard(str(p), limits=limits)
    old = reader.READ_BLOCK
    reader.READ_BLOCK = block
    try:
        split = read_shard(str(p), limits=limits)
    finally:
        reader.READ_BLOCK = old
    check_accounting(split)
    assert split.documents.equals(whole.documents) and split.quarantine.equals(whole.quarantine)
    assert split.stats == whole.stats
    records = [i + 1 for i, line in enumerate(lines) if line.strip()]
    got = sorted(split.documents["record"].to_pylist() + split.quarantine["record"].to_pylist())
    assert got == (records or [-1])  # every non-blank line is a document or a quarantine row
    too_long = [i + 1 for i, line in enumerate(lines) if line.strip() and len(line.encode()) > max_line]
    assert [r["record"] for r in split.quarantine.to_pylist() if r["reason"] == "line_too_long"] == too_long
