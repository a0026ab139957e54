"""Resume checks the bytes: every file an asset writes is recorded (size, sha256) in its materialization,
and ``Currency.check`` counts a job (partition) current only while each recorded file is still that file.

A small instance is built in-process (fast): the real ``documents`` asset on two tiny shards, a per-shard
attribute written through the real ``score_shard``, a proxy-like asset run over a range of two mixture
partitions (each partition records its own ``run.json``), a fan-in writing many files at once with its record
added at the end plus an export-like folder switched in whole, and an asset that records nothing (made as
before files were recorded). Each layout runs on a local folder and on an fsspec filesystem (``memory://``).
The damage is undone after every test, so the tests share one instance.
"""

# no `from __future__ import annotations`: Dagster reads the assets' annotations as types

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DataVersion,
    Definitions,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)

from quadmix_assets.defs.corpus.documents import documents
from quadmix_assets.dagster_support.file_records import FILES_KEY, files_recorded_at_end, recorded_files
from quadmix_assets.dagster_support.partitions import mixtures_partitions, shards_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.shard_attributes import score_shard
from quadmix_assets.resume import CORPUS_TAG, SETTINGS_TAG, Currency
from quadmix_assets.storage import StorageRoot, content_hash, layout
from quadmix_assets.storage.records import find_damage

SETTINGS_HASH, CORPUS_HASH = "settings-h", "corpus-h"
SHARDS = ("shard-a", "shard-b")
MIXTURES = ("draw-0001-aaaaaaaa", "draw-0002-bbbbbbbb")
TAGS = {SETTINGS_TAG: SETTINGS_HASH, CORPUS_TAG: CORPUS_HASH}


@asset(partitions_def=shards_partitions, deps=[documents], code_version="toy-attribute-v1")
def toy_attribute(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    """A per-shard attribute through the real shared body of every labeller/scorer."""
    return score_shard(context, settings, attribute="toy", step_version="toy-attribute-v1",
                       scorer=lambda texts: pa.table({"score": pa.array([float(len(t)) for t in texts], pa.float32())}),
                       models={})


@asset(partitions_def=mixtures_partitions, code_version="toy-proxy-v1")
def toy_proxy(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    """Like ``proxy_run``: one ``run.json`` per partition of a run over several, plus a file of the run."""
    storage = settings.storage()
    keys = list(context.partition_keys)
    for key in keys:
        storage.write_json(layout.proxy_run(key), {"mixture": key, "target_loss": len(key) / 10})
    storage.write_json("proxies/toy-group.json", {"trained_together": keys})
    return MaterializeResult(metadata={"proxies": len(keys)}, data_version=DataVersion(content_hash(keys)))


@asset(code_version="toy-fanin-v1")
@files_recorded_at_end
def toy_fanin(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    """Like the normaliser (many files, recorded once at the end) and the export (a folder switched in)."""
    storage = settings.storage()
    for i in range(5):
        storage.write_parquet(f"normaliser/toy-{i}.parquet", pa.table({"x": list(range(i + 1))}), {"i": i})
    with storage.replace_dir("exports/toy") as staged:
        storage.write_bytes(f"{staged}/tokens.bin", bytes(range(256)) * 64)
        storage.write_json(f"{staged}/manifest.json", {"complete": True})
    return MaterializeResult(metadata={"path": MetadataValue.path(storage.uri("exports/toy"))},
                             data_version=DataVersion("toy-fanin"))


@asset(code_version="toy-old-v1")
def toy_unrecorded(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    """Writes without a listener, as every asset did before files were recorded: only its ``path``."""
    uri = StorageRoot(settings.storage_root).write_json("old/out.json", {"old": True})
    return MaterializeResult(metadata={"path": MetadataValue.path(uri)}, data_version=DataVersion("toy-old"))


JOBS = [
    define_asset_job("toy_shard_job", selection=[documents, toy_attribute]),
    define_asset_job("toy_proxy_job", selection=[toy_proxy]),
    define_asset_job("toy_fanin_job", selection=[toy_fanin]),
    define_asset_job("toy_old_job", selection=[toy_unrecorded]),
]


class Run:
    """The built instance: settings, definitions, instance, and the storage root (no listener)."""

    def __init__(self, settings: QuadmixSettings, defs: Definitions, instance: DagsterInstance):
        self.settings, self.defs, self.instance = settings, defs, instance
        self.storage = StorageRoot(settings.storage_root)

    def check(self, job: str, partition: str | None = None, storage: StorageRoot | None = None, **kw):
        return Currency(self.instance, self.defs, SETTINGS_HASH, CORPUS_HASH, storage=storage).check(job, partition, **kw)

    def latest(self, asset_name: str, partition: str | None = None):
        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset_name), asset_partitions=[partition] if partition else None),
            limit=1, ascending=False).records
        return records[0].asset_materialization


def _write_shard(path: Path, key: str) -> None:
    lines = [json.dumps({"id": f"{key}-{i}", "text": f"document {i} of {key}: " + "words " * (5 + i % 7)})
             for i in range(40)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module", params=["local", "memory"])
def run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"damaged-{request.param}")
    corpus = root / "corpus"
    corpus.mkdir()
    for key in SHARDS:
        _write_shard(corpus / f"{key}.jsonl", key)
    storage_root = str(root / "storage") if request.param == "local" else f"memory://quadmix-damaged-{uuid.uuid4().hex}"
    settings = QuadmixSettings.from_env(corpus_glob=str(corpus / "*.jsonl"), storage_root=storage_root, preset="test")
    defs = Definitions(assets=[documents, toy_attribute, toy_proxy, toy_fanin, toy_unrecorded], jobs=JOBS,
                       resources={"settings": settings})
    (root / "home").mkdir()
    instance = DagsterInstance.local_temp(str(root / "home"))
    instance.add_dynamic_partitions(shards_partitions.name, list(SHARDS))
    instance.add_dynamic_partitions(mixtures_partitions.name, list(MIXTURES))

    def execute(job: str, partition: str | None = None, tags: dict | None = None) -> None:
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                              tags={**TAGS, **(tags or {})})
        assert result.success

    for key in SHARDS:
        execute("toy_shard_job", key)
    execute("toy_proxy_job", tags={"dagster/asset_partition_range_start": MIXTURES[0],
                                   "dagster/asset_partition_range_end": MIXTURES[-1]})
    execute("toy_fanin_job")
    execute("toy_old_job")
    yield Run(settings, defs, instance)
    instance.dispose()


@pytest.fixture
def damage(run):
    """``damage(relpath, how)``: truncate / overwrite with random bytes of the same size / delete a stored
    file; every file is put back as it was after the test (same bytes: current again)."""
    saved: dict[str, bytes] = {}

    def do(relpath: str, how: str) -> None:
        data = saved.setdefault(relpath, run.storage.read_bytes(relpath))
        if how == "truncate":
            run.storage.write_bytes(relpath, data[: len(data) // 3])
        elif how == "random":
            run.storage.write_bytes(relpath, os.urandom(len(data)))
        elif how == "delete":
            run.storage.fs.rm(run.storage.path(relpath))
        else:
            raise ValueError(how)

    yield do
    for relpath, data in saved.items():
        run.storage.write_bytes(relpath, data)


ALL_CHECKS = [("toy_shard_job", SHARDS[0]), ("toy_shard_job", SHARDS[1]), ("toy_proxy_job", MIXTURES[0]),
              ("toy_proxy_job", MIXTURES[1]), ("toy_fanin_job", None), ("toy_old_job", None)]


@pytest.mark.parametrize(("job", "partition"), ALL_CHECKS)
def test_undamaged_outputs_are_current(run, job, partition):
    why, records = run.check(job, partition, fan_in=False)
    assert why is None and records


def test_every_written_file_is_recorded_in_its_own_materialization(run):
    def files(asset_name: str, partition: str | None = None) -> set[str]:
        return set(recorded_files(run.latest(asset_name, partition).metadata) or {})

    for key in SHARDS:
        assert files("documents", key) == {layout.documents(key), layout.quarantine(key)}
        assert files("toy_attribute", key) == {layout.attribute("toy", key)}
    for key in MIXTURES:  # a run over both: each partition has its own run.json, and the run's file
        assert files("toy_proxy", key) == {layout.proxy_run(key), "proxies/toy-group.json"}
    assert files("toy_fanin") == {*(f"normaliser/toy-{i}.parquet" for i in range(5)),
                                  "exports/toy/tokens.bin", "exports/toy/manifest.json"}
    assert FILES_KEY not in run.latest("toy_unrecorded").metadata
    doc = recorded_files(run.latest("documents", SHARDS[0]).metadata)[layout.documents(SHARDS[0])]
    assert doc.size == len(run.storage.read_bytes(layout.documents(SHARDS[0]))) and doc.sha256 == run.storage.file_sha256(
        layout.documents(SHARDS[0]))


def test_a_truncated_attribute_file_is_not_current(run, damage):
    rel = layout.attribute("toy", SHARDS[0])
    size = len(run.storage.read_bytes(rel))
    damage(rel, "truncate")
    why, records = run.check("toy_shard_job", SHARDS[0], fan_in=False)
    assert why == f"toy_attribute: stored file {rel} was truncated ({size // 3} of {size} bytes)" and records == []
    assert run.check("toy_shard_job", SHARDS[1], fan_in=False)[0] is None  # the other shard is untouched


def test_a_documents_file_overwritten_with_random_bytes_is_named_not_the_corpus(run, damage):
    """The same size, other bytes; the runner's extra check (the corpus file changed) is asked last, so the
    reason names the damaged stored file, whatever the extra check would say."""
    rel = layout.documents(SHARDS[1])
    damage(rel, "random")
    corpus_changed = lambda key, mat: "the corpus file changed since it was read"  # noqa: E731
    why, _ = run.check("toy_shard_job", SHARDS[1], extra=corpus_changed, fan_in=False)
    assert why.startswith(f"documents: stored file {rel} was replaced (same size, sha256 "), why
    why, _ = run.check("toy_shard_job", SHARDS[0], extra=corpus_changed, fan_in=False)
    assert why == "documents: the corpus file changed since it was read"  # intact: the extra check speaks


def test_a_deleted_proxy_run_json_makes_only_its_partition_not_current(run, damage):
    rel = layout.proxy_run(MIXTURES[0])
    damage(rel, "delete")
    assert run.check("toy_proxy_job", MIXTURES[0], fan_in=False)[0] == f"toy_proxy: stored file {rel} is missing"
    assert run.check("toy_proxy_job", MIXTURES[1], fan_in=False)[0] is None
    damage("proxies/toy-group.json", "delete")  # the run's own file: every partition of the run
    assert run.check("toy_proxy_job", MIXTURES[1], fan_in=False)[0] == "toy_proxy: stored file proxies/toy-group.json is missing"


def test_files_recorded_at_the_end_and_a_switched_folder_are_checked(run, damage):
    damage("normaliser/toy-3.parquet", "random")
    assert run.check("toy_fanin_job")[0].startswith("toy_fanin: stored file normaliser/toy-3.parquet was replaced")
    damage("normaliser/toy-3.parquet", "truncate")
    assert "normaliser/toy-3.parquet was truncated" in run.check("toy_fanin_job")[0]


def test_an_exported_file_cut_short_is_named(run, damage):
    damage("exports/toy/tokens.bin", "truncate")
    assert run.check("toy_fanin_job")[0] == "toy_fanin: stored file exports/toy/tokens.bin was truncated (5461 of 16384 bytes)"


def test_a_materialization_without_a_record_keeps_the_path_check(run, damage):
    damage("old/out.json", "random")  # not recorded: not seen
    assert run.check("toy_old_job")[0] is None
    damage("old/out.json", "delete")
    why = run.check("toy_old_job")[0]
    if run.storage.is_local:
        assert why == f"toy_unrecorded's output {run.storage.path('old/out.json')} is gone"
    else:  # the older check looked at local paths only
        assert why is None


def test_the_storage_root_is_the_one_given_else_the_definitions(run, tmp_path):
    """Without ``storage`` Currency checks under the definitions' settings; given one (a copy of the run's
    storage, say), it checks there."""
    assert Currency(run.instance, run.defs, SETTINGS_HASH).storage.url == run.storage.url
    if not run.storage.is_local:
        return
    copy = tmp_path / "copy"
    shutil.copytree(run.storage.path(""), copy)
    copied = StorageRoot(str(copy))
    assert run.check("toy_shard_job", SHARDS[0], storage=copied, fan_in=False)[0] is None
    os.remove(copied.path(layout.quarantine(SHARDS[0])))
    why = run.check("toy_shard_job", SHARDS[0], storage=copied, fan_in=False)[0]
    assert why == f"documents: stored file {layout.quarantine(SHARDS[0])} is missing"
    assert run.check("toy_shard_job", SHARDS[0], fan_in=False)[0] is None  # the run's own storage is whole


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under a storage root but the run lock (see test_fault_injection)."""
    from quadmix_assets.storage.lock import LOCK_NAME

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def _latest_records(instance: DagsterInstance) -> dict[str, object]:
    """The latest materialization record of every asset (partition) in the instance, by ``name[partition]``."""
    latest: dict[str, object] = {}
    for key in instance.get_asset_keys():
        records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000, ascending=True).records
        assert len(records) < 10_000  # all of them (a test-preset run makes a few hundred)
        for record in records:
            partition = record.asset_materialization.partition
            latest[key.to_user_string() + (f"[{partition}]" if partition else "")] = record
    return latest


def test_a_resumed_run_redoes_a_truncated_attribute_file_and_ends_with_the_clean_bytes(tmp_path, two_shard_corpus):
    """End to end, the real runner on two real shards (test preset): every materialization of every asset
    records the files it wrote, and they are intact; one shard's domain attribute cut short, ``run_pipeline``
    again (resume on): that shard's per-shard job is redone, the other skipped, and every stored file ends
    byte for byte as the clean run left it."""
    from quadmix_assets.runner import run_pipeline

    from .conftest import make_settings

    settings = make_settings(str(two_shard_corpus / "*.jsonl.gz"), tmp_path / "storage")
    (tmp_path / "home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "home"))
    try:
        first = run_pipeline(settings, instance, log=lambda s: None, jobs=1)
        assert first.exit_code() == 0, first.failure_lines()
        clean = _tree(tmp_path / "storage")
        storage = StorageRoot(str(tmp_path / "storage"))
        latest = _latest_records(instance)
        assert {"documents[shard-00000]", "quality_normaliser", "mixture_search", "proxy_noise"} <= set(latest)
        unrecorded = [name for name, r in latest.items() if not recorded_files(r.asset_materialization.metadata)]
        assert unrecorded == []  # every asset writes a file, and records it
        damaged = {name: find_damage(storage, recorded_files(r.asset_materialization.metadata), r.timestamp)
                   for name, r in latest.items()}
        assert {k: v for k, v in damaged.items() if v is not None} == {}
        recorded = {rel for r in latest.values() for rel in recorded_files(r.asset_materialization.metadata)}
        assert recorded <= set(clean) and any(rel.startswith("exports/") for rel in recorded)
        rel = layout.attribute("domain", "shard-00000")
        path = tmp_path / "storage" / rel
        path.write_bytes(path.read_bytes()[:812])

        lines: list[str] = []
        again = run_pipeline(settings, instance, log=lines.append, jobs=1)
        assert again.exit_code() == 0, again.failure_lines()
        assert again.skipped.get("shard_fast_job") == [1, 2], (again.skipped, lines)
        assert any(f"{rel} was truncated" in line for line in lines), lines  # says which file, and why
        assert _tree(tmp_path / "storage") == clean

        # a documents file overwritten with other bytes of the same size, and one proxy's results deleted:
        # both redone (the shard from its corpus file, the proxy retrained from its seed), the same bytes again
        docs = tmp_path / "storage" / layout.documents("shard-00001")
        docs.write_bytes(os.urandom(docs.stat().st_size))
        proxy = sorted(k for k in clean if k.startswith("proxies/") and k.endswith("/run.json"))[0]
        (tmp_path / "storage" / proxy).unlink()
        lines = []
        third = run_pipeline(settings, instance, log=lines.append, jobs=1)
        assert third.exit_code() == 0, third.failure_lines()
        for rel in (layout.documents("shard-00001"), proxy):
            assert any(rel in line for line in lines), (rel, lines)
        assert _tree(tmp_path / "storage") == clean
    finally:
        instance.dispose()
