"""The labelled reference data the bundled classifiers are trained on, read from ``data_dir``.

It is not the user's corpus: the domain and DCLM-style classifiers learn from the bundled web text and
its WebOrganizer / LLM labels, then label any corpus. Human quality votes are only ever evaluated on.
"""

from __future__ import annotations

import glob
import gzip
import json
import os

import pyarrow as pa

from quadmix_assets.corpus import read_shard


def reference_corpus_glob(data_dir: str) -> str:
    return os.path.join(data_dir, "corpus", "webtext", "*.jsonl.gz")


def load_reference_corpus(data_dir: str) -> pa.Table:
    """``id``, ``text`` (and the other original fields) of every bundled reference document."""
    paths = sorted(glob.glob(reference_corpus_glob(data_dir)))
    if not paths:
        raise FileNotFoundError(
            f"no reference corpus under {reference_corpus_glob(data_dir)!r}: set QUADMIX_DATA_DIR or "
            "configure a pretrained model path instead of training"
        )
    tables = [read_shard(p).documents.select(["id", "text"]) for p in paths]
    return pa.concat_tables(tables)


def load_jsonl_gz(path: str) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
