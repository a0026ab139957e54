"""``quadmix sql`` on a small stored corpus (no pipeline run): the views line up by shard and row, files
come out whole, and the connection cannot reach outside the storage root. The documented example queries
(README and docs/inspecting.md) on a real stored run: ``quadmix_assets_tests/pipeline/test_duckdb_sql.py``."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quadmix_assets.cli import main
from quadmix_assets.mixing.features import document_features
from quadmix_assets.storage import StorageRoot, layout

from quadmix_assets_tests.storage.fanin_support import CRITERIA, write_random_corpus


def _sql(root: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["sql", *args, "--storage", root])
    return code, out.getvalue()


def test_views_align_by_shard_and_row_and_stay_inside_the_root(tmp_path):
    root = str(tmp_path / "storage")
    storage = StorageRoot(root)
    shards = write_random_corpus(storage, [120, 80], 4, seed=1)
    manifest = pa.table({"id": ["shard-001-doc-3"], "shard": ["shard-001"], "row": pa.array([3], pa.int64()),
                         "n_tokens": pa.array([7], pa.int64()), "domain": pa.array([2], pa.int16()),
                         "copies": pa.array([3], pa.int32())})
    storage.write_parquet(layout.mixture_manifest("abc123"), manifest, {})
    # features = the documents' attribute columns side by side (as the pipeline's document_features)
    out = tmp_path / "features.parquet"
    code, text = _sql(root, "SELECT * FROM features ORDER BY shard, row", "--out", str(out))
    assert code == 0 and "200 rows written" in text
    got = pq.read_table(out)
    ref = document_features(storage, shards, CRITERIA)
    assert got["id"].to_pylist() == ref["id"].to_pylist()
    for c in CRITERIA:
        assert np.array_equal(got[f"s_{c}"].to_numpy(), ref[f"s_{c}"].to_numpy())
    dclm = storage.read_parquet(layout.attribute("quality_dclm", "shard-001"))["score"].to_numpy()
    assert np.array_equal(got.filter(pa.compute.equal(got["shard"], "shard-001"))["dclm_score"].to_numpy(), dclm)
    # documents keep their own row column and a field named like the key
    code, text = _sql(root, "SELECT d.shard, d.row, d.file_shard, m.copies, d.id FROM manifests m "
                      "JOIN documents d USING (shard, row)")
    assert code == 0, text
    assert "shard-001  3    source-shard-001  3       shard-001-doc-3" in text
    # printed tables say how many rows were not shown
    code, text = _sql(root, "SELECT id FROM documents", "--max-rows", "5")
    assert code == 0 and "(200 rows; 195 not shown" in text
    # CSV output, and nothing outside the root
    code, text = _sql(root, "SELECT shard, count(*) AS n FROM ranks GROUP BY 1 ORDER BY 1", "--out", str(tmp_path / "n.csv"))
    assert code == 0 and (tmp_path / "n.csv").read_text().splitlines()[1:] == ['"shard-000",120', '"shard-001",80']
    code, text = _sql(root, "SELECT * FROM read_text('/etc/hostname')")
    assert code == 1 and "Permission" in text
    code, text = _sql(root, f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")  # only reads (test_sql_readonly.py)
    assert code == 1 and "refused" in text
    assert not (tmp_path / "x.csv").exists()
    code, text = _sql(root, "SELECT 1", "--out", str(tmp_path / "x.txt"))
    assert code == 1 and ".parquet or .csv" in text
