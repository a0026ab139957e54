"""Where things live, from the environment, with defaults that work in a checkout.

Every location is configurable; nothing here is hard-wired to the bundled data.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> str:
    """The real public data (``QUADMIX_DATA_DIR``, default ``../shared/data`` beside the repo)."""
    return os.environ.get("QUADMIX_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))


def default_corpus_glob() -> str:
    """The corpus to label (``QUADMIX_CORPUS``, default the bundled web-text shards)."""
    return os.environ.get("QUADMIX_CORPUS", f"{data_dir()}/corpus/webtext/*.jsonl.gz")


def default_storage_root() -> str:
    """Where assets write Parquet (``QUADMIX_STORAGE``; any fsspec URL, default ``.quadmix/storage``)."""
    return os.environ.get("QUADMIX_STORAGE", str(REPO_ROOT / ".quadmix" / "storage"))


def default_dagster_home() -> str:
    """The persistent Dagster instance (``DAGSTER_HOME``, default ``.quadmix/dagster_home``)."""
    return os.environ.get("DAGSTER_HOME", str(REPO_ROOT / ".quadmix" / "dagster_home"))


#: input limits of the shard reader settable from the environment (README "Bad input"): setting -> variable
LIMIT_VARIABLES = {
    "max_line_bytes": "QUADMIX_MAX_LINE_BYTES",
    "max_shard_bytes": "QUADMIX_MAX_SHARD_BYTES",
    "max_records_per_shard": "QUADMIX_MAX_RECORDS_PER_SHARD",
    "max_json_depth": "QUADMIX_MAX_JSON_DEPTH",
    "max_quarantine_rows": "QUADMIX_MAX_QUARANTINE_ROWS",
}


def read_limits_from_env() -> dict[str, int]:
    """The input limits set in the environment (integers; unset ones are left to the defaults)."""
    out = {}
    for key, var in LIMIT_VARIABLES.items():
        value = os.environ.get(var)
        if value:
            try:
                out[key] = int(value.replace("_", ""))
            except ValueError:
                raise ValueError(f"{var} must be an integer, got {value!r}") from None
    return out
