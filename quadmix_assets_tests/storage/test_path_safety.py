"""Nothing escapes the storage root (library level, no Dagster): keys that become path components are
checked, relative paths must stay under the root (local folders and fsspec URLs), corpus file names that
are not safe keys get a derived key, and the deployment policy on locations."""

from __future__ import annotations

import hashlib
import os
import uuid

import fsspec
import pyarrow as pa
import pytest

from quadmix_assets import settings as env
from quadmix_assets.corpus import list_shards
from quadmix_assets.corpus.shards import ShardRef
from quadmix_assets.storage import PathEscapeError, StorageRoot, UnsafeKeyError, check_key, derive_key, is_safe_key, layout
from quadmix_assets.storage.keys import MAX_KEY_LENGTH

UNSAFE_KEYS = ["../victim", "../../../../../../../tmp/x/victim", "/tmp/x/victim", "a/b", "a\\b", "..", ".", ".hidden",
               "-rf", "", "x" * (MAX_KEY_LENGTH + 1), "with space", "nul\x00", "s3://bucket/k", "c:victim", "tab\t"]
SAFE_KEYS = ["shard-00000", "part-0", "ok_name-1.0", "_", "a..b", "3f2a9c0d1e2b4c5d", "draw-0003", "x" * MAX_KEY_LENGTH]


def _snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes and mtime."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(dirpath, name)
            out[p] = (open(p, "rb").read(), os.stat(p).st_mtime_ns)
    return out


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused_with_a_clear_error(key):
    assert not is_safe_key(key)
    with pytest.raises(UnsafeKeyError, match="unsafe shard key"):
        check_key(key, "shard")


@pytest.mark.parametrize("key", SAFE_KEYS)
def test_safe_keys_pass_unchanged(key):
    assert check_key(key) == key and derive_key(key) == key


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_layout_refuses_unsafe_keys_everywhere(key):
    builders = [layout.documents, layout.quarantine, lambda k: layout.attribute("domain", k), lambda k: layout.attribute(k, "s"),
                layout.model_dir, layout.model_file, layout.model_card, layout.normaliser_table, layout.mixture_scores_card,
                layout.mixture_manifest, layout.proxy_run, layout.export_dir]
    for build in builders:
        with pytest.raises(UnsafeKeyError):
            build(key)


def test_derived_keys_are_safe_distinct_and_stable():
    names = ["my shard#1 (v2)", "my shard#1 (v2) ", "my_shard_1__v2_?", "../../etc/passwd", ".hidden", "-x", "ü", "x" * 400, " "]
    keys = [derive_key(n) for n in names]
    assert all(is_safe_key(k) for k in keys) and len(set(keys)) == len(keys)
    assert keys == [derive_key(n) for n in names]
    assert keys[0] == "my_shard_1__v2_-" + hashlib.sha256(names[0].encode()).hexdigest()[:8]
    assert len(keys[7]) == MAX_KEY_LENGTH


def test_storage_root_refuses_paths_outside_it_local(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.parquet").write_bytes(b"precious")
    root = StorageRoot(str(tmp_path / "storage"))
    before = _snapshot(tmp_path)
    table = pa.table({"x": [1]})
    for rel in ["../outside/victim.parquet", "documents/../../outside/victim.parquet", str(outside / "victim.parquet"),
                "/etc/passwd", "a//b", "./x", "file:///tmp/x", "s3://bucket/x", "a\\..\\b", "x\x00"]:
        for op in (lambda r: root.write_parquet(r, table, {}), lambda r: root.write_bytes(r, b"evil"), root.read_bytes,
                   root.exists, root.path, root.uri, root.list):
            with pytest.raises(PathEscapeError, match="storage"):
                op(rel)
    assert _snapshot(tmp_path) == before  # nothing outside the root (nor inside) changed
    assert root.write_bytes("documents/ok.parquet", b"fine").startswith(root.url + "/documents/")
    assert root.path("") == str(tmp_path / "storage")


def test_storage_root_refuses_paths_outside_it_fsspec_url():
    bucket = f"memory://quadmix-escape-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        victim = f"{bucket}/victim/data.parquet"
        with fsspec.open(victim, "wb") as f:
            f.write(b"precious")
        root = StorageRoot(f"{bucket}/prefix")
        for rel in ["../victim/data.parquet", "documents/../../victim/data.parquet", "/victim/data.parquet", victim]:
            with pytest.raises(PathEscapeError):
                root.write_bytes(rel, b"evil")
        with pytest.raises(UnsafeKeyError):
            root.write_bytes(layout.documents("../../victim/data"), b"evil")
        assert fs.cat(victim.removeprefix("memory://")) == b"precious"
        root.write_json("ok/x.json", {"ok": True})
        assert root.list("") == ["ok/x.json"]
    finally:
        fs.rm(bucket.removeprefix("memory://"), recursive=True)


def test_storage_root_with_dotdot_is_refused_and_relative_roots_are_made_absolute(tmp_path, monkeypatch):
    with pytest.raises(PathEscapeError):
        StorageRoot("s3://bucket/quadmix/../other")
    with pytest.raises(PathEscapeError):
        StorageRoot(str(tmp_path / "a" / ".." / "b"))
    monkeypatch.chdir(tmp_path)
    assert StorageRoot("rel/storage").url == str(tmp_path / "rel" / "storage")


def _touch(path, content=b'{"id": "a", "text": "x"}\n'):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_corpus_names_that_are_not_safe_keys_get_derived_keys_beside_their_name(tmp_path):
    corpus = tmp_path / "corpus"
    for name in ["plain.jsonl", "my shard#1 (v2).jsonl.gz", ".hidden.jsonl", "-dash.parquet", "..jsonl", "ü.jsonl"]:
        _touch(corpus / name)
    shards = list_shards(str(corpus / "*"))
    by_name = {s.name: s.key for s in shards}
    assert by_name["plain.jsonl"] == "plain"
    stem = "my shard#1 (v2)"
    assert by_name["my shard#1 (v2).jsonl.gz"] == "my_shard_1__v2_-" + hashlib.sha256(stem.encode()).hexdigest()[:8]
    assert by_name[".hidden.jsonl"].startswith("_hidden-") and by_name["-dash.parquet"].startswith("_dash-")
    assert all(is_safe_key(s.key) for s in shards) and len({s.key for s in shards}) == len(shards)
    assert all(os.path.basename(s.path) == s.name for s in shards)
    with pytest.raises(UnsafeKeyError):
        ShardRef("../../tmp/victim", str(corpus / "plain.jsonl"))


# deployment policy ------------------------------------------------------------------------------------

CLUSTER = {"QUADMIX_DEPLOYMENT": "cluster", "QUADMIX_STORAGE": "s3://bucket/quadmix/storage",
           "QUADMIX_CORPUS": "s3://bucket/corpus/*.jsonl.gz", "QUADMIX_DATA_DIR": "/opt/quadmix/data"}


def test_local_mode_allows_any_location():
    env.check_locations("/anywhere", "/any/*.jsonl", "/data", environ={})


def test_cluster_mode_fixes_storage_corpus_and_data_to_the_environment():
    ok = ("s3://bucket/quadmix/storage", "s3://bucket/corpus/*.jsonl.gz", "/opt/quadmix/data")
    env.check_locations(*ok, environ=CLUSTER)
    for i, bad in enumerate(("s3://bucket/other", "s3://bucket/elsewhere/*.jsonl.gz", "/etc")):
        args = list(ok)
        args[i] = bad
        with pytest.raises(env.LocationPolicyError, match="refused"):
            env.check_locations(*args, environ=CLUSTER)
    with pytest.raises(env.LocationPolicyError, match="QUADMIX_STORAGE"):
        env.check_locations(*ok, environ={"QUADMIX_DEPLOYMENT": "cluster"})
    with pytest.raises(ValueError):
        env.deployment_mode({"QUADMIX_DEPLOYMENT": "prod"})


def test_allow_list_of_prefixes_is_component_wise_and_refuses_dotdot(tmp_path):
    e = {**CLUSTER, env.STORAGE_PREFIXES_ENV: "s3://bucket/quadmix/, s3://scratch/runs",
         env.CORPUS_PREFIXES_ENV: "s3://bucket/corpus"}
    corpus, data = CLUSTER["QUADMIX_CORPUS"], CLUSTER["QUADMIX_DATA_DIR"]
    for ok in ("s3://bucket/quadmix/experiment-1", "s3://scratch/runs", "s3://scratch//runs/a/"):
        env.check_locations(ok, corpus, data, environ=e)
    for bad in ("s3://bucket/quadmix-evil", "s3://bucket/quadmix/../secrets", "s3://scratch/runs/../../bucket/x",
                "s3://scratch", "gs://scratch/runs/a", "/tmp/x"):
        with pytest.raises(env.LocationPolicyError):
            env.check_locations(bad, corpus, data, environ=e)
    env.check_locations(CLUSTER["QUADMIX_STORAGE"], "s3://bucket/corpus/2026/*.parquet", data, environ=e)
    for bad in ("s3://bucket/corpus/*/../../secrets/*", "s3://bucket/corpus-other/*.jsonl"):
        with pytest.raises(env.LocationPolicyError):
            env.check_locations(CLUSTER["QUADMIX_STORAGE"], bad, data, environ=e)
    # local folders: symlinks are resolved before comparing
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "link").symlink_to(tmp_path)
    local = {env.STORAGE_PREFIXES_ENV: str(allowed)}
    env.check_locations(str(allowed / "run1"), "/c/*", "/d", environ=local)
    with pytest.raises(env.LocationPolicyError):
        env.check_locations(str(allowed / "link" / "outside"), "/c/*", "/d", environ=local)
