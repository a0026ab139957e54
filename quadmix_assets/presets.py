"""Named run sizes. A preset fixes how many configs are drawn, the parameter space and model budgets.

``cpu`` is the default: the bundled 14k-document corpus on a 2-core laptop. ``paper`` is QuaDMix's own
setting (K = 3,000 configs, omega_max = 0.1, for a pool of hundreds of billions of tokens). ``test`` is
the smallest thing that exercises every step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Preset:
    name: str
    n_configs: int  # K configs drawn from the QuaDMix space (QUADMIX.md §4)
    omega_max: float  # upper end of omega (share of a domain that is up-sampled)
    lambda_scale: str  # "log" (10**(3u)) or "linear" (U(0, 1000])
    seed: int  # seed of the config draws and of every copy draw
    baseline_keep_fraction: float  # share of documents the baseline selections keep
    normaliser_max_exact: int  # exact worse-than ranks up to this many docs, else a sample
    normaliser_sample_size: int  # sample size above that (>= 10,000, QUADMIX.md §2)
    domain_epochs: int  # fastText epochs of the domain classifier
    dclm_epochs: int  # fastText epochs of the DCLM-style quality classifier
    edu_mode: str = "distill"  # "direct": the Edu teacher scores every document; "distill": a student does
    askllm_mode: str = "distill"  # likewise for AskLLM
    edu_train_docs: int = 2800  # LLM-scored documents the Edu head is trained on (at most)
    edu_max_length: int = 256  # encoder truncation (tokens)
    edu_sample: int = 1000  # documents the Edu teacher annotates for its student
    askllm_sample: int = 200  # documents the AskLLM teacher annotates for its student
    askllm_max_doc_tokens: int = 256  # document truncation inside the AskLLM prompt (tokens)
    # proxy experiments and regression (QUADMIX.md §5)
    proxy_model: str = "cpu-tiny"  # a quadmix_assets.proxy.model preset
    proxy_steps: int | None = None  # override the model preset's optimiser steps (token budget = steps x batch x seq_len)
    proxy_batch_size: int | None = None  # override the model preset's sequences per step
    proxy_group_size: int = 4  # proxies stacked in one model per worker process (memory ~ group x batch x seq x vocab logits)
    proxy_workers: int | None = None  # worker processes training proxy groups, one torch thread each (None: every core)
    noise_repeats: int = 16  # drawn configs whose proxy is retrained under a second seed (the noise ceiling)
    tokenizer_vocab: int = 4096  # byte-level BPE vocabulary trained on the corpus
    tokenizer_train_docs: int = 4000  # corpus documents (seeded sample) the tokenizer is trained on
    target_examples: int | None = 128  # target-half examples per set scored per proxy (None: all)
    objective_sets: tuple[str, ...] | None = None  # target sets whose mean loss is minimised (None: every set)
    regressor_valid_fraction: float = 0.2  # configs held out to judge the regressor
    regressor_min_spearman: float | None = 0.3  # blocking floor on the CV Spearman when no noise ceiling is measured
    regressor_ceiling_share: float | None = 0.5  # blocking: CV Spearman >= this share of the repeat Spearman (None: off)
    regressor_cv_folds: int = 5
    regressor_cv_repeats: int = 5  # repeated K-fold CV picks the model and feature set and judges it
    feature_docs: int | None = 2048  # documents (seeded sample) the mixture statistics are computed on (None: all)
    search_samples: int = 100_000  # fresh configs the regressor ranks
    search_top_k: int = 10  # the optimum is the element-wise mean of the top k
    search_rounds: int = 1  # rounds of proxies: 1 = the K random draws only; each later round adds round_size configs
    round_size: int = 16  # configs proposed per later round
    round_explore_share: float = 0.25  # share of a round drawn fresh from the space (the rest near the predicted best)
    round_min_gain_noise: float | None = 1.0  # stop the rounds when the predicted gain < this x the proxy noise SD (None: never)

    def to_dict(self) -> dict:
        return asdict(self)


#: the values the presets share; each preset below is this base with its own differences (``replace``)
BASE = Preset(
    name="base",
    n_configs=64,
    omega_max=0.5,
    lambda_scale="log",
    seed=20250423,
    baseline_keep_fraction=0.25,
    normaliser_max_exact=2_000_000,
    normaliser_sample_size=100_000,
    domain_epochs=15,
    dclm_epochs=20,
)

PRESETS: dict[str, Preset] = {
    "cpu": replace(
        BASE,
        name="cpu",
        edu_train_docs=1000,
        edu_max_length=256,
        edu_sample=800,
        askllm_sample=384,
        askllm_max_doc_tokens=128,
        # 60 steps x 16 x 129 = 124k tokens per proxy. At 30 steps x 8, two data orders gave target losses
        # with Spearman -0.12 across 10 configs (pure noise). Between 120 and 60 steps (docs/selection-studies.md,
        # "The proxy budget"): 60 repeats better (proxy_fidelity, 32 configs: 0.754 vs 0.389; noise ceiling
        # 0.812 vs 0.691), its regressor is stronger (0.879 vs 0.799), the demo takes 15 instead of 21 min, and
        # in `quadmix compare --seeds 3` its optimum has the lowest held-out loss of the 8 methods (6.191) where
        # 120 steps' was third (6.242, behind langid-only 6.204 and heuristic-only 6.227)
        proxy_steps=60,
        proxy_batch_size=16,
        target_examples=48,
        regressor_min_spearman=0.0,
        # the objective: the target sets whose proxy loss repeats across seeds, repeat Spearman >= 0.35 (per
        # set, proxy_noise's 16 configs x 2 seeds on the bundled corpus, measured at these 60 steps by
        # benchmarks/objective_choice.py: winogrande 0.83, lambada 0.78, jeopardy 0.72, openbook_qa 0.72,
        # copa 0.69, gsm8k 0.56, siqa 0.42; every other set <= 0.22, mmlu_redux 0.01, wikitext2 0.00). The
        # same rule at the 120 steps of before had kept copa, lambada, winogrande and siqa. On all 15 sets the
        # loss repeats with Spearman 0.27 only: mostly noise for this 0.3M-parameter proxy (docs/method.md,
        # "Objective")
        objective_sets=("copa", "gsm8k", "jeopardy_all", "lambada_openai", "openbook_qa", "siqa", "winogrande"),
        search_rounds=2,
        round_size=16,
        round_min_gain_noise=0.5,
    ),
    "paper": replace(
        BASE,
        name="paper",
        n_configs=3000,
        omega_max=0.1,
        baseline_keep_fraction=0.05,
        edu_mode="direct",
        edu_max_length=512,
        askllm_sample=100_000,
        askllm_max_doc_tokens=512,
        proxy_model="regmix-1m",
        proxy_group_size=8,
        tokenizer_vocab=50432,
        tokenizer_train_docs=200_000,
        target_examples=None,
        regressor_valid_fraction=200 / 3000,
        regressor_min_spearman=0.9,
    ),
    "test": replace(
        BASE,
        name="test",
        n_configs=4,
        seed=7,
        normaliser_sample_size=10_000,
        domain_epochs=10,
        dclm_epochs=5,
        edu_train_docs=160,
        edu_max_length=96,
        edu_sample=64,
        askllm_sample=12,
        askllm_max_doc_tokens=48,
        proxy_steps=4,
        proxy_batch_size=2,
        proxy_group_size=8,
        tokenizer_vocab=512,
        tokenizer_train_docs=300,
        target_examples=8,
        regressor_min_spearman=None,
        regressor_ceiling_share=None,
        regressor_cv_repeats=2,
        regressor_cv_folds=3,
        round_min_gain_noise=None,
        noise_repeats=4,
        search_rounds=2,
        round_size=4,
        search_samples=2000,
    ),
}

DEFAULT_PRESET = "cpu"


def get_preset(name: str, *, n_configs: int | None = None) -> Preset:
    """The preset called ``name``, with ``n_configs`` overridden when given (see
    :func:`quadmix_assets.config.resolve_config` for every override)."""
    from quadmix_assets.config import resolve_config

    return resolve_config(name, {"n_configs": n_configs}).preset
