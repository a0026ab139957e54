"""The storage root reports what it wrote (size, sha256), and ``find_damage`` tells a damaged stored file
from the one written: missing, truncated, replaced by other bytes of the same size; on a local folder and
on an fsspec filesystem (``memory://``) alike."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import uuid

import pyarrow as pa
import pytest

from quadmix_assets.storage import StorageRoot
from quadmix_assets.storage import records
from quadmix_assets.storage.records import FileRecord, find_damage, modified_time


def recording_root(url: str) -> tuple[StorageRoot, dict[str, FileRecord]]:
    written: dict[str, FileRecord] = {}

    def on_write(rel: str, size: int, sha: str, shared: bool) -> None:
        written[rel] = FileRecord(size, sha, shared)

    return StorageRoot(url, on_write=on_write), written


@pytest.fixture(params=["local", "memory"])
def root_url(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "storage")
    return f"memory://quadmix-test-{uuid.uuid4().hex}"


def test_every_write_is_reported_with_the_bytes_in_place(root_url, tmp_path):
    root, written = recording_root(root_url)
    root.write_bytes("a/raw.bin", b"raw bytes")
    root.write_json("a/doc.json", {"k": 1})
    root.write_parquet("a/table.parquet", pa.table({"x": [1, 2, 3]}), {"producer": "test"})
    local = tmp_path / "model.bin"
    local.write_bytes(os.urandom(9 * 1024 * 1024 + 17))  # two copy blocks (8 MiB each), hashed on the way
    root.write_file("models/m/model.bin", local)
    root.write_stream("models/m/stream.bin", io.BytesIO(b"streamed"))
    root.write_json("mixtures/searched.json", {"configs": []}, shared=True)
    assert sorted(written) == ["a/doc.json", "a/raw.bin", "a/table.parquet", "mixtures/searched.json",
                               "models/m/model.bin", "models/m/stream.bin"]
    for rel, rec in written.items():
        data = root.read_bytes(rel)
        assert rec.size == len(data) and rec.sha256 == hashlib.sha256(data).hexdigest(), rel
    assert written["mixtures/searched.json"].shared and not written["a/raw.bin"].shared
    assert find_damage(root, written, written_at=None) is None


def test_nothing_is_hashed_without_a_listener(tmp_path, monkeypatch):
    root = StorageRoot(str(tmp_path / "s"))
    monkeypatch.setattr(hashlib, "sha256", lambda *a: pytest.fail("hashed with nobody listening"))
    root.write_bytes("x.bin", b"abc")
    root.write_stream("y.bin", io.BytesIO(b"abc"))


def test_a_replaced_folder_is_recorded_under_its_final_name(tmp_path):
    root, written = recording_root(str(tmp_path / "s"))
    with root.replace_dir("exports/m1") as staged:
        root.write_bytes(f"{staged}/tokens.bin", b"\x00\x01")
        root.write_json(f"{staged}/manifest.json", {"done": True})
    assert sorted(written) == ["exports/m1/manifest.json", "exports/m1/tokens.bin"]
    assert find_damage(root, written, written_at=None) is None


def test_missing_truncated_replaced_and_grown_files_are_named(root_url):
    root, written = recording_root(root_url)
    payload = os.urandom(90_233)
    root.write_bytes("documents/shard-00000.parquet", payload)
    root.write_bytes("attributes/domain/shard-00000.parquet", payload[:5000])
    root.write_json("proxies/m1/run.json", {"loss": 3.2})
    assert find_damage(root, written, written_at=None) is None
    damage = StorageRoot(root_url)  # another writer: nothing it writes is recorded

    damage.write_bytes("attributes/domain/shard-00000.parquet", payload[:812])
    assert find_damage(root, written, None) == (
        "attributes/domain/shard-00000.parquet", "was truncated (812 of 5000 bytes)")
    damage.write_bytes("attributes/domain/shard-00000.parquet", payload[:5000])
    assert find_damage(root, written, None) is None  # the same bytes again: intact

    damage.write_bytes("documents/shard-00000.parquet", os.urandom(90_233))  # same size, other bytes
    rel, why = find_damage(root, written, None)
    assert rel == "documents/shard-00000.parquet" and why.startswith("was replaced (same size, sha256")
    damage.write_bytes("documents/shard-00000.parquet", payload + b"x")
    assert find_damage(root, written, None) == (
        "documents/shard-00000.parquet", "has another size (90234 bytes, 90233 written)")
    damage.write_bytes("documents/shard-00000.parquet", payload)

    damage.fs.rm(damage.path("proxies/m1/run.json"))
    assert find_damage(root, written, None) == ("proxies/m1/run.json", "is missing")


def test_a_shared_file_needs_only_to_exist(root_url):
    root, written = recording_root(root_url)
    root.write_json("mixtures/searched.json", {"configs": [1]}, shared=True)
    StorageRoot(root_url).write_json("mixtures/searched.json", {"configs": [1, 2, 3]}, shared=True)  # a later round
    assert find_damage(root, written, None) is None
    root.fs.rm(root.path("mixtures/searched.json"))
    assert find_damage(root, written, None) == ("mixtures/searched.json", "is missing")


def test_a_folder_of_many_records_is_listed_once_on_an_object_store(monkeypatch):
    root, written = recording_root(f"memory://quadmix-test-{uuid.uuid4().hex}")
    for i in range(6):
        root.write_bytes(f"attributes/quality_ranks/shard-{i:05d}.parquet", bytes([i]) * (100 + i))
    calls = {"ls": 0, "info": 0}
    ls, info = root.fs.ls, root.fs.info
    monkeypatch.setattr(root.fs, "ls", lambda *a, **k: calls.__setitem__("ls", calls["ls"] + 1) or ls(*a, **k))
    monkeypatch.setattr(root.fs, "info", lambda *a, **k: calls.__setitem__("info", calls["info"] + 1) or info(*a, **k))
    assert find_damage(root, written, None) is None
    assert calls == {"ls": 1, "info": 0}
    root.fs.rm(root.path("attributes/quality_ranks/shard-00003.parquet"))
    assert find_damage(root, written, None) == ("attributes/quality_ranks/shard-00003.parquet", "is missing")


def test_large_local_files_are_hashed_only_when_written_after_their_record(tmp_path, monkeypatch):
    """Above ALWAYS_HASH_BYTES a local file's content is read only when its time says something wrote
    it after the materialization; a replacement that puts the old time back is the one case not caught."""
    monkeypatch.setattr(records, "ALWAYS_HASH_BYTES", 16)
    root, written = recording_root(str(tmp_path / "s"))
    root.write_bytes("exports/m1/tokens.bin", os.urandom(4096))
    path = root.path("exports/m1/tokens.bin")
    before = os.stat(path)
    recorded_at = before.st_mtime + 10  # the materialization comes after the file is in place
    hashed = []
    sha = StorageRoot.file_sha256
    monkeypatch.setattr(StorageRoot, "file_sha256", lambda self, rel: hashed.append(rel) or sha(self, rel))
    assert find_damage(root, written, recorded_at) is None and hashed == []  # intact: only its size read

    with open(path, "r+b") as f:  # overwritten in place, same size, now
        f.write(os.urandom(4096))
    os.utime(path, (recorded_at + 5, recorded_at + 5))
    rel, why = find_damage(root, written, recorded_at)
    assert rel == "exports/m1/tokens.bin" and why.startswith("was replaced") and hashed == [rel]

    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old time put back: not seen
    assert find_damage(root, written, recorded_at) is None


def test_modification_times_of_fsspec_filesystems():
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert modified_time({"mtime": 12.5}) == 12.5  # local
    assert modified_time({"LastModified": t}) == t.timestamp()  # s3fs
    assert modified_time({"updated": "2026-01-02T03:04:05Z"}) == t.timestamp()  # gcsfs
    assert modified_time({"last_modified": t.replace(tzinfo=None)}) == t.timestamp()  # adlfs, naive = UTC
    assert modified_time({"created": t}) is None  # not a modification time: the content is hashed


def test_a_fan_in_leaves_out_an_unreadable_stored_file_naming_it(tmp_path):
    """The fan-ins' shard selection: a stored documents or attribute file that is not Parquet any more is
    left out as that file (it used to raise pyarrow's "magic bytes" error, or read as a changed corpus)."""
    from quadmix_assets.corpus.shards import ShardRef
    from quadmix_assets.storage import layout
    from quadmix_assets.storage.current import current_shards

    root = StorageRoot(str(tmp_path / "s"))
    refs = [ShardRef("shard-a", str(tmp_path / "a.jsonl")), ShardRef("shard-b", str(tmp_path / "b.jsonl"))]
    for ref in refs:
        root.write_parquet(layout.documents(ref.key), pa.table({"id": ["x"]}), {"inputs": {"fingerprint": "fp"}})
        root.write_parquet(layout.attribute("domain", ref.key), pa.table({"domain": [1]}),
                           {"inputs": {"documents_fingerprint": "fp"}})
    root.write_bytes(layout.documents("shard-a"), os.urandom(300))
    root.write_bytes(layout.attribute("domain", "shard-b"), b"PAR1 cut")
    out = current_shards(root, refs, ["domain"], fingerprint=lambda path: "fp")
    assert out.shards == []
    assert out.left_out["shard-a"].startswith("stored file documents/shard-a.parquet cannot be read: ArrowInvalid")
    assert out.left_out["shard-b"].startswith("stored file attributes/domain/shard-b.parquet cannot be read: ")
