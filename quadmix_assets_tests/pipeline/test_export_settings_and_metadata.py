"""On the session's real run (``demo_run``: test preset, two real shards) and a copy of it:

- Dagster's standard metadata: every asset that records files has ``dagster/uri`` (pointing at what it
  wrote), every asset that writes a Parquet table ``dagster/row_count`` and ``dagster/column_schema``;
- the export is self-contained: its tokenizer beside the tokens, named by relative path in ``manifest.json``,
  the shipped file alone decoding every sequence back to its text, the text parts carrying provenance;
- changing only the export tokenizer redoes the export and nothing else (counted by ``run_pipeline``'s
  ``skipped`` per job), and a run with the same settings again redoes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetRecordsFilter, DagsterInstance
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet, UriMetadataSet
from tokenizers import Tokenizer

from quadmix_assets.dagster_support.file_records import recorded_files
from quadmix_assets.storage import StorageRoot, layout

from .conftest import make_settings


def _latest_records(instance: DagsterInstance) -> dict[str, object]:
    latest: dict[str, object] = {}
    for key in instance.get_asset_keys():
        records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000, ascending=True).records
        assert len(records) < 10_000
        for record in records:
            partition = record.asset_materialization.partition
            latest[key.to_user_string() + (f"[{partition}]" if partition else "")] = record
    return latest


def _export_folder(storage: StorageRoot) -> Path:
    exported = [rel.split("/")[1] for rel in storage.list("exports", "/manifest.json")]
    assert len(exported) == 1, exported
    return Path(storage.path(layout.export_dir(exported[0])))


def test_every_file_writing_asset_has_a_uri_and_every_table_writing_one_its_rows_and_columns(demo_run):
    settings, instance, summary, _ = demo_run
    assert summary.exit_code() == 0, summary.failure_lines()
    latest = _latest_records(instance)
    assert {"documents[shard-00000]", "quality_normaliser", "target_sets", "mixture_search"} <= set(latest)
    assert any(name.startswith("mixture_manifest[") for name in latest)
    assert any(name.startswith("mixture_export[") for name in latest)
    without_uri, without_table, tables = [], [], set()
    for name, record in latest.items():
        md = record.asset_materialization.metadata
        files = recorded_files(md) or {}
        if not files:  # a materialization that wrote nothing (a decision re-recorded) has nothing to point at
            continue
        uri = UriMetadataSet.extract(md).uri
        if not uri:
            without_uri.append(name)
        else:
            assert os.path.exists(uri), (name, uri)  # a local storage root: the path it names is there
            assert uri.startswith(settings.storage().uri("")), (name, uri)
        if any(rel.endswith(".parquet") for rel in files):
            table = TableMetadataSet.extract(md)
            if table.row_count is None or table.column_schema is None or not table.column_schema.columns:
                without_table.append(name)
                continue
            tables.add(name.split("[")[0])
            if uri and uri.endswith(".parquet"):  # one table file: its own rows and columns
                meta = pq.read_metadata(uri)
                assert table.row_count == meta.num_rows, name
                assert [c.name for c in table.column_schema.columns] == meta.schema.to_arrow_schema().names, name
    assert without_uri == [] and without_table == []
    assert {"documents", "domain_labels", "quality_dclm", "quality_normaliser", "target_sets", "mixture_manifest",
            "mixture_export"} <= tables
    export = next(r for n, r in latest.items() if n.startswith("mixture_export["))
    md = export.asset_materialization.metadata
    assert TableMetadataSet.extract(md).row_count == md["occurrences"].value


def test_the_stored_export_decodes_with_its_shipped_tokenizer_alone(demo_run):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    storage = demo_run[0].storage()
    folder = _export_folder(storage)
    doc = json.loads((folder / "manifest.json").read_text())
    assert doc["tokenizer_files"] == ["tokenizer.json", "tokenizer_config.json"]
    for rel in [*doc["text_parts"], "tokens.bin", "tokens.idx", *doc["tokenizer_files"]]:
        assert not rel.startswith("/") and ".." not in rel
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == doc["files"][rel]["sha256"], rel
    tok = Tokenizer.from_file(str(folder / doc["tokenizer_files"][0]))
    assert tok.token_to_id(doc["eos_token"]) == doc["eos_id"]
    ds = IndexedDataset(str(folder / doc["tokens_prefix"]))
    text = pa.concat_tables([pq.read_table(folder / p) for p in doc["text_parts"]])
    assert len(ds) == text.num_rows == doc["occurrences"] > 0
    for i, want in enumerate(text["text"].to_pylist()):
        ids = ds[i].tolist()
        assert ids[-1] == doc["eos_id"]
        assert tok.decode(ids[:-1], skip_special_tokens=False) == want, i
    # the text parts carry their provenance: what made them, from which manifest
    key = folder.name
    manifest_sha = storage.file_sha256(layout.mixture_manifest(key))
    for part in doc["text_parts"]:
        prov = storage.provenance(f"{layout.export_dir(key)}/{part}")
        assert prov["producer"] == "mixture_export" and prov["partition"] == key
        assert prov["inputs"]["mixture_manifest"]["sha256"] == manifest_sha
        assert set(prov["inputs"]["documents"]) == set(doc["inputs"]["documents"])


def test_another_export_tokenizer_redoes_the_export_and_nothing_else(demo_run, tmp_path):
    """A copy of the finished run's storage and instance, run again with ``--export-tokenizer
    bundled:smollm2``: every job is skipped as current but the export's one; the text parts are the same
    bytes, the tokens and the shipped tokenizer are SmolLM2's and decode back. Run once more with the same
    settings: nothing is redone."""
    from quadmix_assets.runner import run_pipeline

    settings, instance, summary, _ = demo_run
    assert summary.exit_code() == 0, summary.failure_lines()
    shutil.copytree(settings.storage_root, tmp_path / "storage")
    shutil.copytree(instance.root_directory, tmp_path / "home")
    original = _export_folder(settings.storage())
    other = make_settings(settings.corpus_glob, tmp_path / "storage", export_tokenizer="bundled:smollm2")
    copy = DagsterInstance.local_temp(str(tmp_path / "home"))
    try:
        lines: list[str] = []
        again = run_pipeline(other, copy, log=lines.append, jobs=1)
        assert again.exit_code() == 0, (again.failure_lines(), lines)
        redone = {job: counts for job, counts in again.skipped.items() if counts[0] != counts[1]}
        assert redone == {"export_job": [0, 1]}, (again.skipped, lines)
        assert {"shard_fast_job", "mixture_job", "proxy_job"} <= set(again.skipped)
        folder = _export_folder(other.storage())
        assert folder.name == original.name
        doc = json.loads((folder / "manifest.json").read_text())
        assert doc["inputs"]["tokenizer"]["source"] == "bundled:smollm2" and doc["vocab_size"] == 49152
        for part in doc["text_parts"]:
            assert (folder / part).read_bytes() == (original / part).read_bytes(), part
        for rel in ("tokens.bin", "tokenizer.json"):
            assert (folder / rel).read_bytes() != (original / rel).read_bytes(), rel
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokens = (folder / "tokens.bin").read_bytes()
        assert len(tokens) == doc["tokens"] * 2  # uint16
        assert tok.get_vocab_size(with_added_tokens=True) == doc["vocab_size"]

        lines.clear()
        third = run_pipeline(other, copy, log=lines.append, jobs=1)
        assert third.exit_code() == 0, third.failure_lines()
        assert {job: c for job, c in third.skipped.items() if c[0] != c[1]} == {}, (third.skipped, lines)
        assert third.skipped.get("export_job") == [1, 1], (third.skipped, lines)
    finally:
        copy.dispose()
