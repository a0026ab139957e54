"""The lineage of a mixture, read from Dagster's own event log (no side database).

:func:`mixture_lineage` tells the whole story of one ``mixtures`` partition: its parameter numbers and
how its config was made (random draw, baseline, or a search result and the regressor that found it),
the shards it was built from with their data versions, every model upstream of it with its version,
the normaliser version, every other input, the proxy result and the export. It reads only
materialization (and observation) records of the instance, their metadata and their
``dagster/data_version`` / ``dagster/code_version`` tags, and walks the asset graph upstream of every
mixture-partitioned asset, so an asset added to the graph shows up without a change here.

For each upstream asset the record used is the latest one written *before* the first of the mixture's
own materializations that depends on it (what the mixture was built from); a newer materialization is
reported as ``stale``.

:func:`shard_lineage` answers the reverse question: the mixtures whose latest ``mixture_scores``
materialization was built from a shard (its ``shards`` metadata).
"""

from quadmix_assets.lineage.events import (
    CONTENT_DIGITS,
    FILES_KEY,
    content_version,
    default_asset_graph,
    register_asset_graph,
    resolve_mixture,
)
from quadmix_assets.lineage.render import _fmt, lineage_markdown, lineage_text, shard_lineage_text
from quadmix_assets.lineage.story import mixture_lineage, shard_lineage

__all__ = [
    "mixture_lineage",
    "shard_lineage",
    "resolve_mixture",
    "lineage_text",
    "lineage_markdown",
    "shard_lineage_text",
    "default_asset_graph",
    "register_asset_graph",
    "content_version",
    "CONTENT_DIGITS",
    "FILES_KEY",
    "_fmt",
]
