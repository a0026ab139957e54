"""What the UI says about a finished ``quadmix run``, read through Dagster's own GraphQL API, against what the
run printed.

Starts ``dagster-webserver`` on loopback over the run's instance (with the settings the run saved, as
``quadmix ui`` does, but without the daemon, so nothing is launched), then asks it:

* each mixture check's status per mixture (``partitionStatuses``) and each mixture's latest evaluation
  (``assetCheckExecutions``): no mixture may be "skipped", and the mixtures whose check warned must be exactly
  those the run's summary lists (``  warnings of <check> (n): ...`` in its output);
* every materialized asset's and partition's stale status (``staleStatus``/``staleStatusByPartition``): a
  finished run must leave nothing STALE;
* and it runs ``quadmix show optimum`` and ``quadmix lineage optimum``.

Prints one line per finding and exits 1 if any check fails.

    .venv/bin/python benchmarks/ui_truth.py --storage runs/demo/storage --dagster-home runs/demo/home --log runs/demo/log.txt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MIXTURE_CHECKS = (
    ("mixture_scores", "mixture_covers_corpus"),
    ("mixture_manifest", "mixture_manifest_valid"),
    ("proxy_run", "proxy_loss_finite"),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        out = json.loads(resp.read())
    if out.get("errors"):
        raise RuntimeError(json.dumps(out["errors"])[:2000])
    return out["data"]


def summary_warnings(log_text: str) -> dict[str, list[str]]:
    """check -> the partitions the run's summary lists as warned about."""
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"^  warnings of (\S+) \(\d+\): (.*)$", log_text, re.M):
        out[m.group(1)] = sorted(p.strip() for p in m.group(2).split(","))
    return out


CHECK_STATUSES = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetChecksOrError { ... on AssetChecks { checks { name
        partitionStatuses { ... on AssetCheckDefaultPartitionStatuses {
          succeededPartitions failedPartitions inProgressPartitions skippedPartitions executionFailedPartitions } } } } }
    }
  }
}"""

CHECK_EXECUTIONS = """
query($path: [String!]!, $name: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $name, limit: 100000) {
    partition status evaluation { severity success }
  }
}"""

ASSETS = """
query {
  assetNodes { assetKey { path } isPartitioned isMaterializable
    staleStatus staleCauses { key { path } partitionKey reason category } }
}"""

PARTITIONS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions } } }
  }
}"""

STALE_BY_PARTITION = """
query($path: [String!]!, $partitions: [String!]) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { staleStatusByPartition(partitions: $partitions)
      staleCausesByPartition(partitions: $partitions) { key { path } partitionKey reason category } }
  }
}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--storage", required=True)
    ap.add_argument("--dagster-home", required=True)
    ap.add_argument("--log", required=True, help="the run's printed output")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from quadmix_assets.cli import ui_environment

    home = str(Path(args.dagster_home).resolve())
    env, last = ui_environment(home)
    env["DAGSTER_HOME"] = home
    if not last:
        print(f"no saved run settings in {home}", file=sys.stderr)
        return 2
    port = _free_port()
    url = f"http://127.0.0.1:{port}/graphql"
    exe = Path(sys.executable).parent / "dagster-webserver"
    server = subprocess.Popen([str(exe), "-w", str(root / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                              cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    failures: list[str] = []
    try:
        t0 = time.monotonic()
        while True:
            try:
                _query(url, "query { version }")
                break
            except Exception:
                if server.poll() is not None or time.monotonic() - t0 > 300:
                    raise SystemExit("dagster-webserver did not start")
                time.sleep(1)
        # 1. each mixture's checks, as the UI shows them
        listed = summary_warnings(Path(args.log).read_text())
        for asset, name in MIXTURE_CHECKS:
            node = _query(url, CHECK_STATUSES, {"path": [asset]})["assetNodeOrError"]
            check = next(c for c in node["assetChecksOrError"]["checks"] if c["name"] == name)
            st = check["partitionStatuses"]
            execs = _query(url, CHECK_EXECUTIONS, {"path": [asset], "name": name})["assetCheckExecutions"]
            latest: dict = {}
            for e in execs:  # newest first
                latest.setdefault(e["partition"], e)
            warned = sorted(p for p, e in latest.items() if e["evaluation"] and not e["evaluation"]["success"]
                            and e["evaluation"]["severity"] == "WARN")
            print(f"{asset}.{name}: {len(st['succeededPartitions'])} passed, {len(st['failedPartitions'])} "
                  f"failed (of which {len(warned)} warnings), {len(st['skippedPartitions'])} skipped, "
                  f"{len(st['inProgressPartitions'])} in progress, {len(st['executionFailedPartitions'])} "
                  f"execution failed; unpartitioned results: {int(None in latest)}")
            if st["skippedPartitions"] or st["inProgressPartitions"] or st["executionFailedPartitions"] or None in latest:
                failures.append(f"{name}: a mixture without its own result")
            if warned != listed.get(name, []):
                failures.append(f"{name}: UI warns on {warned}, the run's summary lists {listed.get(name, [])}")
            else:
                print(f"  warnings in the UI = the run's summary: {', '.join(warned) or 'none'}")
        # 2. stale badges
        stale: list[str] = []
        nodes = _query(url, ASSETS)["assetNodes"]
        n_parts = 0
        for node in nodes:
            path = node["assetKey"]["path"]
            if not node["isPartitioned"]:
                if node["staleStatus"] == "STALE":
                    stale.append(f"{'/'.join(path)}: {node['staleCauses'][:3]}")
                continue
            parts = (_query(url, PARTITIONS, {"path": path})["assetNodeOrError"]["assetPartitionStatuses"] or {})
            parts = parts.get("materializedPartitions") or []
            n_parts += len(parts)
            if not parts:
                continue
            res = _query(url, STALE_BY_PARTITION, {"path": path, "partitions": parts})["assetNodeOrError"]
            for p, s, causes in zip(parts, res["staleStatusByPartition"], res["staleCausesByPartition"]):
                if s == "STALE":
                    stale.append(f"{'/'.join(path)}[{p}]: {causes[:3]}")
        print(f"stale status: {len(nodes)} assets, {n_parts} materialized partitions, {len(stale)} stale")
        for s in stale[:20]:
            print(f"  STALE {s}")
        if stale:
            failures.append(f"{len(stale)} stale assets or partitions")
    finally:
        os.killpg(server.pid, 15)
        server.wait(60)
    # 3. the optimum by name
    cli = Path(sys.executable).parent / "quadmix"
    for cmd, where in (("show", ["--storage", args.storage]), ("lineage", ["--dagster-home", home])):
        proc = subprocess.run([str(cli), cmd, "optimum", *where],
                              cwd=root, env=env, capture_output=True, text=True)
        head = (proc.stdout.strip().splitlines() or [""])[0]
        print(f"quadmix {cmd} optimum: exit {proc.returncode}: {head[:160]}")
        if proc.returncode:
            failures.append(f"quadmix {cmd} optimum: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    for f in failures:
        print(f"FAILED: {f}")
    print("all hold" if not failures else f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
