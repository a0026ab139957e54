"""The per-criterion assets as lists the defs folder loader finds (it collects module-level definitions
and lists of them, not dicts): every model a registered criterion builds, every criterion's per-shard raw
scores and every distilled student."""

from quadmix_assets.defs.quality.model_scorers import MODEL_ASSETS, STUDENT_ASSETS
from quadmix_assets.defs.quality.scores import QUALITY_ASSETS

CRITERION_MODEL_ASSETS = list(MODEL_ASSETS.values())
QUALITY_SCORE_ASSETS = list(QUALITY_ASSETS.values())
STUDENT_MODEL_ASSETS = list(STUDENT_ASSETS.values())
