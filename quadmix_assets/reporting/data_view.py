"""What a data team sees: the documents behind a mixture and behind each quality criterion (no Dagster here).

:func:`mixture_samples` takes, for each domain, documents from the top, the middle and the bottom of the
in-domain rank ``r`` of one mixture (0 = best), with their merged quality ``qbar``, the per-criterion
worse-than ranks ``s_<criterion>`` (0 = best), the expected copies ``S(r)`` and the copies actually drawn
into the manifest, plus the start of their text. :func:`criterion_extremes` gives, per criterion, the
documents with the highest and the lowest raw scores. Both read only through
:mod:`quadmix_assets.storage` and :mod:`quadmix_assets.mixing` (the spec store, the feature reader, and
:func:`~quadmix_assets.mixing.fanin.mixture_scores`); the ``mixture_manifest`` asset and
``quadmix show`` render the same rows (:func:`samples_markdown`, :func:`samples_text`,
:func:`extremes_text`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from quadmix_assets.mixing.features import document_features
from quadmix_assets.mixing.store import all_spec_dicts, configs_doc, load_spec
from quadmix_assets.mixing.fanin import mixture_scores as computed_scores
from quadmix_assets.scoring.criteria import CRITERIA, attribute_name
from quadmix_assets.storage import StorageRoot, layout
from quadmix_assets.storage.texts import ShardTexts

from .numbers import fmt_num
from .tables import markdown_table

BANDS: tuple[str, ...] = ("top", "middle", "bottom")
TEXT_CHARS = 200


class DataViewError(ValueError):
    """Something ``quadmix show`` cannot find; the message says what and what to do."""


# --------------------------------------------------------------------------- lookups
def _criteria(storage: StorageRoot) -> list[str]:
    """alpha's columns as the stored configs recorded them (the registry's, before any config exists)."""
    try:
        return list(configs_doc(storage).get("space", {}).get("criteria") or CRITERIA)
    except FileNotFoundError:
        return list(CRITERIA)


def domain_names(storage: StorageRoot) -> list[str]:
    path = layout.model_card("domain_classifier")
    if not storage.exists(path):
        raise DataViewError(f"no domain classifier at {storage.uri(path)}: run `quadmix run` on this storage first "
                            "(or pass --storage)")
    return list(storage.read_json(path)["domain_names"])


def _specs(storage: StorageRoot) -> list[dict]:
    if not storage.exists(layout.mixture_configs()):
        raise DataViewError(f"no mixtures under {storage.uri('mixtures')}: run `quadmix run` on this storage first "
                            "(or pass --storage)")
    return all_spec_dicts(storage)


#: the name of the exported mixture (the search optimum, or the best measured config standing in for it)
OPTIMUM = "optimum"


def exported_mixture(storage: StorageRoot) -> str | None:
    """The exported mixture: the only complete export under ``exports/``, or among several the search's
    optimum (None: nothing exported; a ``DataViewError`` when several and none is the search's)."""
    from quadmix_assets.storage import layout

    found = sorted({rel.split("/")[1] for rel in storage.list("exports") if rel.count("/") == 2 and rel.endswith("/manifest.json")})
    if len(found) <= 1:
        return found[0] if found else None
    if storage.exists(layout.search_result()):
        optimum = storage.read_json(layout.search_result())["mixture_id"]
        # the export chosen against this search's optimum (the optimum itself, or the best measured config that
        # the export rule preferred: its manifest records the comparison), else the optimum's own export
        chosen = [m for m in found if ((export_record(storage, m) or {}).get("selection") or {}).get("optimum") == optimum]
        if len(chosen) == 1:
            return chosen[0]
        if optimum in found:
            return optimum
    raise DataViewError(f"{len(found)} mixtures are exported ({', '.join(found[:5])}): give one by id or name")


def export_record(storage: StorageRoot, mixture_id: str) -> dict | None:
    """The export's ``manifest.json`` of ``mixture_id`` (None: not exported)."""
    rel = f"{layout.export_dir(mixture_id)}/manifest.json"
    return storage.read_json(rel) if storage.exists(rel) else None


def resolve_mixture(storage: StorageRoot, text: str) -> str:
    """A mixture id from an id, a unique id prefix, a unique name (``random``, ``draw-0003``), or ``optimum``
    (the exported mixture)."""
    specs = _specs(storage)
    ids = [d["mixture_id"] for d in specs]
    if text in ids:
        return text
    if text == OPTIMUM and text not in {d.get("name") for d in specs}:
        exported = exported_mixture(storage)
        if exported is None:
            raise DataViewError(f"nothing is exported under {storage.uri('exports')} yet: `quadmix run` ends with the export")
        return exported
    named = sorted({d["mixture_id"] for d in specs if d.get("name") == text})
    if len(named) == 1:
        return named[0]
    prefixed = sorted({i for i in ids if text and i.startswith(text)})
    if len(prefixed) == 1:
        return prefixed[0]
    if len(named) > 1 or len(prefixed) > 1:
        hits = named or prefixed
        raise DataViewError(f"{text!r} matches {len(hits)} mixtures ({', '.join(hits[:5])}): give more of the id")
    examples = ", ".join(sorted({d.get("name") for d in specs if d.get("origin") == "baseline"})[:3])
    raise DataViewError(f"no mixture {text!r} among the {len(ids)} of {storage.url}: give a mixture id, a unique id "
                        f"prefix or a name (draw-0000, {examples}, ...)")


def resolve_domain(names: Sequence[str], text: str | int) -> int:
    """A domain index from an index or a name (exact, then case-insensitive, then a unique prefix)."""
    s = str(text).strip()
    if s.lstrip("-").isdigit():
        i = int(s)
        if 0 <= i < len(names):
            return i
        raise DataViewError(f"domain {i} does not exist: give 0..{len(names) - 1} or a domain name")
    if s in names:
        return list(names).index(s)
    low = [n.lower() for n in names]
    if s.lower() in low:
        return low.index(s.lower())
    pre = [i for i, n in enumerate(low) if n.startswith(s.lower())]
    if len(pre) == 1:
        return pre[0]
    raise DataViewError(f"no domain {s!r}" + (" (ambiguous)" if pre else "") + f": give an index or one of "
                        + ", ".join(repr(n) for n in names))


def _clip(text: Any, chars: int) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= chars else s[: max(chars - 1, 0)].rstrip() + "\u2026"


def band_positions(n_docs: int, n: int) -> dict[str, np.ndarray]:
    """Positions (0 = best) of the top, middle and bottom ``n`` of ``n_docs`` ranked documents; the bands
    never overlap (a small domain fills top first, then bottom, then middle)."""
    n = max(int(n), 0)
    top = np.arange(0, min(n, n_docs))
    bottom = np.arange(max(n, n_docs - n), n_docs) if n_docs > n else np.arange(0)
    lo, hi = top.size, n_docs - bottom.size  # the middle comes from what is left, centred
    k = min(n, max(hi - lo, 0))
    start = lo + max((hi - lo - k) // 2, 0)
    return {"top": top, "middle": np.arange(start, start + k), "bottom": bottom}


# --------------------------------------------------------------------------- mixture samples
def mixture_samples(
    storage: StorageRoot,
    mixture_id: str,
    *,
    domains: Sequence[int] | None = None,
    bands: Sequence[str] = BANDS,
    n: int = 5,
    text_chars: int = TEXT_CHARS,
    scores: pa.Table | None = None,
    copies: np.ndarray | None = None,
) -> dict[str, Any]:
    """For each domain (all, or ``domains``), ``n`` documents from each band of the mixture's in-domain rank.

    ``scores``/``copies`` (aligned row for row) may be handed in by the asset that just computed them;
    otherwise the scores are computed from the shards of the mixture's scores card and the copies read
    from ``manifest.parquet`` (copies 0 for a document the manifest does not hold; ``None`` when there is no manifest yet). Returns
    ``{"mixture_id", "name", "origin", "domain_aware", "documents", "selected", "criteria", "domains":
    {index: {"name", "documents", "selected"}}, "rows": [...]}``, one row per document shown."""
    bad = [b for b in bands if b not in BANDS]
    if bad:
        raise DataViewError(f"unknown band {bad[0]!r}: use top, middle or bottom")
    spec, _ = load_spec(storage, mixture_id)
    names = domain_names(storage)
    criteria = _criteria(storage)
    if scores is None:  # computed again from the shards of the mixture's scores card (never stored)
        try:
            scores = computed_scores(storage, mixture_id, criteria)  # the params' criteria order
        except FileNotFoundError as exc:
            raise DataViewError(f"{exc} ({spec.name})") from None
    if copies is None and storage.exists(layout.mixture_manifest(mixture_id)):
        man = storage.read_parquet(layout.mixture_manifest(mixture_id), columns=["shard", "row", "copies"])
        drawn = {(s, int(r)): int(c) for s, r, c in zip(man["shard"].to_pylist(), man["row"].to_pylist(), man["copies"].to_pylist())}
        copies = np.array([drawn.get((s, int(r)), 0) for s, r in zip(scores["shard"].to_pylist(), scores["row"].to_pylist())])
    dom = scores["domain"].to_numpy().astype(np.int64)
    r = scores["r"].to_numpy()
    ids = np.asarray(scores["id"].to_pylist(), dtype=object)
    wanted = sorted(set(int(d) for d in dom)) if domains is None else [int(d) for d in domains]
    picks: list[tuple[int, str, int, int, int]] = []  # (domain, band, position, of, table row)
    summary: dict[int, dict] = {}
    for d in wanted:
        idx = np.flatnonzero(dom == d)
        order = idx[np.lexsort((ids[idx].astype(str), r[idx]))]  # best first; ties by id
        summary[d] = {"name": names[d] if 0 <= d < len(names) else f"domain {d}", "documents": int(idx.size),
                      "selected": int((copies[idx] > 0).sum()) if copies is not None else None}
        pos = band_positions(order.size, n)
        for b in bands:
            picks.extend((d, b, int(p), int(order.size), int(order[p])) for p in pos[b])
    rows_idx = [p[4] for p in picks]
    sub = scores.take(pa.array(rows_idx, pa.int64())) if rows_idx else scores.slice(0, 0)
    shards = sub["shard"].to_pylist()
    rows = [int(x) for x in sub["row"].to_pylist()]
    # per-criterion ranks and texts, only for the shards shown
    s_cols: dict[tuple[str, int], dict[str, float]] = {}
    if rows_idx:
        feats = document_features(storage, sorted(set(shards)), criteria, leave_out_duplicates=False)
        key = {(s, int(w)): i for i, (s, w) in enumerate(zip(feats["shard"].to_pylist(), feats["row"].to_pylist()))}
        fid = feats["id"].to_pylist()
        cols = {c: feats[f"s_{c}"].to_numpy() for c in criteria}
        for s, w, doc_id in zip(shards, rows, sub["id"].to_pylist()):
            i = key.get((s, w))
            if i is not None and fid[i] == doc_id:  # else the shard changed since the scores: no ranks shown
                s_cols[(s, w)] = {c: float(cols[c][i]) for c in criteria}
    texts = ShardTexts(storage)
    by_shard: dict[str, list[int]] = {}
    for s, w in zip(shards, rows):
        by_shard.setdefault(s, []).append(w)
    text_of = {}
    for s, ws in by_shard.items():
        for w, t in zip(ws, texts(s, ws)):
            text_of[(s, w)] = _clip(t, text_chars)
    out = []
    cols_sub = {c: sub[c].to_pylist() for c in ("id", "n_tokens", "qbar", "r", "expected")}
    for j, (d, b, p, of, ti) in enumerate(picks):
        s, w = shards[j], rows[j]
        ranks = s_cols.get((s, w), {})
        out.append({
            "domain": d, "domain_name": summary[d]["name"], "band": b, "position": p + 1, "of": of,
            "shard": s, "row": w, "id": cols_sub["id"][j], "n_tokens": int(cols_sub["n_tokens"][j]),
            "qbar": float(cols_sub["qbar"][j]), "r": float(cols_sub["r"][j]),
            **{f"s_{c}": ranks.get(c) for c in criteria},
            "expected": float(cols_sub["expected"][j]),
            "copies": int(copies[ti]) if copies is not None else None,
            "text": text_of.get((s, w), ""),
        })
    return {
        "mixture_id": spec.mixture_id, "name": spec.name, "origin": spec.origin, "domain_aware": bool(spec.domain_aware),
        "documents": int(scores.num_rows),
        "selected": int((copies > 0).sum()) if copies is not None else None,
        "criteria": criteria, "domains": summary, "rows": out,
    }


def _md_cell(v: Any) -> str:
    return fmt_num(v).replace("|", "\\|").replace("\n", " ")


def samples_markdown(view: dict[str, Any]) -> str:
    """One markdown table: domain, band, position, scores, expected and drawn copies, text."""
    crit = view["criteria"]
    header = ["domain", "band", "rank", "qbar", "r"] + [f"s_{c}" for c in crit] + ["expected", "copies", "id", "text"]
    rows = []
    for x in view["rows"]:
        rows.append([_md_cell(x["domain_name"]), x["band"], f"{x['position']}/{x['of']}", _md_cell(x["qbar"]), _md_cell(x["r"])]
                    + [_md_cell(x[f"s_{c}"]) for c in crit]
                    + [_md_cell(x["expected"]), _md_cell(x["copies"]), _md_cell(x["id"]), _md_cell(x["text"])])
    note = ("r and s_* are ranks, 0 = best; qbar is the merged quality (lower = better); expected = S(r), copies = "
            "drawn into the manifest.")
    if not view["domain_aware"]:
        note += " This mixture ranks all documents together: r is the global rank."
    return note + "\n\n" + markdown_table(header, rows)


def samples_text(view: dict[str, Any]) -> str:
    """What ``quadmix show MIXTURE`` prints."""
    sel = f", {view['selected']} selected" if view["selected"] is not None else ", no manifest yet"
    head = (f"Mixture {view['mixture_id']} {view['name']!r} ({view['origin']}): {view['documents']} documents{sel}; "
            + ("ranks r within each domain" if view["domain_aware"] else "one global rank r over all documents")
            + "\n  r and s_* are worse-than ranks (0 = best); expected = S(r) copies; copies = drawn into the manifest")
    out = [head]
    domain = band = None
    for x in view["rows"]:
        if x["domain"] != domain:
            domain, band = x["domain"], None
            d = view["domains"][domain]
            dsel = f", {d['selected']} selected" if d["selected"] is not None else ""
            out.append(f"\nDomain {domain} {d['name']!r} ({d['documents']} documents{dsel})")
        if x["band"] != band:
            band = x["band"]
            out.append(f"  {band}:")
        ranks = " ".join(f"{c} {fmt_num(x[f's_{c}'], 3)}" for c in view["criteria"])
        out.append(f"    #{x['position']}/{x['of']}  r {fmt_num(x['r'])}  qbar {fmt_num(x['qbar'])}  expected "
                   f"{fmt_num(x['expected'])}  copies {fmt_num(x['copies'])}  s: {ranks}")
        out.append(f"      {x['id']} ({x['shard']}:{x['row']}, {x['n_tokens']} tokens) {x['text']}")
    if not view["rows"]:
        out.append("(no documents in the chosen domain)")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- criteria
def _shards(storage: StorageRoot) -> list[str]:
    if storage.exists(layout.normaliser_card()):
        return list(storage.read_json(layout.normaliser_card())["shards"])
    return sorted(p.rsplit("/", 1)[-1][: -len(".parquet")] for p in storage.list("documents", ".parquet"))


def criterion_extremes(
    storage: StorageRoot,
    criterion: str,
    *,
    n: int = 5,
    domain: int | None = None,
    text_chars: int = TEXT_CHARS,
) -> dict[str, Any]:
    """The ``n`` documents with the highest and the ``n`` with the lowest raw score of ``criterion`` (over
    the normaliser's shards, or one domain), with their worse-than rank ``s_<criterion>`` and text."""
    # every ranked criterion, a column of alpha or not (a criterion left out of alpha is still scored and ranked)
    card = storage.read_json(layout.normaliser_card()) if storage.exists(layout.normaliser_card()) else {}
    criteria = list(dict.fromkeys([*(card.get("criteria") or []), *_criteria(storage)]))
    if criterion not in criteria:
        raise DataViewError(f"no criterion {criterion!r}: use one of {', '.join(criteria)}")
    names = domain_names(storage)
    shards = _shards(storage)
    if not shards:
        raise DataViewError(f"no scored documents under {storage.uri('documents')}: run `quadmix run` first")
    missing = [k for k in shards if not storage.exists(layout.attribute(attribute_name(criterion), k))]
    if missing:
        raise DataViewError(f"criterion {criterion!r} has no scores for shard(s) {', '.join(missing[:3])}: run `quadmix run` "
                            "to score them")
    feats = document_features(storage, shards, [criterion])  # cross-shard text duplicates left out
    per_shard = [storage.read_parquet(layout.attribute(attribute_name(criterion), k), columns=["score"])["score"]
                 .to_numpy(zero_copy_only=False).astype(np.float64) for k in shards]
    sizes = [storage.read_parquet(layout.documents(k), columns=["id"]).num_rows for k in shards]
    if [p.size for p in per_shard] != sizes:
        raise DataViewError(f"criterion {criterion!r}: scores and documents are not aligned; rematerialize its scores")
    offsets = dict(zip(shards, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)))
    at = np.array([offsets[s] for s in feats["shard"].to_pylist()], dtype=np.int64) + feats["row"].to_numpy()
    score = np.concatenate(per_shard)[at] if at.size else np.empty(0)
    dom = feats["domain"].to_numpy().astype(np.int64)
    keep = np.flatnonzero(np.isfinite(score) & ((dom == domain) if domain is not None else True))
    ids = np.asarray(feats["id"].to_pylist(), dtype=object)
    order = keep[np.lexsort((ids[keep].astype(str), -score[keep]))]  # highest first
    top = [int(i) for i in order[:n]]
    picks = [("highest", i) for i in top] + [("lowest", int(i)) for i in order[::-1][:n] if int(i) not in set(top)]
    shard_col, row_col = feats["shard"].to_pylist(), feats["row"].to_pylist()
    s_col = feats[f"s_{criterion}"].to_numpy()
    texts = ShardTexts(storage)
    rows = []
    for band, i in picks:
        s, w = shard_col[i], int(row_col[i])
        rows.append({"band": band, "shard": s, "row": w, "id": ids[i], "domain": int(dom[i]),
                     "domain_name": names[dom[i]] if 0 <= dom[i] < len(names) else str(dom[i]),
                     "n_tokens": int(feats["n_tokens"][i].as_py()), "score": float(score[i]),
                     f"s_{criterion}": float(s_col[i]), "text": _clip(texts(s, [w])[0], text_chars)})
    return {"criterion": criterion, "documents": int(keep.size),
            "domain": None if domain is None else names[domain], "rows": rows}


def extremes_text(view: dict[str, Any]) -> str:
    """What ``quadmix show --criterion C`` prints."""
    c = view["criterion"]
    where = f" in domain {view['domain']!r}" if view["domain"] else ""
    out = [f"Criterion {c}: raw scores of {view['documents']} documents{where} (higher = better; s_{c} = worse-than "
           f"rank, 0 = best)"]
    band = None
    for x in view["rows"]:
        if x["band"] != band:
            band = x["band"]
            out.append(f"\n{band} scores:")
        out.append(f"  score {fmt_num(x['score'])}  s_{c} {fmt_num(x[f's_{c}'], 3)}  {x['domain_name']}  {x['id']} "
                   f"({x['shard']}:{x['row']}, {x['n_tokens']} tokens)")
        out.append(f"    {x['text']}")
    return "\n".join(out) + "\n"
