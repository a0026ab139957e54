"""The training export: copies expanded, tokens and index agree with the texts, same inputs same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quadmix_assets.export import export_mixture, read_tokenized
from quadmix_assets.proxy.tokenizer import train_bpe_tokenizer

TEXTS = {
    "a": ["the cat sat on the mat", "a dog ran", "ünïcödé text ✓", "numbers 123 456"],
    "b": ["second shard first doc", "second shard second doc"],
}


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer([t for v in TEXTS.values() for t in v] * 5, vocab_size=300)


def _manifest():
    return pa.table({
        "id": ["a0", "a2", "b1", "a3"],
        "shard": ["a", "a", "b", "a"],
        "row": [0, 2, 1, 3],
        "copies": [3, 1, 2, 0],
    })


def _read(shard, rows):
    return [TEXTS[shard][r] for r in rows]


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_expands_copies_and_round_trips(tmp_path, tokenizer):
    s = export_mixture(_manifest(), _read, tokenizer, tmp_path / "x", seed=7, rows_per_part=4, batch_docs=2)
    assert s.occurrences == 3 + 1 + 2 and s.documents == 3
    text = pq.read_table([tmp_path / "x" / p for p in s.text_parts]) if len(s.text_parts) == 1 else \
        pa.concat_tables([pq.read_table(tmp_path / "x" / p) for p in s.text_parts])
    assert len(s.text_parts) == 2  # 6 rows, 4 per part
    assert sorted(text["id"].to_pylist()) == sorted(["a0"] * 3 + ["a2"] + ["b1"] * 2)
    copies = {}
    for i, c in zip(text["id"].to_pylist(), text["copy"].to_pylist()):
        copies.setdefault(i, []).append(c)
    assert {k: sorted(v) for k, v in copies.items()} == {"a0": [0, 1, 2], "a2": [0], "b1": [0, 1]}
    tokens, index = read_tokenized(tmp_path / "x")
    assert s.token_dtype == "uint16" and len(index) == s.occurrences + 1 and index[-1] == len(tokens) == s.tokens
    for i, t in enumerate(text["text"].to_pylist()):
        ids = tokens[index[i]:index[i + 1]].tolist()
        assert ids[-1] == s.eos_id
        assert tokenizer.decode(ids[:-1]) == t


def test_export_is_byte_identical_and_seeded(tmp_path, tokenizer):
    export_mixture(_manifest(), _read, tokenizer, tmp_path / "1", seed="s")
    export_mixture(_manifest(), _read, tokenizer, tmp_path / "2", seed="s")
    assert _digest(tmp_path / "1") == _digest(tmp_path / "2")
    orders = set()
    for seed in range(6):
        export_mixture(_manifest(), _read, tokenizer, tmp_path / f"o{seed}", seed=seed)
        orders.add(tuple(pq.read_table(tmp_path / f"o{seed}" / "text" / "part-00000.parquet")["id"].to_pylist()))
    assert len(orders) > 1  # the seed changes the order


def test_export_rejects_bad_manifest(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="copies"):
        export_mixture(_manifest().drop(["copies"]), _read, tokenizer, tmp_path / "bad", seed=0)
