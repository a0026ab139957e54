"""The `mixture_export` asset on its own partition set (`exports`), with a second Hugging Face tokenizer,
read back by Megatron-Core's IndexedDataset: a fast test on a storage root holding exactly what the export
reads (two real corpus shards, a mixture spec, its scores' provenance and its manifest), no demo run."""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa
from dagster import AssetKey, DagsterInstance

from quadmix_assets.corpus import read_shard
from quadmix_assets.definitions import build_definitions
from quadmix_assets.method import ParamSpace
from quadmix_assets.mixing import drawn_specs

from .conftest import CORPUS, make_settings


def _storage_with_a_mixture(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, name in enumerate(("shard-00000.jsonl.gz", "shard-00001.jsonl.gz")):
        lines = gzip.open(CORPUS / name, "rb").read().splitlines()[:30]
        (corpus / f"s{i}.jsonl.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    settings = make_settings(str(corpus / "*.jsonl.gz"), tmp_path / "storage", export_tokenizer="bundled:minilm")
    storage = settings.storage()
    from quadmix_assets.storage import layout

    fps, manifest_parts = {}, []
    for i in range(2):
        read = read_shard(str(corpus / f"s{i}.jsonl.gz"))
        fps[f"s{i}"] = read.fingerprint
        storage.write_parquet(layout.documents(f"s{i}"), read.documents, {"inputs": {"fingerprint": read.fingerprint}})
        n = read.documents.num_rows
        rows = np.arange(0, n, 2)
        manifest_parts.append(pa.table({"id": read.documents["id"].take(pa.array(rows)), "shard": [f"s{i}"] * len(rows),
                                        "row": rows, "copies": pa.array((rows % 3) + 1, pa.int32())}))
    spec = drawn_specs(ParamSpace(3, 5), 1, seed=0)[0]
    key = spec.mixture_id
    storage.write_json(layout.mixture_configs(), {"configs": [spec.to_dict()], "preset": {"seed": 0}})
    storage.write_json(layout.target_card(), {"objective_sets": []})
    storage.write_json(layout.mixture_scores_card(key), {"shards": sorted(fps), "shard_fingerprints": fps})
    storage.write_parquet(layout.mixture_manifest(key), pa.concat_tables(manifest_parts), {"params": spec.to_dict()})
    return settings, storage, key


def test_export_asset_partitions_are_the_promoted_mixtures_and_megatron_reads_it(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from quadmix_assets.storage import layout

    settings, storage, key = _storage_with_a_mixture(tmp_path)
    assert key.startswith("draw-0000-")  # the readable key
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("mixture_export")).partitions_def.name == "exports"
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("mixtures", [key, "other-0123abcd"])
    instance.add_dynamic_partitions("exports", [key])  # only the promoted one
    res = defs.resolve_job_def("export_job").execute_in_process(instance=instance, partition_key=key)
    assert res.success
    checks = res.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["mixture_export_complete"] and all(c.passed for c in checks)
    folder = layout.export_dir(key)
    doc = storage.read_json(f"{folder}/manifest.json")
    manifest = storage.read_parquet(layout.mixture_manifest(key))
    ds = IndexedDataset(storage.path(f"{folder}/{doc['tokens_prefix']}"))
    assert len(ds) == doc["occurrences"] == int(manifest["copies"].to_numpy().sum())
    assert int(ds.sequence_lengths.astype(np.int64).sum()) == doc["tokens"]
    assert doc["inputs"]["tokenizer"]["source"] == "bundled:minilm" and all(int(ds[i][-1]) == 102 for i in range(len(ds)))
    md = instance.get_latest_materialization_event(AssetKey("mixture_export")).asset_materialization.metadata
    assert key in md["lineage"].value and "bundled:minilm" in md["lineage"].value
    # the UI's view: one export partition, materialized (not "N partitions, 0%")
    assert instance.get_dynamic_partitions("exports") == [key]
    assert instance.get_materialized_partitions(AssetKey("mixture_export")) == {key}

