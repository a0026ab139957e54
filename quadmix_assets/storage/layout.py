"""Where each output lives under the storage root: one function per kind of file.

Documents are stored once per shard; every labeller or scorer writes its own attribute file per shard,
aligned row for row with the documents (Dolma's "attributes"), so re-scoring never copies text.

Every key that becomes part of a path (shard, mixture, attribute, model, criterion) is checked here with
:func:`~quadmix_assets.storage.keys.check_key`: ``../x``, ``/abs`` or ``a/b`` raise
:class:`~quadmix_assets.storage.keys.UnsafeKeyError` before any path exists.
"""

from __future__ import annotations

from quadmix_assets.storage.keys import check_key


def documents(shard: str) -> str:
    return f"documents/{check_key(shard, 'shard')}.parquet"


def quarantine(shard: str) -> str:
    return f"quarantine/{check_key(shard, 'shard')}.parquet"


def cross_shard_duplicates() -> str:
    """Occurrences of a text already kept in an earlier shard (reason ``duplicate_text``, with a pointer to
    the kept copy), written by the normaliser's fan-in; see :mod:`quadmix_assets.corpus.duplicates`."""
    return "quarantine/cross_shard/duplicate_text.parquet"


RANKS_ATTRIBUTE = "quality_ranks"  # the normaliser's per-shard worse-than ranks s_<criterion>


def attribute(name: str, shard: str) -> str:
    """Per-shard attribute columns of one labeller/scorer (``domain``, ``quality_dclm``, ``ranks``...)."""
    return f"attributes/{check_key(name, 'attribute')}/{check_key(shard, 'shard')}.parquet"


def model_dir(name: str) -> str:
    return f"models/{check_key(name, 'model')}"


def model_file(name: str) -> str:
    return f"{model_dir(name)}/model.bin"


def model_card(name: str) -> str:
    return f"{model_dir(name)}/model.json"


def normaliser_table(criterion: str) -> str:
    return f"normaliser/{check_key(criterion, 'criterion')}.parquet"


def normaliser_card() -> str:
    return "normaliser/normaliser.json"


def criteria_report() -> str:
    return "evaluation/criteria.json"


def criterion_cards() -> str:
    """Every criterion's card (scoring/cards.py): what its top quarter holds, its agreements, its verdict."""
    return "evaluation/cards.json"


def mixture_configs() -> str:
    return "mixtures/configs.json"


def mixture_scores_card(mixture_id: str) -> str:
    """The mixture's scores card: the shards and normaliser its scores come from and their sums per domain
    (the per-document scores are computed when needed, never stored: :mod:`quadmix_assets.mixing.scores`)."""
    return f"mixtures/{check_key(mixture_id, 'mixture')}/scores.json"


def mixture_manifest(mixture_id: str) -> str:
    return f"mixtures/{check_key(mixture_id, 'mixture')}/manifest.parquet"


def searched_configs() -> str:
    """Mixture specs registered by the parameter search (appended; never rewritten by mixture_configs)."""
    return "mixtures/searched.json"


def target_examples() -> str:
    """Every target-set example with its half (``target`` / ``heldout``), choices and gold answer."""
    return "targets/examples.parquet"


def target_card() -> str:
    return "targets/targets.json"


def tokenizer_file() -> str:
    return "models/proxy_tokenizer/tokenizer.json"


def proxy_run(mixture_id: str) -> str:
    """One proxy run's record: losses per target set, loss curve, tokens/s, versions (JSON)."""
    return f"proxies/{check_key(mixture_id, 'mixture')}/run.json"


def regressor_report() -> str:
    return "regressor/report.json"


def rounds_decision() -> str:
    """The last search-round decision: the regressor it was made with, how many configs it proposed, why not."""
    return "search/rounds.json"


def search_result() -> str:
    return "search/result.json"


def export_dir(mixture_id: str) -> str:
    """Training-ready export of one mixture: text/part-*.parquet, tokens.bin + tokens.idx (Megatron), manifest.json."""
    return f"exports/{check_key(mixture_id, 'export')}"


def proxy_repeat(mixture_id: str, repeat: int) -> str:
    """A proxy retrained on the same mixture under the ``repeat``-th other seed (the noise ceiling)."""
    return f"proxies/{check_key(mixture_id, 'mixture')}/repeat-{int(repeat)}.json"


def proxy_noise() -> str:
    """Repeat Spearman of the proxy losses and every repeated config's loss spread (JSON)."""
    return "proxies/noise.json"


def surrogate_model() -> str:
    """The chosen regressor (model + feature set) in JSON, and how it was chosen."""
    return "regressor/surrogate.json"
