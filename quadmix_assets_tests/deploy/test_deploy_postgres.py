"""The Dagster instance on a real PostgreSQL server (Debian's package, started here on 127.0.0.1) through
dagster-postgres, configured by deploy/dagster.yaml's storage section: materialize part of the graph and
read the materializations back."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from dagster._core.test_utils import environ

from quadmix_assets_tests.deploy.conftest import tiny_settings
from quadmix_assets_tests.deploy.k8s_support import deploy_yaml
from quadmix_assets_tests.deploy.materialize_support import materialize_one_shard


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else (os.path.dirname(shutil.which("pg_ctl")) if shutil.which("pg_ctl") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, user `dagster`); always stopped."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql; .ci/run does)")
    as_user: list[str] = []
    data = tempfile.mkdtemp(prefix="quadmix-pg-")
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the package's `postgres` user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data, "postgres")
    port = _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)  # noqa: E731
    try:
        run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "dagster", "-E", "UTF8")
        run(f"{bindir}/pg_ctl", "-D", data, "-w", "-l", f"{data}/log", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off", "start")
        run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster")
        yield {"host": "127.0.0.1", "port": port, "user": "dagster", "db": "dagster"}
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def pg_instance(postgres, tmp_path):
    """An instance from deploy/dagster.yaml's storage, concurrency and run-monitoring sections."""
    cluster = deploy_yaml("dagster.yaml")
    config = {k: cluster[k] for k in ("storage", "concurrency", "run_monitoring", "telemetry")}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {"DAGSTER_PG_HOST": postgres["host"], "DAGSTER_PG_PORT": str(postgres["port"]),
           "DAGSTER_PG_DB": postgres["db"], "DAGSTER_PG_USERNAME": postgres["user"], "DAGSTER_PG_PASSWORD": ""}
    with environ(env):
        with DagsterInstance.from_config(str(tmp_path)) as instance:
            yield instance


def test_instance_storage_is_postgres_and_gpu_pool_is_sized(pg_instance):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    limit = deploy_yaml("dagster.yaml")["concurrency"]["pools"]["default_limit"]
    assert pg_instance.get_concurrency_config().pool_config.default_pool_limit == limit
    assert pg_instance.run_monitoring_enabled


def test_materialize_part_of_the_graph_into_postgres(pg_instance, tiny_corpus, tmp_path):
    settings = tiny_settings(tiny_corpus, str(tmp_path / "storage"))
    shard = materialize_one_shard(settings, pg_instance)
    for name in ("documents", "quality_heuristic"):
        records = pg_instance.fetch_materializations(AssetKey(name), limit=10).records
        assert len(records) == 1, name
        assert records[0].partition_key == shard
    docs = pg_instance.fetch_materializations(AssetKey("documents"), limit=1).records[0].asset_materialization
    assert docs.metadata["documents"].value == 40
    assert shard in pg_instance.get_dynamic_partitions("shards")
    runs = pg_instance.get_runs()
    assert len(runs) == 1 and runs[0].is_success
