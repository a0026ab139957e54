"""The ``quadmix`` command: ``quadmix run`` materializes the graph in-process; ``quadmix ui`` opens Dagster."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from quadmix_assets import settings as env
from quadmix_assets.presets import DEFAULT_PRESET, PRESETS

LAST_RUN = "quadmix_last_run.json"
INSTANCE_YAML = """# written by quadmix: a local, persistent Dagster instance
telemetry:
  enabled: false
"""


def prepare_dagster_home(path: str | None) -> str:
    home = os.path.abspath(path or env.default_dagster_home())
    os.makedirs(home, exist_ok=True)
    yaml = Path(home) / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = home
    return home


def cmd_run(args: argparse.Namespace) -> int:
    home = prepare_dagster_home(args.dagster_home)
    from dagster import DagsterInstance

    from quadmix_assets.defs.resources import QuadmixSettings
    from quadmix_assets.runner import run_pipeline

    settings = QuadmixSettings.from_env(
        corpus_glob=args.corpus,
        storage_root=os.path.abspath(args.storage) if args.storage and "://" not in args.storage else args.storage,
        data_dir=args.data_dir,
        preset=args.preset,
        n_configs=args.configs,
        text_field=args.text_field,
        id_field=args.id_field,
    )
    (Path(home) / LAST_RUN).write_text(
        json.dumps({"QUADMIX_CORPUS": settings.corpus_glob, "QUADMIX_STORAGE": settings.storage_root,
                    "QUADMIX_DATA_DIR": settings.data_dir, "QUADMIX_PRESET": settings.preset,
                    **({"QUADMIX_CONFIGS": str(settings.n_configs)} if settings.n_configs else {})}, indent=2)
    )
    with DagsterInstance.get() as instance:
        summary = run_pipeline(settings, instance)
    return 0 if summary.ok else 1


def cmd_ui(args: argparse.Namespace) -> int:
    home = prepare_dagster_home(args.dagster_home)
    last = Path(home) / LAST_RUN
    child_env = dict(os.environ)
    if last.exists():
        for k, v in json.loads(last.read_text()).items():
            child_env.setdefault(k, v)
    workspace = env.REPO_ROOT / "workspace.yaml"
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {home})", flush=True)
    return subprocess.call(cmd, env=child_env, cwd=str(env.REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quadmix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the asset graph in-process on a corpus")
    run.add_argument("--corpus", default=None, help="glob of JSONL/JSONL.gz/Parquet shards, local or fsspec URL (default: $QUADMIX_CORPUS or the bundled web text)")
    run.add_argument("--storage", default=None, help="storage root folder or URL (default: $QUADMIX_STORAGE or .quadmix/storage)")
    run.add_argument("--preset", default=os.environ.get("QUADMIX_PRESET", DEFAULT_PRESET), choices=sorted(PRESETS))
    run.add_argument("--configs", type=int, default=None, help="number of configs K drawn (default: the preset's)")
    run.add_argument("--text-field", default="text")
    run.add_argument("--id-field", default="id")
    run.add_argument("--data-dir", default=None, help="reference data folder (default: $QUADMIX_DATA_DIR or ../shared/data)")
    run.add_argument("--dagster-home", default=None, help="persistent Dagster instance (default: $DAGSTER_HOME or .quadmix/dagster_home)")
    run.set_defaults(func=cmd_run)
    ui = sub.add_parser("ui", help="open the Dagster UI on loopback over the same instance")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--dagster-home", default=None)
    ui.set_defaults(func=cmd_ui)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
