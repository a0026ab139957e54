"""Training-ready exports of a mixture (no Dagster): text shards with copies expanded, and a tokenized
flat binary with an index."""

from quadmix_assets.export.training_export import ExportSummary, export_mixture, read_tokenized

__all__ = ["ExportSummary", "export_mixture", "read_tokenized"]
