"""Target sets for proxy-model loss (and held-out evaluation).

Sources under ``<data_dir>/targets``:

* ``llm_foundry/*.jsonl``: multiple choice rows ``{"query", "choices", "gold"}`` -> text = query + " " +
  gold choice; ``{"context", "continuation"}`` -> context + " " + continuation; ``{"context", "answer"}``
  (triviaqa) -> context + " " + answer; winogrande ``{"context_options", "continuation", "gold"}`` ->
  gold option + " " + continuation (MC over the options).
* ``mmlu_redux/*.csv`` (``;``-separated, rows with ``error_type`` ``ok`` case-insensitively; the
  moral_scenarios file is cp1252): one set ``mmlu_redux`` with text = question + " Answer: " + gold choice.
* ``wikitext-2/{valid,test}.txt``: one set ``wikitext2``; an example is one non-empty, non-heading line.
* user files: any ``*.jsonl`` / ``*.parquet`` with a ``text`` column passed as ``extra_files`` (the legacy
  ``target_files`` setting), or named in the user's objective / judge (:mod:`quadmix_assets.proxy.objective`).

Split rule (:func:`split_target`): example ``i`` of set ``name`` goes to the *held-out* half iff the first
8 bytes of ``sha256(f"{name}\\x00{i}\\x00{text}")`` read as a big-endian integer are odd; otherwise to the
*target* half. Deterministic, disjoint and covering; independent of Python's hash seed. A set's *role*
(:func:`target_table`'s ``roles``) decides whether the rule applies: ``both`` (the default: every bundled
set, and a user set in both the objective and the judge) is split; ``objective`` (a user set only the
proxies score) is all target; ``judge`` (a user set only ``quadmix compare`` judges with) is all held out.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence


@dataclass(frozen=True)
class TargetExample:
    text: str
    choices: tuple[str, ...] | None = None
    gold: int | None = None
    prefix: str | None = None  # MC: the shared context the choices continue


@dataclass
class TargetSet:
    name: str
    examples: list[TargetExample] = field(default_factory=list)
    multiple_choice: bool = False

    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)


def _foundry_example(row: dict) -> TargetExample | None:
    if "query" in row and "choices" in row and "gold" in row:
        ch = tuple(str(c) for c in row["choices"])
        g = int(row["gold"])
        return TargetExample(text=f"{row['query']} {ch[g]}", choices=ch, gold=g, prefix=str(row["query"]))
    if "context_options" in row:
        opts = tuple(str(c) for c in row["context_options"])
        g = int(row["gold"])
        return TargetExample(text=f"{opts[g]} {row['continuation']}", choices=opts, gold=g,
                             prefix=None)
    if "context" in row and "continuation" in row:
        return TargetExample(text=f"{row['context']} {row['continuation']}")
    if "context" in row and "answer" in row:
        return TargetExample(text=f"{row['context']} {row['answer']}")
    return None


def load_foundry_file(path: Path) -> TargetSet:
    ts = TargetSet(name=path.stem)
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            ex = _foundry_example(json.loads(line))
            if ex is None:
                raise ValueError(f"{path}: row with unknown keys {sorted(json.loads(line))}")
            ts.examples.append(ex)
    ts.multiple_choice = bool(ts.examples) and ts.examples[0].choices is not None
    return ts


def load_mmlu_redux(folder: Path) -> TargetSet:
    ts = TargetSet(name="mmlu_redux", multiple_choice=True)
    for path in sorted(folder.glob("*.csv")):
        raw = path.read_bytes()
        try:
            txt = raw.decode("utf-8")
        except UnicodeDecodeError:
            txt = raw.decode("cp1252")
        txt = txt.lstrip("\ufeff")
        header = txt.split("\n", 1)[0]
        delim = ";" if header.count(";") > header.count(",") else ","
        for row in csv.DictReader(io.StringIO(txt, newline=""), delimiter=delim):
            row = {str(k).strip(): v for k, v in row.items() if k}
            if str(row.get("error_type", "")).strip().lower() != "ok":
                continue
            try:
                choices = tuple(str(c) for c in ast.literal_eval(row["choices"]))
                a = str(row["answer"]).strip()
                g = "ABCDEFGH".index(a) if a in "ABCDEFGH" and a else int(a)
                choices[g]
            except (ValueError, SyntaxError, IndexError):
                continue
            q = row["question"].strip()
            ts.examples.append(TargetExample(text=f"{q} Answer: {choices[g]}", choices=choices, gold=g,
                                             prefix=f"{q} Answer:"))
    return ts


def load_wikitext(folder: Path) -> TargetSet:
    ts = TargetSet(name="wikitext2")
    for split in ("valid", "test"):
        p = folder / f"{split}.txt"
        if not p.exists():
            continue
        for line in p.read_text(encoding="utf-8").splitlines():
            s = line.strip()
            if s and not s.startswith("="):
                ts.examples.append(TargetExample(text=s))
    return ts


def load_text_file(path: Path, text_field: str = "text") -> TargetSet:
    ts = TargetSet(name=path.stem.split(".")[0])
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        texts = pq.read_table(path, columns=[text_field]).column(text_field).to_pylist()
    else:
        with open(path, encoding="utf-8") as fh:
            texts = [json.loads(line)[text_field] for line in fh if line.strip()]
    ts.examples = [TargetExample(text=str(t)) for t in texts if t]
    return ts


def load_target_sets(data_dir: str | Path, names: Sequence[str] | None = None, *,
                     extra_files: Iterable[str | Path] = ()) -> dict[str, TargetSet]:
    """All target sets under ``<data_dir>/targets`` (plus ``extra_files``), keyed by name, sorted."""
    root = Path(data_dir) / "targets"
    wanted = set(names) if names is not None else None
    out: dict[str, TargetSet] = {}
    for p in sorted((root / "llm_foundry").glob("*.jsonl")):
        if wanted is None or p.stem in wanted:
            out[p.stem] = load_foundry_file(p)
    if (root / "mmlu_redux").is_dir() and (wanted is None or "mmlu_redux" in wanted):
        out["mmlu_redux"] = load_mmlu_redux(root / "mmlu_redux")
    if (root / "wikitext-2").is_dir() and (wanted is None or "wikitext2" in wanted):
        out["wikitext2"] = load_wikitext(root / "wikitext-2")
    for f in extra_files:
        ts = load_text_file(Path(f))
        if wanted is None or ts.name in wanted:
            out[ts.name] = ts
    if wanted is not None and (missing := wanted - set(out)):
        raise ValueError(f"unknown target sets: {sorted(missing)}")
    return dict(sorted(out.items()))


def _heldout(name: str, i: int, text: str) -> bool:
    h = hashlib.sha256(f"{name}\x00{i}\x00{text}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") & 1 == 1


def split_target(examples: Sequence, name: str) -> tuple[list, list]:
    """``(target_half, heldout_half)`` by the sha256 rule in the module docstring. ``examples`` may be
    TargetExamples or strings; order within each half is preserved."""
    target, heldout = [], []
    for i, ex in enumerate(examples):
        text = ex.text if isinstance(ex, TargetExample) else str(ex)
        (heldout if _heldout(name, i, text) else target).append(ex)
    return target, heldout


#: a set's role -> how its examples are assigned to halves (module docstring)
ROLES = ("both", "objective", "judge")


def example_half(role: str, name: str, i: int, text: str) -> str:
    """``target`` or ``heldout`` for example ``i`` of set ``name`` with role ``role``."""
    if role == "objective":
        return "target"
    if role == "judge":
        return "heldout"
    if role != "both":
        raise ValueError(f"unknown target-set role {role!r}; one of {ROLES}")
    return "heldout" if _heldout(name, i, text) else "target"


def target_table(sets: dict[str, TargetSet], roles: dict[str, str] | None = None):
    """All examples of ``sets`` as one Arrow table, one row per example, with its half by
    :func:`example_half` (``roles``: set -> role, default ``both``: :func:`split_target`): columns ``set``, ``index`` (position in its set), ``half`` ("target" or
    "heldout"), ``text``, ``prefix`` (MC: shared context, else null), ``choices`` (list, null unless MC),
    ``gold`` (int, null unless MC), ``multiple_choice`` (bool, per set)."""
    import pyarrow as pa

    cols: dict[str, list] = {k: [] for k in ("set", "index", "half", "text", "prefix", "choices", "gold", "multiple_choice")}
    for name, ts in sets.items():
        for i, ex in enumerate(ts.examples):
            cols["set"].append(name)
            cols["index"].append(i)
            cols["half"].append(example_half((roles or {}).get(name, "both"), name, i, ex.text))
            cols["text"].append(ex.text)
            cols["prefix"].append(ex.prefix)
            cols["choices"].append(list(ex.choices) if ex.choices is not None else None)
            cols["gold"].append(ex.gold)
            cols["multiple_choice"].append(bool(ts.multiple_choice))
    return pa.table({
        "set": pa.array(cols["set"], pa.string()),
        "index": pa.array(cols["index"], pa.int64()),
        "half": pa.array(cols["half"], pa.string()),
        "text": pa.array(cols["text"], pa.string()),
        "prefix": pa.array(cols["prefix"], pa.string()),
        "choices": pa.array(cols["choices"], pa.list_(pa.string())),
        "gold": pa.array(cols["gold"], pa.int64()),
        "multiple_choice": pa.array(cols["multiple_choice"], pa.bool_()),
    })
