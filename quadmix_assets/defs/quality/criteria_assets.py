"""The per-criterion assets as lists the defs folder loader finds (it collects module-level definitions
and lists of them, not dicts): every criterion's per-shard raw scores and every distilled student."""

from quadmix_assets.defs.quality.model_scorers import STUDENT_ASSETS
from quadmix_assets.defs.quality.scores import QUALITY_ASSETS

QUALITY_SCORE_ASSETS = list(QUALITY_ASSETS.values())
STUDENT_MODEL_ASSETS = list(STUDENT_ASSETS.values())
