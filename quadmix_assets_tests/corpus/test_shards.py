"""Shard listing, keys and content fingerprints."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import fsspec
import pytest

from quadmix_assets.corpus import ShardRef, file_fingerprint, list_shards, read_shard
from quadmix_assets.settings import data_dir

WEBTEXT = Path(data_dir()) / "corpus" / "webtext"


def _touch(path: Path, content: bytes = b'{"id": "a", "text": "x"}\n') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.skipif(not WEBTEXT.is_dir(), reason=f"real corpus not found under {WEBTEXT} (set QUADMIX_DATA_DIR)")
def test_real_corpus_glob_lists_16_shards_in_order():
    shards = list_shards(f"{data_dir()}/corpus/webtext/*.jsonl.gz")
    assert [s.key for s in shards] == [f"shard-{i:05d}" for i in range(16)]
    assert [s.path for s in shards] == sorted(s.path for s in shards)
    assert all(isinstance(s, ShardRef) and os.path.isfile(s.path) for s in shards)


def test_supported_extensions_case_insensitive_and_others_ignored(tmp_path):
    for name in ["a.jsonl", "b.JSONL.GZ", "c.json.gz", "d.ndjson", "e.Parquet", "f.txt", "g.json", "h.csv"]:
        _touch(tmp_path / name)
    (tmp_path / "sub.parquet").mkdir()  # a directory with a shard-like name is not a shard
    shards = list_shards(str(tmp_path / "*"))
    assert [s.key for s in shards] == ["a", "b", "c", "d", "e"]
    assert [Path(s.path).name for s in shards] == ["a.jsonl", "b.JSONL.GZ", "c.json.gz", "d.ndjson", "e.Parquet"]


def test_keys_are_sanitised(tmp_path):
    """A name that is not a safe key gets a sanitised key plus a short hash of the name; the name is kept."""
    _touch(tmp_path / "my shard#1 (v2).jsonl.gz")
    _touch(tmp_path / "ok_name-1.0.parquet")
    shards = list_shards(str(tmp_path / "*"))
    digest = hashlib.sha256("my shard#1 (v2)".encode()).hexdigest()[:8]
    assert [s.key for s in shards] == [f"my_shard_1__v2_-{digest}", "ok_name-1.0"]
    assert [s.name for s in shards] == ["my shard#1 (v2).jsonl.gz", "ok_name-1.0.parquet"]


def test_colliding_keys_all_get_a_path_hash(tmp_path):
    paths = [_touch(tmp_path / "a" / "part.jsonl"), _touch(tmp_path / "b" / "part.jsonl.gz"),
             _touch(tmp_path / "c" / "part.parquet"), _touch(tmp_path / "c" / "other.jsonl")]
    shards = list_shards(str(tmp_path / "*" / "*"))
    by_path = {s.path: s.key for s in shards}
    assert len(shards) == 4 and len(set(by_path.values())) == 4
    for p in paths[:3]:
        assert by_path[str(p)] == "part-" + hashlib.sha256(str(p).encode()).hexdigest()[:8]
    assert by_path[str(paths[3])] == "other"
    # Stable: listing again gives the same keys.
    assert list_shards(str(tmp_path / "*" / "*")) == shards


def test_glob_matching_nothing_is_a_clear_error(tmp_path):
    pattern = str(tmp_path / "nothing-here-*.jsonl")
    with pytest.raises(ValueError, match="nothing-here-"):
        list_shards(pattern)
    _touch(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="none ending in"):
        list_shards(str(tmp_path / "*"))


def test_a_directory_lists_its_files(tmp_path):
    _touch(tmp_path / "x.jsonl")
    _touch(tmp_path / "y.parquet")
    assert [s.key for s in list_shards(str(tmp_path))] == ["x", "y"]


def test_memory_url_listing_and_reading():
    root = f"memory://quadmix-test-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        with fsspec.open(f"{root}/b.jsonl", "wb") as f:
            f.write(b'{"id": "b1", "text": "hello"}\n')
        with fsspec.open(f"{root}/a.jsonl.gz", "wb", compression="gzip") as f:
            f.write(b'{"id": "a1", "text": "hi"}\n{"id": "a2", "text": "there"}\n')
        shards = list_shards(f"{root}/*")
        assert [s.key for s in shards] == ["a", "b"]
        assert all(s.path.startswith("memory://") for s in shards)
        assert read_shard(shards[0].path).documents["id"].to_pylist() == ["a1", "a2"]
        assert file_fingerprint(shards[1].path).startswith("sha256:")
    finally:
        fs.rm(root.removeprefix("memory://"), recursive=True)


def test_fingerprint_is_sha256_of_bytes_and_tracks_content(tmp_path):
    p = _touch(tmp_path / "s.jsonl", b'{"id": "a", "text": "one"}\n')
    first = file_fingerprint(str(p))
    assert first == "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
    assert file_fingerprint(str(p)) == first
    p.write_bytes(b'{"id": "a", "text": "two"}\n')
    assert file_fingerprint(str(p)) != first
    # Same content elsewhere: same fingerprint (content, not name or mtime).
    q = _touch(tmp_path / "copy.jsonl", b'{"id": "a", "text": "one"}\n')
    assert file_fingerprint(str(q)) == first


def test_fingerprint_streams_multiple_blocks(tmp_path):
    data = os.urandom(9 * 1024 * 1024 + 123)  # more than one 8 MiB block
    p = _touch(tmp_path / "big.parquet", data)
    assert file_fingerprint(str(p)) == "sha256:" + hashlib.sha256(data).hexdigest()
