"""Megatron-LM's indexed dataset (``MMIDIDX``): ``<prefix>.bin`` + ``<prefix>.idx``, what Megatron-Core's
``IndexedDataset``, NeMo and datatrove's Megatron tokenizer output read and write.

Written from the published layout (``megatron/core/datasets/indexed_dataset.py``, version 1):

``.bin``: the token ids of every sequence, concatenated, in the index's dtype (little-endian).

``.idx``: ``b"MMIDIDX\\x00\\x00"``; ``<Q`` version 1; ``<B`` dtype code (1 uint8, 2 int8, 3 int16, 4 int32,
5 int64, 6 float64, 7 float32, 8 uint16); ``<Q`` sequence count ``n``; ``<Q`` document count ``d``
(``len(document_indices)``); ``n`` int32 sequence lengths; ``n`` int64 byte offsets of the sequences in
``.bin``; ``d`` int64 document indices (sequence index where each document starts, then ``n``).

Here every document occurrence is one sequence and one document (``document_indices = 0, 1, ..., n``),
its end-of-document token included, as Megatron's ``preprocess_data.py --append-eod`` writes it. The dtype
is Megatron's choice for the vocabulary: uint16 below 65,500 ids, else int32.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["MMIDIDX_HEADER", "DTYPE_CODES", "megatron_dtype", "MegatronWriter", "read_megatron"]

MMIDIDX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
DTYPE_CODES: dict[str, int] = {
    "uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "float64": 6, "float32": 7, "uint16": 8,
}


def megatron_dtype(vocab_size: int) -> np.dtype:
    """Megatron's ``DType.optimal_dtype``: uint16 for fewer than 65,500 ids, else int32."""
    return np.dtype(np.uint16 if int(vocab_size) < 65500 else np.int32).newbyteorder("<")


class MegatronWriter:
    """Streams documents into ``<prefix>.bin``; :meth:`close` writes ``<prefix>.idx``. Same documents in
    the same order give the same bytes."""

    def __init__(self, prefix: str | Path, dtype: np.dtype | str):
        self.dtype = np.dtype(dtype).newbyteorder("<")
        if self.dtype.name not in DTYPE_CODES:
            raise ValueError(f"dtype {self.dtype} has no Megatron code")
        self.prefix = Path(prefix)
        self._bin = open(self.prefix.with_suffix(".bin"), "wb")
        self._lengths: list[np.ndarray] = []
        self.tokens = 0

    def add_documents(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents given as their concatenated tokens and the length of each."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(flat):
            raise ValueError(f"{len(flat)} tokens for lengths summing to {int(lengths.sum())}")
        if lengths.size and int(lengths.max()) > np.iinfo(np.int32).max:
            raise ValueError("a document longer than 2**31 - 1 tokens does not fit a Megatron index")
        info = np.iinfo(self.dtype)
        if len(flat) and (int(np.max(flat)) > info.max or int(np.min(flat)) < info.min):
            raise ValueError(f"token ids outside {self.dtype.name}")
        self._bin.write(np.asarray(flat).astype(self.dtype).tobytes())
        self._lengths.append(lengths.astype(np.int32))
        self.tokens += int(lengths.sum())

    def close(self) -> None:
        self._bin.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int32)
        n = int(lengths.size)
        pointers = np.zeros(n, dtype=np.int64)
        if n:
            pointers[1:] = np.cumsum(lengths[:-1].astype(np.int64)) * self.dtype.itemsize
        with open(self.prefix.with_suffix(".idx"), "wb") as fh:
            fh.write(MMIDIDX_HEADER)
            fh.write(struct.pack("<Q", INDEX_VERSION))
            fh.write(struct.pack("<B", DTYPE_CODES[self.dtype.name]))
            fh.write(struct.pack("<Q", n))
            fh.write(struct.pack("<Q", n + 1))
            fh.write(lengths.astype("<i4").tobytes())
            fh.write(pointers.astype("<i8").tobytes())
            fh.write(np.arange(n + 1, dtype="<i8").tobytes())


def read_megatron(prefix: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens, lengths, pointers)`` of ``<prefix>.bin/.idx``, the tokens memory-mapped (checks header,
    version, and that the index covers the ``.bin`` exactly)."""
    prefix = Path(prefix)
    raw = prefix.with_suffix(".idx").read_bytes()
    if raw[:9] != MMIDIDX_HEADER:
        raise ValueError(f"{prefix}.idx is not a Megatron MMIDIDX index")
    version, code = struct.unpack_from("<QB", raw, 9)
    if version != INDEX_VERSION:
        raise ValueError(f"{prefix}.idx: index version {version}, expected {INDEX_VERSION}")
    names = {v: k for k, v in DTYPE_CODES.items()}
    dtype = np.dtype(names[code]).newbyteorder("<")
    n, _d = struct.unpack_from("<QQ", raw, 18)
    lengths = np.frombuffer(raw, dtype="<i4", count=n, offset=34)
    pointers = np.frombuffer(raw, dtype="<i8", count=n, offset=34 + 4 * n)
    tokens = np.memmap(prefix.with_suffix(".bin"), dtype=dtype, mode="r") if prefix.with_suffix(".bin").stat().st_size \
        else np.zeros(0, dtype)
    if int(lengths.astype(np.int64).sum()) != len(tokens):
        raise ValueError(f"{prefix}.idx covers {int(lengths.sum())} tokens, {prefix}.bin holds {len(tokens)}")
    return tokens, lengths, pointers
