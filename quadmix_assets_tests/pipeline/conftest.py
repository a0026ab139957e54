"""One small real run of the whole graph, shared by the pipeline tests (test preset, 2 real shards)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance

from quadmix_assets import settings as env
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.runner import run_pipeline

CORPUS = Path(env.data_dir()) / "corpus" / "webtext"


def evaluate_sensor(sensor, **context):
    """One tick of ``sensor`` as the daemon evaluates it: its resources (the settings resource holds the
    storage lock in a run, so it has a setup and a teardown) are opened for the tick and closed after."""
    from dagster import build_sensor_context

    with build_sensor_context(**context) as ctx:
        return sensor(ctx)


def assert_same_export(a, b, mixture_id: str) -> None:
    """The export of ``mixture_id`` under storage roots ``a`` and ``b`` is the same files, byte for byte,
    and so are the search's records that chose it."""
    from quadmix_assets.storage import layout

    files = a.list(layout.export_dir(mixture_id))
    assert len(files) >= 4 and sorted(files) == sorted(b.list(layout.export_dir(mixture_id)))
    for rel in files + [layout.searched_configs(), layout.search_result(), layout.regressor_report()]:
        assert a.read_bytes(rel) == b.read_bytes(rel), rel


def make_settings(corpus_glob: str, storage: Path, **kw) -> QuadmixSettings:
    return QuadmixSettings.from_env(corpus_glob=corpus_glob, storage_root=str(storage), preset="test", **kw)


@pytest.fixture(scope="session")
def two_shard_corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    for name in ("shard-00000.jsonl.gz", "shard-00001.jsonl.gz"):
        shutil.copy(CORPUS / name, d / name)
    return d


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, two_shard_corpus):
    """The pipeline run once on two real shards; returns (settings, instance, summary, log lines)."""
    root = tmp_path_factory.mktemp("run")
    settings = make_settings(str(two_shard_corpus / "*.jsonl.gz"), root / "storage")
    lines: list[str] = []
    (root / "home").mkdir()
    instance = DagsterInstance.local_temp(str(root / "home"))
    summary = run_pipeline(settings, instance, log=lines.append, jobs=2)  # shards and mixtures in 2 worker processes
    yield settings, instance, summary, lines
    instance.dispose()


@pytest.fixture(scope="session")
def tiny_transformers(tmp_path_factory) -> dict:
    """Tiny randomly initialised models of the production families, saved like hub models: a BERT
    encoder (MiniLM's tokenizer) and a LLaMA causal LM (SmolLM2's tokenizer). Configuring them in place
    of the bundled models exercises the swap-by-config path of the pipeline, and keeps tests fast."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from quadmix_assets.scoring.askllm import bundled_smollm2
    from quadmix_assets.scoring.edu_scorer import bundled_minilm_path

    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    bert_tok = AutoTokenizer.from_pretrained(str(bundled_minilm_path()))
    bert = BertModel(
        BertConfig(vocab_size=len(bert_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    )
    bert.save_pretrained(root / "bert")
    bert_tok.save_pretrained(root / "bert")
    folder, gguf = bundled_smollm2()
    llama_tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(llama_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
            bos_token_id=llama_tok.bos_token_id, eos_token_id=llama_tok.eos_token_id, pad_token_id=llama_tok.pad_token_id,
        )
    )
    llama.save_pretrained(root / "llama")
    llama_tok.save_pretrained(root / "llama")
    return {"edu_encoder": str(root / "bert"), "askllm_model": str(root / "llama")}
