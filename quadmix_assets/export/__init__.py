"""Training-ready exports of a mixture (no Dagster): text shards with copies expanded, and a Megatron-LM
indexed dataset (``tokens.bin`` + ``tokens.idx``) tokenized with any Hugging Face tokenizer."""

from quadmix_assets.export.megatron import MegatronWriter, megatron_dtype, read_megatron
from quadmix_assets.export.tokenizer import ExportTokenizer, as_export_tokenizer, load_export_tokenizer
from quadmix_assets.export.training_export import ExportSummary, export_mixture, read_tokenized, write_tokenizer

__all__ = [
    "ExportSummary", "ExportTokenizer", "MegatronWriter", "as_export_tokenizer", "export_mixture", "load_export_tokenizer",
    "megatron_dtype", "read_megatron", "read_tokenized", "write_tokenizer",
]
