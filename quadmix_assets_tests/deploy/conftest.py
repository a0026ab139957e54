"""Fixtures of the deploy tests: a tiny real corpus, settings, a dummy kubeconfig."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from quadmix_assets import settings as env
from quadmix_assets.dagster_support.resources import QuadmixSettings

SHARD = Path(env.data_dir()) / "corpus" / "webtext" / "shard-00000.jsonl.gz"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """One shard of 40 real web documents (the first lines of the bundled shard-00000)."""
    d = tmp_path_factory.mktemp("tiny-corpus")
    with gzip.open(SHARD, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(40)]
    with gzip.open(d / "tiny-00000.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(lines)
    return d


def tiny_settings(corpus: Path, storage: str) -> QuadmixSettings:
    return QuadmixSettings.from_env(corpus_glob=str(corpus / "*.jsonl.gz"), storage_root=storage, preset="test")


@pytest.fixture
def dummy_kubeconfig(tmp_path) -> str:
    """A kubeconfig that dagster-k8s can load; nothing ever connects to it."""
    p = tmp_path / "kubeconfig"
    p.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:9'}\n"
        "users:\n- name: u\n  user: {token: unused}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\n"
        "current-context: c\n"
    )
    return str(p)
