"""Nothing silently lost (issue 17): a garbage-replaced shard is left out of every fan-in with a listing
and a non-zero exit; the 513-document shard (a 3-word last scoring chunk) goes through; killed runs are
marked failed; a read-only storage stops the run before any training."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import socket

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

from quadmix_assets import cli
from quadmix_assets.definitions import build_definitions
from quadmix_assets.runner import RUNNER_TAG, RunSummary, _process_token, fail_killed_runs, run_pipeline
from quadmix_assets.storage import layout

from .conftest import CORPUS, make_settings
from .test_bad_and_unseen import _imported_models


def _page_not_found_shard(path) -> None:
    """512 real documents and a "Page not found" page: the heuristic scorer's second chunk has 3 words."""
    with gzip.open(CORPUS / "shard-00000.jsonl.gz", "rb") as fh:  # its first 512 records are all documents
        lines = [line for line in fh.read().splitlines() if line.strip()][:512]
    lines.append(json.dumps({"id": "page-404", "text": "Page not found"}).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_garbage_replaced_shard_is_left_out_listed_and_fails_the_run(demo_run, tiny_transformers, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _page_not_found_shard(corpus / "page404.jsonl")
    shutil.copy(CORPUS / "shard-00005.jsonl.gz", corpus / "victim.jsonl.gz")
    settings = make_settings(str(corpus / "*"), tmp_path / "storage", **_imported_models(demo_run[0], tiny_transformers))
    storage = settings.storage()
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        # an earlier run stored the victim's documents and scores ...
        defs = build_definitions(settings)
        instance.add_dynamic_partitions("shards", ["page404", "victim"])
        assert defs.resolve_job_def("models_job").execute_in_process(instance=instance, raise_on_error=False).success
        assert defs.resolve_job_def("shard_fast_job").execute_in_process(instance=instance, partition_key="victim").success
        old = storage.provenance(layout.documents("victim"))["inputs"]["fingerprint"]
        # ... then its file was replaced by random bytes (same name)
        (corpus / "victim.jsonl.gz").write_bytes(os.urandom(200_000))
        lines: list[str] = []
        summary = run_pipeline(settings, instance, log=lines.append)

    assert list(summary.shards_failed) == ["victim"], lines
    msg = summary.shards_failed["victim"]
    assert "victim.jsonl.gz" in msg and "cannot be decompressed" in msg  # the ShardError, not zlib's message
    assert summary.shards_ok == ["page404"]
    assert "victim" in summary.shards_left_out and "page404" not in summary.shards_left_out
    card = storage.read_json(layout.normaliser_card())
    assert card["shards"] == ["page404"] and "victim" in card["missing_shards"]
    assert old not in json.dumps(card["shard_fingerprints"])  # the stale documents are used nowhere
    assert any(f.startswith("normaliser_covers_corpus") for f in summary.checks_failed)
    assert any(f.startswith("mixture_covers_corpus") for f in summary.checks_failed)
    for mixture in summary.mixtures_ok:
        manifest = storage.read_parquet(layout.mixture_manifest(mixture), columns=["shard"])
        assert set(manifest["shard"].to_pylist()) <= {"page404"}
    assert summary.export, lines
    export = storage.read_json(f"{layout.export_dir(summary.optimum)}/manifest.json")
    assert list(export["inputs"]["documents"]) == ["page404"]
    # the heuristic scorer took the 513-document shard (it crashed on the 3-word last chunk before)
    assert storage.read_parquet(layout.attribute("quality_heuristic", "page404")).num_rows == 513
    # exit code and report
    assert not summary.ok and summary.exit_code() == 1 and summary.exit_code(allow_partial=True) == 0
    out = io.StringIO()
    assert cli.report_failures(summary, out=out) == 1
    text = out.getvalue()
    assert "shard victim FAILED" in text and "victim.jsonl.gz" in text and "--allow-partial" in text
    assert cli.report_failures(summary, allow_partial=True, out=io.StringIO()) == 0


def test_killed_runs_are_marked_failed(tmp_path):
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        dead = DagsterRun(job_name="shard_fast_job", run_id="a" * 36, status=DagsterRunStatus.STARTED,
                          tags={RUNNER_TAG: f"{socket.gethostname()}:{2**22 + 12345}:1"})
        alive = DagsterRun(job_name="shard_fast_job", run_id="b" * 36, status=DagsterRunStatus.STARTED,
                           tags={RUNNER_TAG: _process_token(os.getpid())})
        foreign = DagsterRun(job_name="shard_fast_job", run_id="c" * 36, status=DagsterRunStatus.STARTED)
        for run in (dead, alive, foreign):
            instance.add_run(run)
        assert fail_killed_runs(instance) == [dead.run_id]
        assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
        assert instance.get_run_by_id(foreign.run_id).status == DagsterRunStatus.STARTED
        assert fail_killed_runs(instance) == []


def test_unwritable_storage_stops_the_run_before_any_training(tmp_path, two_shard_corpus):
    (tmp_path / "blocker").write_text("a file where the storage folder should be")
    settings = make_settings(str(two_shard_corpus / "*.jsonl.gz"), tmp_path / "blocker" / "storage")
    (tmp_path / "home").mkdir()
    lines: list[str] = []
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        summary = run_pipeline(settings, instance, log=lines.append)
        assert instance.get_runs() == []  # nothing was started
    assert list(summary.stages_failed) == ["storage"] and "not writable" in summary.stages_failed["storage"]
    assert summary.exit_code() == 1 and summary.exit_code(allow_partial=True) == 1


def test_exit_codes():
    assert RunSummary(mixtures_ok=["m"], export={"path": "exports/m"}).exit_code() == 0
    assert RunSummary().exit_code() == 1  # nothing made
    # mixtures made but nothing exported: a failure, unless --allow-partial accepts it (and says why)
    unexported = RunSummary(mixtures_ok=["m"], optimum_blocked="no measured config to fall back on")
    assert unexported.exit_code() == 1 and unexported.exit_code(allow_partial=True) == 0
    assert unexported.failure_lines() == ["nothing was exported: no measured config to fall back on"]
    partial = RunSummary(mixtures_ok=["m"], shards_left_out={"s": "stale"}, export={"path": "exports/m"})
    assert partial.exit_code() == 1 and partial.exit_code(allow_partial=True) == 0
    assert partial.failure_lines() == ["shard s LEFT OUT: stale"]
