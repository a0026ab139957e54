"""What the benchmarks that re-run a stage of a finished ``quadmix run`` share: its arguments, and its
settings and Dagster instance opened from them."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """``--storage``, ``--dagster-home``, ``--corpus`` and ``--preset`` of the finished run."""
    ap.add_argument("--storage", required=True)
    ap.add_argument("--dagster-home", required=True)
    ap.add_argument("--corpus", default=None, help="the run's corpus glob (default: the bundled web text)")
    ap.add_argument("--preset", default="test")


def open_run(args: argparse.Namespace, **overrides):
    """The run's settings (with ``overrides``) and its instance."""
    from dagster import DagsterInstance

    from quadmix_assets import settings as env
    from quadmix_assets.dagster_support.resources import QuadmixSettings

    corpus = args.corpus or str(Path(env.data_dir()) / "corpus" / "webtext" / "*.jsonl.gz")
    settings = QuadmixSettings.from_env(corpus_glob=corpus, storage_root=args.storage, preset=args.preset, **overrides)
    return settings, DagsterInstance.from_config(args.dagster_home)
