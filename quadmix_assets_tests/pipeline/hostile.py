"""Hostile inputs for the fault-injection suite: builds a corpus folder of bad shards, runs the `documents`
asset (and its checks) on every one through Dagster, and tabulates what happened. Used by
`test_fault_injection.py` (which asserts every row) and `benchmarks/fault_table.py` (which writes the
Markdown table that is in docs/resume-and-faults.md, "Hostile inputs")."""

from __future__ import annotations

import gzip
import json
import os
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quadmix_assets import settings as env

CORPUS = Path(env.data_dir()) / "corpus" / "webtext"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
#: a lower record limit than the default 1,000,000, so the gzip bomb is cut in seconds
MAX_RECORDS = 100_000


def _real_lines(n: int) -> list[bytes]:
    with gzip.open(CORPUS / "shard-00000.jsonl.gz", "rb") as f:
        return [next(f).rstrip(b"\n") for _ in range(n)]


def _jsonl(path: Path, records: list) -> None:
    path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records))


@dataclass
class Case:
    file: str | None  # corpus file name (None: a partition key added by hand, as the UI allows)
    what: str
    expect: str  # "ok", "failed" or "refused"
    key: str | None = None  # the partition key for hand-added keys
    reasons: tuple[str, ...] = ()  # quarantine reasons that must appear


def build_hostile_corpus(folder: Path) -> list[Case]:
    """Write the hostile shards into ``folder``; return the cases (in table order)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = _real_lines(5)
    cases: list[Case] = []

    def add(file, what, expect, reasons=(), key=None):
        cases.append(Case(file, what, expect, key, tuple(reasons)))

    add(None, "partition key `../../../../tmp/quadmix-victim` (path traversal, added by hand)", "refused",
        key="../../../../tmp/quadmix-victim")
    add(None, "partition key `/tmp/quadmix-victim` (absolute path, added by hand)", "refused", key="/tmp/quadmix-victim")
    _jsonl(folder / "my shard (1).jsonl", good[:3])
    add("my shard (1).jsonl", "file name that is not a safe key (spaces, brackets)", "ok")
    _jsonl(folder / "nested.jsonl", good[:2] + [{"id": "deep", "text": "sixty levels", "meta": json.loads("[" * 60 + "1" + "]" * 60)}])
    add("nested.jsonl", "a record nested 60 levels deep beside good records", "ok", ["too_deep"])
    block = b'{"text":"a"}\n' * 100_000
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    (folder / "bomb.jsonl.gz").write_bytes(b"".join([c.compress(block) for _ in range(80)] + [c.flush()]))
    add("bomb.jsonl.gz", "gzip bomb: 0.2 MB expanding to 112 MB, 8M records", "ok", ["shard_limit"])
    (folder / "garbage.jsonl").write_bytes(random.Random(0).randbytes(200_000))
    add("garbage.jsonl", "200 kB of random bytes named .jsonl", "ok")
    with open(folder / "huge.jsonl", "wb") as f:
        f.write(good[0] + b"\n")
        f.write(b'{"id": "huge", "text": "' + b"x" * (50 * 2**20) + b'"}\n')
        f.write(good[1] + b"\n")
    add("huge.jsonl", "one 50 MB line between two good records", "ok", ["line_too_long"])
    _jsonl(folder / "dupes.jsonl", good[:3] + good[:2])
    add("dupes.jsonl", "duplicate ids (2 of 5 records repeat)", "ok", ["duplicate_id"])
    (folder / "empty.jsonl").write_bytes(b"")
    add("empty.jsonl", "empty file", "ok")
    (folder / "latin1.jsonl").write_bytes(good[0] + b"\n" + '{"id": "l1", "text": "caf\u00e9 cr\u00e8me"}'.encode("latin-1") + b"\n")
    add("latin1.jsonl", "a Latin-1 encoded record after a UTF-8 one", "ok", ["invalid_utf8"])
    (folder / "utf16.jsonl").write_text('{"id": "u1", "text": "utf-16 text"}\n', encoding="utf-16")
    add("utf16.jsonl", "the whole file in UTF-16", "ok")
    _jsonl(folder / "nul.jsonl", [b'{"id": "n1", "text": "nul \\u0000 inside"}', b'{"id": "n2", "text": "lone \\ud800 surrogate"}', good[0]])
    add("nul.jsonl", "a NUL character and a lone surrogate (JSON escapes)", "ok")
    pq.write_table(pa.table({"id": ["a", "b"], "text": [1, 2]}), folder / "inttext.parquet")
    add("inttext.parquet", "Parquet whose text column holds integers", "ok")
    pq.write_table(pa.table({"id": ["a"], "text": [["a", "list"]]}), folder / "listtext.parquet")
    add("listtext.parquet", "Parquet whose text column is a list", "ok")
    pq.write_table(pa.table({"body": ["no text column"]}), folder / "notext.parquet")
    add("notext.parquet", "Parquet without a text column", "failed")
    (folder / "corrupt.parquet").write_bytes(b"PAR1" + random.Random(1).randbytes(5000))
    add("corrupt.parquet", "random bytes named .parquet", "failed")
    _jsonl(folder / "one.jsonl", good[:1])
    add("one.jsonl", "a single document", "ok")
    return cases


def _metadata(result) -> dict:
    for mat in result.get_asset_materialization_events():
        return {k: getattr(v, "value", v) for k, v in mat.materialization.metadata.items()}
    return {}


def _error(result) -> str:
    from quadmix_assets.runner import _failure_message

    return _failure_message(result)


def run_cases(corpus: Path, storage: Path, cases: list[Case]) -> list[dict]:
    """Materialize `documents` (with its checks) for every case; one row per case."""
    from dagster import AssetKey, DagsterInstance

    from quadmix_assets.definitions import build_definitions
    from quadmix_assets.dagster_support.partitions import shards_partitions
    from quadmix_assets.dagster_support.resources import QuadmixSettings

    settings = QuadmixSettings.from_env(corpus_glob=str(corpus / "*"), storage_root=str(storage), preset="test",
                                        max_records_per_shard=MAX_RECORDS)
    keys = {ref.name: ref.key for ref in settings.shards()}
    job = build_definitions(settings).resolve_job_def("shard_fast_job")
    rows = []
    with DagsterInstance.ephemeral() as instance:
        for case in cases:
            key = case.key if case.file is None else keys[case.file]
            instance.add_dynamic_partitions(shards_partitions.name, [key])
            result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False, run_config=QUIET,
                                            asset_selection=[AssetKey("documents")])
            md = _metadata(result)
            stats = md.get("stats") or {}
            checks = [e for e in result.get_asset_check_evaluations()]
            if result.success:
                reasons = dict(md.get("quarantined_by_reason") or {})
                outcome = "ok"
                detail = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "-"
            else:
                reasons = {}
                outcome = "refused" if case.file is None else "failed"
                detail = _error(result).replace(str(corpus) + os.sep, "<corpus>/")
            rows.append({
                "input": case.file or case.key, "key": key, "what": case.what, "expect": case.expect, "outcome": outcome,
                "records_read": stats.get("records_read"), "documents": md.get("documents"),
                "quarantined": md.get("quarantined"), "reasons": reasons, "detail": detail,
                "checks_passed": sum(e.passed for e in checks), "checks": len(checks), "success": result.success,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    def cell(v) -> str:
        return "-" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| input | what | outcome | records read | documents | quarantined | reasons / error | checks passed |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        detail = r["detail"] if len(r["detail"]) <= 160 else r["detail"][:157] + "..."
        out.append(f"| `{cell(r['input'])}` | {cell(r['what'])} | {r['outcome']} | {cell(r['records_read'])} | "
                   f"{cell(r['documents'])} | {cell(r['quarantined'])} | {cell(detail)} | {r['checks_passed']}/{r['checks']} |")
    return "\n".join(out) + "\n"
