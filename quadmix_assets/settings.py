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


# Deployment policy -------------------------------------------------------------------------------------
#
# Who may point a run where. Locally (the default) the person running `quadmix` owns the machine and may
# use any folder. In the cluster (``QUADMIX_DEPLOYMENT=cluster``, set in deploy/values.yaml) anyone who can
# launch a run in the UI could otherwise set the settings resource's ``storage_root`` (or corpus, or data
# folder) in the run config and make the code location's credentials write (or read) anywhere they reach.
# There the locations are fixed by the code location's environment: a run may only use
# ``QUADMIX_STORAGE`` / ``QUADMIX_CORPUS`` / ``QUADMIX_DATA_DIR`` themselves, or a location under one of
# the comma-separated prefixes in ``QUADMIX_STORAGE_ALLOWED_PREFIXES`` / ``QUADMIX_CORPUS_ALLOWED_PREFIXES``.
# An allow-list, when set, applies in local mode too.

DEPLOYMENT_ENV = "QUADMIX_DEPLOYMENT"
DEPLOYMENT_MODES = ("local", "cluster")
STORAGE_PREFIXES_ENV = "QUADMIX_STORAGE_ALLOWED_PREFIXES"
CORPUS_PREFIXES_ENV = "QUADMIX_CORPUS_ALLOWED_PREFIXES"


class LocationPolicyError(PermissionError):
    """A storage root, corpus or data folder that this deployment does not allow."""


def deployment_mode(environ: dict | None = None) -> str:
    """``local`` (default) or ``cluster`` (``QUADMIX_DEPLOYMENT``)."""
    e = os.environ if environ is None else environ
    mode = (e.get(DEPLOYMENT_ENV) or "local").strip().lower()
    if mode not in DEPLOYMENT_MODES:
        raise ValueError(f"{DEPLOYMENT_ENV}={mode!r}: expected one of {', '.join(DEPLOYMENT_MODES)}")
    return mode


def allowed_prefixes(variable: str, environ: dict | None = None) -> list[str]:
    """The comma-separated prefixes in ``variable`` (empty when unset)."""
    e = os.environ if environ is None else environ
    return [p.strip() for p in (e.get(variable) or "").split(",") if p.strip()]


def normalise_location(location: str) -> str:
    """A comparable form of a folder, glob prefix or URL: local paths absolute with symlinks resolved,
    ``file://`` URLs as local paths, URLs as ``scheme://`` + the path without repeated or trailing slashes.
    A ``..`` component is refused (it could climb out of any prefix it seems to be under)."""
    loc = str(location).strip()
    if not loc or "\x00" in loc:
        raise LocationPolicyError(f"location {location!r} is refused: it is empty or contains NUL")
    scheme, sep, rest = loc.partition("://")
    if not sep or scheme.lower() in ("file", "local"):
        path = rest if sep else loc
        if any(part == ".." for part in path.split("/")):
            raise LocationPolicyError(f"location {location!r} is refused: it has a '..' component")
        return os.path.realpath(os.path.expanduser(path))
    if any(part == ".." for part in rest.split("/")):
        raise LocationPolicyError(f"location {location!r} is refused: it has a '..' component")
    rest = "/".join(p for p in rest.split("/") if p not in ("", "."))
    return f"{scheme.lower()}://{rest}"


def _glob_base(glob: str) -> str:
    """The folder part of a glob before its first wildcard (``s3://b/corpus/*.jsonl`` -> ``s3://b/corpus``)."""
    for i, ch in enumerate(glob):
        if ch in "*?[":
            return glob[:i].rsplit("/", 1)[0] if "/" in glob[:i] else ""
    return glob


def location_under(location: str, prefixes: list[str]) -> bool:
    """Whether ``location`` is one of ``prefixes`` or lies under one (component-wise)."""
    loc = normalise_location(location)
    for prefix in prefixes:
        base = normalise_location(prefix)
        if loc == base or loc.startswith(base.rstrip("/") + "/"):
            return True
    return False


def check_locations(storage_root: str, corpus_glob: str, data_dir_: str, environ: dict | None = None) -> None:
    """Refuse (:class:`LocationPolicyError`) a storage root, corpus glob or data folder this deployment
    does not allow. Local mode without allow-lists allows everything."""
    e = os.environ if environ is None else environ
    mode = deployment_mode(e)
    storage_prefixes = allowed_prefixes(STORAGE_PREFIXES_ENV, e)
    corpus_prefixes = allowed_prefixes(CORPUS_PREFIXES_ENV, e)
    cluster = mode == "cluster"
    if cluster:
        missing = [v for v in ("QUADMIX_STORAGE", "QUADMIX_CORPUS") if not e.get(v)]
        if missing:
            raise LocationPolicyError(
                f"{DEPLOYMENT_ENV}=cluster needs {' and '.join(missing)} in the code location's environment: "
                "storage and corpus are fixed there, never by run config"
            )
    if cluster or storage_prefixes:
        fixed = e.get("QUADMIX_STORAGE") or str(REPO_ROOT / ".quadmix" / "storage")
        if storage_root != fixed and not location_under(storage_root, storage_prefixes):
            raise LocationPolicyError(
                f"storage_root {storage_root!r} is refused: this deployment ({mode}) writes only to "
                f"QUADMIX_STORAGE={fixed!r}"
                + (f" or under {STORAGE_PREFIXES_ENV}={','.join(storage_prefixes)}" if storage_prefixes else "")
                + "; run config cannot move it"
            )
    if cluster or corpus_prefixes:
        fixed = e.get("QUADMIX_CORPUS") or default_corpus_glob()
        if corpus_glob != fixed:
            normalise_location(corpus_glob)  # a '..' anywhere in the glob is refused, after a wildcard too
        if corpus_glob != fixed and not location_under(_glob_base(corpus_glob) or corpus_glob, corpus_prefixes):
            raise LocationPolicyError(
                f"corpus_glob {corpus_glob!r} is refused: this deployment ({mode}) reads only "
                f"QUADMIX_CORPUS={fixed!r}"
                + (f" or under {CORPUS_PREFIXES_ENV}={','.join(corpus_prefixes)}" if corpus_prefixes else "")
                + "; run config cannot move it"
            )
    if cluster:
        fixed = e.get("QUADMIX_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data")
        if data_dir_ != fixed:
            raise LocationPolicyError(
                f"data_dir {data_dir_!r} is refused: this deployment reads reference data only from "
                f"QUADMIX_DATA_DIR={fixed!r}; run config cannot move it"
            )


TARGET_PREFIXES_ENV = "QUADMIX_TARGET_ALLOWED_PREFIXES"


def check_target_location(path: str, data_dir_: str, environ: dict | None = None) -> None:
    """Refuse a user target file (objective, judge) with a ``..`` component anywhere, and in the cluster one
    that lies neither under the data folder nor under a prefix of ``QUADMIX_TARGET_ALLOWED_PREFIXES`` (a run
    config could otherwise make the code location read any file it reaches into the target table). Target
    files are only ever read."""
    normalise_location(path)
    e = os.environ if environ is None else environ
    if deployment_mode(e) != "cluster":
        return
    prefixes = [data_dir_, *allowed_prefixes(TARGET_PREFIXES_ENV, e)]
    if not location_under(path, prefixes):
        raise LocationPolicyError(f"target file {path!r} is refused: this deployment reads target files only under the "
                                  f"data folder or {TARGET_PREFIXES_ENV}={','.join(prefixes[1:])}")


#: input limits of the shard reader settable from the environment (docs/resume-and-faults.md, "Input limits"):
#: setting -> variable
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
        value = _int_env(var)
        if value is not None:
            out[key] = value
    return out


def _int_env(var: str) -> int | None:
    """An integer environment variable (``_`` separators allowed), or None when unset or empty."""
    value = os.environ.get(var)
    if not value:
        return None
    try:
        return int(value.replace("_", ""))
    except ValueError:
        raise ValueError(f"{var} must be an integer, got {value!r}") from None


def fanin_in_memory_rows() -> int:
    """Above this many documents the mixture assets compute out of core with DuckDB
    (``QUADMIX_FANIN_IN_MEMORY_ROWS``, default 5,000,000: about 0.6 GB of features held in memory)."""
    value = _int_env("QUADMIX_FANIN_IN_MEMORY_ROWS")
    value = 5_000_000 if value is None else value
    if value < 0:
        raise ValueError(f"QUADMIX_FANIN_IN_MEMORY_ROWS must be >= 0, not {value}")
    return value
