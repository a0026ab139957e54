"""One small real run of the whole graph, shared by the pipeline tests (test preset, 2 real shards)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance

from quadmix_assets import settings as env
from quadmix_assets.defs.resources import QuadmixSettings
from quadmix_assets.runner import run_pipeline

CORPUS = Path(env.data_dir()) / "corpus" / "webtext"


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
    summary = run_pipeline(settings, instance, log=lines.append)
    yield settings, instance, summary, lines
    instance.dispose()
