"""The graph on bad input (one bad shard fails alone, bad records are quarantined) and on a corpus of
another shape (Parquet, another text column, no ids). Both reuse the demo run's trained classifiers
through the `domain_model` / `dclm_model` settings, which is also how users import their own models."""

from __future__ import annotations

import csv
import gzip
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import DagsterInstance

from quadmix_assets import settings as env
from quadmix_assets.mixing.fanin import mixture_scores as computed_scores
from quadmix_assets.runner import run_pipeline
from quadmix_assets.scoring.criteria import CRITERIA
from quadmix_assets.storage import layout

from .conftest import CORPUS, make_settings


def _imported_models(demo_settings, tiny_transformers) -> dict:
    """The demo run's fastText classifiers, imported by path, and tiny transformer models by config."""
    storage = demo_settings.storage()
    return {
        "domain_model": storage.path(layout.model_file("domain_classifier")),
        "dclm_model": storage.path(layout.model_file("dclm_classifier")),
        **tiny_transformers,
    }


def _run(settings, tmp_path):
    (tmp_path / "home").mkdir()
    lines: list[str] = []
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        summary = run_pipeline(settings, instance, log=lines.append)
    return summary, lines


def test_bad_shards_fail_alone_and_bad_records_are_quarantined(demo_run, tiny_transformers, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "shard-00002.jsonl.gz", corpus / "good.jsonl.gz")
    good_lines = gzip.open(CORPUS / "shard-00003.jsonl.gz", "rb").read().splitlines()[:40]
    other_shard_line = gzip.open(CORPUS / "shard-00002.jsonl.gz", "rb").readline().rstrip(b"\n")
    (corpus / "messy.jsonl").write_bytes(
        b"\n".join(
            good_lines[:30]
            + [b"{not json", b'{"id": "x1", "text": "\xff\xfe bad bytes"}', b'{"id": "x2", "text": 17}', b'{"id": "x3", "text": "   "}']
            + [good_lines[0]]  # duplicate id
            + [other_shard_line]  # the same document as in `good`: a cross-shard duplicate
        )
        + b"\n"
    )
    whole = gzip.compress(b"\n".join(good_lines[30:40]) + b"\n")
    (corpus / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    pq.write_table(pa.table({"body": ["no text column here"]}), corpus / "notext.parquet")
    (corpus / "empty.jsonl").write_bytes(b"")

    settings = make_settings(str(corpus / "*"), tmp_path / "storage", **_imported_models(demo_run[0], tiny_transformers))
    summary, lines = _run(settings, tmp_path)

    assert set(summary.shards_failed) == {"notext"}, lines
    assert "text" in summary.shards_failed["notext"] and "body" in summary.shards_failed["notext"]
    assert sorted(summary.shards_ok) == ["cut", "empty", "good", "messy"]
    assert summary.mixtures_ok and not summary.mixtures_failed, lines
    storage = settings.storage()
    q = storage.read_parquet(layout.quarantine("messy")).to_pylist()
    assert sorted(r["reason"] for r in q) == ["duplicate_id", "empty_text", "invalid_utf8", "malformed_json", "non_string_text"]
    assert storage.read_parquet(layout.documents("messy")).num_rows == 31
    cut = storage.read_parquet(layout.quarantine("cut")).to_pylist()
    assert [r["reason"] for r in cut] == ["truncated_gzip"]
    assert storage.read_parquet(layout.documents("cut")).num_rows >= 1
    assert [r["reason"] for r in storage.read_parquet(layout.quarantine("empty")).to_pylist()] == ["empty_file"]
    card = storage.read_json(layout.normaliser_card())
    assert "notext" in card["missing_shards"] and "good" in card["shards"]
    # the same text in `good` and `messy`: kept once (in the first shard key), quarantined in the other
    # with a pointer to the kept copy; no mixture draws the quarantined copy
    dup_id = json.loads(other_shard_line)["id"]
    dups = storage.read_parquet(layout.cross_shard_duplicates()).to_pylist()
    assert [(d["shard"], d["row"], d["id"], d["reason"], d["kept_shard"], d["kept_row"], d["kept_id"]) for d in dups] == [
        ("messy", 30, dup_id, "duplicate_text", "good", 0, dup_id)
    ]
    assert card["duplicate_text"]["quarantined"] == 1 and card["duplicate_text"]["per_shard"] == {"messy": 1}
    assert card["cross_shard_duplicate_ids"] == []  # the repeated id was the repeated text
    n_docs = sum(storage.read_parquet(layout.documents(k), columns=["id"]).num_rows for k in card["shards"])
    assert card["documents"] == n_docs - 1
    for mixture_id in summary.mixtures_ok:
        scores = computed_scores(storage, mixture_id, CRITERIA)
        assert scores.num_rows == n_docs - 1
        assert ("messy", 30) not in set(zip(scores["shard"].to_pylist(), scores["row"].to_pylist()))
        assert ("good", 0) in set(zip(scores["shard"].to_pylist(), scores["row"].to_pylist()))


def test_unseen_parquet_corpus_with_other_text_field_and_no_ids(demo_run, tiny_transformers, tmp_path):
    rows = list(csv.DictReader(open(f"{env.data_dir()}/labels/fineweb_edu_prompt_scores.csv", encoding="utf-8")))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(2):
        part = rows[i::2]
        pq.write_table(
            pa.table({"content": [r["text"] for r in part], "edu_score": [r["score"] for r in part]}),
            corpus / f"part-{i}.parquet",
        )
    settings = make_settings(
        str(corpus / "*.parquet"), tmp_path / "storage", text_field="content", n_configs=2, **_imported_models(demo_run[0], tiny_transformers)
    )
    summary, lines = _run(settings, tmp_path)
    assert summary.ok and sorted(summary.shards_ok) == ["part-0", "part-1"], lines
    # 2 draws, random, english-random (langid's keep rule), each <criterion>-only, criteria-mean
    assert len(summary.mixtures_ok) == 2 + 2 + len(CRITERIA) + 1
    storage = settings.storage()
    docs = storage.read_parquet(layout.documents("part-0"))
    assert docs.num_rows == 75
    assert all(i.startswith("sha256-") for i in docs["id"].to_pylist())
    assert "edu_score" in docs.column_names  # original fields kept
    manifest = storage.read_parquet(layout.mixture_manifest(summary.mixtures_ok[0]))
    assert manifest.num_rows > 0 and set(manifest["shard"].to_pylist()) <= {"part-0", "part-1"}
    # models swapped by config are the ones that scored: the tiny LLaMA and the tiny BERT encoder
    demo_card = demo_run[0].storage().read_json(layout.model_card("askllm_student"))
    assert storage.read_json(layout.model_card("askllm_student"))["teacher"] != demo_card["teacher"]
    assert storage.read_json(layout.model_card("edu_teacher"))["encoder_model"] == tiny_transformers["edu_encoder"]

