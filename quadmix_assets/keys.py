"""The asset keys of the code location, named once (plain strings: no Dagster here, so the runner, the
loop policy and the libraries can use them too).

Asset modules under ``quadmix_assets/defs/`` refer to assets of other modules through these names
(``deps=[...]``, ``AssetIn(key=...)``, ``AssetSelection.assets(...)``), never by importing a sibling
asset module. The per-criterion assets are named by the criterion registry
(:mod:`quadmix_assets.scoring.criteria`): a criterion's raw scores are the asset ``Criterion.attribute``
(``quality_<name>``), its distilled student ``Criterion.student``, the models it reads ``Criterion.models``.
"""

from __future__ import annotations

# corpus
DOCUMENTS = "documents"
# quality: models, labels, scores, their evaluation and the normaliser
DOMAIN_CLASSIFIER = "domain_classifier"
DCLM_CLASSIFIER = "dclm_classifier"
EDU_TEACHER = "edu_teacher"
DOMAIN_LABELS = "domain_labels"
CRITERIA_EVALUATION = "criteria_evaluation"
QUALITY_NORMALISER = "quality_normaliser"
# mixtures
MIXTURE_CONFIGS = "mixture_configs"
MIXTURE_SCORES = "mixture_scores"
MIXTURE_MANIFEST = "mixture_manifest"
# proxies
TARGET_SETS = "target_sets"
PROXY_TOKENIZER = "proxy_tokenizer"
PROXY_RUN = "proxy_run"
PROXY_NOISE = "proxy_noise"
# search
MIXTURE_REGRESSOR = "mixture_regressor"
MIXTURE_ROUNDS = "mixture_rounds"
MIXTURE_SEARCH = "mixture_search"
# export
MIXTURE_EXPORT = "mixture_export"
