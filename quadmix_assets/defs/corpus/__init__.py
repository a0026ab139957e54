"""Corpus: the ``documents`` of every shard (normalised, deduplicated within the shard) and its check."""
