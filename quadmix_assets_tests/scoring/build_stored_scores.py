"""Builds ``stored_scores.parquet``, the scores that ``test_stored_cards.py`` judges: what the criterion cards
need (per document: tokens, source, domain label, and each criterion's score as stored by a run), read from
two finished ``cpu`` demo storages of the bundled corpus:

* ``OLD``: a run of the stand-ins as they were before the criteria work (DCLM v1, positives with the
  legal-keyword FineWeb pages; Edu v1, a head on legal-usefulness labels, distilled) and AskLLM's student;
* ``NEW``: a run of the current stand-ins (DCLM v2, Edu v2) and of the heuristic rules, the reference.

Every card figure depends on the scores only through their order (top quarter, rank AUC, eta squared of ranks),
so each score is kept as its dense rank (``uint16``, ties kept, null where the run stored NaN): the cards are the
same as on the raw scores, at a tenth of the size. The file's metadata records the domain names, the seed, the
student cards of both runs and, per column, the storage, the criterion and the producing code and model versions
from the stored attribute files.

    .venv/bin/python -m quadmix_assets_tests.scoring.build_stored_scores OLD_STORAGE NEW_STORAGE OUT.parquet

A later stand-in is added as a column from a third storage of the same corpus (the other columns kept):

    .venv/bin/python -m quadmix_assets_tests.scoring.build_stored_scores --add FIXTURE.parquet STORAGE COLUMN=CRITERION
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.stats import rankdata

from quadmix_assets.scoring.cards import load_corpus_view
from quadmix_assets.scoring.criteria import attribute_name
from quadmix_assets.storage import StorageRoot, layout

#: fixture column -> (storage, criterion)
COLUMNS = {
    "dclm_v1": ("old", "dclm"),
    "edu_v1": ("old", "edu"),
    "askllm": ("old", "askllm"),
    "dclm_v2": ("new", "dclm"),
    "edu_v2": ("new", "edu"),
    "heuristic": ("new", "heuristic"),  # the reference: the legal share of the heuristic rules' top quarter
}
STUDENTS = ("askllm_student", "edu_student")


def dense_ranks(scores: np.ndarray) -> pa.Array:
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    ranks = np.zeros(s.size, dtype=np.uint16)
    ranks[ok] = rankdata(s[ok], method="dense").astype(np.uint16)
    return pa.array(ranks, type=pa.uint16(), mask=~ok)


def _produced_by(storage: StorageRoot, criterion: str, shard: str) -> dict:
    meta = pq.read_schema(storage.path(layout.attribute(attribute_name(criterion), shard)),
                          filesystem=storage.fs).metadata or {}
    record = json.loads(meta.get(b"quadmix", b"{}"))
    return {"code_version": record.get("code_version"), "models": record.get("models")}


def _write(table: pa.Table, meta: dict, out: str) -> None:
    table = table.replace_schema_metadata({"stored_scores": json.dumps(meta, sort_keys=True)})
    pq.write_table(table, out, compression="zstd", compression_level=19, use_dictionary=["source"])


def build(old_root: str, new_root: str, out: str) -> None:
    roots = {"old": StorageRoot(old_root), "new": StorageRoot(new_root)}
    shards = {k: s.read_json(layout.criterion_cards())["shards"] for k, s in roots.items()}
    if shards["old"] != shards["new"]:
        raise ValueError("the two storages hold different shards")
    names = roots["new"].read_json(layout.model_card("domain_classifier"))["domain_names"]
    views = {k: load_corpus_view(s, shards[k], sorted({c for r, c in COLUMNS.values() if r == k}), names)
             for k, s in roots.items()}
    if not (np.array_equal(views["old"].n_tokens, views["new"].n_tokens)
            and np.array_equal(views["old"].source, views["new"].source)):
        raise ValueError("the two storages hold different documents")
    new = views["new"]
    columns = {
        "n_tokens": pa.array(new.n_tokens.astype(np.int32)),
        "source": pa.array(new.source.tolist()).dictionary_encode(),
        "domain": pa.array(new.domain.astype(np.int16)),
        **{col: dense_ranks(views[r].scores[c]) for col, (r, c) in COLUMNS.items()},
    }
    meta = {
        "domain_names": names,
        "seed": roots["new"].read_json(layout.criterion_cards())["seed"],
        "columns": {col: {"storage": r, "criterion": c, **_produced_by(roots[r], c, shards[r][0])}
                    for col, (r, c) in COLUMNS.items()},
        "students": {k: {s: roots[k].read_json(layout.model_card(s)) for s in STUDENTS} for k in roots},
    }
    _write(pa.table(columns), meta, out)


def add_columns(fixture: str, root: str, columns: dict[str, str]) -> None:
    """Add ``column -> criterion`` scores of the storage ``root`` to the fixture (rewritten in place); the
    storage must hold the fixture's documents (same tokens and sources, in the same order)."""
    table = pq.read_table(fixture)
    meta = json.loads(table.schema.metadata[b"stored_scores"])
    storage = StorageRoot(root)
    shards = storage.read_json(layout.criterion_cards())["shards"]
    view = load_corpus_view(storage, shards, sorted(set(columns.values())), meta["domain_names"])
    if not (np.array_equal(view.n_tokens, table["n_tokens"].to_numpy())
            and np.array_equal(view.source, np.asarray(table["source"].to_pylist(), dtype=object))):
        raise ValueError(f"{root} holds other documents than {fixture}")
    label = f"added-{len(meta['students'])}"
    for col, criterion in columns.items():
        if col in table.column_names:
            raise ValueError(f"{fixture} already has a column {col!r}")
        table = table.append_column(col, dense_ranks(view.scores[criterion]))
        meta["columns"][col] = {"storage": label, "criterion": criterion, **_produced_by(storage, criterion, shards[0])}
    meta["students"][label] = {s: storage.read_json(layout.model_card(s)) for s in STUDENTS}
    _write(table, meta, fixture)


if __name__ == "__main__":
    if sys.argv[1] == "--add":
        add_columns(sys.argv[2], sys.argv[3], dict(a.split("=", 1) for a in sys.argv[4:]))
    else:
        build(*sys.argv[1:4])
