"""Versions that identify data: a mixture's scores card and manifest are named by the content hash of what
was written (never by Dagster's data version, which a run over a range of mixtures shares between all of
them), and the proxy names the manifest it trained on by the same hash, in its own lineage, in Dagster's
metadata and in `quadmix lineage`."""

from __future__ import annotations

import hashlib

from dagster import AssetKey, AssetRecordsFilter

from quadmix_assets.lineage import CONTENT_DIGITS, lineage_text, mixture_lineage
from quadmix_assets.storage import layout


def _sha(storage, rel: str) -> str:
    return hashlib.sha256(storage.read_bytes(rel)).hexdigest()[:CONTENT_DIGITS]


def _latest_observation(instance, key: str, partition: str):
    recs = instance.fetch_observations(AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[partition]), limit=1)
    return recs.records[0].asset_observation


def test_mixture_files_are_named_by_their_content_everywhere(demo_run):
    settings, instance, summary, lines = demo_run
    storage = settings.storage()
    mixtures = instance.get_dynamic_partitions("mixtures")
    manifests, cards = {}, {}
    for mixture in mixtures:
        story = mixture_lineage(instance, mixture)
        own = story["mixture_assets"]
        cards[mixture] = _sha(storage, layout.mixture_scores_card(mixture))
        manifests[mixture] = _sha(storage, layout.mixture_manifest(mixture))
        assert own["mixture_scores"]["content_version"] == cards[mixture], mixture
        assert own["mixture_manifest"]["content_version"] == manifests[mixture], mixture
        # the proxy names the manifest it trained on by the same hash: in Dagster (its observation's metadata
        # and the lineage it records) and in `quadmix lineage`
        observation = _latest_observation(instance, "proxy_run", mixture)
        assert observation.metadata["trained_on_manifest"].value == manifests[mixture], mixture
        assert f"content sha256 {manifests[mixture]}" in observation.metadata["lineage"].value
        assert story["proxy"]["trained_on_manifest"] == manifests[mixture]
        text = lineage_text(story)
        assert f"mixture_manifest: content sha256 {manifests[mixture]}" in text
        assert f"trained on manifest sha256 {manifests[mixture]}" in text and "not the current manifest" not in text
    # identities, not shared labels: distinct files, distinct names (Dagster's own data version of these
    # assets is shared by every mixture of a run over a range)
    assert len(set(cards.values())) == len(mixtures)
    by_bytes = {}
    for mixture in mixtures:
        by_bytes.setdefault(storage.read_bytes(layout.mixture_manifest(mixture)), set()).add(manifests[mixture])
    assert all(len(names) == 1 for names in by_bytes.values())
    assert len(set(manifests.values())) == len(by_bytes)
