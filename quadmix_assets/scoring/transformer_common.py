"""Shared pieces of the transformer quality scorers (Edu-style encoder, AskLLM): device and dtype policy,
length-bucketed batching, throughput statistics, model versions and the bundled-weights packages.

* :func:`pick_device`: ``"cuda"`` when a GPU is visible, else ``"cpu"`` (an explicit device wins).
* :func:`inference_dtype`: bf16 on CUDA, fp32 on the CPU (bf16 matmuls on most CPUs are slower
  than fp32 and lose precision for nothing).
* :func:`length_bucketed_batches`: documents sorted by token length (longest first, stable), then cut
  into batches of ``batch_size``; each batch pads only to its own longest member, so padding waste is
  small. Scorers scatter each batch's results back to the input positions, so outputs are always in
  input order.
* :class:`InferenceStats`: documents, (non-padding) tokens and wall seconds of a scoring call, with
  docs/s and tokens/s; one per shard in the pipeline.

On a CPU, batching pays through threading: a one-document forward pass parallelises poorly over
torch's intra-op threads (and collapses when the cores are shared), a batch of 8-32 keeps them busy. On
this project's 2-core shared machine (``benchmarks/transformer_scorers.py``, torch default 2 threads)
batched scoring ran 2.0x (MiniLM, batch 32) and 1.84x (SmolLM2-135M AskLLM, batch 8) the docs/s of a
one-at-a-time loop over the same model; pinned to ONE thread both are compute-bound and batching is
neutral (0.88x / 0.99x). On a GPU, batching and bf16 are where the throughput comes from.

``torch.set_num_threads`` is left to the caller (a Dagster op, the benchmark, a test): a library must
not change a process-wide setting behind its user's back.

The bundled offline weights come in pip packages installed with ``--no-deps`` (their own imports would
fail), so they are located with :func:`package_folder` without importing them.
"""

from __future__ import annotations

import contextlib

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: files whose bytes define a model folder's version (weights + config + tokenizer)
_VERSION_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "config.json", "tokenizer.json", "vocab.txt",
                  "tokenizer_config.json", "merges.txt", "vocab.json", "chat_template.jinja")


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else ``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def inference_dtype(device: str):
    """bf16 on CUDA devices, fp32 anywhere else."""
    import torch

    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def length_bucketed_batches(token_lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index arrays of batches of documents of similar length (longest first; ties keep input order).

    Every index ``0..n-1`` appears in exactly one batch; each batch holds at most ``batch_size`` indices.
    """
    lengths = np.asarray(token_lengths, dtype=np.int64).ravel()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, lengths.size, batch_size)]


@dataclass
class InferenceStats:
    """Throughput of one scoring call: documents, non-padding tokens, wall seconds."""

    docs: int = 0
    tokens: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    batch_size: int = 0

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds if self.seconds > 0 else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    def __add__(self, other: "InferenceStats") -> "InferenceStats":
        return InferenceStats(
            self.docs + other.docs, self.tokens + other.tokens, self.seconds + other.seconds,
            self.device, max(self.batch_size, other.batch_size),
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d["docs_per_s"] = self.docs_per_s
        d["tokens_per_s"] = self.tokens_per_s
        return d


def package_folder(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {package!r} package is not installed (see the Makefile's --no-deps installs)")
    return Path(list(spec.submodule_search_locations)[0])


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def model_version(model: str | os.PathLike, *, files: Iterable[str] | None = None, extra: dict | None = None) -> str:
    """``sha256:<hex>`` of a model.

    For a local folder: the bytes of its weight files, config and tokenizer files (``files`` restricts it to
    the named files, e.g. one GGUF file), each prefixed with its name. For a hub name (resolved from the
    local cache, never downloaded here): the name itself, so the version changes when the name does.
    ``extra`` (scoring parameters such as truncation) is hashed in as canonical JSON.
    """
    h = hashlib.sha256()
    p = Path(model)
    if p.is_dir():
        if files is not None:
            paths = sorted({p / f for f in files} | {q for q in (p / "config.json",) if q.is_file()})
        else:
            paths = sorted({q for g in _VERSION_GLOBS for q in p.glob(g) if q.is_file()})
        for q in paths:
            h.update(q.name.encode() + b"\x00")
            _hash_file(h, q)
    elif p.is_file():
        h.update(p.name.encode() + b"\x00")
        _hash_file(h, p)
    else:
        h.update(b"name\x00" + str(model).encode())
    if extra:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return "sha256:" + h.hexdigest()


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, *, left: bool):
    """``(input_ids, attention_mask)`` int64 tensors for token id lists, padded right (or left)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if not len(s):
            continue
        t = torch.as_tensor(list(s), dtype=torch.long)
        if left:
            ids[r, width - len(s):] = t
            mask[r, width - len(s):] = 1
        else:
            ids[r, : len(s)] = t
            mask[r, : len(s)] = 1
    return ids, mask


@contextlib.contextmanager
def quiet_progress_bars():
    """No tqdm bars from transformers / huggingface_hub while loading a model; the previous settings are
    restored afterwards. transformers' GGUF de-quantisation calls ``tqdm`` directly (not through its own
    progress-bar switch), so its module's ``tqdm`` is swapped for a disabled one for the duration."""
    import functools
    import importlib

    from transformers.utils import logging as hf_logging

    try:
        gguf_mod = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:  # pragma: no cover - no gguf support installed
        gguf_mod = None
    gguf_tqdm = getattr(gguf_mod, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_mod.tqdm = functools.partial(gguf_tqdm, disable=True)

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    except ImportError:  # pragma: no cover - older hub
        are_progress_bars_disabled = disable_progress_bars = enable_progress_bars = None
    hub_was_disabled = are_progress_bars_disabled() if are_progress_bars_disabled else True
    if disable_progress_bars:
        disable_progress_bars()
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_mod.tqdm = gguf_tqdm
        if was:
            hf_logging.enable_progress_bar()
        if enable_progress_bars and not hub_was_disabled:
            enable_progress_bars()
