"""Reading the event log for the lineage: materialization and observation records of the instance, their
metadata and versions, the content hash of what a materialization wrote, and the walk of the asset graph
upstream of the mixture assets (the graph is named by the code location: :func:`register_asset_graph`)."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from quadmix_assets import keys

DATA_VERSION_TAG = "dagster/data_version"
CODE_VERSION_TAG = "dagster/code_version"
#: the metadata entry naming every file a materialization wrote, with its sha256 (quadmix_assets.dagster_support.file_records)
FILES_KEY = "quadmix/files"
#: hex digits of a content hash shown (the files' full sha256 are in the `quadmix/files` metadata)
CONTENT_DIGITS = 16
MIXTURES = "mixtures"
EXPORTS = "exports"  # the export's own partition set: the keys of the mixtures promoted for export
MIXTURE_SETS = (MIXTURES, EXPORTS)
SHARDS = "shards"
MODELS_GROUP = "models"
NORMALISE_GROUP = "normalise"

SCORES = AssetKey(keys.MIXTURE_SCORES)
MANIFEST = AssetKey(keys.MIXTURE_MANIFEST)
PROXY = AssetKey(keys.PROXY_RUN)
EXPORT = AssetKey(keys.MIXTURE_EXPORT)
DOCUMENTS = AssetKey(keys.DOCUMENTS)
SEARCH = AssetKey(keys.MIXTURE_SEARCH)

ORIGIN_LABELS = {"random_draw": "random draw", "baseline": "baseline", "search": "search result"}
#: metadata keys naming a model's version, most specific first
VERSION_KEYS = (
    "model_sha256",
    "model_version",
    "student_version",
    "head_version",
    "normaliser_version",
    "regressor_version",
    "tokenizer_version",
    "targets_version",
    "version",
)
#: metadata entries not repeated in the story (pictures, the story itself)
SKIP_METADATA = {"lineage", "data_view"}
_PAGE = 1000



# --------------------------------------------------------------------------- the asset graph
_GRAPH_SOURCE: list[Callable[[], Any]] = []


def register_asset_graph(source: Callable[[], Any]) -> None:
    """Name where the code location's asset graph comes from (:mod:`quadmix_assets.definitions` registers
    its defs folder when it loads): the story walks it upstream of every mixture asset. The lineage
    package never imports the definitions (they import it, through the mixture assets)."""
    _GRAPH_SOURCE[:] = [source]
    default_asset_graph.cache_clear()


@functools.lru_cache(maxsize=1)
def default_asset_graph():
    """The asset graph of the code location (built once per process: the graph does not depend on the
    settings), from the source :func:`register_asset_graph` named."""
    if not _GRAPH_SOURCE:
        raise RuntimeError("no asset graph: import quadmix_assets.definitions first, or pass asset_graph=")
    return _GRAPH_SOURCE[0]()


# --------------------------------------------------------------------------- reading the event log
def _json_safe(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    columns = getattr(v, "columns", None)
    if columns is not None and not isinstance(v, list):  # a TableSchema (dagster/column_schema): a record, not iterable
        return {str(c.name): str(c.type) for c in columns}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return str(v)


def _plain(value: Any) -> Any:
    """A metadata value as plain JSON-safe data (pictures become ``"<picture>"``)."""
    v = getattr(value, "value", value)
    if isinstance(v, str) and "data:image/" in v:
        return "<picture>"
    if hasattr(v, "path") and not isinstance(v, (str, dict, list)):  # path-like values
        v = str(v.path)
    return _json_safe(v)


def _metadata(event: Any) -> dict[str, Any]:
    return {k: _plain(v) for k, v in (event.metadata or {}).items() if k not in SKIP_METADATA}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def content_version(metadata: Any, partition: str | None = None) -> str | None:
    """The identity of what a materialization wrote for ``partition``: the sha256 of its one file (the
    first :data:`CONTENT_DIGITS` hex digits), or of its files' sha256 by path when it wrote several; read
    from its ``quadmix/files`` record. A file belongs to a partition whose key is one of the folders of its
    path (in a run over several mixtures each partition records its own files). None: nothing recorded.

    Dagster's ``dagster/data_version`` of a partitioned mixture asset is not this: a run over a range of
    partitions gives all of them one data version (Dagster 1.13 takes one per run), and without a user
    data version it is computed from the code version and the inputs' versions, the same for every mixture
    of the same inputs. So where a version is shown as the data's identity, this is the one shown."""
    files = getattr((metadata or {}).get(FILES_KEY), "value", None)
    if not isinstance(files, dict) or not files:
        return None
    own = {rel: doc for rel, doc in files.items() if partition is not None and partition in rel.split("/")[:-1]} or files
    digests = {rel: (doc or {}).get("sha256") for rel, doc in sorted(own.items())}
    if len(digests) == 1:
        digest = next(iter(digests.values()))
        return str(digest)[:CONTENT_DIGITS] if digest else None
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode("utf-8")).hexdigest()[:CONTENT_DIGITS]


def _summary(rec: Any) -> dict[str, Any]:
    """One materialization (or observation) record: where, when, versions (Dagster's data version and the
    content hash of what it wrote), metadata."""
    event = rec.asset_materialization or rec.asset_observation
    tags = dict(getattr(event, "tags", None) or {})
    return {
        "storage_id": rec.storage_id,
        "run_id": rec.run_id,
        "time": _iso(rec.timestamp),
        "partition": rec.partition_key,
        "data_version": tags.get(DATA_VERSION_TAG),
        "content_version": content_version(getattr(event, "metadata", None), rec.partition_key),
        "code_version": tags.get(CODE_VERSION_TAG),
        "metadata": _metadata(event),
    }


def _latest(instance: DagsterInstance, key: AssetKey, partition: str | None = None, before: int | None = None):
    flt = AssetRecordsFilter(
        asset_key=key, asset_partitions=[partition] if partition is not None else None, before_storage_id=before
    )
    records = instance.fetch_materializations(flt, limit=1).records
    return records[0] if records else None


def _latest_observation(instance: DagsterInstance, key: AssetKey, partition: str):
    records = instance.fetch_observations(AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    return records[0] if records else None


def _latest_per_partition(instance: DagsterInstance, key: AssetKey, partitions: list[str] | None = None,
                          before: int | None = None) -> dict[str, Any]:
    """The newest materialization record of every partition of ``key`` (of ``partitions`` only, each None
    when it has none), made before storage id ``before``: newest first, one paged scan of the event log that
    stops once every partition asked for is found (not one query per partition)."""
    out: dict[str, Any] = dict.fromkeys(partitions or ())
    if partitions is not None and not partitions:
        return out
    missing = None if partitions is None else set(partitions)
    flt = AssetRecordsFilter(asset_key=key, asset_partitions=partitions, before_storage_id=before)
    cursor = None
    while True:
        result = instance.fetch_materializations(flt, limit=_PAGE, cursor=cursor)
        for rec in result.records:
            part = rec.partition_key
            if part is None or out.get(part) is not None or (missing is not None and part not in missing):
                continue
            out[part] = rec
            if missing is not None:
                missing.discard(part)
        if missing == set() or not result.has_more or not result.records:
            return out
        cursor = result.cursor


def _version(summary: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The version a record names for what it produced: the most specific ``*version``/``*sha256``
    metadata entry, else its data version; and every such entry."""
    md = summary.get("metadata", {})
    versions = {k: v for k, v in md.items() if (k.endswith("version") or k.endswith("sha256")) and v is not None}
    for k in VERSION_KEYS:
        if versions.get(k):
            return str(versions[k]), versions
    if versions:
        return str(next(iter(versions.values()))), versions
    return summary.get("data_version"), versions


def _partitions_name(node: Any) -> str | None:
    return getattr(node.partitions_def, "name", None) if node.partitions_def is not None else None


def _parents(graph: Any, key: AssetKey) -> Iterable[AssetKey]:
    return sorted(graph.get(key).parent_keys - {key}, key=lambda k: k.to_user_string())


def _ancestors(graph: Any, key: AssetKey) -> set[AssetKey]:
    seen: set[AssetKey] = set()
    todo = list(_parents(graph, key))
    while todo:
        k = todo.pop()
        if k in seen or not graph.has(k):
            continue
        seen.add(k)
        todo.extend(_parents(graph, k))
    return seen


def _mixture_asset_keys(graph: Any) -> list[AssetKey]:
    topo = graph.toposorted_asset_keys
    topo = topo() if callable(topo) else topo
    return [k for k in topo if graph.has(k) and _partitions_name(graph.get(k)) in MIXTURE_SETS]


def resolve_mixture(instance: DagsterInstance, text: str) -> str:
    """A mixture id from an id, a unique id prefix, a unique mixture name (``draw-0003``, ``random``), or
    ``optimum``: the mixture of the latest export (the search optimum, or the best measured config)."""
    known = instance.get_dynamic_partitions(MIXTURES)
    if text in known:
        return text
    if text == "optimum":
        records = instance.fetch_materializations(AssetKey(keys.MIXTURE_EXPORT), limit=1).records
        if records and records[0].asset_materialization.partition in known:
            return records[0].asset_materialization.partition
        raise KeyError("nothing is exported in this instance yet: `quadmix run` ends with the export")
    prefixed = [k for k in known if k.startswith(text)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise KeyError(f"{text!r} is a prefix of {len(prefixed)} mixtures: {sorted(prefixed)[:5]}")
    by_name = sorted(
        k for k, rec in _latest_per_partition(instance, SCORES).items() if _metadata(rec.asset_materialization).get("name") == text
    )
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise KeyError(f"{len(by_name)} mixtures are named {text!r}: {by_name}")
    raise KeyError(f"no mixture {text!r} in this instance ({len(known)} mixture partitions)")
