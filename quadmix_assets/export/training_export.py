"""Write a mixture for large-scale training, streaming.

Layout of one export folder:

* ``text/part-00000.parquet`` ...: one row per document *occurrence* (a document drawn with 3 copies
  appears 3 times), in the deterministic shuffled order of :func:`occurrence_order`; columns ``id``,
  ``shard``, ``row``, ``copy`` (0-based occurrence number of that document), ``text``.
  Each part carries its provenance in the Parquet schema metadata under ``quadmix`` (the storage layer's
  convention, :meth:`quadmix_assets.storage.StorageRoot.provenance` reads it) when one is given.
* ``tokens.bin`` + ``tokens.idx``: a Megatron-LM indexed dataset (``MMIDIDX``, see
  :mod:`quadmix_assets.export.megatron`; Megatron's ``--data-path`` is the folder's ``tokens`` prefix):
  one sequence (and one document) per occurrence, in the same order as the text parts, each ending with
  the tokenizer's end-of-document id; uint16 below 65,500 ids, else int32, as Megatron picks.
* ``tokenizer.json`` + ``tokenizer_config.json``: the tokenizer the tokens were made with, shipped beside
  them, so the folder decodes on its own: ``tokenizers.Tokenizer.from_file("tokenizer.json")``, or
  ``transformers.AutoTokenizer.from_pretrained(folder)`` (a ``PreTrainedTokenizerFast`` with the
  end-of-document token as its EOS; Megatron-LM's ``--tokenizer-type HuggingFaceTokenizer
  --tokenizer-model <folder>``).

Any Hugging Face tokenizer can be used (:mod:`quadmix_assets.export.tokenizer`).

Nothing is held in memory beyond one batch of documents.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quadmix_assets.export.megatron import MegatronWriter, megatron_dtype, read_megatron
from quadmix_assets.export.tokenizer import ExportTokenizer, as_export_tokenizer
from quadmix_assets.proxy.stream import occurrence_order
from quadmix_assets.storage.root import PROVENANCE_KEY, canonical_json

TOKENS_PREFIX = "tokens"  # tokens.bin + tokens.idx
TOKENIZER_FILE = "tokenizer.json"  # the tokenizer, as tokenizers.Tokenizer.save writes it
TOKENIZER_CONFIG = "tokenizer_config.json"  # what transformers' AutoTokenizer needs beside it

TEXT_SCHEMA = pa.schema(
    [("id", pa.string()), ("shard", pa.string()), ("row", pa.int64()), ("copy", pa.int32()), ("text", pa.string())]
)


@dataclass
class ExportSummary:
    documents: int  # distinct documents
    occurrences: int  # documents x copies
    tokens: int  # tokens in tokens.bin, EOS included
    token_dtype: str
    vocab_size: int
    eos_id: int
    format: str = "megatron-mmidx-v1"  # tokens.bin + tokens.idx (Megatron-LM IndexedDataset)
    tokens_prefix: str = TOKENS_PREFIX
    text_parts: list[str] = field(default_factory=list)
    # the shipped tokenizer: relative paths of its files and its end-of-document token
    tokenizer_files: list[str] = field(default_factory=list)
    eos_token: str | None = None
    files: dict[str, dict] = field(default_factory=dict)  # relative path -> {"bytes", "sha256"}

    def to_dict(self) -> dict:
        return asdict(self)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_tokenizer(tokenizer: ExportTokenizer, out_dir: str | Path) -> list[str]:
    """Write ``tokenizer`` into ``out_dir`` as ``tokenizer.json`` (the ``tokenizers`` serialisation: padding
    and truncation off, as the export encodes) and ``tokenizer_config.json`` (a ``PreTrainedTokenizerFast``
    whose EOS is the end-of-document token); returns their names. Same tokenizer, same bytes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / TOKENIZER_FILE).write_text(tokenizer.backend.to_str(pretty=True) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": tokenizer.backend.id_to_token(tokenizer.eos_id),
        "model_max_length": 1_000_000_000_000,  # documents are kept whole: no window
        "clean_up_tokenization_spaces": False,
    }
    (out / TOKENIZER_CONFIG).write_text(json.dumps(config, sort_keys=True, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    return [TOKENIZER_FILE, TOKENIZER_CONFIG]


def export_mixture(
    manifest: pa.Table,
    read_texts: Callable[[str, Sequence[int]], list[str]],
    tokenizer,
    out_dir: str | Path,
    *,
    seed: int | str,
    rows_per_part: int = 50_000,
    batch_docs: int = 2048,
    provenance: dict | None = None,
) -> ExportSummary:
    """Export ``manifest`` (columns id, shard, row, copies) into ``out_dir`` (a local folder, created),
    tokenized with ``tokenizer`` (an :class:`ExportTokenizer`, or a ``tokenizers.Tokenizer`` whose
    end-of-text token ends each document), the tokenizer shipped beside the tokens (:func:`write_tokenizer`).
    ``seed`` fixes the occurrence order; ``provenance`` (JSON, nothing time- or host-dependent) goes into
    every text part's schema metadata. Same inputs -> same bytes in every file."""
    for c in ("id", "shard", "row", "copies"):
        if c not in manifest.column_names:
            raise ValueError(f"manifest has no {c!r} column (columns: {manifest.column_names})")
    if rows_per_part < 1 or batch_docs < 1:
        raise ValueError("rows_per_part and batch_docs must be >= 1")
    out = Path(out_dir)
    (out / "text").mkdir(parents=True, exist_ok=True)
    ids = manifest["id"].to_numpy(zero_copy_only=False).astype(str)
    shards = manifest["shard"].to_numpy(zero_copy_only=False).astype(str)
    rows = manifest["row"].to_numpy().astype(np.int64)
    copies = manifest["copies"].to_numpy().astype(np.int64)
    if isinstance(seed, str):
        seed = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "little")
    order = occurrence_order(copies, seed)
    if not isinstance(tokenizer, ExportTokenizer):
        tokenizer = as_export_tokenizer(tokenizer, "tokenizers.Tokenizer")
    vocab = tokenizer.vocab_size
    dtype = megatron_dtype(vocab)
    eos = tokenizer.eos_id
    seen = np.zeros(len(rows), dtype=np.int32)
    total = 0
    parts: list[str] = []
    writer = None
    part_rows = 0

    schema = TEXT_SCHEMA if provenance is None else \
        TEXT_SCHEMA.with_metadata({PROVENANCE_KEY: canonical_json(provenance).encode("utf-8")})

    def open_part():
        name = f"text/part-{len(parts):05d}.parquet"
        parts.append(name)
        return pq.ParquetWriter(out / name, schema, compression="zstd")

    writer_bin = MegatronWriter(out / TOKENS_PREFIX, dtype)
    try:
        for start in range(0, len(order), batch_docs):
            chunk = order[start:start + batch_docs]
            uniq = np.unique(chunk)
            texts: dict[int, str] = {}
            for s in np.unique(shards[uniq]):
                sel = uniq[shards[uniq] == s]
                for i, t in zip(sel, read_texts(str(s), [int(r) for r in rows[sel]])):
                    texts[int(i)] = t
            batch_texts = [texts[int(i)] for i in chunk]
            occ_copy = np.empty(len(chunk), dtype=np.int32)
            for j, i in enumerate(chunk):  # k-th occurrence of each document, in export order
                occ_copy[j] = seen[i]
                seen[i] += 1
            encs = tokenizer.encode_batch(batch_texts)
            lens = np.fromiter((len(e) + 1 for e in encs), dtype=np.int64, count=len(encs))
            flat = np.fromiter((t for e in encs for t in (*e, eos)), dtype=np.int64, count=int(lens.sum()))
            if flat.size and int(flat.max()) >= vocab:
                raise ValueError(f"token id {int(flat.max())} >= vocabulary size {vocab}")
            writer_bin.add_documents(flat, lens)
            total += int(lens.sum())
            table = pa.table(
                {"id": ids[chunk], "shard": shards[chunk], "row": rows[chunk], "copy": occ_copy, "text": batch_texts},
                schema=schema,
            )
            pos = 0
            while pos < table.num_rows:
                if writer is None or part_rows >= rows_per_part:
                    if writer is not None:
                        writer.close()
                    writer, part_rows = open_part(), 0
                take = min(rows_per_part - part_rows, table.num_rows - pos)
                writer.write_table(table.slice(pos, take))
                part_rows += take
                pos += take
    finally:
        writer_bin.close()
    if writer is not None:
        writer.close()
    tokenizer_files = write_tokenizer(tokenizer, out)
    files = {}
    for rel in [*parts, f"{TOKENS_PREFIX}.bin", f"{TOKENS_PREFIX}.idx", *tokenizer_files]:
        p = out / rel
        files[rel] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    return ExportSummary(
        documents=int((copies > 0).sum()), occurrences=int(len(order)), tokens=int(total),
        token_dtype=dtype.name, vocab_size=vocab, eos_id=int(eos), text_parts=parts, tokenizer_files=tokenizer_files,
        eos_token=tokenizer.backend.id_to_token(int(eos)), files=files,
    )


def read_tokenized(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, index)`` of an export folder, the tokens memory-mapped: occurrence ``i`` is
    ``tokens[index[i]:index[i + 1]]`` (its end-of-document id included)."""
    tokens, lengths, _ = read_megatron(Path(folder) / TOKENS_PREFIX)
    index = np.concatenate([[0], np.cumsum(lengths.astype(np.int64))])
    return tokens, index
