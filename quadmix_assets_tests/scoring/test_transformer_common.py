"""transformer_common: length bucketing, throughput stats, device/dtype policy, model versions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quadmix_assets.scoring.transformer_common import (
    InferenceStats,
    length_bucketed_batches,
    model_version,
    pad_batch,
    pick_device,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 600), max_size=80), st.integers(1, 17))
def test_bucketing_partitions_indices_sorted_by_length(lengths, batch_size):
    batches = length_bucketed_batches(lengths, batch_size)
    flat = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    ls = np.asarray(lengths, dtype=np.int64)[flat]
    assert np.all(np.diff(ls) <= 0)  # longest first


def test_bucketing_groups_similar_lengths():
    lengths = [5, 100, 6, 98, 7, 99]
    batches = length_bucketed_batches(lengths, 3)
    assert [sorted(b.tolist()) for b in batches] == [[1, 3, 5], [0, 2, 4]]
    with pytest.raises(ValueError):
        length_bucketed_batches(lengths, 0)


def test_inference_stats():
    s = InferenceStats(docs=10, tokens=500, seconds=2.0) + InferenceStats(docs=6, tokens=100, seconds=2.0)
    assert (s.docs, s.tokens, s.seconds) == (16, 600, 4.0)
    assert s.docs_per_s == 4.0 and s.tokens_per_s == 150.0
    d = s.as_dict()
    assert d["docs_per_s"] == 4.0 and d["tokens_per_s"] == 150.0
    assert np.isnan(InferenceStats().docs_per_s)


def test_device_and_dtype_policy():
    import torch

    from quadmix_assets.scoring.transformer_common import inference_dtype

    assert pick_device("cpu") == "cpu"
    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert inference_dtype("cpu") == torch.float32
    assert inference_dtype("cuda:0") == torch.bfloat16


def test_pad_batch_left_and_right():
    ids, mask = pad_batch([[1, 2, 3], [4]], 0, left=True)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_batch([[1, 2, 3], [4]], 9, left=False)
    assert ids.tolist() == [[1, 2, 3], [4, 9, 9]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_model_version_tracks_bytes(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    v1 = model_version(tmp_path)
    assert v1 == model_version(tmp_path) and v1.startswith("sha256:")
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert model_version(tmp_path) != v1
    assert model_version(tmp_path, extra={"max_length": 1}) != model_version(tmp_path, extra={"max_length": 2})
    assert model_version("org/name") != model_version("org/other")
