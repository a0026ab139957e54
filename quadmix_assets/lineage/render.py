"""The lineage as text (``quadmix lineage``) and as Markdown (the manifest's ``lineage`` metadata)."""

from __future__ import annotations

from typing import Any

from quadmix_assets.reporting.numbers import fmt_num


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
