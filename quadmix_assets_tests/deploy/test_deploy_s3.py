"""Storage that pods share: the storage root on an S3-compatible server (moto's, started here on
127.0.0.1). Credentials and endpoint come only from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL), as a Kubernetes Secret would set them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from quadmix_assets.storage import StorageRoot
from quadmix_assets_tests.deploy.conftest import tiny_settings
from quadmix_assets_tests.deploy.materialize_support import materialize_one_shard

BUCKET = "quadmix-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(exe).exists():
        pytest.skip("moto_server not installed (the dev extra installs moto[server])")
    port = _free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()


def test_storage_root_reads_credentials_from_the_environment_only(s3_env):
    root = StorageRoot(f"s3://{BUCKET}/env-check")
    assert root.storage_options == {} and not root.is_local
    root.write_json("probe.json", {"ok": True})
    assert root.read_json("probe.json") == {"ok": True}


def test_materialize_part_of_the_graph_on_s3(s3_env, tiny_corpus, tmp_path):
    url = f"s3://{BUCKET}/run-{tmp_path.name}"
    settings = tiny_settings(tiny_corpus, url)
    with DagsterInstance.ephemeral() as instance:
        shard = materialize_one_shard(settings, instance)
        mat = instance.fetch_materializations(AssetKey("documents"), limit=1).records[0].asset_materialization
    root = StorageRoot(url)
    files = root.list("")
    assert any(f.startswith("documents/") for f in files) and any("quality_heuristic" in f for f in files), files
    assert not any(".tmp-" in f for f in files)
    docs = [f for f in files if f.startswith("documents/")][0]
    table = root.read_parquet(docs)
    assert table.num_rows == mat.metadata["documents"].value == 40
    heur = [f for f in files if "quality_heuristic" in f][0]
    scores = root.read_parquet(heur)
    assert scores.num_rows == table.num_rows
    # read back with a plain client too: the objects really are in the S3 server
    import boto3

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"run-{tmp_path.name}/")["Contents"]]
    assert any(k.endswith(".parquet") and shard in k for k in keys), keys


def test_one_writer_on_s3_through_a_conditional_lease_object(s3_env):
    """The storage lock on an object store: the lease object is created with S3's `If-None-Match: *`, so of
    two writers only one gets it; the other is refused naming the holder; released, it is free again."""
    from quadmix_assets.storage.lock import LEASE_NAME, RunLock, StorageLocked

    root = StorageRoot(f"s3://{BUCKET}/lease-check")
    first = RunLock(root, token="runner-a")
    assert first.acquire()
    try:
        assert root.exists(LEASE_NAME)
        with pytest.raises(StorageLocked, match="in use by another quadmix run"):
            RunLock(root, token="runner-b").acquire()
        # a conditional create really is refused by the server while the object exists
        with pytest.raises((FileExistsError, OSError)):
            root.fs.pipe_file(root.path(LEASE_NAME), b"{}", mode="create")
    finally:
        first.release()
    assert not root.exists(LEASE_NAME)
    second = RunLock(root, token="runner-b")
    assert second.acquire()
    second.release()
