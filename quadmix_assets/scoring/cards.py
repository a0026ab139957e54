"""Criterion cards: what each quality criterion of the registry measures, and whether it can be trusted.

One card per registered criterion (generated from the registry: a new criterion gets its card with no other
edit), with, all token-weighted over the corpus:

* ``roc_auc_human``: ROC-AUC against the 499 DCLM human quality votes (computed by ``criteria_evaluation``);
* ``edu_prompt``: Spearman with the 150 documents scored 2..5 with the FineWeb-Edu annotation prompt
  (``labels/fineweb_edu_prompt_scores.csv``), scored with the criterion's own scorer;
* ``coverage``: the share of the corpus' documents with a finite score;
* ``sources`` / ``buckets`` / ``domains``: how the criterion's *top quarter* (the 25% of the documents with a
  finite score that it scores highest, ties broken by a seeded permutation) is made up, against a *random
  quarter* (the mean of :data:`RANDOM_DRAWS` seeded random quarters of the same size) and the whole corpus:
  token share of every source and bucket, effective number (exp of the token-weighted Shannon entropy), the
  one-vs-rest ROC-AUC of the score for each source and the share of the score's rank variance the source,
  bucket or domain explains (correlation ratio eta squared);
* ``student``: for a teacher criterion, whether its distilled student keeps its teacher (held-out
  teacher-student Spearman recorded by the ``<criterion>_student`` asset).

A document's *source* is the corpus record's ``source`` field (kept as a column of the stored documents; a
corpus without one has no source figures). Its *bucket*: for the documents of the largest source (by tokens)
their domain label, for every other source the source itself (so on the bundled corpus: the 24 WebOrganizer
topics, the legal-keyword FineWeb pages and raw Common Crawl); without a source column, the domain label.

The verdict (:class:`CardRule`, documented in docs/criteria.md) warns when the criterion mostly detects one
source or domain, or when its student has lost its teacher (then the card is also marked ``unreliable``).

Library code: no Dagster (import-linter contract); numpy, scipy, scikit-learn (via :mod:`.evaluation`).
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from quadmix_assets.scoring.evaluation import roc_auc, spearman

FINEWEB_EDU_PROMPT_SCORES = "labels/fineweb_edu_prompt_scores.csv"
#: random quarters averaged for the reference figures
RANDOM_DRAWS = 16
#: the fraction of the scored documents a criterion's "top quarter" holds
TOP_FRACTION = 0.25
#: display names of the bundled corpus' sources (../shared/data/README.md); any other source shows as itself
SOURCE_NOTES = {
    "fineweb": "legal-keyword FineWeb pages",
    "weborganizer": "filtered Common Crawl (DCLM pool)",
    "commoncrawl-raw": "raw Common Crawl",
}
NO_SOURCE = "(no source)"
UNLABELLED = "(no domain)"

__all__ = [
    "CardRule",
    "CorpusView",
    "FINEWEB_EDU_PROMPT_SCORES",
    "RULE",
    "alpha_warnings",
    "build_cards",
    "bucket_labels",
    "composition",
    "criterion_card",
    "effective_number",
    "load_corpus_view",
    "load_fineweb_edu_prompt_scores",
    "stored_student_statuses",
    "student_status",
    "top_quarter",
]


@dataclass(frozen=True)
class CardRule:
    """When a card warns (docs/criteria.md, "Criterion cards").

    * **lean**: some source, or some bucket, holds at least ``share_margin`` more of the top quarter's tokens
      than of a random quarter's (absolute: 0.15 = 15 percentage points);
    * **narrow**: the top quarter's effective number of buckets is below ``min_effective_ratio`` times a
      random quarter's;
    * **unreliable student**: a teacher criterion scored by a distilled student whose held-out
      teacher-student Spearman is below ``min_student_spearman``, or was measured on fewer than
      ``min_student_heldout`` held-out documents (or not at all).

    The lean and narrow rules are judged only when the top quarter holds at least ``min_top_docs`` documents
    and the corpus has at least two buckets."""

    share_margin: float = 0.15
    min_effective_ratio: float = 0.5
    min_student_spearman: float = 0.5
    min_student_heldout: int = 30
    min_top_docs: int = 100


RULE = CardRule()


# --------------------------------------------------------------------------------------------- data
def load_fineweb_edu_prompt_scores(data_dir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """The documents scored with the FineWeb-Edu annotation prompt: ``(texts, scores)``; rows without a
    numeric score or with an error are skipped."""
    path = Path(data_dir) / FINEWEB_EDU_PROMPT_SCORES
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    texts: list[str] = []
    scores: list[float] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if (row.get("error") or "").strip():
                continue
            try:
                value = float(row["score"])
            except (TypeError, ValueError, KeyError):
                continue
            if math.isfinite(value) and row.get("text"):
                texts.append(row["text"])
                scores.append(value)
    return texts, np.asarray(scores, dtype=np.float64)


@dataclass
class CorpusView:
    """Per document of the corpus (all shards concatenated in order): token count, source (None: the corpus
    has no source field), domain label (-1: none) and every criterion's raw score (NaN: none)."""

    n_tokens: np.ndarray
    source: np.ndarray | None
    domain: np.ndarray
    domain_names: list[str]
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.n_tokens.size)


def load_corpus_view(storage, shards: Sequence[str], criteria: Sequence[str], domain_names: Sequence[str],
                     *, attribute_of=None) -> CorpusView:
    """Read what the cards need from a storage root: documents' ``n_tokens`` and ``source``, the domain
    attribute and each criterion's ``score`` attribute, shard by shard (a missing attribute file: NaN / -1)."""
    from quadmix_assets.scoring.criteria import attribute_name
    from quadmix_assets.storage import layout

    attribute_of = attribute_of or attribute_name
    tokens, sources, domains = [], [], []
    scores: dict[str, list[np.ndarray]] = {c: [] for c in criteria}
    has_source = True
    for shard in shards:
        path = layout.documents(shard)
        names = pq.read_schema(storage.path(path), filesystem=storage.fs).names
        docs = storage.read_parquet(path, columns=[c for c in ("n_tokens", "source") if c in names])
        n = docs.num_rows
        tokens.append(np.asarray(docs["n_tokens"].to_numpy(zero_copy_only=False), dtype=np.float64))
        if "source" in docs.column_names:
            sources.append(np.asarray([NO_SOURCE if s is None else str(s) for s in docs["source"].to_pylist()], dtype=object))
        else:
            has_source = False
        dom_path = layout.attribute("domain", shard)
        if storage.exists(dom_path):
            d = storage.read_parquet(dom_path, columns=["domain"])["domain"].to_numpy(zero_copy_only=False)
            domains.append(np.where(np.isfinite(d.astype(np.float64)), d, -1).astype(np.int64) if d.size == n else np.full(n, -1))
        else:
            domains.append(np.full(n, -1, dtype=np.int64))
        for c in criteria:
            path = layout.attribute(attribute_of(c), shard)
            values = np.full(n, np.nan)
            if storage.exists(path):
                s = storage.read_parquet(path, columns=["score"])["score"].to_numpy(zero_copy_only=False)
                if s.size == n:
                    values = np.asarray(s, dtype=np.float64)
            scores[c].append(values)

    def cat(parts, dtype):
        return np.concatenate(parts) if parts else np.array([], dtype=dtype)

    return CorpusView(
        n_tokens=cat(tokens, np.float64),
        source=cat(sources, object) if has_source and shards else None,
        domain=cat(domains, np.int64),
        domain_names=list(domain_names),
        scores={c: cat(v, np.float64) for c, v in scores.items()},
    )


# ---------------------------------------------------------------------------------------- figures
def bucket_labels(source: np.ndarray | None, domain: np.ndarray, domain_names: Sequence[str], n_tokens: np.ndarray) -> np.ndarray:
    """Each document's bucket: its domain name within the largest source (by tokens), else its source."""
    names = np.asarray([*domain_names, UNLABELLED], dtype=object)
    dom = np.where((domain >= 0) & (domain < len(domain_names)), domain, len(domain_names))
    by_domain = names[dom]
    if source is None or source.size == 0:
        return by_domain
    kinds, inverse = np.unique(source, return_inverse=True)
    largest = kinds[int(np.argmax(np.bincount(inverse, weights=n_tokens, minlength=len(kinds))))]
    return np.where(source == largest, by_domain, source).astype(object)


def effective_number(shares: np.ndarray) -> float:
    """exp of the Shannon entropy of ``shares`` (normalised; zero shares ignored)."""
    p = np.asarray(shares, dtype=np.float64)
    total = p.sum()
    if total <= 0:
        return float("nan")
    p = p[p > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def top_quarter(scores: np.ndarray, seed: int, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Indices of the ``fraction`` of the documents with a finite score that score highest (ties broken by a
    seeded permutation, so equal scores never follow storage order)."""
    s = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(s))
    k = int(round(fraction * finite.size))
    tiebreak = np.random.default_rng(seed).permutation(finite.size)
    order = np.lexsort((tiebreak, -s[finite]))
    return finite[order[:k]]


def _shares(labels: np.ndarray, weights: np.ndarray, idx: np.ndarray, n_labels: int) -> np.ndarray:
    w = np.bincount(labels[idx], weights=weights[idx], minlength=n_labels)
    total = w.sum()
    return w / total if total > 0 else w


def _eta_squared(ranks: np.ndarray, labels: np.ndarray) -> float:
    """Correlation ratio: the share of the variance of ``ranks`` explained by the groups ``labels``."""
    if ranks.size < 2:
        return float("nan")
    total = float(((ranks - ranks.mean()) ** 2).sum())
    if total == 0:
        return float("nan")
    counts = np.bincount(labels)
    sums = np.bincount(labels, weights=ranks)
    nz = counts > 0
    means = sums[nz] / counts[nz]
    return float((counts[nz] * (means - ranks.mean()) ** 2).sum() / total)


def composition(scores: np.ndarray, labels: np.ndarray, n_tokens: np.ndarray, seed: int, *,
                draws: int = RANDOM_DRAWS, per_label_auc: bool = False) -> dict[str, Any]:
    """How the top quarter of ``scores`` is made up by ``labels`` (token-weighted), against a random quarter
    (mean of ``draws`` seeded random quarters of the same size among the documents with a finite score) and
    the whole corpus (those documents): share of each label, effective number, eta squared of the score's
    ranks on the labels, and (``per_label_auc``) each label's one-vs-rest ROC-AUC."""
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(s))
    kinds, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    m = len(kinds)
    w = np.asarray(n_tokens, dtype=np.float64)
    top = top_quarter(s, seed)
    rng = np.random.default_rng(seed + 1)
    randoms = [rng.choice(finite, size=top.size, replace=False) for _ in range(draws)] if top.size else []
    top_sh = _shares(codes, w, top, m)
    corpus_sh = _shares(codes, w, finite, m)
    rand_sh = np.mean([_shares(codes, w, r, m) for r in randoms], axis=0) if randoms else np.zeros(m)
    eff_rand = float(np.mean([effective_number(_shares(codes, w, r, m)) for r in randoms])) if randoms else float("nan")
    out: dict[str, Any] = {
        "shares": {
            str(kinds[i]): {"top": float(top_sh[i]), "random": float(rand_sh[i]), "corpus": float(corpus_sh[i])}
            for i in range(m)
        },
        "effective": {"top": effective_number(top_sh), "random": eff_rand, "corpus": effective_number(corpus_sh)},
        "eta_squared": _eta_squared(rankdata(s[finite]), codes[finite]) if finite.size else float("nan"),
        "n_labels": int(m),
    }
    gains = top_sh - rand_sh
    if m:
        i = int(np.argmax(gains))
        out["largest_gain"] = {"label": str(kinds[i]), "top": float(top_sh[i]), "random": float(rand_sh[i]),
                               "gain": float(gains[i])}
    if per_label_auc:
        for i in range(m):
            y = codes[finite] == i
            out["shares"][str(kinds[i])]["auc"] = roc_auc(s[finite], y) if finite.size else float("nan")
    return out


# ------------------------------------------------------------------------------------------ verdict
def student_status(criterion: str, mode: str | None, card: Mapping[str, Any] | None, rule: CardRule = RULE) -> dict[str, Any]:
    """Whether a teacher criterion's scores come from a student that keeps its teacher. ``card``: the
    ``<criterion>_student`` model card (``mode``, ``report.spearman``, ``report.n_test``)."""
    card = dict(card or {})
    mode = card.get("mode") or mode
    if mode == "direct":
        return {"mode": "direct", "unreliable": False, "why": "scored by its teacher directly"}
    report = card.get("report") or {}
    rho = report.get("spearman")
    rho = float(rho) if isinstance(rho, (int, float)) else float("nan")
    n_test = int(report.get("n_test") or 0)
    out = {"mode": mode or "distill", "teacher_student_spearman": rho, "n_heldout": n_test}
    if not card:
        why = f"{criterion}: no student card, so no evidence its distilled student keeps its teacher"
    elif n_test < rule.min_student_heldout or not math.isfinite(rho):
        why = (f"{criterion}: its distilled student's teacher-student Spearman was measured on {n_test} held-out "
               f"documents (fewer than {rule.min_student_heldout}): no evidence the student keeps its teacher")
    elif rho < rule.min_student_spearman:
        why = (f"{criterion}: its distilled student loses its teacher (held-out teacher-student Spearman "
               f"{rho:.2f} < {rule.min_student_spearman}, {n_test} documents); its scores are close to noise: "
               f"score it directly ({criterion}_mode=direct) or with a bigger sample")
    else:
        return {**out, "unreliable": False, "why": f"student keeps its teacher (Spearman {rho:.2f})"}
    return {**out, "unreliable": True, "why": why}


def _own_words(name: str, why: str) -> str:
    return why[len(name) + 2:] if why.startswith(f"{name}: ") else why


def alpha_warnings(alpha: Sequence[str], students: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One warning per column of alpha whose distilled student is unreliable (:func:`student_status`): such a
    criterion is never used silently (docs/criteria.md, "Which criteria form alpha")."""
    return [f"{name} IS A COLUMN OF ALPHA in this run, but {_own_words(name, st['why'])}; its ranks steer every "
            f"mixture: leave it out (alpha_criteria) or score it directly ({name}_mode=direct)"
            for name, st in students.items() if name in alpha and st.get("unreliable")]


def stored_student_statuses(storage, config) -> dict[str, dict[str, Any]]:
    """Each teacher criterion's :func:`student_status`, from its student's model card in ``storage`` (the
    ``<criterion>_student`` asset's ``model.json``; none yet: no evidence) and ``config``'s scoring mode."""
    from quadmix_assets.scoring.criteria import teacher_criteria
    from quadmix_assets.storage import layout

    out = {}
    for c in teacher_criteria():
        path = layout.model_card(c.student)
        out[c.name] = student_status(c.name, config.teacher(c.name).mode,
                                     storage.read_json(path) if storage.exists(path) else None)
    return out


def _lean_warnings(name: str, part: str, comp: Mapping[str, Any], rule: CardRule) -> list[str]:
    warnings = []
    gain = comp.get("largest_gain")
    if gain and gain["gain"] >= rule.share_margin:
        label = gain["label"]
        note = f" ({SOURCE_NOTES[label]})" if label in SOURCE_NOTES else ""
        warnings.append(
            f"{name}: its top quarter is {gain['top']:.0%} {part} '{label}'{note} by tokens against {gain['random']:.0%} "
            f"of a random quarter (+{gain['gain']:.2f} >= {rule.share_margin}): it mostly detects that {part}"
        )
    return warnings


def criterion_card(name: str, description: str, scores: np.ndarray, view: CorpusView, *, seed: int,
                   roc_auc_human: float | None = None, edu_prompt: Mapping[str, Any] | None = None,
                   student: Mapping[str, Any] | None = None, rule: CardRule = RULE,
                   buckets: np.ndarray | None = None, left_out: str | None = None) -> dict[str, Any]:
    """One criterion's card (the figures of the module docstring) and its verdict. ``left_out``: why the run
    leaves the criterion out of alpha (None: it is a column of alpha)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != view.n_tokens.shape:
        raise ValueError(f"{name}: {s.size} scores for {view.n} documents")
    finite = np.isfinite(s)
    n_top = int(round(TOP_FRACTION * int(finite.sum())))
    if buckets is None:
        buckets = bucket_labels(view.source, view.domain, view.domain_names, view.n_tokens)
    names = np.asarray([*view.domain_names, UNLABELLED], dtype=object)
    domain_labels = names[np.where((view.domain >= 0) & (view.domain < len(view.domain_names)), view.domain, len(view.domain_names))]
    card: dict[str, Any] = {
        "criterion": name,
        "description": description,
        "roc_auc_human": None if roc_auc_human is None else float(roc_auc_human),
        "edu_prompt": dict(edu_prompt) if edu_prompt is not None else None,
        "coverage": float(finite.mean()) if s.size else float("nan"),
        "documents": int(s.size),
        "documents_scored": int(finite.sum()),
        "top_quarter_documents": n_top,
        "sources": composition(s, view.source, view.n_tokens, seed, per_label_auc=True) if view.source is not None else None,
        "buckets": composition(s, buckets, view.n_tokens, seed),
        "domains": composition(s, domain_labels, view.n_tokens, seed),
        "student": dict(student) if student is not None else None,
        "alpha": {"in_alpha": left_out is None, "left_out": left_out},
    }
    warnings: list[str] = []
    judged = n_top >= rule.min_top_docs and card["buckets"]["n_labels"] >= 2
    if judged:
        if card["sources"] is not None and card["sources"]["n_labels"] >= 2:
            warnings += _lean_warnings(name, "source", card["sources"], rule)
        gain = card["buckets"].get("largest_gain") or {}
        if not (card["sources"] is not None and gain.get("label") in card["sources"]["shares"]):  # a source: said above
            warnings += _lean_warnings(name, "bucket", card["buckets"], rule)
        eff = card["buckets"]["effective"]
        if math.isfinite(eff["random"]) and eff["top"] < rule.min_effective_ratio * eff["random"]:
            warnings.append(
                f"{name}: its top quarter keeps {eff['top']:.1f} effective domains/sources against {eff['random']:.1f} "
                f"in a random quarter (< {rule.min_effective_ratio} x): it mostly detects a few sources or domains"
            )
    unreliable = bool(student and student.get("unreliable"))
    if unreliable and left_out is not None:
        warnings.append(f"{student['why']} (left out of alpha: {left_out})")
    elif unreliable:
        warnings += alpha_warnings([name], {name: student})
    card["verdict"] = {
        "warn": bool(warnings),
        "unreliable": unreliable,
        "lean_judged": judged,
        "why_not_judged": None if judged else (
            f"the top quarter holds {n_top} documents (< {rule.min_top_docs})" if n_top < rule.min_top_docs
            else "the corpus has a single source/domain bucket"),
        "warnings": warnings,
    }
    return card


def build_cards(criteria: Sequence[tuple[str, str]], view: CorpusView, *, seed: int,
                roc_auc_human: Mapping[str, float] | None = None, edu_prompt: Mapping[str, Mapping[str, Any]] | None = None,
                students: Mapping[str, Mapping[str, Any]] | None = None, rule: CardRule = RULE,
                left_out: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every criterion's card (``criteria``: (name, description) in registry order), with the rule and the
    corpus-level reference (how the whole corpus and a random quarter are made up). ``left_out``: the
    criteria the run leaves out of alpha, with the reason (the others are its columns)."""
    roc_auc_human, edu_prompt, students = dict(roc_auc_human or {}), dict(edu_prompt or {}), dict(students or {})
    left_out = dict(left_out or {})
    buckets = bucket_labels(view.source, view.domain, view.domain_names, view.n_tokens)
    cards = {
        name: criterion_card(name, description, view.scores[name], view, seed=seed, roc_auc_human=roc_auc_human.get(name),
                             edu_prompt=edu_prompt.get(name), student=students.get(name), rule=rule, buckets=buckets,
                             left_out=left_out.get(name))
        for name, description in criteria
    }
    return {
        "rule": asdict(rule),
        "top_fraction": TOP_FRACTION,
        "random_draws": RANDOM_DRAWS,
        "seed": int(seed),
        "documents": view.n,
        "tokens": float(view.n_tokens.sum()),
        "has_source": view.source is not None,
        "criteria": [name for name, _ in criteria],  # registry order (the JSON file sorts the cards' keys)
        "cards": cards,
        "warnings": [w for c in cards.values() for w in c["verdict"]["warnings"]],
        "unreliable": sorted(n for n, c in cards.items() if c["verdict"]["unreliable"]),
        "alpha": [name for name, _ in criteria if name not in left_out],
        "left_out": {name: left_out[name] for name, _ in criteria if name in left_out},
        # unreliable and still a column of alpha: said in the run's output and the UI (never silently)
        "unreliable_in_alpha": sorted(n for n, c in cards.items() if c["verdict"]["unreliable"] and n not in left_out),
    }


def edu_prompt_agreement(values: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Spearman of a criterion's scores with the FineWeb-Edu prompt scores (NaN scores left out)."""
    v = np.asarray(values, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    ok = np.isfinite(v)
    return {"spearman": spearman(v[ok], r[ok]) if ok.sum() >= 2 else float("nan"), "n": int(ok.sum()),
            "file": FINEWEB_EDU_PROMPT_SCORES}


# ------------------------------------------------------------------------------------------ display
def _f(x, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def summary_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row per card: criterion, AUC, Edu-prompt Spearman, coverage, top-quarter share of the source that
    gains most, effective buckets top / random, student, verdict."""
    rows = []
    for name, c in report["cards"].items():
        src = (c.get("sources") or {}).get("largest_gain")
        lean = f"{src['label']} {src['top']:.0%} (random {src['random']:.0%})" if src else "n/a"
        eff = c["buckets"]["effective"]
        st = c.get("student")
        student = "-" if not st else (st["mode"] if st["mode"] == "direct" else f"rho {_f(st.get('teacher_student_spearman'), '.2f')}")
        out_of_alpha = not (c.get("alpha") or {}).get("in_alpha", True)
        verdict = ("left out of alpha; " if out_of_alpha else "") + ("UNRELIABLE; " if c["verdict"]["unreliable"] else "") + (
            f"WARN ({len(c['verdict']['warnings'])})" if c["verdict"]["warn"] else
            ("ok" if c["verdict"]["lean_judged"] else "ok (lean not judged)"))
        rows.append([name, _f(c.get("roc_auc_human")), _f((c.get("edu_prompt") or {}).get("spearman")), f"{c['coverage']:.1%}",
                     lean, f"{_f(eff['top'], '.1f')} / {_f(eff['random'], '.1f')}", student, verdict])
    return rows


SUMMARY_HEADER = ["criterion", "ROC-AUC human votes", "Spearman FineWeb-Edu prompt", "coverage",
                  "top-quarter share of the source it favours most", "effective buckets top / random quarter",
                  "student", "verdict"]


def card_markdown(card: Mapping[str, Any], max_rows: int = 8) -> str:
    """One card as markdown: headline figures, the buckets that gain or lose most, the verdict."""
    from quadmix_assets.reporting import markdown_table

    v = card["verdict"]
    head = f"**{card['criterion']}**: {card['description']}\n\n"
    if v["unreliable"]:
        head += "**UNRELIABLE**: " + card["student"]["why"] + "\n\n"
    placed = card.get("alpha") or {}
    if placed.get("left_out"):
        head += "**Left out of alpha**: " + placed["left_out"] + " (scored and carded, never mixed)\n\n"
    elif v["unreliable"]:
        head += "**USED IN ALPHA although unreliable**: its ranks steer every mixture of this run\n\n"
    st = card.get("student")
    rows = [
        ["ROC-AUC vs DCLM human votes", _f(card.get("roc_auc_human"))],
        ["Spearman vs FineWeb-Edu prompt scores", _f((card.get("edu_prompt") or {}).get("spearman"))
         + (f" (n={card['edu_prompt']['n']})" if card.get("edu_prompt") else "")],
        ["coverage (finite scores)", f"{card['coverage']:.2%} of {card['documents']} documents"],
        ["effective buckets: top / random quarter / corpus",
         " / ".join(_f(card["buckets"]["effective"][k], ".1f") for k in ("top", "random", "corpus"))],
        ["effective domains: top / random quarter / corpus",
         " / ".join(_f(card["domains"]["effective"][k], ".1f") for k in ("top", "random", "corpus"))],
        ["rank variance explained by bucket / domain (eta^2)",
         f"{_f(card['buckets']['eta_squared'])} / {_f(card['domains']['eta_squared'])}"],
    ]
    if card.get("sources"):
        rows.append(["effective sources: top / random quarter / corpus",
                     " / ".join(_f(card["sources"]["effective"][k], ".2f") for k in ("top", "random", "corpus"))])
        rows.append(["rank variance explained by source (eta^2)", _f(card["sources"]["eta_squared"])])
    if st:
        rows.append(["student", st["why"] if st["mode"] == "direct" else
                     f"teacher-student Spearman {_f(st.get('teacher_student_spearman'), '.2f')} on {st.get('n_heldout')} held-out docs"])
    out = head + markdown_table(["figure", "value"], rows)
    if card.get("sources"):
        srows = [[f"{k}" + (f" ({SOURCE_NOTES[k]})" if k in SOURCE_NOTES else ""), f"{x['top']:.1%}", f"{x['random']:.1%}",
                  f"{x['corpus']:.1%}", _f(x.get("auc"))] for k, x in card["sources"]["shares"].items()]
        out += "\n\nSources (token share):\n\n" + markdown_table(
            ["source", "top quarter", "random quarter", "corpus", "ROC-AUC source vs rest"], srows)
    shares = card["buckets"]["shares"]
    by_gain = sorted(shares, key=lambda k: -abs(shares[k]["top"] - shares[k]["random"]))[:max_rows]
    brows = [[k, f"{shares[k]['top']:.1%}", f"{shares[k]['random']:.1%}", f"{shares[k]['top'] - shares[k]['random']:+.1%}"]
             for k in by_gain]
    out += "\n\nBuckets that gain or lose most (token share):\n\n" + markdown_table(
        ["bucket", "top quarter", "random quarter", "gain"], brows)
    verdict = "\n".join(f"- {w}" for w in v["warnings"]) if v["warnings"] else (
        "- no warning" + ("" if v["lean_judged"] else f" (source/domain lean not judged: {v['why_not_judged']})"))
    return out + "\n\nVerdict:\n\n" + verdict


def cards_png(report: Mapping[str, Any]) -> bytes:
    """The cards side by side (PNG, deterministic bytes): left, the token share of each source (or, without a
    source column, of the largest buckets) in every criterion's top quarter, a random quarter and the corpus;
    right, the effective number of buckets of each top quarter against a random quarter's and the warning
    threshold. Criteria with a warning are drawn in red, unreliable ones hatched."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from quadmix_assets.reporting.plots import _RC, _colors, _render  # the shared deterministic style

    cards = list(report["cards"].values())
    if not cards:
        raise ValueError("no criterion card to draw")
    part = "sources" if report.get("has_source") else "buckets"
    ref = cards[0][part]["shares"]
    labels = sorted(ref, key=lambda k: -ref[k]["corpus"])
    if part == "buckets" and len(labels) > 8:
        labels = labels[:7]
    rows = [(c["criterion"] + " top quarter", {k: c[part]["shares"].get(k, {}).get("top", 0.0) for k in labels}) for c in cards]
    rows.append(("random quarter", {k: ref[k]["random"] for k in labels}))
    rows.append(("whole corpus", {k: ref[k]["corpus"] for k in labels}))
    colors = _colors(len(labels) + 1)
    threshold = report["rule"]["min_effective_ratio"]

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(10.4, 0.38 * len(rows) + 1.9), dpi=80)
        FigureCanvasAgg(fig)
        ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        y = np.arange(len(rows))[::-1]
        left = np.zeros(len(rows))
        for j, k in enumerate(labels):
            w = np.array([r[1][k] for r in rows])
            name = f"{k} ({SOURCE_NOTES[k]})" if k in SOURCE_NOTES else k
            ax.barh(y, w, left=left, color=colors[j], label=name[:34], height=0.7)
            for yi, li, wi in zip(y, left, w):
                if wi >= 0.08:
                    ax.text(li + wi / 2, yi, f"{wi:.0%}", ha="center", va="center", fontsize=6.5)
            left += w
        if left.max() < 0.999:
            ax.barh(y, 1 - left, left=left, color=colors[-1], label="other", height=0.7)
        ax.set_yticks(y, [r[0] for r in rows])
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"token share by {part[:-1]}")
        ax.set_title(f"who is in each criterion's top quarter (by {part[:-1]})")
        ax.legend(loc="upper center", bbox_to_anchor=(0.45, -0.16), ncol=min(2, len(labels) + 1), frameon=False)

        eff = [c["buckets"]["effective"]["top"] for c in cards]
        rand = cards[0]["buckets"]["effective"]["random"]
        yb = np.arange(len(cards))[::-1]
        bar_colors = ["#d62728" if c["verdict"]["warn"] else "#1f77b4" for c in cards]
        bars = bx.barh(yb, np.nan_to_num(eff), color=bar_colors, height=0.7)
        for b, c in zip(bars, cards):
            if c["verdict"]["unreliable"]:
                b.set_hatch("//")
        if math.isfinite(rand):
            bx.axvline(rand, color="black", linestyle="--", linewidth=1, label=f"random quarter {rand:.1f}")
            bx.axvline(threshold * rand, color="#d62728", linestyle=":", linewidth=1, label=f"warning below {threshold * rand:.1f}")
            bx.legend(loc="upper right", frameon=False)
        bx.set_yticks(yb, [c["criterion"] + (" (unreliable)" if c["verdict"]["unreliable"] else "") for c in cards])
        bx.set_xlabel("effective buckets (exp entropy)")
        bx.set_title("top quarter: effective buckets\n(red: the card warns)")
        fig.tight_layout()
        return _render(fig)
