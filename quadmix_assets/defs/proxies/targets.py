"""Stage 5a: what the proxies are judged on, and how they read text.

``target_sets``: every target set (bundled downstream-style sets, or the user's own text files) split by a
fixed hash rule into a *target* half, scored during the search, and a disjoint *held-out* half, used only
to judge final mixtures. ``proxy_tokenizer``: a byte-level BPE trained on a seeded corpus sample, or any
pretrained tokenizer named in the settings.
"""


import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetKey, AllPartitionMapping, AssetDep, AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from quadmix_assets import keys
from quadmix_assets.dagster_support.current import select_shards
from quadmix_assets.dagster_support.k8s import pod_tags
from quadmix_assets.reporting import markdown_table
from quadmix_assets.dagster_support.provenance import provenance
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.dagster_support.table_metadata import table_metadata, uri_metadata
from quadmix_assets.proxy.objective import (
    LEAK_MIN_WORDS,
    LEAK_NGRAM,
    corpus_leaks,
    count_duplicates,
    drop_duplicates,
    load_source,
    plan,
    validate_set,
)
from quadmix_assets.proxy.targets import example_half, load_target_sets, load_text_file, target_table
from quadmix_assets.proxy.tokenizer import eos_id, load_tokenizer, train_bpe_tokenizer
from quadmix_assets.storage import StorageRoot, content_hash, layout

TARGETS_VERSION = "target-sets-v1"
TOKENIZER_VERSION = "proxy-tokenizer-v1"


def objective_sets(settings: QuadmixSettings, available: list[str]) -> list[str]:
    """The sets whose mean target-half loss the proxies minimise: the settings' ``objective_sets``, else the
    preset's, else all of them. Sets the corpus's target data lacks are refused (settings) or skipped
    (a preset's default list)."""
    chosen = settings.objective_sets
    if not chosen:
        preset_sets = settings.run_preset().objective_sets
        chosen = [s for s in (preset_sets or ()) if s in available]
        if not chosen:
            return sorted(available)
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ValueError(f"objective_sets {missing} are not target sets; available: {sorted(available)}")
    return sorted(chosen)


def _load_sets(settings: QuadmixSettings):
    """The target sets, their roles, the objective's and the judge's weights, and per set what validation
    found (duplicates counted / dropped); quadmix_assets.proxy.objective's rules."""
    root = settings.target_dir or settings.data_dir
    objective_src, judge_src = settings.target_sources()
    if objective_src and settings.objective_sets:
        raise ValueError("give the objective either as `objective` (sets with weights) or as `objective_sets` (names), not both")
    p = plan(objective_src, judge_src)
    checks: dict[str, dict] = {}
    if p is None:
        sets = load_target_sets(root, extra_files=settings.target_files)
        roles: dict[str, str] = {}
    else:
        sets = load_target_sets(root, names=p.bundled) if p.bundled != [] else {}
        for f in settings.target_files:
            ts = load_text_file(Path(f))
            sets[ts.name] = ts
        roles = dict(p.roles)
        for name, src in p.files.items():
            ts, dropped = drop_duplicates(load_source(src))
            halves = {"target": 0, "heldout": 0}
            for i, ex in enumerate(ts.examples):
                halves[example_half(roles[name], name, i, ex.text)] += 1
            validate_set(ts, roles[name], halves)
            sets[name] = ts
            checks[name] = {"duplicates_dropped": dropped, "file": src.to_dict()}
        sets = dict(sorted(sets.items()))
    for name, ts in sets.items():
        checks.setdefault(name, {"duplicates_dropped": 0})["duplicates_kept"] = count_duplicates(ts)
    empty = [n for n, s in sets.items() if len(s) == 0]
    if not sets or empty:
        raise ValueError(f"no usable target sets under {root}/targets" if not sets else f"target sets with no examples: {empty}")
    if p is not None and p.objective:
        weights = dict(p.objective)
        objective = sorted(weights)
    else:
        objective = objective_sets(settings, list(sets))
        weights = {n: 1.0 for n in objective}
    return sets, roles, objective, weights, (p.judge if p is not None else None), checks, p


def _leaks(storage: StorageRoot, shards: list[str], table: pa.Table) -> dict[str, int]:
    """Per set, how many examples share a word 13-gram (or, when short, their whole text) with a corpus
    document (quadmix_assets.proxy.objective.corpus_leaks)."""
    by_set: dict[str, list[str]] = {}
    for name, text in zip(table["set"].to_pylist(), table["text"].to_pylist()):
        by_set.setdefault(name, []).append(text)

    def documents():
        for key in shards:
            yield from storage.read_parquet(layout.documents(key), columns=["text"])["text"].to_pylist()

    return {n: int(v.sum()) for n, v in corpus_leaks(by_set, documents()).items()}


@asset(
    group_name="proxies",
    op_tags=pod_tags("fanin"),
    code_version=TARGETS_VERSION,
    deps=[AssetDep(AssetKey(keys.DOCUMENTS), partition_mapping=AllPartitionMapping())],
    kinds={"parquet"},
    description="Every target-set example with its half: `target` (proxy losses, the search) or `heldout` "
    "(judging final mixtures only), split by sha256(set, index, text) or by the set's role in the user's "
    "objective / judge; duplicates and corpus leaks per set (docs/objective.md).",
)
def target_sets(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    sets, roles, objective, weights, judge, checks, p = _load_sets(settings)
    table = target_table(sets, roles)
    halves_all = table["half"].to_pylist()
    judge_sets = sorted(judge) if judge else sorted({n for n, h in zip(table["set"].to_pylist(), halves_all) if h == "heldout"})
    judge_weights = dict(judge) if judge else {n: 1.0 for n in judge_sets}
    facts = {"rows": table.num_rows, "text": hashlib.sha256("\x00".join(table["text"].to_pylist()).encode()).hexdigest(),
             "half": hashlib.sha256("".join(halves_all).encode()).hexdigest()}
    if p is not None:  # the default's version stays what it was; a user objective's weights are part of it
        facts |= {"objective_weights": weights, "judge_weights": judge_weights}
    version = content_hash(facts)
    params = {"target_dir": "targets", "extra_files": [Path(f).name for f in settings.target_files], "objective_sets": objective}
    if p is not None:
        params |= {"objective": {n: weights[n] for n in objective}, "judge": judge_weights,
                   "files": {n: Path(str(c["file"]["path"])).name for n, c in checks.items() if "file" in c}}
    prov = provenance(context, TARGETS_VERSION, params=params, inputs={"examples": version})
    uri = storage.write_parquet(layout.target_examples(), table, prov)
    selection = select_shards(context, settings)
    leaks = _leaks(storage, selection.shards, table)
    counts = {}
    for name in sets:
        halves = pc.filter(table["half"], pc.equal(table["set"], name)).to_pylist()
        counts[name] = {"target": halves.count("target"), "heldout": halves.count("heldout"), "multiple_choice": sets[name].multiple_choice,
                        "role": roles.get(name, "both"), "duplicates_dropped": checks[name]["duplicates_dropped"],
                        "duplicates_kept": checks[name]["duplicates_kept"], "corpus_leaks": leaks.get(name, 0)}
    card = {"version": version, "objective_sets": objective, "objective_weights": {n: weights[n] for n in objective},
            "judge_sets": judge_sets, "judge_weights": judge_weights, "sets": counts,
            "leak_rule": f"word {LEAK_NGRAM}-gram shared with a corpus document (whole text under {LEAK_NGRAM} words, "
                         f"not checked under {LEAK_MIN_WORDS}); leaked examples are kept", "leak_shards": len(selection.shards),
            "provenance": prov}
    storage.write_json(layout.target_card(), card)
    leaked = {n: c["corpus_leaks"] for n, c in counts.items() if c["corpus_leaks"]}
    if leaked:
        context.log.warning(f"target examples that also appear in the corpus (kept; docs/objective.md): {leaked}")
    rows = [[n, c["target"], c["heldout"], c["role"], "yes" if c["multiple_choice"] else "no",
             f"{weights[n]:g}" if n in objective else "-", f"{judge_weights[n]:g}" if n in judge_weights else "-",
             c["duplicates_dropped"], c["duplicates_kept"], c["corpus_leaks"]] for n, c in counts.items()]
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri), **uri_metadata(uri),
            "sets": len(sets),
            "examples": table.num_rows,
            **table_metadata(table),
            "target_examples": sum(c["target"] for c in counts.values()),
            "heldout_examples": sum(c["heldout"] for c in counts.values()),
            "objective_sets": MetadataValue.json(objective),
            "objective_weights": MetadataValue.json({n: weights[n] for n in objective}),
            "judge_sets": MetadataValue.json(judge_sets),
            "judge_weights": MetadataValue.json(judge_weights),
            "corpus_leaks": MetadataValue.json(leaked),
            "corpus_leaks_total": int(sum(leaked.values())),
            "duplicates_dropped": MetadataValue.json({n: c["duplicates_dropped"] for n, c in counts.items() if c["duplicates_dropped"]}),
            "targets_version": version,
            "table": MetadataValue.md(markdown_table(["set", "target half", "held-out half", "role", "multiple choice",
                                                      "objective weight", "judge weight", "duplicates dropped",
                                                      "duplicates kept", "corpus leaks"], rows)),
        },
        data_version=DataVersion(version),
    )


def _training_sample(storage: StorageRoot, shards: list[str], n_docs: int) -> list[str]:
    """The ``n_docs`` documents with the smallest id hashes over ``shards``: a seeded-by-content sample that
    does not depend on shard order or count, in that hash order."""
    hashes, where = [], []
    for key in shards:
        h = storage.read_parquet(layout.documents(key), columns=["id_hash"])["id_hash"].to_numpy()
        hashes.append(h)
        where.append(np.stack([np.full(len(h), len(where)), np.arange(len(h))], 1))
    if not hashes:
        raise ValueError("no documents: materialize `documents` for at least one shard first")
    allh = np.concatenate(hashes)
    loc = np.concatenate(where)
    pick = np.argsort(allh, kind="stable")[: int(n_docs)]
    texts: list[str] = [""] * len(pick)
    for s in np.unique(loc[pick, 0]):
        sel = np.flatnonzero(loc[pick, 0] == s)
        col = storage.read_parquet(layout.documents(shards[int(s)]), columns=["text"])["text"]
        for j, t in zip(sel, col.take(pa.array(loc[pick[sel], 1])).to_pylist()):
            texts[j] = t
    return texts


@asset(
    group_name="proxies",
    op_tags=pod_tags("model"),
    code_version=TOKENIZER_VERSION,
    deps=[AssetDep(AssetKey(keys.DOCUMENTS), partition_mapping=AllPartitionMapping())],
    kinds={"tokenizers"},
    description="Tokenizer of the proxy models: a byte-level BPE trained on a content-seeded corpus sample "
    "(vocabulary size from the preset), or the pretrained tokenizer named by `tokenizer`.",
)
def proxy_tokenizer(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    preset = settings.run_preset()
    if settings.tokenizer:
        tok = load_tokenizer(settings.tokenizer)
        source = {"pretrained": settings.tokenizer}
        left_out = {}
    else:
        selection = select_shards(context, settings)
        shards = selection.shards
        texts = _training_sample(storage, shards, preset.tokenizer_train_docs)
        tok = train_bpe_tokenizer(texts, preset.tokenizer_vocab, seed=preset.seed)
        source = {"trained": "byte-level BPE", "train_docs": len(texts), "shards": len(shards),
                  "vocab_requested": preset.tokenizer_vocab}
        left_out = selection.left_out
    serial = tok.to_str()
    version = hashlib.sha256(serial.encode("utf-8")).hexdigest()[:16]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(serial, encoding="utf-8")
        uri = storage.write_file(layout.tokenizer_file(), path)
    card = {"version": version, "vocab_size": int(tok.get_vocab_size()), "eos_id": eos_id(tok), "source": source,
            "provenance": provenance(context, TOKENIZER_VERSION, params=source)}
    storage.write_json(layout.model_card("proxy_tokenizer"), card)
    sample = "Data selection for language model pretraining."
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri), **uri_metadata(uri),
            "tokenizer_version": version,
            "vocab_size": card["vocab_size"],
            "eos_id": card["eos_id"],
            "source": MetadataValue.json(source),
            "shards_left_out": MetadataValue.json(left_out),
            "shards_left_out_count": len(left_out),
            "example": MetadataValue.md(f"`{sample}` -> {len(tok.encode(sample).ids)} tokens: `{tok.encode(sample).tokens}`"),
        },
        data_version=DataVersion(version),
    )
