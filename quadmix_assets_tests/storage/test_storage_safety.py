"""Storage safety (issue 17): stale shards never enter a fan-in, temp files are invisible and cleaned,
exports are switched in whole, unwritable storage is reported at once, big files are streamed."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from quadmix_assets.corpus import ShardRef, file_fingerprint, read_shard
from quadmix_assets.storage import StorageNotWritable, StorageRoot, layout
from quadmix_assets.storage.current import current_shards


def _shard(tmp_path: Path, name: str, texts: list[str]) -> ShardRef:
    p = tmp_path / "corpus" / f"{name}.jsonl.gz"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(gzip.compress("".join(json.dumps({"id": f"{name}-{i}", "text": t}) + "\n" for i, t in enumerate(texts)).encode()))
    return ShardRef(name, str(p))


def _store(storage: StorageRoot, ref: ShardRef, attributes=("domain",)) -> str:
    """What the documents and one scorer asset store for a shard (provenance as the assets record it)."""
    read = read_shard(ref.path)
    storage.write_parquet(layout.documents(ref.key), read.documents, {"inputs": {"fingerprint": read.fingerprint}})
    for name in attributes:
        storage.write_parquet(layout.attribute(name, ref.key), pa.table({"score": [0.5] * read.documents.num_rows}),
                              {"inputs": {"documents_fingerprint": read.fingerprint}})
    return read.fingerprint


def test_only_current_shards_enter_a_fan_in(tmp_path):
    storage = StorageRoot(str(tmp_path / "store"))
    good = _shard(tmp_path, "good", ["one", "two"])
    replaced = _shard(tmp_path, "replaced", ["three", "four"])
    rescored = _shard(tmp_path, "rescored", ["five"])
    short = _shard(tmp_path, "short", ["six", "seven"])
    failed = _shard(tmp_path, "failed", ["eight"])
    never = _shard(tmp_path, "never", ["nine"])
    fp = {r.key: _store(storage, r) for r in (good, replaced, rescored, short, failed)}
    # the corpus file is replaced by random bytes after its documents were stored (same row counts everywhere)
    Path(replaced.path).write_bytes(os.urandom(4096))
    # documents re-read from a new version, but the scorer's output is from the old one
    Path(rescored.path).write_bytes(gzip.compress(b'{"id": "x", "text": "new"}\n'))
    new_docs = read_shard(rescored.path)
    storage.write_parquet(layout.documents("rescored"), new_docs.documents, {"inputs": {"fingerprint": new_docs.fingerprint}})
    # a scorer output with a row missing
    storage.write_parquet(layout.attribute("domain", "short"), pa.table({"score": [0.1]}), {"inputs": {"documents_fingerprint": fp["short"]}})

    refs = [good, replaced, rescored, short, failed, never]
    sel = current_shards(storage, refs, ("domain",), failed={"failed": "documents failed"})
    assert sel.shards == ["good"] and sel.fingerprints == {"good": fp["good"]}
    assert set(sel.left_out) == {"replaced", "rescored", "short", "failed", "never"}
    assert sel.left_out["replaced"].startswith("stale") and replaced.path in sel.left_out["replaced"]
    assert "other documents" in sel.left_out["rescored"]
    assert "1 rows for 2 documents" in sel.left_out["short"]
    assert sel.left_out["failed"] == "latest run failed: documents failed"
    assert sel.left_out["never"] == "no documents"
    # without attributes (the distillation and tokenizer samples) only the documents must be current
    docs_only = current_shards(storage, refs)
    assert docs_only.shards == ["good", "rescored", "short", "failed"]
    assert docs_only.fingerprints["rescored"] == file_fingerprint(rescored.path)


def test_temp_files_are_invisible_and_cleaned(tmp_path):
    storage = StorageRoot(str(tmp_path))
    storage.write_bytes("a/b.json", b"{}")
    (tmp_path / "a" / "c.parquet.tmp-0123").write_bytes(b"half")
    (tmp_path / "exports" / "m.tmp-abc" / "text").mkdir(parents=True)
    (tmp_path / "exports" / "m.tmp-abc" / "text" / "part-00000.parquet").write_bytes(b"half")
    assert storage.list("") == ["a/b.json"]
    assert sorted(Path(p).name for p in storage.temp_files()) == ["c.parquet.tmp-0123", "m.tmp-abc"]
    assert len(storage.clean_temp()) == 2
    assert storage.temp_files() == [] and sorted(os.listdir(tmp_path / "exports")) == []
    assert storage.read_bytes("a/b.json") == b"{}"


def test_replace_dir_switches_a_whole_folder(tmp_path):
    storage = StorageRoot(str(tmp_path))
    with storage.replace_dir("exports/m") as staged:
        assert ".tmp-" in staged and storage.list("exports") == []  # nothing visible while writing
        storage.write_bytes(f"{staged}/old.bin", b"1")
        storage.write_json(f"{staged}/manifest.json", {"v": 1})
    assert storage.list("exports") == ["exports/m/manifest.json", "exports/m/old.bin"]
    with pytest.raises(RuntimeError):
        with storage.replace_dir("exports/m") as staged:
            storage.write_bytes(f"{staged}/new.bin", b"2")
            raise RuntimeError("killed half-way")
    assert storage.read_json("exports/m/manifest.json") == {"v": 1} and storage.temp_files() == []
    with storage.replace_dir("exports/m") as staged:
        storage.write_bytes(f"{staged}/new.bin", b"2")
        storage.write_json(f"{staged}/manifest.json", {"v": 2})
        assert storage.read_json("exports/m/manifest.json") == {"v": 1}  # the old export stays whole meanwhile
    assert storage.list("exports") == ["exports/m/manifest.json", "exports/m/new.bin"]
    assert storage.read_json("exports/m/manifest.json") == {"v": 2} and storage.temp_files() == []


def test_write_file_streams_and_is_atomic(tmp_path):
    src = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    src.write_bytes(data)
    storage = StorageRoot(str(tmp_path / "root"))
    storage.write_file("models/m/model.bin", src)
    assert storage.read_bytes("models/m/model.bin") == data and storage.temp_files() == []


def test_unwritable_storage_is_reported_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageNotWritable, match="a-file"):
        StorageRoot(str(blocker / "storage")).check_writable()
    with pytest.raises(StorageNotWritable, match="free"):
        StorageRoot(str(tmp_path / "ok")).check_writable(min_free_bytes=2**62)
    StorageRoot(str(tmp_path / "ok")).check_writable()
    assert os.listdir(tmp_path / "ok") == []  # the probe is removed
