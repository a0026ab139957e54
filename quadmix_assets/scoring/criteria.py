"""The quality criteria, in the column order of alpha (QUADMIX.md §1): higher raw score = better."""

from __future__ import annotations

CRITERIA: tuple[str, ...] = ("dclm", "heuristic", "langid")

DESCRIPTIONS: dict[str, str] = {
    "dclm": "DCLM-style fastText classifier: P(high-quality reference text) vs random web",
    "heuristic": "Gopher / C4 heuristic rules combined into one soft pass score",
    "langid": "fastText language id (lid.176): probability that the text is English (FineWeb's language_score)",
}


def attribute_name(criterion: str) -> str:
    """The per-shard attribute folder of a criterion's raw scores."""
    return f"quality_{criterion}"
