"""Small, deterministic PNG pictures for materialization metadata (no Dagster here).

Every function returns PNG bytes rendered with matplotlib's Agg canvas at a fixed size and dpi,
with the default style, no timestamp or software tag in the file, so the same inputs give the same
bytes. :func:`png_markdown` wraps the bytes in a markdown image with a base64 data URI, which the
Dagster UI renders from ``MetadataValue.md(...)``.

Inputs are validated with ``ValueError`` naming the argument and the expected shape.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg  # the Agg canvas; pyplot is never used
from matplotlib.figure import Figure

from ..method.params import QuadMixParams
from ..method.sampling import sampling_frequency

__all__ = [
    "domain_shares_png",
    "score_histograms_png",
    "sampling_curves_png",
    "predicted_vs_actual_png",
    "loss_curves_png",
    "png_markdown",
    "try_png_markdown",
    "PNG_SIGNATURE",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_DPI = 80
_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 8.0,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7.0,
    "ytick.labelsize": 7.0,
    "path.simplify": True,
    "svg.hashsalt": "quadmix",
}
_MAX_LEGEND = 24


# --------------------------------------------------------------------------- helpers
def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _render(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _draw(width_in: float, height_in: float, body) -> bytes:
    with matplotlib.rc_context(_RC):
        fig = _figure(width_in, height_in)
        body(fig)
        return _render(fig)


def _vector(values: Any, name: str, *, allow_nan: bool = False) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of numbers: {exc}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {a.shape}")
    if not allow_nan and a.size and not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def _names(names: Any, name: str) -> list[str]:
    if isinstance(names, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of names, not a single string")
    try:
        return [str(x) for x in names]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of names") from None


def _qualitative(n: int) -> list[tuple]:
    """Distinct colours: tab10 up to 10; up to 60, tab10's ten hues, then the other shades of tab20, tab20b
    and tab20c (so 24 domains get 24 different colours, the first ten the strongest)."""
    if n <= 10:
        return [tuple(matplotlib.colormaps["tab10"](i)) for i in range(n)]
    out: list[tuple] = []
    t20 = matplotlib.colormaps["tab20"]
    candidates = [t20(i) for i in range(0, 20, 2)] + [t20(i) for i in range(1, 20, 2)]
    for name in ("tab20b", "tab20c"):
        cm = matplotlib.colormaps[name]
        candidates += [cm(i) for i in (0, 4, 8, 12, 16, 2, 6, 10, 14, 18, 1, 5, 9, 13, 17, 3, 7, 11, 15, 19)]
    for c in candidates:
        c = tuple(round(float(x), 4) for x in c)
        if c not in out:
            out.append(c)
    return out[:n] if n <= len(out) else []


def _colors(n: int) -> list[Any]:
    colors = _qualitative(n)
    if colors:
        return colors
    viridis = matplotlib.colormaps["viridis"]
    return [viridis(i / max(n - 1, 1)) for i in range(n)]


def _line_styles(n: int) -> list[str]:
    """Solid for the first ten lines, then dashed, dash-dot and dotted: with more than ten lines a colour
    and a style together tell them apart."""
    styles = ["-", "--", "-.", ":"]
    return [styles[(i // 10) % len(styles)] if n > 10 else "-" for i in range(n)]


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "\u2026"


# --------------------------------------------------------------------------- domain shares
def domain_shares_png(
    domain_names: Sequence[str],
    tokens_before: Any,
    tokens_after: Any,
    *,
    title: str = "Domain token shares before and after sampling",
) -> bytes:
    """Horizontal grouped bars: each domain's share of tokens in the pool (before) and in the
    mixture (after). ``tokens_before``/``tokens_after`` are non-negative token counts, one per
    domain name; shares are computed here (an all-zero side plots as zeros)."""
    names = _names(domain_names, "domain_names")
    m = len(names)
    if m == 0:
        raise ValueError("domain_names must not be empty")
    before = _vector(tokens_before, "tokens_before")
    after = _vector(tokens_after, "tokens_after")
    for arr, nm in ((before, "tokens_before"), (after, "tokens_after")):
        if arr.shape != (m,):
            raise ValueError(f"{nm} must have shape ({m},) (one value per domain); got {arr.shape}")
        if (arr < 0).any():
            raise ValueError(f"{nm} must be >= 0")
    sb = before / before.sum() if before.sum() > 0 else np.zeros(m)
    sa = after / after.sum() if after.sum() > 0 else np.zeros(m)

    def body(fig: Figure) -> None:
        ax = fig.add_subplot(1, 1, 1)
        y = np.arange(m)
        h = 0.4
        ax.barh(y - h / 2, sb * 100.0, height=h, color="#9e9e9e", label="before (pool)")
        ax.barh(y + h / 2, sa * 100.0, height=h, color="#1f77b4", label="after (mixture)")
        ax.set_yticks(y)
        ax.set_yticklabels([_short(n) for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("share of tokens (%)")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()

    return _draw(6.4, max(2.4, 0.9 + 0.22 * m), body)


# --------------------------------------------------------------------------- score histograms
def score_histograms_png(
    scores: Mapping[str, Any],
    *,
    bins: int = 40,
    title: str = "Score distribution per criterion",
) -> bytes:
    """One histogram per criterion (``{criterion: raw scores}``), in the mapping's order.
    Non-finite values are dropped and counted in the panel title."""
    if not isinstance(scores, Mapping):
        raise ValueError(f"scores must be a mapping criterion -> values; got {type(scores).__name__}")
    if not scores:
        raise ValueError("scores must hold at least one criterion")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1; got {bins}")
    panels: list[tuple[str, np.ndarray, np.ndarray, int, int]] = []
    for crit, values in scores.items():
        v = _vector(values, f"scores[{crit!r}]", allow_nan=True)
        finite = v[np.isfinite(v)]
        dropped = int(v.size - finite.size)
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            if lo == hi:
                lo, hi = lo - 0.5, hi + 0.5
            counts, edges = np.histogram(finite, bins=int(bins), range=(lo, hi))
        else:
            counts, edges = np.zeros(int(bins), dtype=np.int64), np.linspace(0.0, 1.0, int(bins) + 1)
        panels.append((str(crit), counts, edges, int(finite.size), dropped))

    n = len(panels)
    cols = min(3, n)
    rows = math.ceil(n / cols)

    def body(fig: Figure) -> None:
        for i, (crit, counts, edges, kept, dropped) in enumerate(panels):
            ax = fig.add_subplot(rows, cols, i + 1)
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=_colors(max(n, 1))[i])
            sub = f"{_short(crit, 28)} (n={kept}" + (f", {dropped} non-finite" if dropped else "") + ")"
            ax.set_title(sub, fontsize=8)
            ax.set_xlabel("raw score")
            if i % cols == 0:
                ax.set_ylabel("documents")
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()

    return _draw(2.5 * cols + 0.4, 2.2 * rows + 0.4, body)


# --------------------------------------------------------------------------- sampling curves
def sampling_curves_png(
    params: QuadMixParams,
    domain_names: Sequence[str] | None = None,
    *,
    points: int = 600,
    title: str | None = None,
    mixture: str | None = None,
) -> bytes:
    """The expected copies ``S(r)`` against the in-domain rank ``r`` (0 = best), one line per
    domain, from :func:`quadmix_assets.method.sampling_frequency`; ``mixture`` (its name) goes into the
    default title. The x-axis covers the selected
    head of every domain (up to twice the largest ``omega``, at least 5%, at most 1); beyond
    ``omega`` a domain stays at ``eps``."""
    if not isinstance(params, QuadMixParams):
        raise ValueError(f"params must be a QuadMixParams; got {type(params).__name__}")
    m = params.n_domains
    names = [f"domain {i}" for i in range(m)] if domain_names is None else _names(domain_names, "domain_names")
    if len(names) != m:
        raise ValueError(f"domain_names must have {m} entries (one per domain of params); got {len(names)}")
    if int(points) < 2:
        raise ValueError(f"points must be >= 2; got {points}")
    omega = np.asarray(params.omega, dtype=np.float64)
    xmax = float(min(1.0, max(0.05, 2.0 * float(omega.max()))))
    grid = np.linspace(0.0, xmax, int(points))
    curves = []
    for d in range(m):
        w = float(omega[d])
        extra = [w, min(1.0, np.nextafter(w, 2.0))] if w <= xmax else []
        r = np.unique(np.concatenate([grid, np.asarray(extra, dtype=np.float64)]))
        s = sampling_frequency(r, np.full(r.shape[0], d, dtype=np.int64), params)
        curves.append((r, s))
    colors = _colors(m)
    styles = _line_styles(m)

    def body(fig: Figure) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for d, (r, s) in enumerate(curves):
            ax.plot(r, s, color=colors[d], linestyle=styles[d], linewidth=1.3, label=_short(names[d]))
        ax.axhline(1.0, color="#777777", linewidth=0.6, linestyle=":")
        ax.set_xlim(0.0, xmax)
        ax.set_ylim(bottom=0.0)
        ax.set_xlabel("in-domain rank r (0 = best)")
        ax.set_ylabel("expected copies S(r)")
        ax.set_title(title or (f"{_short(mixture, 40)}: expected copies per domain (config {params.config_id[:12]})" if mixture
                               else f"Sampling function per domain (config {params.config_id[:12]})"))
        ax.grid(alpha=0.3)
        if m <= _MAX_LEGEND:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 if m <= 12 else 2, frameon=False)
        fig.tight_layout()

    width = 6.4 if m <= 12 else 8.0
    return _draw(width, 3.4, body)


# --------------------------------------------------------------------------- predicted vs actual
def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.shape[0], dtype=np.float64)
    sa = a[order]
    i = 0
    n = a.shape[0]
    while i < n:
        j = i
        while j + 1 < n and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j)
        i = j + 1
    return ranks


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if x.shape[0] < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def predicted_vs_actual_png(
    predicted: Any,
    actual: Any,
    labels: Sequence[str] | None = None,
    *,
    title: str = "Regressor: predicted vs actual target loss",
) -> bytes:
    """Scatter of predicted against actual values with the ``y = x`` line; the title carries
    Spearman's rho and the MAE.

    ``labels`` (optional, one per point): when there are at most 10 distinct labels and fewer
    distinct labels than points they are groups (e.g. ``"train"``/``"valid"``), coloured with a
    legend; otherwise, with at most 40 points, each point is annotated with its label."""
    p = _vector(predicted, "predicted")
    a = _vector(actual, "actual")
    if p.shape != a.shape:
        raise ValueError(f"predicted and actual must have the same shape; got {p.shape} and {a.shape}")
    if p.size == 0:
        raise ValueError("predicted and actual must not be empty")
    labs: list[str] | None = None
    if labels is not None:
        labs = _names(labels, "labels")
        if len(labs) != p.shape[0]:
            raise ValueError(f"labels must have {p.shape[0]} entries (one per point); got {len(labs)}")
    mae = float(np.mean(np.abs(p - a)))
    rho = _spearman(p, a)
    lo = float(min(p.min(), a.min()))
    hi = float(max(p.max(), a.max()))
    pad = (hi - lo) * 0.05 or 0.5

    def body(fig: Figure) -> None:
        ax = fig.add_subplot(1, 1, 1)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#777777", linewidth=0.8, linestyle="--")
        groups = None
        if labs is not None:
            uniq = list(dict.fromkeys(labs))
            if len(uniq) <= 10 and len(uniq) < len(labs):
                groups = uniq
        if groups is not None:
            colors = _colors(len(groups))
            arr = np.asarray(labs, dtype=object)
            for g, c in zip(groups, colors):
                sel = arr == g
                ax.scatter(a[sel], p[sel], s=12, color=c, label=_short(g), alpha=0.8, edgecolors="none")
            ax.legend(loc="upper left")
        else:
            ax.scatter(a, p, s=12, color="#1f77b4", alpha=0.8, edgecolors="none")
            if labs is not None and len(labs) <= 40:
                for x, y, t in zip(a, p, labs):
                    ax.annotate(_short(t, 14), (x, y), fontsize=5.5, xytext=(2, 2), textcoords="offset points")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        rho_txt = "n/a" if math.isnan(rho) else f"{rho:.3f}"
        ax.set_title(f"{title}\nn={p.size}  Spearman rho={rho_txt}  MAE={mae:.4g}")
        ax.grid(alpha=0.3)
        fig.tight_layout()

    return _draw(4.4, 4.2, body)


# --------------------------------------------------------------------------- loss curves
def loss_curves_png(
    curves: Any,
    labels: Sequence[str] | None = None,
    *,
    steps: Any = None,
    title: str = "Proxy training loss",
    ylabel: str = "loss",
) -> bytes:
    """Loss curves, one row of ``curves`` (shape ``(K, steps)``) per run; ``labels`` one per row
    (legend shown for at most 24 runs). ``steps`` optionally gives the x value of each column
    (default ``0..steps-1``). NaN entries leave gaps; infinities are rejected."""
    try:
        c = np.asarray(curves, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"curves must be a (K, steps) array of numbers: {exc}") from None
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
        raise ValueError(f"curves must have shape (K runs, steps) with K, steps >= 1; got {c.shape}")
    if np.isinf(c).any():
        raise ValueError("curves must not contain infinities (NaN marks a missing point)")
    k, t = c.shape
    labs = [f"run {i}" for i in range(k)] if labels is None else _names(labels, "labels")
    if len(labs) != k:
        raise ValueError(f"labels must have {k} entries (one per curve); got {len(labs)}")
    x = np.arange(t, dtype=np.float64) if steps is None else _vector(steps, "steps")
    if x.shape != (t,):
        raise ValueError(f"steps must have shape ({t},) (one per column of curves); got {x.shape}")
    colors = _colors(k)
    styles = _line_styles(k) if k <= 40 else ["-"] * k

    def body(fig: Figure) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for i in range(k):
            ax.plot(x, c[i], color=colors[i], linestyle=styles[i], linewidth=1.0, label=_short(labs[i]), alpha=0.9)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if k <= _MAX_LEGEND:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 if k <= 12 else 2, frameon=False)
        fig.tight_layout()

    return _draw(6.4 if k <= 12 else 8.0, 3.4, body)


# --------------------------------------------------------------------------- markdown
def png_markdown(png_bytes: bytes, alt: str) -> str:
    """``![alt](data:image/png;base64,...)`` for ``MetadataValue.md``; brackets and newlines in
    ``alt`` are neutralised."""
    if not isinstance(png_bytes, (bytes, bytearray, memoryview)):
        raise ValueError(f"png_bytes must be bytes; got {type(png_bytes).__name__}")
    data = bytes(png_bytes)
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("png_bytes is not a PNG image (bad signature)")
    safe = " ".join(str(alt).split()).replace("[", "(").replace("]", ")")
    return f"![{safe}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


def try_png_markdown(make, alt: str, log=None) -> str | None:
    """``png_markdown(make(), alt)``, or ``None`` (with a warning through ``log``, e.g.
    ``context.log.warning``) when drawing fails: a picture never fails the asset it decorates."""
    try:
        return png_markdown(make(), alt)
    except Exception as exc:  # noqa: BLE001 - pictures are best effort
        if log is not None:
            log(f"picture {alt!r} not drawn: {type(exc).__name__}: {exc}")
        return None
