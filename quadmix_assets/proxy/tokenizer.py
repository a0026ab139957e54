"""Byte-level BPE tokenizer for the proxy models (HF ``tokenizers``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

EOS = "<|endoftext|>"


def train_bpe_tokenizer(texts_iter: Iterable[str], vocab_size: int, seed: int = 0):
    """Train a byte-level BPE tokenizer. Deterministic: the BPE trainer is deterministic for a given text
    order and vocab size (``seed`` is recorded for provenance; the trainer has no randomness). Special
    token ``<|endoftext|>`` gets id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size), special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts_iter, trainer=trainer)
    return tok


def load_tokenizer(path_or_name: str | os.PathLike):
    """A ``tokenizer.json`` file, a folder holding one, or (else) a pretrained name/folder loaded with
    ``transformers.AutoTokenizer`` whose backing fast tokenizer is returned."""
    p = Path(path_or_name)
    from tokenizers import Tokenizer

    if p.is_file() and p.suffix == ".json":
        return Tokenizer.from_file(str(p))
    if p.is_dir() and (p / "tokenizer.json").exists():
        return Tokenizer.from_file(str(p / "tokenizer.json"))
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(path_or_name))
    return hf.backend_tokenizer


def eos_id(tokenizer) -> int:
    for t in (EOS, "</s>", "<eos>", "<|end_of_text|>"):
        i = tokenizer.token_to_id(t)
        if i is not None:
            return int(i)
    raise ValueError("tokenizer has no end-of-text token")


def token_dtype(vocab_size: int):
    return np.uint16 if int(vocab_size) <= 65536 else np.uint32
