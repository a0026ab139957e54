"""The export's Megatron indexed dataset, read back with Megatron-Core's own ``IndexedDataset`` (the reader
Megatron-LM trains from; installed from PyPI, no code shared with the writer), tokenized with a second
Hugging Face tokenizer (the bundled MiniLM WordPiece) and with the proxies' BPE."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from quadmix_assets import settings as env
from quadmix_assets.export import export_mixture, load_export_tokenizer, read_tokenized
from quadmix_assets.proxy.tokenizer import train_bpe_tokenizer

CORPUS = env.data_dir() + "/corpus/webtext/shard-00000.jsonl.gz"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for _, line in zip(range(40), fh)]


def _manifest(n: int) -> pa.Table:
    rows = list(range(0, n, 3))
    return pa.table({"id": [f"d{r}" for r in rows], "shard": ["s"] * len(rows), "row": rows,
                     "copies": [(r % 4) for r in rows]})  # 0 to 3 copies, 0 = not drawn


def _read_all(out, summary):
    text = pa.concat_tables([pq.read_table(out / p) for p in summary.text_parts])
    return text, IndexedDataset(str(out / summary.tokens_prefix))


def test_megatron_export_with_a_second_tokenizer_reads_back_in_megatron(tmp_path, texts):
    tok = load_export_tokenizer("bundled:minilm")
    assert tok.vocab_size == 30522 and tok.eos_id == 102  # WordPiece; [SEP] ends each document
    manifest = _manifest(len(texts))
    out = tmp_path / "export"
    summary = export_mixture(manifest, lambda s, rows: [texts[r] for r in rows], tok, out, seed="m", batch_docs=5)
    text, ds = _read_all(out, summary)
    copies = int(manifest["copies"].to_numpy().sum())
    # token and sequence counts agree with the mixture manifest and the export's own summary
    assert len(ds) == summary.occurrences == copies == text.num_rows
    assert int(ds.sequence_lengths.astype(np.int64).sum()) == summary.tokens
    assert ds.document_indices.tolist() == list(range(copies + 1))
    assert ds.index.dtype == np.uint16 and summary.token_dtype == "uint16"
    # every sequence is its text's WordPiece ids (no [CLS], no truncation at 128/512) then [SEP]
    from transformers import AutoTokenizer

    from quadmix_assets.scoring.edu_scorer import bundled_minilm_path

    hf = AutoTokenizer.from_pretrained(str(bundled_minilm_path()))
    long_docs = 0
    for i, t in enumerate(text["text"].to_pylist()):
        want = hf(t, add_special_tokens=False, truncation=False)["input_ids"] + [hf.sep_token_id]
        assert ds[i].tolist() == want
        long_docs += len(want) > 512
    assert long_docs > 0  # documents longer than the model's window are kept whole
    # per document: every copy has the same tokens
    by_id = {}
    for i, d in enumerate(text["id"].to_pylist()):
        by_id.setdefault(d, set()).add(tuple(ds[i].tolist()))
    assert all(len(v) == 1 for v in by_id.values())
    assert {d: c for d, c in zip(manifest["id"].to_pylist(), manifest["copies"].to_pylist()) if c} == \
        {d: text["id"].to_pylist().count(d) for d in by_id}
    # the library's own reader agrees with Megatron's
    tokens, index = read_tokenized(out)
    assert all(tokens[index[i]:index[i + 1]].tolist() == ds[i].tolist() for i in range(len(ds)))


def test_megatron_export_with_the_proxy_bpe(tmp_path, texts):
    bpe = train_bpe_tokenizer(texts, vocab_size=400)
    manifest = _manifest(len(texts))
    summary = export_mixture(manifest, lambda s, rows: [texts[r] for r in rows], bpe, tmp_path / "x", seed=3)
    text, ds = _read_all(tmp_path / "x", summary)
    assert len(ds) == text.num_rows == summary.occurrences
    for i, t in enumerate(text["text"].to_pylist()):
        seq = ds[i].tolist()
        assert seq[-1] == summary.eos_id == bpe.token_to_id("<|endoftext|>")
        assert bpe.decode(seq[:-1]) == t


def test_megatron_dtype_follows_megatron(tmp_path):
    from quadmix_assets.export import megatron_dtype

    assert megatron_dtype(65499).name == "uint16" and megatron_dtype(65500).name == "int32"
    assert megatron_dtype(151_646).name == "int32"


def test_unknown_tokenizer_names_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="nothing is downloaded"):
        load_export_tokenizer("no-such-org/no-such-tokenizer-xyz")
