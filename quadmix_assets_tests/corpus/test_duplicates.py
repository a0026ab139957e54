"""Exact text duplicates across shards (issue 16): the rule of quadmix_assets.corpus.duplicates, and the
fan-in reader (mixing.features.document_features) leaving the quarantined copies out."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from quadmix_assets.corpus import read_shard
from quadmix_assets.corpus.duplicates import DUPLICATE_TEXT, cross_shard_duplicates, rows_left_out, text_digests
from quadmix_assets.mixing.features import document_features
from quadmix_assets.storage import StorageRoot, layout


def _shard(ids, texts):
    return (ids, text_digests(texts))


def test_same_text_in_two_shards_is_kept_once_with_a_pointer():
    shards = {
        "b": _shard(["b0", "b1", "b2"], ["shared text", "only in b", "also shared"]),
        "a": _shard(["a0", "a1"], ["also shared", "shared text"]),
        "c": _shard(["c0"], ["Shared text"]),  # differs in case: not an exact duplicate
    }
    dup = cross_shard_duplicates(shards).to_pylist()
    # kept in the lexicographically first shard key ("a"), quarantined in "b", with the kept copy's place
    assert [(d["shard"], d["row"], d["id"], d["reason"], d["kept_shard"], d["kept_row"], d["kept_id"]) for d in dup] == [
        ("b", 0, "b0", DUPLICATE_TEXT, "a", 1, "a1"),
        ("b", 2, "b2", DUPLICATE_TEXT, "a", 0, "a0"),
    ]
    assert "row 1 of shard a" in dup[0]["detail"]
    import hashlib

    assert dup[0]["text_sha256"] == hashlib.sha256("shared text".encode()).hexdigest()
    # the mapping's order does not matter
    assert cross_shard_duplicates(dict(reversed(list(shards.items())))).equals(cross_shard_duplicates(shards))


def test_within_shard_repeats_stay_and_later_shards_point_at_the_first_row():
    shards = {"a": _shard(["a0", "a1"], ["x", "x"]), "b": _shard(["b0", "b1"], ["x", "y"])}
    dup = cross_shard_duplicates(shards).to_pylist()
    assert [(d["shard"], d["row"], d["kept_shard"], d["kept_row"]) for d in dup] == [("b", 0, "a", 0)]
    assert cross_shard_duplicates({"a": shards["a"]}).num_rows == 0
    assert cross_shard_duplicates({}).num_rows == 0


def test_rows_left_out_follow_the_shards_a_fan_in_uses():
    shards = {"a": _shard(["a0"], ["t"]), "b": _shard(["b0", "b1"], ["u", "t"]), "c": _shard(["c0"], ["t"])}
    dup = cross_shard_duplicates(shards)
    assert {k: v.tolist() for k, v in rows_left_out(dup, ["a", "b", "c"]).items()} == {"b": [1], "c": [0]}
    # without the kept shard the text is kept in the next shard holding it, once
    assert {k: v.tolist() for k, v in rows_left_out(dup, ["b", "c"]).items()} == {"c": [0]}
    assert rows_left_out(dup, ["c"]) == {}
    assert rows_left_out(None, ["a"]) == {}


def _write_shard(tmp_path: Path, storage: StorageRoot, key: str, texts: list[str]) -> int:
    p = tmp_path / f"{key}.jsonl.gz"
    p.write_bytes(gzip.compress("".join(json.dumps({"id": f"{key}-{i}", "text": t}) + "\n" for i, t in enumerate(texts)).encode()))
    docs = read_shard(str(p)).documents
    n = docs.num_rows
    storage.write_parquet(layout.documents(key), docs, {})
    storage.write_parquet(layout.attribute("domain", key), pa.table({"domain": pa.array(np.zeros(n, np.int16))}), {})
    storage.write_parquet(layout.attribute(layout.RANKS_ATTRIBUTE, key), pa.table({"s_x": np.linspace(0, 1, n)}), {})
    return n


def test_document_features_leave_the_quarantined_copy_out(tmp_path):
    storage = StorageRoot(str(tmp_path / "store"))
    _write_shard(tmp_path, storage, "s1", ["same words here", "first only"])
    _write_shard(tmp_path, storage, "s2", ["second only", "same words here", "second again"])
    per_shard = {}
    for k in ("s1", "s2"):
        t = storage.read_parquet(layout.documents(k), columns=["id", "text"])
        per_shard[k] = (t["id"].to_pylist(), text_digests(t["text"].to_pylist()))
    before = document_features(storage, ["s1", "s2"], ["x"])
    assert before.num_rows == 5  # nothing quarantined before the fan-in wrote its file
    storage.write_parquet(layout.cross_shard_duplicates(), cross_shard_duplicates(per_shard), {})
    after = document_features(storage, ["s1", "s2"], ["x"])
    assert list(zip(after["shard"].to_pylist(), after["row"].to_pylist())) == [("s1", 0), ("s1", 1), ("s2", 0), ("s2", 2)]
    assert after["id"].to_pylist() == ["s1-0", "s1-1", "s2-0", "s2-2"]
    assert after["s_x"].to_pylist() == [0.0, 1.0, 0.0, 1.0]  # the ranks of the rows kept, still aligned
    assert document_features(storage, ["s1", "s2"], ["x"], leave_out_duplicates=False).num_rows == 5
    assert document_features(storage, ["s2"], ["x"]).num_rows == 3  # kept copy not used: nothing dropped
