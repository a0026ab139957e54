"""The export check: every file as recorded, the Megatron index consistent with the tokens."""

import shutil
from pathlib import Path

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetKey, asset_check

from quadmix_assets import keys
from quadmix_assets.dagster_support.partitions import exports_partitions
from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.export.megatron import read_megatron
from quadmix_assets.storage import layout


@asset_check(
    asset=AssetKey(keys.MIXTURE_EXPORT),
    partitions_def=exports_partitions,
    description="The export is complete and consistent: every listed file has its recorded size and "
    "checksum, the Megatron index (tokens.idx) covers tokens.bin exactly with the recorded token count and "
    "dtype, one sequence per text row = occurrence.",
)
def mixture_export_complete(context: AssetCheckExecutionContext, settings: QuadmixSettings) -> AssetCheckResult:
    storage = settings.storage()
    folder = layout.export_dir(context.partition_key)
    doc = storage.read_json(f"{folder}/manifest.json")
    bad_files = [rel for rel, f in doc["files"].items() if storage.file_sha256(f"{folder}/{rel}") != f["sha256"]]
    prefix = doc.get("tokens_prefix", "tokens")
    try:
        with storage.local_file(f"{folder}/{prefix}.idx") as idx, storage.local_file(f"{folder}/{prefix}.bin") as bin_:
            if Path(idx).parent != Path(bin_).parent:  # remote storage: the two copies side by side
                shutil.copy(idx, Path(bin_).with_suffix(".idx"))
            tokens, lengths, _ = read_megatron(Path(bin_).with_suffix(""))
            n_tokens, n_sequences, dtype = len(tokens), len(lengths), tokens.dtype.name
    except (OSError, ValueError) as exc:
        context.log.warning(f"export index unreadable: {exc}")
        n_tokens, n_sequences, dtype = -1, -1, None
    tokens_ok = n_tokens == doc["tokens"] and dtype == doc["token_dtype"]
    rows = sum(storage.parquet_rows(f"{folder}/{p}") for p in doc["text_parts"])
    passed = not bad_files and tokens_ok and rows == doc["occurrences"] == n_sequences
    return AssetCheckResult(
        passed=passed,
        metadata={"files_mismatched": bad_files, "index_matches_tokens": tokens_ok, "text_rows": rows,
                  "occurrences": doc["occurrences"]},
    )
