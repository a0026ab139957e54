"""The user's objective and judge: which target sets the proxies minimise (and with what weights), and which
sets ``quadmix compare`` judges the final mixtures on. No Dagster.

A *source* is one entry of the ``objective`` or ``judge`` list (settings, ``--objective`` / ``--judge``,
a ``--targets`` file): ``{path, weight, name, text_field}``. ``path`` is a local file or an fsspec URL of
JSONL (``.jsonl``, ``.jsonl.gz``) or Parquet with a text column (``text_field``, default ``text``); without
``path`` the entry names a bundled set (``winogrande``, ``mmlu_redux``, ...) by ``name``. ``name`` defaults to
the file's stem; ``weight`` (default 1) is the set's weight in the weighted mean.

Roles (how a set's examples go to halves, :func:`quadmix_assets.proxy.targets.example_half`):

* a set in the objective *and* the judge is split by the sha256 rule: the proxies score its target half,
  the judge its held-out half, so the judge never sees what the proxies were scored on;
* a set only in the objective is used whole by the proxies (no held-out half);
* a set only in the judge is used whole by the judge (no target half);
* no ``judge`` given: the judge is the objective's sets (each split, as the bundled sets always were);
* nothing given: the bundled sets, every one split, the preset's ``objective_sets`` with weight 1 (the
  target table and the objective of a default run are what they were before these settings existed).

The objective is the weighted mean of the per-set mean token losses, ``sum(w_s * L_s) / sum(w_s)``
(:func:`weighted_mean`; equal weights give exactly the plain mean). The judge's average held-out loss is the
same weighted mean over the judge's sets with the judge's weights.

Validation (:func:`validate_set`): a user set must hold at least :data:`MIN_EXAMPLES` distinct examples
(after exact duplicates are dropped; a set that is split needs :data:`MIN_EXAMPLES` in each half), else a
clear error. Exact duplicate texts inside a user set are counted and dropped (the first copy kept). Bundled
sets are loaded as they always were (their duplicates are counted, not dropped, so the default target
table keeps its bytes).

Leaks (:func:`corpus_leaks`): a target example *leaks* when its text, normalised (:func:`normalise_text`:
Unicode NFKC, lower case, every run of non-alphanumerics one space), shares a word 13-gram with some corpus
document's normalised text; an example shorter than 13 words leaks when its whole normalised text appears
as consecutive words in a document (GPT-3's decontamination rule); an example under
:data:`LEAK_MIN_WORDS` words is not checked (any short phrase is somewhere on the web). Leaks are counted per set and reported
(the asset's metadata, the target card, ``quadmix run``'s output, ``quadmix compare``'s notes) as a warning;
leaked examples are NOT dropped: the user decides (drop them from the file, or accept the overlap).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .targets import TargetExample, TargetSet

#: fewest distinct examples a user target set may hold (in each half when it is split)
MIN_EXAMPLES = 16
#: words per n-gram of the leak check
LEAK_NGRAM = 13
#: examples with fewer words are not checked for leaks
LEAK_MIN_WORDS = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


class ObjectiveError(ValueError):
    """A user objective or judge that cannot be used (bad path, format, name, weight or size)."""


@dataclass(frozen=True)
class TargetSource:
    """One entry of an objective or judge list (module docstring)."""

    path: str | None = None
    weight: float = 1.0
    name: str | None = None
    text_field: str = "text"

    @property
    def set_name(self) -> str:
        if self.name:
            return self.name
        base = str(self.path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        for suf in _SUFFIXES:
            if base.endswith(suf):
                return base[: -len(suf)]
        return base.split(".")[0]

    def to_dict(self) -> dict:
        return {"path": self.path, "weight": self.weight, "name": self.set_name, "text_field": self.text_field}


def parse_sources(entries: Iterable, what: str) -> list[TargetSource]:
    """Entries (dicts, :class:`TargetSource` or objects with the same attributes) as checked sources:
    a positive finite weight, a safe set name, a path with a known suffix, no set named twice."""
    out: list[TargetSource] = []
    for k, e in enumerate(entries or ()):
        d = e if isinstance(e, Mapping) else {f: getattr(e, f, None) for f in ("path", "weight", "name", "text_field")}
        unknown = set(d) - {"path", "weight", "name", "text_field"}
        if unknown:
            raise ObjectiveError(f"{what}[{k}]: unknown keys {sorted(unknown)}; an entry has path, weight, name, text_field")
        try:
            weight = float(1.0 if d.get("weight") is None else d["weight"])
        except (TypeError, ValueError):
            raise ObjectiveError(f"{what}[{k}]: weight {d.get('weight')!r} is not a number") from None
        if not math.isfinite(weight) or weight <= 0:
            raise ObjectiveError(f"{what}[{k}]: weight must be a positive finite number, not {weight}")
        path = d.get("path") or None
        if path is None and not d.get("name"):
            raise ObjectiveError(f"{what}[{k}]: give a path (a JSONL / Parquet file) or the name of a bundled set")
        if path is not None:
            path = str(path)
            if "\x00" in path or any(part == ".." for part in path.replace("\\", "/").split("/")):
                raise ObjectiveError(f"{what}[{k}]: path {path!r} is refused (NUL or a '..' component)")
            if not path.lower().endswith(_SUFFIXES):
                raise ObjectiveError(f"{what}[{k}]: {path!r} is neither JSONL (.jsonl, .jsonl.gz) nor Parquet (.parquet)")
        src = TargetSource(path=path, weight=weight, name=d.get("name") or None, text_field=str(d.get("text_field") or "text"))
        if not _NAME.match(src.set_name):
            raise ObjectiveError(f"{what}[{k}]: set name {src.set_name!r} must be 1-64 of A-Z a-z 0-9 _ . - "
                                 "(starting with a letter or digit); give `name`")
        if any(o.set_name == src.set_name for o in out):
            raise ObjectiveError(f"{what}: set {src.set_name!r} is named twice")
        out.append(src)
    return out


def parse_flag(value: str) -> dict:
    """A ``--objective`` / ``--judge`` flag value: ``PATH``, ``PATH@WEIGHT`` or ``NAME@WEIGHT`` (a bundled
    set: a value without a file suffix)."""
    text, weight = value, None
    if "@" in value:
        head, _, tail = value.rpartition("@")
        try:
            weight = float(tail)
            text = head
        except ValueError:
            pass
    entry: dict = {"weight": weight} if weight is not None else {}
    if text.lower().endswith(_SUFFIXES):
        entry["path"] = text
    else:
        entry["name"] = text
    return entry


def read_targets_file(path: str) -> dict[str, list[dict]]:
    """``{objective: [...], judge: [...]}`` from a JSON or YAML file (the ``--targets`` flag)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ObjectiveError(f"--targets {path}: no such file")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        doc = yaml.safe_load(text) or {}
    else:
        doc = json.loads(text)
    if not isinstance(doc, dict) or set(doc) - {"objective", "judge"}:
        raise ObjectiveError(f"--targets {path}: expected a mapping with keys objective and/or judge")
    return {k: list(doc.get(k) or []) for k in ("objective", "judge") if doc.get(k) is not None}


def load_source(src: TargetSource) -> TargetSet:
    """The examples of a file source, read (never written) through fsspec; clear errors for a missing file,
    an unreadable format or a missing text column."""
    import fsspec

    path = str(src.path)
    try:
        if path.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            with fsspec.open(path, "rb") as fh:
                table = pq.read_table(fh)
            if src.text_field not in table.column_names:
                raise ObjectiveError(f"{path}: no column {src.text_field!r} (columns: {table.column_names}); set text_field")
            texts = table.column(src.text_field).to_pylist()
        else:
            texts = []
            with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ObjectiveError(f"{path}, line {n}: not JSON ({exc.msg})") from None
                    if not isinstance(row, dict) or src.text_field not in row:
                        raise ObjectiveError(f"{path}, line {n}: no field {src.text_field!r}; set text_field")
                    texts.append(row[src.text_field])
    except FileNotFoundError:
        raise ObjectiveError(f"target file {path!r} does not exist") from None
    except IsADirectoryError:
        raise ObjectiveError(f"target file {path!r} is a folder, not a JSONL or Parquet file") from None
    except PermissionError:
        raise ObjectiveError(f"target file {path!r} cannot be read (permission denied)") from None
    ts = TargetSet(name=src.set_name)
    ts.examples = [TargetExample(text=str(t)) for t in texts if t is not None and str(t).strip()]
    return ts


def drop_duplicates(ts: TargetSet) -> tuple[TargetSet, int]:
    """``ts`` without exact duplicate texts (first copy kept, order kept) and how many were dropped."""
    seen: set[str] = set()
    kept = []
    for ex in ts.examples:
        if ex.text not in seen:
            seen.add(ex.text)
            kept.append(ex)
    return TargetSet(name=ts.name, examples=kept, multiple_choice=ts.multiple_choice), len(ts.examples) - len(kept)


def count_duplicates(ts: TargetSet) -> int:
    return len(ts.examples) - len({ex.text for ex in ts.examples})


def validate_set(ts: TargetSet, role: str, halves: Mapping[str, int], *, minimum: int = MIN_EXAMPLES) -> None:
    """Refuse a user set with fewer than ``minimum`` examples (in each half it contributes)."""
    need = {"both": ("target", "heldout"), "objective": ("target",), "judge": ("heldout",)}[role]
    short = {h: halves.get(h, 0) for h in need if halves.get(h, 0) < minimum}
    if short:
        raise ObjectiveError(
            f"target set {ts.name!r} ({len(ts)} distinct examples, role {role}) is too small: "
            + ", ".join(f"{n} in the {h} half" for h, n in short.items())
            + f"; at least {minimum} are needed" + (" in each half (it is split in two)" if role == "both" else ""))


@dataclass
class Plan:
    """Which sets the target table holds, each set's role, the objective's and the judge's weights."""

    roles: dict[str, str]
    objective: dict[str, float]
    judge: dict[str, float] | None  # None: every set with a held-out half, weight 1 (the default)
    files: dict[str, TargetSource]
    bundled: list[str] | None  # bundled sets to load (None: all of them)


def plan(objective: Sequence[TargetSource], judge: Sequence[TargetSource]) -> Plan | None:
    """The roles and weights of a user objective / judge (module docstring); None when neither is given
    (the default: the caller keeps today's behaviour)."""
    if not objective and not judge:
        return None
    obj = {s.set_name: s for s in objective}
    jud = {s.set_name: s for s in judge} if judge else dict(obj)
    roles: dict[str, str] = {}
    for name in sorted(set(obj) | set(jud)):
        roles[name] = "both" if (name in obj and name in jud) else ("objective" if name in obj else "judge")
    files: dict[str, TargetSource] = {}
    if not objective:  # the default objective keeps the bundled sets split, a bundled judge set too
        roles.update({n: "both" for n, s in jud.items() if s.path is None})
    for name, s in list(obj.items()) + list(jud.items()):
        if s.path is not None:
            other = files.get(name)
            if other is not None and other.path != s.path:
                raise ObjectiveError(f"set {name!r} names two files ({other.path!r}, {s.path!r}): give each a distinct name")
            files[name] = s
    bundled = sorted(n for n in roles if n not in files)
    return Plan(roles=roles, objective={n: s.weight for n, s in sorted(obj.items())},
                judge={n: s.weight for n, s in sorted(jud.items())} if (judge or objective) else None,
                files=files, bundled=bundled if objective else None)


def weighted_mean(values: Mapping[str, float], weights: Mapping[str, float] | Sequence[str] | None) -> float:
    """The objective: ``sum(w * v) / sum(w)`` over the weighted sets; a list of names (or equal weights)
    gives exactly ``np.mean`` of those sets' values, as the unweighted objective always was."""
    if weights is None:
        names, w = list(values), None
    elif isinstance(weights, Mapping):
        names = list(weights)
        w = np.asarray([float(weights[n]) for n in names])
        if np.all(w == w[0]):
            w = None
    else:
        names, w = list(weights), None
    x = np.asarray([values[n] for n in names], dtype=np.float64)
    if w is None:
        return float(np.mean(x))
    return float(np.sum(w * x) / np.sum(w))


# ------------------------------------------------------------------------------------------------ leaks
_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """NFKC, lower case, every run of non-alphanumeric characters one space, stripped."""
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", str(text)).lower()).strip()


_P = np.uint64(0x100000001B3)


def _word_hashes(words: Sequence[str]) -> np.ndarray:
    """64-bit hashes of words (Python's string hash: the corpus and the targets are hashed in one process,
    so equal words get equal hashes; a different hash seed changes a leak count only through a 64-bit
    collision)."""
    return np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)


def _ngrams(h: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hashes (mod 2**64) of every run of ``n`` consecutive word hashes."""
    return _batch_ngrams([h], [n]).get(n, np.zeros(0, np.uint64))


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Whether each of ``values`` is in ``sorted_set`` (sorted, unique)."""
    if not sorted_set.size or not values.size:
        return np.zeros(values.size, dtype=bool)
    i = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[i] == values


def _batch_ngrams(docs: Sequence[np.ndarray], ks: Sequence[int]) -> dict[int, np.ndarray]:
    """The n-gram hashes (:func:`_ngrams`) of every document in ``docs`` for each ``k`` in ``ks``, computed on
    the documents' word hashes laid end to end (k-grams that cross a document boundary are dropped)."""
    if not docs or not ks:
        return {}
    w = np.concatenate(docs)
    doc = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    out: dict[int, np.ndarray] = {}
    h = w.copy()
    with np.errstate(over="ignore"):
        for k in range(1, max(ks) + 1):
            if k > 1:
                h = h[:-1] * _P + w[k - 1:]
            if k in ks:
                out[k] = h[doc[: len(h)] == doc[k - 1:]]
    return out


def corpus_leaks(sets: Mapping[str, Sequence[str]], documents: Iterable[str], n: int = LEAK_NGRAM,
                 batch_docs: int = 2000) -> dict[str, np.ndarray]:
    """Per set, a boolean per example: whether it leaks into ``documents`` (module docstring). The examples
    are grouped by their n-gram length ``k`` (``n``, or the whole text when shorter); the documents' k-grams
    are hashed a batch at a time and looked up in the sorted target k-grams."""
    names, lengths, groups = [], [], {}
    for name, texts in sets.items():
        for t in texts:
            h = _word_hashes(normalise_text(t).split())
            k = min(n, len(h)) if len(h) >= LEAK_MIN_WORDS else 0
            names.append(name)
            lengths.append(k)
            if k:
                groups.setdefault(k, []).append((len(names) - 1, h))
    grams: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # k -> (example of each gram, gram hashes)
    for k, members in groups.items():
        hashes = _batch_ngrams([h for _, h in members], [k])[k]
        owner = np.repeat([i for i, _ in members], [len(h) - k + 1 for _, h in members])
        grams[k] = (owner, hashes)
    targets = {k: np.unique(g) for k, (_, g) in grams.items()}
    found: dict[int, list[np.ndarray]] = {k: [] for k in targets}
    batch: list[np.ndarray] = []

    def flush() -> None:
        for k, g in _batch_ngrams(batch, sorted(targets)).items():
            found[k].append(g[_member(g, targets[k])])
        batch.clear()

    for i, doc in enumerate(documents, 1):
        batch.append(_word_hashes(normalise_text(doc).split()))
        if i % batch_docs == 0:
            flush()
    flush()
    leaked = np.zeros(len(names), dtype=bool)
    for k, (owner, g) in grams.items():
        hits = np.unique(np.concatenate(found[k])) if found[k] else np.zeros(0, np.uint64)
        leaked[owner[_member(g, hits)]] = True
    out: dict[str, np.ndarray] = {}
    names_arr = np.asarray(names, dtype=object)
    for name in sets:
        out[name] = leaked[names_arr == name] if len(names) else np.zeros(0, dtype=bool)
    return out
