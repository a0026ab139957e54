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
from quadmix_assets.proxy.targets import load_target_sets, target_table
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


@asset(
    group_name="proxies",
    op_tags=pod_tags("fanin"),
    code_version=TARGETS_VERSION,
    kinds={"parquet"},
    description="Every target-set example with its half: `target` (proxy losses, the search) or `heldout` "
    "(judging final mixtures only), split by sha256(set, index, text).",
)
def target_sets(context: AssetExecutionContext, settings: QuadmixSettings) -> MaterializeResult:
    storage = settings.storage()
    root = settings.target_dir or settings.data_dir
    sets = load_target_sets(root, extra_files=settings.target_files)
    empty = [n for n, s in sets.items() if len(s) == 0]
    if not sets or empty:
        raise ValueError(f"no usable target sets under {root}/targets" if not sets else f"target sets with no examples: {empty}")
    table = target_table(sets)
    objective = objective_sets(settings, list(sets))
    version = content_hash({"rows": table.num_rows, "text": hashlib.sha256("\x00".join(table["text"].to_pylist()).encode()).hexdigest(),
                            "half": hashlib.sha256("".join(table["half"].to_pylist()).encode()).hexdigest()})
    prov = provenance(context, TARGETS_VERSION, params={"target_dir": "targets", "extra_files": [Path(f).name for f in settings.target_files],
                                                         "objective_sets": objective}, inputs={"examples": version})
    uri = storage.write_parquet(layout.target_examples(), table, prov)
    counts = {}
    for name in sets:
        halves = pc.filter(table["half"], pc.equal(table["set"], name)).to_pylist()
        counts[name] = {"target": halves.count("target"), "heldout": halves.count("heldout"), "multiple_choice": sets[name].multiple_choice}
    card = {"version": version, "objective_sets": objective, "sets": counts, "provenance": prov}
    storage.write_json(layout.target_card(), card)
    rows = [[n, c["target"], c["heldout"], "yes" if c["multiple_choice"] else "no", "yes" if n in objective else "no"] for n, c in counts.items()]
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(uri), **uri_metadata(uri),
            "sets": len(sets),
            "examples": table.num_rows,
            **table_metadata(table),
            "target_examples": sum(c["target"] for c in counts.values()),
            "heldout_examples": sum(c["heldout"] for c in counts.values()),
            "objective_sets": MetadataValue.json(objective),
            "targets_version": version,
            "table": MetadataValue.md(markdown_table(["set", "target half", "held-out half", "multiple choice", "in objective"], rows)),
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
