"""The quality criteria, in the column order of alpha (QUADMIX.md §1): higher raw score = better."""

from __future__ import annotations

CRITERIA: tuple[str, ...] = ("dclm", "heuristic", "langid", "edu", "askllm")

DESCRIPTIONS: dict[str, str] = {
    "dclm": "DCLM-style fastText classifier: P(high-quality reference text) vs random web",
    "heuristic": "Gopher / C4 heuristic rules combined into one soft pass score",
    "langid": "fastText language id (lid.176): probability that the text is English (FineWeb's language_score)",
    "edu": "FineWeb-Edu-style encoder + regression head: predicted 0-5 LLM usefulness score",
    "askllm": "AskLLM: an instruction LLM's P(yes) to 'is this informative pre-training data?'",
}

#: the range of each criterion's raw score (checked on every shard)
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "dclm": (0.0, 1.0),
    "heuristic": (0.0, 1.0),
    "langid": (0.0, 1.0),
    "edu": (0.0, 5.0),
    "askllm": (0.0, 1.0),
}


def attribute_name(criterion: str) -> str:
    """The per-shard attribute folder of a criterion's raw scores."""
    return f"quality_{criterion}"
