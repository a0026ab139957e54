"""The story of a mixture (:func:`mixture_lineage`) and the reverse question, the mixtures a shard went
into (:func:`shard_lineage`), as JSON-safe dicts read from the event log."""

from __future__ import annotations

from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DataProvenance

from quadmix_assets.lineage.events import (
    _PAGE,
    DATA_VERSION_TAG,
    DOCUMENTS,
    EXPORT,
    MANIFEST,
    MIXTURE_SETS,
    MIXTURES,
    MODELS_GROUP,
    NORMALISE_GROUP,
    ORIGIN_LABELS,
    PROXY,
    SCORES,
    SEARCH,
    SHARDS,
    _ancestors,
    _iso,
    _latest,
    _latest_observation,
    _latest_per_partition,
    _metadata,
    _mixture_asset_keys,
    _partitions_name,
    _summary,
    _version,
    default_asset_graph,
)


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
