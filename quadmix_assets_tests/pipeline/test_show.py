"""`quadmix show` and the data view in the manifest's metadata, on the shared demo run."""

from __future__ import annotations

import json

from dagster import AssetKey, AssetRecordsFilter

from quadmix_assets import cli
from quadmix_assets.mixing.fanin import mixture_scores as computed_scores
from quadmix_assets.reporting import data_view
from quadmix_assets.scoring.criteria import CRITERIA
from quadmix_assets.storage import layout


def _baseline(settings) -> dict:
    configs = settings.storage().read_json(layout.mixture_configs())["configs"]
    return next(c for c in configs if c["name"] == "criteria-mean")


def test_show_prints_three_rank_bands_of_a_domain(demo_run, capsys):
    settings, instance, summary, lines = demo_run
    cfg = _baseline(settings)
    assert cfg["mixture_id"] in summary.mixtures_ok, lines
    storage = settings.storage()
    scores = computed_scores(storage, cfg["mixture_id"], CRITERIA)
    names = storage.read_json(layout.model_card("domain_classifier"))["domain_names"]
    dom = max(set(scores["domain"].to_pylist()), key=scores["domain"].to_pylist().count)  # the largest domain

    assert cli.main(["show", cfg["name"], "--domain", names[dom], "--n", "2", "--storage", settings.storage_root]) == 0
    out = capsys.readouterr().out
    assert cfg["mixture_id"] in out and f"Domain {dom} {names[dom]!r}" in out
    for band in ("top:", "middle:", "bottom:"):
        assert band in out, out
    assert out.count("copies ") >= 6 and "qbar" in out and "s: dclm" in out

    assert cli.main(["show", cfg["mixture_id"][:6], "--domain", str(dom), "--n", "2", "--json",
                     "--storage", settings.storage_root]) == 0
    view = json.loads(capsys.readouterr().out)
    rows = view["rows"]
    assert [r["band"] for r in rows] == ["top"] * 2 + ["middle"] * 2 + ["bottom"] * 2
    assert all(r["domain"] == dom and 0 < len(r["text"]) <= 200 for r in rows)
    assert rows[0]["r"] <= rows[2]["r"] <= rows[4]["r"] and rows[0]["position"] == 1 and rows[-1]["position"] == rows[-1]["of"]
    manifest = storage.read_parquet(layout.mixture_manifest(cfg["mixture_id"]))
    drawn = dict(zip(zip(manifest["shard"].to_pylist(), manifest["row"].to_pylist()), manifest["copies"].to_pylist()))
    assert all(r["copies"] == drawn.get((r["shard"], r["row"]), 0) for r in rows)
    assert all(r["s_edu"] is not None and 0.0 <= r["s_edu"] <= 1.0 for r in rows)

    assert cli.main(["show", "--criterion", "edu", "--n", "3", "--storage", settings.storage_root]) == 0
    out = capsys.readouterr().out
    assert "highest scores:" in out and "lowest scores:" in out

    # the exported mixture by its name
    assert data_view.resolve_mixture(storage, "optimum") == summary.optimum
    assert cli.main(["show", "optimum", "--n", "1", "--storage", settings.storage_root]) == 0
    assert summary.optimum in capsys.readouterr().out

    assert cli.main(["show", "no-such-mixture", "--storage", settings.storage_root]) == 1
    err = capsys.readouterr().err
    assert "no mixture 'no-such-mixture'" in err and "give a mixture id" in err and "Traceback" not in err


def test_data_view_table_in_manifest_metadata(demo_run):
    settings, instance, _, _ = demo_run
    cfg = _baseline(settings)
    rec = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("mixture_manifest"), asset_partitions=[cfg["mixture_id"]]), limit=1
    ).records[0]
    table = rec.asset_materialization.metadata["data_view"].value
    assert "| domain | band | rank | qbar | r |" in table
    assert all(f"| {b} |" in table for b in data_view.BANDS)
