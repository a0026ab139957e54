"""A self-contained export (the library, no Dagster): the tokenizer ships beside ``tokens.bin`` /
``tokens.idx``, named by relative path with its checksum; the shipped file alone (Hugging Face ``tokenizers``,
nothing of quadmix) decodes every sequence back to its text, ``transformers`` loads the folder as a
tokenizer with the end-of-document token as EOS, Megatron-Core's own ``IndexedDataset`` reads the tokens,
and every text part carries its provenance. Another tokenizer changes the tokens and the tokenizer files,
never the text parts."""

from __future__ import annotations

import gzip
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from quadmix_assets import settings as env
from quadmix_assets.export import export_mixture, load_export_tokenizer
from quadmix_assets.proxy.tokenizer import train_bpe_tokenizer
from quadmix_assets.storage import StorageRoot

CORPUS = env.data_dir() + "/corpus/webtext/shard-00000.jsonl.gz"
PROVENANCE = {"producer": "test", "inputs": {"mixture_manifest": {"sha256": "ab" * 32}}}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for _, line in zip(range(30), fh)]


def _manifest(n: int) -> pa.Table:
    rows = list(range(0, n, 2))
    return pa.table({"id": [f"d{r}" for r in rows], "shard": ["s"] * len(rows), "row": rows,
                     "copies": [(r % 3) for r in rows]})


def _export(tmp_path, name, texts, tokenizer):
    out = tmp_path / name
    summary = export_mixture(_manifest(len(texts)), lambda s, rows: [texts[r] for r in rows], tokenizer, out,
                             seed="self-contained", batch_docs=4, rows_per_part=5, provenance=PROVENANCE)
    return out, summary


def _decode_alone(out) -> tuple[list[str], list[str]]:
    """(decoded, expected) texts of every sequence, from the folder's own files only: the manifest-style
    summary is not used; the tokenizer file and its config are."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    config = json.loads((out / "tokenizer_config.json").read_text())
    eos = tok.token_to_id(config["eos_token"])
    ds = IndexedDataset(str(out / "tokens"))
    text = pa.concat_tables([pq.read_table(p) for p in sorted((out / "text").glob("part-*.parquet"))])
    assert len(ds) == text.num_rows
    decoded = []
    for i in range(len(ds)):
        ids = ds[i].tolist()
        assert ids[-1] == eos and eos not in ids[:-1]
        decoded.append(tok.decode(ids[:-1], skip_special_tokens=False))
    return decoded, text["text"].to_pylist()


def test_the_export_decodes_with_its_shipped_tokenizer_alone(tmp_path, texts):
    bpe = train_bpe_tokenizer(texts, vocab_size=600)
    out, summary = _export(tmp_path, "bpe", texts, bpe)
    assert summary.tokenizer_files == ["tokenizer.json", "tokenizer_config.json"]
    for rel in [*summary.text_parts, "tokens.bin", "tokens.idx", *summary.tokenizer_files]:
        assert summary.files[rel]["sha256"] == hashlib.sha256((out / rel).read_bytes()).hexdigest(), rel
    decoded, expected = _decode_alone(out)
    assert decoded == expected  # byte-level BPE: every document back to its exact text
    # transformers loads the folder itself as a tokenizer: Megatron-LM's HuggingFaceTokenizer does the same
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(out))
    assert hf.eos_token_id == summary.eos_id and hf.eos_token == summary.eos_token
    assert hf(expected[0], add_special_tokens=False)["input_ids"] == bpe.encode(expected[0]).ids
    # every text part carries its provenance, the storage layer's way
    root = StorageRoot(str(out))
    assert len(summary.text_parts) > 1
    assert all(root.provenance(p) == PROVENANCE for p in summary.text_parts)
    # same inputs, same bytes
    again, _ = _export(tmp_path, "bpe-again", texts, bpe)
    for rel in summary.files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_another_tokenizer_changes_tokens_and_tokenizer_files_not_the_text(tmp_path, texts):
    bpe_out, bpe = _export(tmp_path, "bpe", texts, train_bpe_tokenizer(texts, vocab_size=600))
    smol = load_export_tokenizer("bundled:smollm2")
    out, summary = _export(tmp_path, "smollm2", texts, smol)
    assert summary.vocab_size == smol.vocab_size and summary.eos_token == smol.backend.id_to_token(smol.eos_id)
    decoded, expected = _decode_alone(out)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    for got, want in zip(decoded, expected):  # exact, or (a normalising tokenizer) the same tokens again
        assert got == want or tok.encode(got, add_special_tokens=False).ids == tok.encode(want, add_special_tokens=False).ids
    assert sum(g == w for g, w in zip(decoded, expected)) >= len(expected) * 0.9
    assert summary.text_parts == bpe.text_parts
    for rel in summary.text_parts:
        assert (out / rel).read_bytes() == (bpe_out / rel).read_bytes(), rel
    for rel in ("tokens.bin", "tokenizer.json"):
        assert (out / rel).read_bytes() != (bpe_out / rel).read_bytes(), rel
