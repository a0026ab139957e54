"""The lineage of a mixture, read from Dagster's own event log (no side database).

:func:`mixture_lineage` tells the whole story of one ``mixtures`` partition: its parameter numbers and
how its config was made (random draw, baseline, or a search result and the regressor that found it),
the shards it was built from with their data versions, every model upstream of it with its version,
the normaliser version, every other input, the proxy result and the export. It reads only
materialization (and observation) records of the instance, their metadata and their
``dagster/data_version`` / ``dagster/code_version`` tags, and walks the asset graph upstream of every
mixture-partitioned asset, so an asset added to the graph shows up without a change here.

For each upstream asset the record used is the latest one written *before* the first of the mixture's
own materializations that depends on it (what the mixture was built from); a newer materialization is
reported as ``stale``.

:func:`shard_lineage` answers the reverse question: the mixtures whose latest ``mixture_scores``
materialization was built from a shard (its ``shards`` metadata).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DataProvenance

from quadmix_assets.reporting.numbers import fmt_num

__all__ = [
    "mixture_lineage",
    "shard_lineage",
    "resolve_mixture",
    "lineage_text",
    "lineage_markdown",
    "shard_lineage_text",
    "default_asset_graph",
]

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

SCORES = AssetKey("mixture_scores")
MANIFEST = AssetKey("mixture_manifest")
PROXY = AssetKey("proxy_run")
EXPORT = AssetKey("mixture_export")
DOCUMENTS = AssetKey("documents")
SEARCH = AssetKey("mixture_search")

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


# --------------------------------------------------------------------------- reading the event log
@functools.lru_cache(maxsize=1)
def default_asset_graph():
    """The asset graph of :func:`quadmix_assets.definitions.build_definitions` (built once per process:
    the graph does not depend on the settings)."""
    from quadmix_assets.definitions import build_definitions

    return build_definitions().resolve_asset_graph()


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
        records = instance.fetch_materializations(AssetKey("mixture_export"), limit=1).records
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


# --------------------------------------------------------------------------- the story
def _origin(instance: DagsterInstance, mixture_id: str, scores_md: dict[str, Any]) -> dict[str, Any]:
    kind = scores_md.get("origin")
    origin: dict[str, Any] = {"kind": kind, "label": ORIGIN_LABELS.get(kind, kind or "unknown")}
    if kind == "search":
        found = scores_md.get("found_by") or {}
        regressor = scores_md.get("regressor_version") or found.get("regressor_version")
        search_rec = None
        cursor = None
        while search_rec is None:  # the mixture_search materialization that registered this mixture
            result = instance.fetch_materializations(SEARCH, limit=_PAGE, cursor=cursor)
            search_rec = next(
                (r for r in result.records if _metadata(r.asset_materialization).get("mixture_id") == mixture_id), None
            )
            if not result.has_more or not result.records:
                break
            cursor = result.cursor
        if search_rec is not None:
            s = _summary(search_rec)
            md = s["metadata"]
            regressor = regressor or md.get("regressor_version")
            origin["search"] = {
                "run_id": s["run_id"],
                "time": s["time"],
                "data_version": s["data_version"],
                **{k: md[k] for k in ("regressor_cv_spearman", "searched_configs", "top_k", "predicted_loss_of_optimum") if k in md},
            }
        origin["regressor_version"] = regressor
        if found:
            origin["found_by"] = found
    return origin


def _proxy(rec: Any, observation: Any, mixture_id: str) -> dict[str, Any] | None:
    if rec is None and observation is None:
        return None
    out: dict[str, Any] = {}
    if rec is not None:
        s = _summary(rec)
        md = s["metadata"]
        out = {k: s[k] for k in ("data_version", "content_version", "code_version", "run_id", "time")}
        # a run over one partition carries its result at the top level; a multi-partition run under
        # `results` (keyed by mixture id) and in one observation per partition
        for k in ("status", "target_loss", "final_train_loss", "target_losses", "name", "path"):
            if md.get(k) is not None:
                out[k] = md[k]
        per = md["results"].get(mixture_id) if isinstance(md.get("results"), dict) else None
        if per:
            out.update({k: v for k, v in per.items() if v is not None})
        for k in ("proxy_model", "tokenizer_version", "targets_version", "budget_tokens_per_proxy", "device"):
            if md.get(k) is not None:
                out[k] = md[k]
    if observation is not None:  # per-partition results of a multi-partition run
        omd = _metadata(observation.asset_observation)
        out.update({k: v for k, v in omd.items() if v is not None and k not in out})
    return out


def _export(rec: Any) -> dict[str, Any] | None:
    if rec is None:
        return None
    s = _summary(rec)
    md = s["metadata"]
    out = {k: s[k] for k in ("data_version", "content_version", "code_version", "run_id", "time")}
    out.update({k: md[k] for k in ("path", "manifest", "documents", "occurrences", "tokens", "token_dtype", "tokenizer_version",
                                   "tokenizer", "format") if k in md})
    return out


def mixture_lineage(instance: DagsterInstance, mixture_id: str, *, asset_graph: Any = None) -> dict[str, Any]:
    """The story of one mixture partition as a JSON-safe dict (see the module docstring).

    Raises ``KeyError`` when the instance knows no such mixture."""
    graph = asset_graph if asset_graph is not None else default_asset_graph()
    own_keys = _mixture_asset_keys(graph)
    own = {k: _latest(instance, k, mixture_id) for k in own_keys}
    if not any(own.values()) and mixture_id not in instance.get_dynamic_partitions(MIXTURES):
        raise KeyError(f"no mixture {mixture_id!r} in this instance")

    scores = _summary(own[SCORES]) if own.get(SCORES) is not None else None
    smd = scores["metadata"] if scores else {}
    shard_fps: dict[str, Any] = smd.get("shards") if isinstance(smd.get("shards"), dict) else {}

    # every asset upstream of a materialized mixture asset, read as of the first such materialization
    as_of: dict[AssetKey, int] = {}
    for k in own_keys:
        if own[k] is None:
            continue
        for a in _ancestors(graph, k):
            if _partitions_name(graph.get(a)) in MIXTURE_SETS:
                continue
            as_of[a] = min(as_of.get(a, own[k].storage_id), own[k].storage_id)

    shard_keys = sorted(shard_fps)
    if not shard_keys and DOCUMENTS in as_of:  # older records without `shards` metadata
        shard_keys = sorted(instance.get_dynamic_partitions(SHARDS))
    topo = graph.toposorted_asset_keys
    topo = topo() if callable(topo) else topo
    upstream = [k for k in topo if k in as_of]

    # Resolve the record of every upstream asset, consumers first. An unpartitioned asset is the exact
    # event its consumers point at (the input storage ids of their `DataProvenance`; the earliest if
    # they differ), else the latest before its first consumer; a shard-partitioned one is, per shard,
    # the latest before its first consumer.
    records: dict[AssetKey, list[Any]] = {k: [own[k]] for k in own_keys if own[k] is not None}
    per_shard: dict[AssetKey, dict[str, Any]] = {}
    for key in reversed(upstream):
        if _partitions_name(graph.get(key)) == SHARDS:
            per_shard[key] = _latest_per_partition(instance, key, shard_keys, before=as_of[key])
            records[key] = [r for r in per_shard[key].values() if r is not None]
            continue
        rec = None
        pointers = sorted(
            storage_id
            for child in graph.get(key).child_keys
            for r in records.get(child, [])
            for provenance in [DataProvenance.from_tags(r.asset_materialization.tags or {})]
            if provenance is not None and (storage_id := provenance.input_storage_ids.get(key)) is not None
        )
        if pointers:
            found = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, storage_ids=pointers[:1]), limit=1)
            rec = found.records[0] if found.records else None
        if rec is None:
            rec = _latest(instance, key, before=as_of[key])
        records[key] = [rec] if rec is not None else []

    shards = {s: {"shard": s, "fingerprint": shard_fps.get(s), "assets": {}} for s in shard_keys}
    models: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    normaliser: dict[str, Any] | None = None
    for key in upstream:
        node = graph.get(key)
        name = key.to_user_string()
        if key in per_shard:
            newest = _latest_per_partition(instance, key, [s for s in shard_keys if per_shard[key][s] is not None])
            for s in shard_keys:
                rec = per_shard[key][s]
                entry: dict[str, Any] = {"materialized": rec is not None}
                if rec is not None:
                    sm = _summary(rec)
                    latest = newest[s]
                    entry.update(
                        data_version=sm["data_version"],
                        code_version=sm["code_version"],
                        run_id=sm["run_id"],
                        stale=bool(latest is not None and latest.storage_id != rec.storage_id),
                    )
                    if key == DOCUMENTS:
                        md = sm["metadata"]
                        shards[s].update(
                            data_version=sm["data_version"],
                            documents=md.get("documents"),
                            tokens=md.get("tokens"),
                            source=md.get("source"),
                            fingerprint_recorded=md.get("fingerprint"),
                        )
                        if shards[s]["fingerprint"] is None:
                            shards[s]["fingerprint"] = md.get("fingerprint")
                shards[s]["assets"][name] = entry
            continue
        rec = records[key][0] if records[key] else None
        if rec is None:
            entry = {"materialized": False}
        else:
            sm = _summary(rec)
            latest = _latest(instance, key, sm["partition"])
            version, versions = _version(sm)
            entry = {
                "materialized": True,
                "version": version,
                "versions": versions,
                "data_version": sm["data_version"],
                "code_version": sm["code_version"],
                "run_id": sm["run_id"],
                "time": sm["time"],
                "stale": bool(latest is not None and latest.storage_id != rec.storage_id),
            }
            if sm["metadata"].get("mode") is not None:
                entry["mode"] = sm["metadata"]["mode"]
        entry["group"] = node.group_name
        if node.group_name == MODELS_GROUP:
            models[name] = entry
        elif node.group_name == NORMALISE_GROUP:
            if scores and entry.get("versions", {}).get("normaliser_version") not in (None, smd.get("normaliser_version")):
                entry["mismatch"] = f"mixture_scores used normaliser {smd.get('normaliser_version')}"
            if normaliser is None:
                normaliser = entry
            else:
                inputs[name] = entry
        else:
            inputs[name] = entry
    if normaliser is None and smd.get("normaliser_version"):
        normaliser = {"version": smd["normaliser_version"], "materialized": False}

    own_summaries = {}
    for k in own_keys:
        rec = own[k]
        if rec is None:
            own_summaries[k.to_user_string()] = None
            continue
        sm = _summary(rec)
        own_summaries[k.to_user_string()] = {
            kk: sm[kk] for kk in ("data_version", "content_version", "code_version", "run_id", "time")
        } | {"metadata": {m: v for m, v in sm["metadata"].items() if not isinstance(v, (dict, list)) and v != "<picture>"},
             "pictures": sorted(m for m, v in sm["metadata"].items() if v == "<picture>")}

    return {
        "mixture_id": mixture_id,
        "name": smd.get("name"),
        "origin": _origin(instance, mixture_id, smd) if scores else {"kind": None, "label": "unknown (no mixture_scores yet)"},
        "domain_aware": smd.get("domain_aware"),
        "config_id": smd.get("config_id"),
        "params": smd.get("params"),
        "param_axes": smd.get("param_axes"),
        "shards": [shards[s] for s in shard_keys],
        "models": models,
        "normaliser": normaliser,
        "inputs": inputs,
        "mixture_assets": own_summaries,
        "proxy": _proxy(own.get(PROXY), _latest_observation(instance, PROXY, mixture_id), mixture_id)
        if PROXY in own
        else None,
        "export": _export(own.get(EXPORT)),
        "instance": instance.root_directory,
    }


def shard_lineage(instance: DagsterInstance, shard: str) -> list[dict[str, Any]]:
    """The mixtures whose latest ``mixture_scores`` materialization was built from ``shard``.

    Raises ``KeyError`` when ``shard`` is neither a shard partition nor named by any mixture."""
    docs = _latest(instance, DOCUMENTS, shard)
    fp_now = _metadata(docs.asset_materialization).get("fingerprint") if docs is not None else None
    out = []
    for mixture_id, rec in sorted(_latest_per_partition(instance, SCORES).items()):
        md = _metadata(rec.asset_materialization)
        used = md.get("shards") if isinstance(md.get("shards"), dict) else {}
        if shard not in used:
            continue
        manifest = _latest(instance, MANIFEST, mixture_id)
        out.append(
            {
                "mixture_id": mixture_id,
                "name": md.get("name"),
                "origin": md.get("origin"),
                "fingerprint": used[shard],
                "stale": bool(fp_now is not None and used[shard] is not None and used[shard] != fp_now),
                "scores_data_version": (rec.asset_materialization.tags or {}).get(DATA_VERSION_TAG),
                "scored_at": _iso(rec.timestamp),
                "manifest": manifest is not None,
            }
        )
    if not out and shard not in instance.get_dynamic_partitions(SHARDS):
        raise KeyError(f"no shard {shard!r} in this instance")
    return out


# --------------------------------------------------------------------------- rendering
def _fmt(v: Any, digits: int = 4) -> str:
    """Floats to ``digits`` significant digits, trailing zeros kept (a target loss of 7 reads ``7.000``)."""
    return fmt_num(v, digits)


def _short(v: Any, n: int = 16) -> str:
    s = _fmt(v)
    return s if len(s) <= n else s[:n]


def _param_rows(story: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    p = story.get("params") or {}
    if not p:
        return [], []
    axes = story.get("param_axes") or {}
    alpha = p.get("alpha") or []
    m = len(alpha)
    names = list(axes.get("domains") or [f"domain {i}" for i in range(m)])
    criteria = list(axes.get("criteria") or [f"c{j}" for j in range(len(alpha[0]) if alpha else 0)])
    rows_idx = range(m) if story.get("domain_aware", True) is not False else range(min(1, m))
    header = ["domain", "lambda", "omega", "eta", "eps"] + [f"alpha[{c}]" for c in criteria]
    rows = []
    for i in rows_idx:
        label = names[i] if story.get("domain_aware", True) is not False and i < len(names) else "all documents"
        rows.append(
            [label, _fmt(p["lambda"][i]), _fmt(p["omega"][i]), _fmt(p["eta"][i]), _fmt(p["eps"][i])]
            + [f"{a:.3f}" for a in alpha[i]]
        )
    return header, rows


def _origin_line(story: dict[str, Any]) -> str:
    o = story.get("origin") or {}
    line = o.get("label") or "unknown"
    if o.get("kind") == "search":
        line += f" (regressor {o.get('regressor_version') or 'unknown'}"
        s = o.get("search") or {}
        if s.get("regressor_cv_spearman") is not None:
            line += f", CV Spearman {_fmt(s['regressor_cv_spearman'], 3)}"
        if s.get("predicted_loss_of_optimum") is not None:
            line += f", predicted loss {_fmt(s['predicted_loss_of_optimum'])}"
        line += ")"
    elif o.get("kind") == "random_draw":
        cfg = (story.get("inputs") or {}).get("mixture_configs") or {}
        line += f" from the parameter space (mixture_configs {_short(cfg.get('data_version'))})"
    elif o.get("kind") == "baseline":
        line += f" {story.get('name')!r}"
    return line


def _stale(e: dict[str, Any]) -> str:
    return "  [newer version exists]" if e.get("stale") else ""


def _lines(story: dict[str, Any], md: bool, known_at: str | None = None) -> list[str]:
    """The story's lines; with ``known_at`` (a mixture asset's name) only what that stage knows: its inputs
    and the mixture assets before it, never itself or a later stage (they record their own part)."""
    h = (lambda t: f"**{t}**") if md else (lambda t: f"{t}:")
    bullet = "- " if md else "  "
    out = []
    title = f"Mixture {story['mixture_id']}" + (f" {story['name']!r}" if story.get("name") else "")
    out.append(f"### {title}" if md else title)
    out.append(f"{bullet}origin: {_origin_line(story)}")
    out.append(f"{bullet}config_id: {story.get('config_id') or '-'}; ranks per domain: {story.get('domain_aware')}")
    if md:
        out.append("")
    header, rows = _param_rows(story)
    out.append(h("Parameters"))
    if md:
        out.append("")
    if rows:
        if md:
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out.extend("| " + " | ".join(r) + " |" for r in rows)
        else:
            widths = [max(len(x) for x in col) for col in zip(header, *rows)]
            widths[0] = min(widths[0], 28)
            for r in [header, *rows]:
                out.append("    " + "  ".join(x[: widths[i]].ljust(widths[i]) for i, x in enumerate(r)).rstrip())
    else:
        out.append(f"{bullet}(no parameters recorded)")
    if md:
        out.append("")
    out.append(h(f"Shards ({len(story['shards'])})"))
    if md:
        out.append("")
    for s in story["shards"]:
        out.append(
            f"{bullet}{s['shard']}: fingerprint {_short(s.get('fingerprint'), 23)}, documents data version "
            f"{s.get('data_version') or '-'} ({_fmt(s.get('documents'))} docs, {_fmt(s.get('tokens'))} tokens)"
            + _stale(s["assets"].get("documents", {}))
        )
        others = [
            f"{a} {_short(e.get('data_version'), 12)}{'*' if e.get('stale') else ''}"
            for a, e in s["assets"].items()
            if a != "documents"
        ]
        if others:
            out.append(("  " if md else "      ") + ("- " if md else "") + "; ".join(others))
    if md:
        out.append("")
    out.append(h("Models"))
    if md:
        out.append("")
    for name, e in story["models"].items():
        if not e.get("materialized"):
            out.append(f"{bullet}{name}: not materialized")
            continue
        mode = f" ({e['mode']})" if e.get("mode") else ""
        extra = [f"{k} {_short(v, 23)}" for k, v in (e.get("versions") or {}).items() if str(v) != str(e.get("version"))]
        out.append(
            f"{bullet}{name}{mode}: version {_short(e.get('version'), 23)}"
            + (f" ({'; '.join(extra)})" if extra else "")
            + f", data version {_short(e.get('data_version'))}, code {e.get('code_version')}{_stale(e)}"
        )
    n = story.get("normaliser") or {}
    if md:
        out.append("")
    out.append(
        f"{h('Normaliser')} version {n.get('version') or '-'}, data version {_short(n.get('data_version'))}, "
        f"code {n.get('code_version') or '-'}{_stale(n)}" + (f" ({n['mismatch']})" if n.get("mismatch") else "")
    )
    if story.get("inputs"):
        if md:
            out.append("")
        out.append(h("Other inputs"))
        if md:
            out.append("")
        for name, e in story["inputs"].items():
            out.append(
                f"{bullet}{name}: data version {_short(e.get('data_version'))}, code {e.get('code_version') or '-'}{_stale(e)}"
            )
    if md:
        out.append("")
    out.append(h("Mixture assets"))
    if md:
        out.append("")
    for name, e in story["mixture_assets"].items():
        if known_at is not None and name == known_at:
            break  # this stage and the ones after it record their own part
        if e is None:
            out.append(f"{bullet}{name}: not materialized")
        else:
            pics = f", pictures: {', '.join(e['pictures'])}" if e.get("pictures") else ""
            out.append(f"{bullet}{name}: content sha256 {e.get('content_version') or '-'}, run {e['run_id'][:8]}, {e.get('time')}{pics}")
    if known_at is not None:
        if md:
            out.append("")
        out.append(f"Recorded by {known_at}, with what it knew then. The proxy, regressor, search and export "
                   f"stages record their own part in their materializations; `quadmix lineage {story['mixture_id']}` "
                   "reads the whole story live.")
        return out
    p = story.get("proxy")
    if md:
        out.append("")
    if p:
        losses = p.get("target_losses")
        extra = f" (per set: {', '.join(f'{k} {_fmt(v)}' for k, v in losses.items())})" if isinstance(losses, dict) and losses else ""
        manifest = (story.get("mixture_assets") or {}).get("mixture_manifest") or {}
        trained_on = p.get("trained_on_manifest")
        other = " (not the current manifest)" if trained_on and manifest.get("content_version") not in (None, trained_on) else ""
        out.append(
            f"{h('Proxy')} status {p.get('status') or '-'}, target loss {_fmt(p.get('target_loss'))}{extra}, "
            f"final train loss {_fmt(p.get('final_train_loss'))}, trained on manifest sha256 {trained_on or '-'}{other}"
        )
    else:
        out.append(f"{h('Proxy')} not run")
    x = story.get("export")
    if md:
        out.append("")
    if x:
        out.append(
            f"{h('Export')} {x.get('path') or '-'}: {_fmt(x.get('tokens'))} tokens, {_fmt(x.get('documents'))} documents, "
            f"Megatron tokens.bin + tokens.idx ({x.get('token_dtype') or '-'}), tokenizer {x.get('tokenizer') or '-'}, "
            f"data version {_short(x.get('data_version'))}"
        )
    else:
        out.append(f"{h('Export')} not exported")
    return out


def lineage_text(story: dict[str, Any]) -> str:
    """The story as plain text (what ``quadmix lineage`` prints)."""
    return "\n".join(_lines(story, md=False)) + "\n"


def lineage_markdown(story: dict[str, Any], known_at: str | None = None) -> str:
    """The story as markdown (what a mixture's metadata shows in the UI); ``known_at``: only the part the
    named stage knows when it is materialized (see :func:`_lines`)."""
    return "\n".join(_lines(story, md=True, known_at=known_at)) + "\n"


def shard_lineage_text(shard: str, rows: list[dict[str, Any]]) -> str:
    """``quadmix lineage --shard`` output: one line per mixture the shard fed."""
    if not rows:
        return f"shard {shard} fed no mixture\n"
    out = [f"shard {shard} fed {len(rows)} mixture(s):"]
    for r in rows:
        out.append(
            f"  {r['mixture_id']}  {_fmt(r['name']):<16} {_fmt(r['origin']):<12} fingerprint {_short(r['fingerprint'], 23)}"
            + ("  [shard changed since]" if r["stale"] else "")
            + ("" if r["manifest"] else "  (no manifest yet)")
        )
    return "\n".join(out) + "\n"
