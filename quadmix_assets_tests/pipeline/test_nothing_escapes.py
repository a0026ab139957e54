"""Nothing escapes the storage root, through Dagster: a `shards` partition named `../../…/victim` (as
anyone with the UI can add) or an absolute path is refused, and no file outside the root changes; the
shard sensor only ever registers safe keys; in the cluster deployment run config cannot move the storage
root (refused at launch), or only to a prefix of the allow-list."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from quadmix_assets_tests.pipeline.conftest import evaluate_sensor
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterInvalidConfigError,
    build_asset_context,
    materialize,
)

from quadmix_assets import settings as env
from quadmix_assets.definitions import build_definitions
from quadmix_assets.defs.operations.automation import shard_sensor
from quadmix_assets.defs.corpus.documents import documents
from quadmix_assets.defs.quality.labels import domain_classifier, domain_labels
from quadmix_assets.dagster_support.partitions import add_partitions, shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring.fasttext_model import save_model, train_fasttext
from quadmix_assets.storage import PathEscapeError, StorageRoot, UnsafeKeyError, is_safe_key, layout

SHARD = Path(env.data_dir()) / "corpus" / "webtext" / "shard-00000.jsonl.gz"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _snapshot(folder: Path) -> dict:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus_and_model(tmp_path_factory):
    """One shard of 40 real documents and a tiny real fastText domain model trained on them (imported
    through `domain_model`, as users import their own), so `domain_labels` can run for real."""
    d = tmp_path_factory.mktemp("escape-corpus")
    with gzip.open(SHARD, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(40)]
    with gzip.open(d / "tiny-00000.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(lines)
    import json

    texts = [json.loads(line)["text"] for line in lines]
    model = train_fasttext(texts + texts[:8], [i % 24 for i in range(48)], epoch=1, dim=8)
    model_path = d.parent / "tiny-domain.bin"
    save_model(model, str(model_path))
    return d, str(model_path)


@pytest.fixture
def victim(tmp_path) -> Path:
    """A Parquet file outside the storage root, shaped like a documents file (a `text` column), so a
    traversal that reached it would be read and overwritten."""
    outside = tmp_path / "outside"
    outside.mkdir()
    pq.write_table(pa.table({"text": ["precious data"] * 3, "id": ["a", "b", "c"]}), outside / "victim.parquet")
    return outside / "victim.parquet"


def _attack_keys(victim: Path) -> list[str]:
    traversal = "../" * 16 + str(victim.with_suffix("")).lstrip("/")  # documents/<key>.parquet -> the victim
    return [traversal, str(victim.with_suffix(""))]


def test_library_refuses_traversal_and_absolute_keys(tmp_path, victim):
    root = StorageRoot(str(tmp_path / "storage"))
    before = _snapshot(tmp_path)
    for key in _attack_keys(victim):
        # the path the old code built from this key really does lead to the victim
        escaped = os.path.normpath(f"{root.url}/documents/{key}.parquet")
        assert key.startswith("/") or escaped == str(victim)
        with pytest.raises(UnsafeKeyError, match="unsafe shard key"):
            layout.attribute("domain", key)
        with pytest.raises(PathEscapeError, match="outside|storage root"):
            root.write_parquet(f"attributes/domain/{key}.parquet", pa.table({"domain": [1, 2, 3]}), {})
        with pytest.raises(UnsafeKeyError):
            add_partitions(DagsterInstance.ephemeral(), shards_partitions, [key])
    assert _snapshot(tmp_path) == before


def test_materializing_domain_labels_for_an_unsafe_partition_is_refused(tmp_path, victim, corpus_and_model):
    corpus, model = corpus_and_model
    settings = QuadmixSettings.from_env(corpus_glob=str(corpus / "*.jsonl.gz"), storage_root=str(tmp_path / "storage"),
                                        preset="test", domain_model=model)
    with DagsterInstance.ephemeral() as instance:
        (shard,) = settings.shards()
        add_partitions(instance, shards_partitions, [shard.key])
        ok = materialize([domain_classifier, documents, domain_labels], selection=[domain_classifier.key, documents.key],
                         partition_key=shard.key, instance=instance, resources={"settings": settings}, run_config=QUIET)
        assert ok.success
        good = materialize([domain_labels], partition_key=shard.key, instance=instance, resources={"settings": settings},
                           run_config=QUIET)
        assert good.success  # the asset itself works: what follows fails only because of the key
        before = _snapshot(tmp_path)
        for key in _attack_keys(victim):
            instance.add_dynamic_partitions(shards_partitions.name, [key])  # what the UI's "add partition" does
            result = materialize([domain_labels], partition_key=key, instance=instance, resources={"settings": settings},
                                 run_config=QUIET, raise_on_error=False)
            assert not result.success
            errors = [e.event_specific_data.error for e in result.all_events if e.is_failure and e.event_specific_data
                      and getattr(e.event_specific_data, "error", None)]
            assert any("unsafe partition key" in str(err.to_string()) for err in errors), errors
            mats = instance.fetch_materializations(AssetKey("domain_labels"), limit=10).records
            assert {m.partition_key for m in mats} == {shard.key}
        # the second line of defence, without the run-level check (a direct invocation has no run): the
        # asset body refuses the key where it would build the path
        for key in _attack_keys(victim):
            with build_asset_context(partition_key=key, instance=instance, resources={"settings": settings}) as context:
                with pytest.raises(UnsafeKeyError, match="unsafe shard key"):
                    domain_labels(context)
        assert _snapshot(tmp_path) == before  # neither the victim nor anything under the root changed
        assert pq.read_table(victim)["text"].to_pylist() == ["precious data"] * 3


def test_sensor_registers_only_safe_keys_for_unsafe_file_names(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("plain.jsonl", "my shard (1).jsonl", ".hidden.jsonl", "..jsonl", "-rf.jsonl"):
        (corpus / name).write_text('{"id": "1", "text": "one"}\n')
    settings = QuadmixSettings.from_env(corpus_glob=str(corpus / "*"), storage_root=str(tmp_path / "s"))
    with DagsterInstance.ephemeral() as instance:
        result = evaluate_sensor(shard_sensor, instance=instance, resources={"settings": settings})
        keys = result.dynamic_partitions_requests[0].partition_keys
        assert len(keys) == 5 and all(is_safe_key(k) for k in keys) and "plain" in keys
        assert sorted(r.partition_key for r in result.run_requests) == sorted(keys)
        names = {ref.key: ref.name for ref in settings.shards()}
        assert sorted(names.values()) == sorted(p.name for p in corpus.iterdir())


# deployment mode --------------------------------------------------------------------------------------

@pytest.fixture
def cluster_env(monkeypatch, tmp_path, corpus_and_model):
    corpus, _ = corpus_and_model
    storage = tmp_path / "storage"
    for k, v in {"QUADMIX_DEPLOYMENT": "cluster", "QUADMIX_STORAGE": str(storage),
                 "QUADMIX_CORPUS": str(corpus / "*.jsonl.gz"), "QUADMIX_DATA_DIR": env.data_dir(),
                 "QUADMIX_PRESET": "test"}.items():
        monkeypatch.setenv(k, v)
    for k in (env.STORAGE_PREFIXES_ENV, env.CORPUS_PREFIXES_ENV, "QUADMIX_CONFIGS", "QUADMIX_EXECUTOR"):
        monkeypatch.delenv(k, raising=False)
    return storage


def _run_documents(defs, instance, run_config):
    (shard,) = QuadmixSettings.from_env().shards()
    add_partitions(instance, shards_partitions, [shard.key])
    job = defs.resolve_job_def("shard_fast_job")
    return job.execute_in_process(instance=instance, partition_key=shard.key, asset_selection=[documents.key],
                                  run_config={**QUIET, **run_config}, raise_on_error=False)


def test_cluster_run_config_cannot_move_the_storage_root(cluster_env, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        for field, value in (("storage_root", str(outside)), ("corpus_glob", "/etc/*"), ("data_dir", "/")):
            with pytest.raises(DagsterInvalidConfigError, match=f'unexpected config entry "{field}"'):
                _run_documents(defs, instance, {"resources": {"settings": {"config": {field: value}}}})
        assert list(outside.iterdir()) == [] and not instance.get_runs()  # refused before a run existed
        # other settings stay configurable, and the fixed root is where the run writes
        result = _run_documents(defs, instance, {"resources": {"settings": {"config": {"text_field": "text"}}}})
        assert result.success
        assert any(p.name.endswith(".parquet") for p in (cluster_env / "documents").iterdir())
    assert list(outside.iterdir()) == []


def test_cluster_allow_list_lets_runs_choose_only_under_its_prefixes(cluster_env, tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    outside = tmp_path / "allowed-not"  # shares the prefix's characters, not its folder
    allowed.mkdir()
    outside.mkdir()
    monkeypatch.setenv(env.STORAGE_PREFIXES_ENV, f"{allowed},s3://bucket/quadmix")
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        for bad in (str(outside), str(allowed / ".." / "allowed-not"), "/tmp"):
            result = _run_documents(defs, instance, {"resources": {"settings": {"config": {"storage_root": bad}}}})
            assert not result.success
            failures = [str(e.event_specific_data.error.to_string()) for e in result.all_events if e.is_failure
                        and getattr(e.event_specific_data, "error", None)]
            assert any("refused" in f for f in failures), failures
        assert list(outside.iterdir()) == []
        result = _run_documents(defs, instance, {"resources": {"settings": {"config": {"storage_root": str(allowed / "run1")}}}})
        assert result.success and (allowed / "run1" / "documents").is_dir()
    assert list(outside.iterdir()) == []


def test_local_mode_is_unchanged(monkeypatch):
    monkeypatch.delenv("QUADMIX_DEPLOYMENT", raising=False)
    monkeypatch.delenv(env.STORAGE_PREFIXES_ENV, raising=False)
    defs = build_definitions()
    assert isinstance(defs.resources["settings"], QuadmixSettings)


# the command line -------------------------------------------------------------------------------------

def test_cli_refuses_unsafe_keys_and_the_ui_binds_to_loopback(tmp_path, capsys):
    from quadmix_assets import cli

    home = tmp_path / "home"
    home.mkdir()
    for argv in (["lineage", "--shard", "../../../etc/passwd"], ["lineage", "/abs/mixture"]):
        assert cli.main([*argv, "--dagster-home", str(home)]) == 2
        assert "unsafe" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["ui"]).host == "127.0.0.1"
    assert "127.0.0.1" in cli.LOOPBACK_HOSTS


def test_cluster_k8s_executor_takes_no_run_config(cluster_env, monkeypatch):
    """The k8s executor's run config (env_vars, step_k8s_config...) would set the step pods' environment,
    and with it QUADMIX_STORAGE: in the cluster it is fixed by the code location."""
    from dagster import validate_run_config

    monkeypatch.setenv("QUADMIX_EXECUTOR", "k8s")
    monkeypatch.setenv("QUADMIX_K8S_EXECUTOR_CONFIG", '{"max_concurrent": 4}')
    job = build_definitions().resolve_job_def("shard_job")
    assert job.executor_def.name == "k8s"
    for config in ({"env_vars": ["QUADMIX_STORAGE=/elsewhere"]}, {"step_k8s_config": {"container_config": {"image": "x"}}},
                   {"max_concurrent": 1}):
        with pytest.raises(DagsterInvalidConfigError, match="unexpected config entry"):
            validate_run_config(job, {"execution": {"config": config}})
    validate_run_config(job, {})
    monkeypatch.setenv("QUADMIX_DEPLOYMENT", "local")
    from dagster_k8s import k8s_job_executor

    assert build_definitions().resolve_job_def("shard_job").executor_def is k8s_job_executor  # unchanged locally


def test_cluster_sensor_tick_refuses_a_storage_root_outside_the_policy(cluster_env, tmp_path):
    from dagster import DagsterResourceFunctionError

    settings = QuadmixSettings.from_env(storage_root=str(tmp_path / "elsewhere"))
    with DagsterInstance.ephemeral() as instance:
        with pytest.raises(DagsterResourceFunctionError) as info:
            evaluate_sensor(shard_sensor, instance=instance, resources={"settings": settings})
        assert isinstance(info.value.__cause__, env.LocationPolicyError) and "refused" in str(info.value.__cause__)
    assert not (tmp_path / "elsewhere").exists()
