"""`quadmix lineage` and the pictures in materialization metadata, on the shared demo run."""

from __future__ import annotations

import base64
import json
import re

import pytest
from dagster import AssetKey, AssetRecordsFilter

from quadmix_assets import cli
from quadmix_assets.lineage import (
    lineage_markdown,
    lineage_text,
    mixture_lineage,
    resolve_mixture,
    shard_lineage,
)
from quadmix_assets.reporting.plots import PNG_SIGNATURE
from quadmix_assets.scoring.criteria import CRITERIA
from quadmix_assets.storage import layout

SHARDS = ("shard-00000", "shard-00001")
MODELS = ("domain_classifier", "dclm_classifier", "edu_teacher", "edu_student", "askllm_student")


def _md(instance, key: str, partition: str | None = None) -> dict:
    rec = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records[0]
    return {k: getattr(v, "value", v) for k, v in rec.asset_materialization.metadata.items()}, rec


def _drawn(settings) -> dict:
    configs = settings.storage().read_json(layout.mixture_configs())["configs"]
    return next(c for c in configs if c["origin"] == "random_draw")


@pytest.fixture(scope="module")
def drawn_story(demo_run):
    settings, instance, summary, lines = demo_run
    assert not summary.mixtures_failed, lines
    cfg = _drawn(settings)
    return cfg, mixture_lineage(instance, cfg["mixture_id"])


def test_lineage_of_a_drawn_mixture_names_every_input(demo_run, drawn_story):
    settings, instance, summary, _ = demo_run
    cfg, story = drawn_story
    mid = cfg["mixture_id"]
    assert story["mixture_id"] == mid and story["name"] == cfg["name"]
    assert story["origin"]["kind"] == "random_draw" and story["origin"]["label"] == "random draw"
    assert story["params"] == cfg["params"]
    assert story["param_axes"]["criteria"] == list(CRITERIA)
    assert len(story["param_axes"]["domains"]) == len(cfg["params"]["omega"])
    assert story["config_id"] == cfg["config_id"] and mid.endswith(cfg["config_id"][:8])  # key = name + content id

    # both shards, each with the data version and fingerprint Dagster recorded for its documents
    assert [s["shard"] for s in story["shards"]] == list(SHARDS)
    for s in story["shards"]:
        md, rec = _md(instance, "documents", s["shard"])
        assert s["data_version"] == rec.asset_materialization.tags["dagster/data_version"]
        assert s["fingerprint"] == md["fingerprint"]
        assert {"documents", "domain_labels", *(f"quality_{c}" for c in CRITERIA)} <= set(s["assets"])
        assert all(e["materialized"] and e["data_version"] for e in s["assets"].values())

    # every classifier / scorer model with a version, its data version and code version
    assert set(MODELS) <= set(story["models"])
    for name in MODELS:
        m = story["models"][name]
        assert m["materialized"] and m["version"] and m["data_version"] and m["code_version"], (name, m)
    dom_md, _ = _md(instance, "domain_classifier")
    assert story["models"]["domain_classifier"]["version"] == dom_md["model_sha256"]

    norm_md, _ = _md(instance, "quality_normaliser")
    assert story["normaliser"]["version"] == norm_md["normaliser_version"]
    assert "mixture_configs" in story["inputs"]
    assert story["mixture_assets"]["mixture_scores"] and story["mixture_assets"]["mixture_manifest"]

    proxies_ok = getattr(summary, "proxies_ok", [])
    if mid in proxies_ok:
        assert story["proxy"] and isinstance(story["proxy"].get("target_loss"), float), story["proxy"]

    text = lineage_text(story)
    for needle in [mid, cfg["name"], "random draw", *SHARDS, *MODELS, story["normaliser"]["version"], "lambda", "omega", "eta", "eps"]:
        assert needle in text, needle
    for s in story["shards"]:
        assert s["data_version"] in text
    assert f"{cfg['params']['omega'][0]:.4g}" in text
    assert mid in lineage_markdown(story)
    json.dumps(story)  # JSON-safe


def test_lineage_of_the_search_result_names_its_regressor(demo_run):
    settings, instance, summary, _ = demo_run
    optimum = getattr(summary, "optimum", None)
    if not optimum:
        pytest.skip("the demo run promoted no search result")
    story = mixture_lineage(instance, optimum)
    if getattr(summary, "optimum_blocked", None):  # the regressor was not promoted: the best measured config stands in
        assert story["origin"]["kind"] != "search"
        if summary.export:
            assert story["export"] and story["export"]["tokens"] == summary.export["tokens"]
        return
    assert story["origin"]["kind"] == "search"
    assert story["origin"]["regressor_version"] == summary.regressor["regressor_version"]
    assert "search result" in lineage_text(story) and summary.regressor["regressor_version"] in lineage_text(story)
    if summary.export:
        assert story["export"] and story["export"]["tokens"] == summary.export["tokens"]
        assert "not exported" not in lineage_text(story)


def test_shard_lineage_lists_every_mixture(demo_run):
    _, instance, summary, _ = demo_run
    for shard in SHARDS:
        rows = shard_lineage(instance, shard)
        assert {r["mixture_id"] for r in rows} == set(summary.mixtures_ok), shard
        assert all(r["fingerprint"] and not r["stale"] and r["manifest"] for r in rows)
    with pytest.raises(KeyError):
        shard_lineage(instance, "no-such-shard")


def test_resolve_by_prefix_and_name(demo_run, drawn_story):
    _, instance, _, _ = demo_run
    cfg, _ = drawn_story
    assert resolve_mixture(instance, cfg["mixture_id"]) == cfg["mixture_id"]
    assert resolve_mixture(instance, cfg["mixture_id"][:10]) == cfg["mixture_id"]
    assert resolve_mixture(instance, cfg["name"]) == cfg["mixture_id"]
    with pytest.raises(KeyError):
        resolve_mixture(instance, "zzzz-no-such-mixture")
    # the exported mixture has a name a user can find
    assert resolve_mixture(instance, "optimum") == demo_run[2].optimum


def test_cli_prints_lineage(demo_run, drawn_story, capsys, monkeypatch):
    _, instance, summary, _ = demo_run
    cfg, story = drawn_story
    home = instance.root_directory
    monkeypatch.setenv("DAGSTER_HOME", home)
    assert cli.main(["lineage", cfg["mixture_id"], "--dagster-home", home]) == 0
    out = capsys.readouterr().out
    for needle in [cfg["mixture_id"], "random draw", *SHARDS, *MODELS, story["normaliser"]["version"]]:
        assert needle in out, needle

    assert cli.main(["lineage", cfg["name"], "--json", "--dagster-home", home]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mixture_id"] == cfg["mixture_id"] and data["params"] == cfg["params"]

    assert cli.main(["lineage", "--shard", SHARDS[1], "--dagster-home", home]) == 0
    out = capsys.readouterr().out
    assert all(mid in out for mid in summary.mixtures_ok)

    assert cli.main(["lineage", "no-such-mixture", "--dagster-home", home]) == 1
    assert "no mixture" in capsys.readouterr().err
    assert cli.main(["lineage", "--dagster-home", home]) == 2


def _png_of(md_text: str) -> bytes:
    m = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", md_text)
    assert m, md_text[:100]
    return base64.b64decode(m.group(1))


def test_pictures_and_story_in_materialization_metadata(demo_run, drawn_story):
    settings, instance, _, _ = demo_run
    cfg, _ = drawn_story
    manifest, _ = _md(instance, "mixture_manifest", cfg["mixture_id"])
    # pictures where people look (baselines, search results), not on the drawn configs only the regressor reads
    assert "domain_shares" not in manifest
    configs = settings.storage().read_json(layout.mixture_configs())["configs"]
    baseline = next(c["mixture_id"] for c in configs if c["origin"] == "baseline")
    assert _png_of(_md(instance, "mixture_manifest", baseline)[0]["domain_shares"]).startswith(PNG_SIGNATURE)
    assert _png_of(_md(instance, "mixture_scores", baseline)[0]["sampling_curve"]).startswith(PNG_SIGNATURE)
    # the story too: on the baseline, not on the drawn config (`quadmix lineage` tells that one on demand)
    assert "lineage" not in manifest
    story = _md(instance, "mixture_manifest", baseline)[0]["lineage"]
    assert baseline in story and all(s in story for s in SHARDS)
    # what the manifest stored says only what it knew: no "not run" / "not exported" about later stages
    assert "**Proxy**" not in story and "**Export**" not in story
    assert "mixture_manifest: not materialized" not in story
    assert "Recorded by mixture_manifest" in story and "mixture_scores: content sha256" in story
    # the proxy stage records its own part
    proxy_obs = instance.fetch_observations(AssetKey("proxy_run"), limit=200).records
    mine = [r for r in proxy_obs if r.partition_key == cfg["mixture_id"]]
    assert mine and "target loss" in mine[0].event_log_entry.asset_observation.metadata["lineage"].value
    scores, _ = _md(instance, "mixture_scores", cfg["mixture_id"])
    assert "sampling_curve" not in scores
    assert scores["params"] == cfg["params"] and set(scores["shards"]) == set(SHARDS)
    norm, _ = _md(instance, "quality_normaliser")
    assert _png_of(norm["score_distributions"]).startswith(PNG_SIGNATURE)
