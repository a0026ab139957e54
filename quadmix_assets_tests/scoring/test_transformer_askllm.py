"""AskLLM scorer: the bundled SmolLM2-135M-Instruct GGUF, prompt construction, batching invariance, and
swap-by-config through a tiny random LLaMA-family model saved locally."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from quadmix_assets.scoring.askllm import (  # noqa: E402
    ASKLLM_PROMPT,
    AskLLMScorer,
    answer_token_ids,
    bundled_smollm2,
)

SHORT_TEXTS = [
    "Photosynthesis is the process by which green plants use sunlight to make glucose from water and carbon dioxide.",
    "click here!!! best casino bonus free spins buy now cheap cheap cheap",
]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def smollm2():
    """The real SmolLM2-135M-Instruct (Q4_1 GGUF dequantised by transformers): ~15-25 s to load here."""
    try:
        bundled_smollm2()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    t0 = time.perf_counter()
    scorer = AskLLMScorer(max_doc_tokens=64, batch_size=2)
    scorer.load_wall_s = time.perf_counter() - t0
    return scorer


def test_smollm2_gguf_gives_probabilities(smollm2):
    p, stats = smollm2.score(SHORT_TEXTS)
    assert p.dtype == np.float32 and p.shape == (2,)
    assert np.all((p > 0) & (p < 1)), p
    assert stats.docs == 2 and stats.tokens > 2 * len(smollm2.prefix_ids)
    assert smollm2.chat  # SmolLM2 has a chat template
    assert smollm2.model.dtype.is_floating_point
    assert smollm2.model_version.startswith("sha256:")
    tok = smollm2.tokenizer
    assert [tok.decode([i]) for i in smollm2.yes_ids] == ["yes", " yes", "Yes", " Yes"]
    assert [tok.decode([i]) for i in smollm2.no_ids] == ["no", " no", "No", " No"]


def test_prompt_is_chat_formatted_and_document_truncated(smollm2):
    tok = smollm2.tokenizer
    long_doc = " ".join(f"word{i}" for i in range(500))
    seq = smollm2.sequences([long_doc, "tiny"])
    doc_tokens = len(seq[0]) - len(smollm2.prefix_ids) - len(smollm2.suffix_ids)
    assert doc_tokens == smollm2.max_doc_tokens
    text = tok.decode(seq[1])
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n")
    assert "###\ntiny\n###\nDoes the previous paragraph demarcated within ### and ###" in text
    assert "OPTIONS:\n- yes\n- no" in text
    assert smollm2.sequences([]) == []


@pytest.fixture(scope="module")
def tiny_llama_dirs(smollm2, tmp_path_factory):
    """A tiny random LlamaForCausalLM with SmolLM2's tokenizer, saved with save_pretrained (chat and plain)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm2.tokenizer
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    root = tmp_path_factory.mktemp("tiny-llama")
    chat_dir, plain_dir = root / "chat", root / "plain"
    model.save_pretrained(chat_dir)
    tok.save_pretrained(chat_dir)
    model.save_pretrained(plain_dir)
    template = tok.chat_template
    try:
        tok.chat_template = None
        tok.save_pretrained(plain_dir)
    finally:
        tok.chat_template = template
    for f in plain_dir.glob("chat_template*"):
        f.unlink()
    return chat_dir, plain_dir


def test_swap_causal_lm_by_config(tiny_llama_dirs, corpus):
    chat_dir, _ = tiny_llama_dirs
    scorer = AskLLMScorer(chat_dir, max_doc_tokens=48, batch_size=4)
    assert scorer.chat
    texts = [d["text"] for d in corpus[:9]] + ["short one"]
    p, stats = scorer.score(texts)
    assert p.shape == (10,) and np.all((p > 0) & (p < 1)) and stats.docs == 10
    # length-bucketed, left-padded batches give the one-document-at-a-time results, in input order
    single = np.array([scorer.score([t])[0][0] for t in texts])
    np.testing.assert_allclose(p, single, atol=1e-5)
    # and the same as a plain forward pass of the saved model over the same prompt
    import torch
    from transformers import AutoModelForCausalLM

    ref_model = AutoModelForCausalLM.from_pretrained(str(chat_dir)).eval()
    seq = scorer.sequences(texts[:1])[0]
    with torch.inference_mode():
        z = ref_model(torch.tensor([seq])).logits[0, -1]
    yes, no = torch.logsumexp(z[scorer.yes_ids], 0), torch.logsumexp(z[scorer.no_ids], 0)
    assert abs(float(torch.sigmoid(yes - no)) - p[0]) < 1e-5
    assert scorer.model_version != AskLLMScorer(chat_dir, max_doc_tokens=32).model_version


def test_causal_lm_without_chat_template(tiny_llama_dirs):
    _, plain_dir = tiny_llama_dirs
    scorer = AskLLMScorer(plain_dir, max_doc_tokens=16)
    assert not scorer.chat
    text = scorer.tokenizer.decode(scorer.sequences(["hello world"])[0])
    assert text.rstrip().endswith("- no\nAnswer:") and "###\nhello world\n###" in text
    p, _ = scorer.score(SHORT_TEXTS)
    assert np.all((p > 0) & (p < 1))


def test_answer_tokens_and_prompt_validation(smollm2):
    ids = answer_token_ids(smollm2.tokenizer, ["yes", "yes", " yes"])
    assert len(ids) == 2
    assert "{document}" in ASKLLM_PROMPT
    with pytest.raises(ValueError, match="document"):
        AskLLMScorer(prompt="no placeholder")  # rejected before any model is loaded
