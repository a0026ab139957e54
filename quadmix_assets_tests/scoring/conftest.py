"""Shared fixtures for the scoring tests: a small slice of the real corpus (3 of 16 shards, ~2.7k docs).

Data are read with gzip + json straight from ``quadmix_assets.settings.data_dir()`` (honours
``QUADMIX_DATA_DIR``); nothing is copied into the repository. Tests skip when the data are absent.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from quadmix_assets.settings import data_dir

N_SHARDS = 3


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(data_dir())
    if not (root / "corpus" / "webtext").is_dir():
        pytest.skip(f"real data not found under {root} (set QUADMIX_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def corpus(data_root) -> list[dict]:
    """Documents of the first three shards: dicts with id, url, text, source."""
    shards = sorted((data_root / "corpus" / "webtext").glob("shard-*.jsonl.gz"))[:N_SHARDS]
    assert len(shards) == N_SHARDS
    docs: list[dict] = []
    for shard in shards:
        with gzip.open(shard, "rt", encoding="utf-8") as fh:
            docs.extend(json.loads(line) for line in fh if line.strip())
    return docs


@pytest.fixture(scope="session")
def topic_labels(data_root) -> dict[str, int]:
    from quadmix_assets.scoring.domain_classifier import load_topic_labels

    return load_topic_labels(data_root)


@pytest.fixture(scope="session")
def topic_docs(corpus, topic_labels) -> list[dict]:
    """The corpus documents that have a WebOrganizer topic label."""
    return [d for d in corpus if d["id"] in topic_labels]


@pytest.fixture(scope="session")
def human_labels(data_root):
    from quadmix_assets.scoring.evaluation import load_dclm_human_labels

    return load_dclm_human_labels(data_root)


@pytest.fixture(scope="session")
def reference_corpus(data_root) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of the whole bundled reference corpus, as the pipeline's model assets read it."""
    from quadmix_assets.scoring.reference_data import load_reference_corpus

    ref = load_reference_corpus(data_root)
    return ref["id"].to_pylist(), ref["text"].to_pylist()


@pytest.fixture(scope="session")
def dclm_trained(reference_corpus, data_root):
    """(model, report) of the DCLM-style classifier trained on the whole reference corpus (default params; the
    pipeline's training set, about 2.8k documents: the 3-shard slice holds too few positives, ~470)."""
    from quadmix_assets.scoring.dclm_classifier import train_dclm_classifier

    return train_dclm_classifier(*reference_corpus, data_root, seed=0)


@pytest.fixture(scope="session")
def domain_trained(topic_docs, topic_labels):
    """(model, report) of the topic classifier trained on the small corpus (default params)."""
    from quadmix_assets.scoring.domain_classifier import train_domain_classifier

    return train_domain_classifier(
        [d["text"] for d in topic_docs], [topic_labels[d["id"]] for d in topic_docs], [d["id"] for d in topic_docs]
    )


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch intra-op thread for a test module (the machine is small and shared; OpenMP spin-waits
    make more threads slower), restored afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
