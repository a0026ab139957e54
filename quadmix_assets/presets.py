"""Named run sizes. A preset fixes how many configs are drawn, the parameter space and model budgets.

``cpu`` is the default: the bundled 14k-document corpus on a 2-core laptop. ``paper`` is QuaDMix's own
setting (K = 3,000 configs, omega_max = 0.1, for a pool of hundreds of billions of tokens). ``test`` is
the smallest thing that exercises every step.

A criterion's run-size values (the DCLM classifier's epochs, a teacher criterion's scoring mode and sample
size, ...) are the criterion's *preset options* (:class:`quadmix_assets.scoring.criteria.Option`, declared
in its registry entry with a default): a preset sets only those it changes, in its ``criteria`` mapping
(criterion -> option -> value). They read as flat attributes too (``preset.edu_mode``, ``preset.dclm_epochs``:
``<criterion>_<option>``), and :meth:`Preset.to_dict` records them flat, as the presets always did.

This module holds the values only; :func:`quadmix_assets.config.resolve_config` combines a preset with its
overrides (and :func:`quadmix_assets.config.get_preset` names one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from quadmix_assets.scoring import criteria as registry


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
    # proxy experiments and regression (QUADMIX.md §5)
    proxy_model: str = "cpu-tiny"  # a quadmix_assets.proxy.model preset
    proxy_steps: int | None = None  # override the model preset's optimiser steps (token budget = steps x batch x seq_len)
    proxy_batch_size: int | None = None  # override the model preset's sequences per step
    proxy_lr_schedule: str | None = None  # override the model preset's lr after the warm-up (constant, linear, cosine)
    proxy_average_last: float | None = None  # override: share of the last steps whose weights are averaged (0: none)
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
    # export the best measured config instead of the search optimum when the optimum's measured proxy loss is
    # worse by more than this x the proxy noise SD (sqrt(2): one SD of the difference of two proxy losses;
    # loop.policy.compare_to_best); None: always the optimum when the regressor is promoted
    export_margin_noise: float | None = 2 ** 0.5
    regressor_cv_folds: int = 5
    regressor_cv_repeats: int = 5  # repeated K-fold CV picks the model and feature set and judges it
    feature_docs: int | None = 2048  # documents (seeded sample) the mixture statistics are computed on (None: all)
    search_samples: int = 100_000  # fresh configs the regressor ranks
    search_top_k: int = 10  # the optimum is the element-wise mean of the top k
    search_rounds: int = 1  # rounds of proxies: 1 = the K random draws only; each later round adds round_size configs
    round_size: int = 16  # configs proposed per later round
    round_explore_share: float = 0.25  # share of a round drawn fresh from the space (the rest near the predicted best)
    round_min_gain_noise: float | None = 1.0  # stop the rounds when the predicted gain < this x the proxy noise SD (None: never)

    # per-criterion preset options the preset sets (criterion -> option -> value); the others keep the
    # defaults of the criterion's registry entry
    criteria: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    # the registered criteria left out of alpha (the mixture parameter space), each with the reason; every
    # other registered criterion is a column of alpha, in registry order (docs/criteria.md, "Which criteria
    # form alpha"). A left-out criterion is still scored and carded; a name no criterion of the registry has
    # is ignored (like a preset option of an unregistered criterion)
    alpha_left_out: Mapping[str, str] = field(default_factory=dict, hash=False)

    def criterion(self, name: str) -> dict[str, Any]:
        """The preset options of criterion ``name``: its registry defaults with this preset's values."""
        c = registry.get_criterion(name)
        own = self.criteria.get(name, {})
        return {o.name: own.get(o.name, o.default) for o in c.options if o.preset}

    def alpha_criteria(self) -> tuple[str, ...]:
        """The columns of alpha: every registered criterion this preset does not leave out, registry order."""
        cols = tuple(c for c in registry.CRITERIA if c not in self.alpha_left_out)
        if not cols:
            raise ValueError(f"preset {self.name!r} leaves every criterion out of alpha ({', '.join(registry.CRITERIA)})")
        return cols

    def left_out_of_alpha(self) -> dict[str, str]:
        """The registered criteria this preset leaves out of alpha, with the reason (registry order)."""
        return {c: str(self.alpha_left_out[c]) for c in registry.CRITERIA if c in self.alpha_left_out}

    def __getattr__(self, attr: str) -> Any:  # `preset.edu_mode`: the flat alias of a criterion's preset option
        if attr.startswith("_") or attr in ("criteria", "alpha_left_out"):
            raise AttributeError(attr)
        alias = registry.option_alias(attr, preset_only=True)
        if alias is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")
        return self.criterion(alias[0])[alias[1]]

    def to_dict(self) -> dict:
        """Every value, flat: the fields and each registered criterion's preset options as
        ``<criterion>_<option>`` (the form a run records its preset in)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("criteria", "alpha_left_out")}
        out["alpha_left_out"] = self.left_out_of_alpha()
        for c in registry.criteria():
            for option, value in self.criterion(c.name).items():
                out[f"{c.name}_{option}"] = value
        return out


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
)

PRESETS: dict[str, Preset] = {
    "cpu": replace(
        BASE,
        name="cpu",
        # Edu's teacher annotates 3,200 documents for its fastText student: at 800 the student kept its teacher
        # at Spearman 0.48 (< 0.5) and its top quarter held 0.55 of the legal-keyword FineWeb pages by tokens
        # (its teacher 0.38, a random quarter 0.34); at 3,200: 0.60 and 0.41, for about 80 s more of the
        # teacher (benchmarks/edu_student_sample.py, benchmarks/RESULTS.md)
        criteria={"edu": {"train_docs": 1000, "max_length": 256, "sample": 3200},
                  "askllm": {"sample": 384, "max_doc_tokens": 128}},
        # 60 steps x 16 x 129 = 124k tokens per proxy. At 30 steps x 8, two data orders gave target losses
        # with Spearman -0.12 across 10 configs (pure noise). Between 120 and 60 steps (docs/selection-studies.md,
        # "The proxy budget"): 60 repeats better (proxy_fidelity, 32 configs: 0.754 vs 0.389; noise ceiling
        # 0.812 vs 0.691), its regressor is stronger (0.879 vs 0.799), the demo takes 15 instead of 21 min, and
        # in `quadmix compare --seeds 3` its optimum has the lowest held-out loss of the 8 methods (6.191) where
        # 120 steps' was third (6.242, behind langid-only 6.204 and heuristic-only 6.227)
        proxy_steps=60,
        proxy_batch_size=16,
        # the learning rate decayed linearly to zero after the warm-up (constant before): at the same CPU, the
        # proxy's loss repeats better across seeds (benchmarks/proxy_fidelity.py, 8 configs x 2 seeds: noise SD
        # 0.0130 vs 0.0142, repeat Spearman 0.952 vs 0.619; docs/method.md, "The proxy's optimiser")
        proxy_lr_schedule="linear",
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
        # AskLLM's teacher (SmolLM2-135M) distilled into a fastText student on this preset's 384-document
        # sample keeps nothing of it: held-out teacher-student Spearman 0.06 on 85 documents
        # (benchmarks/RESULTS.md, criteria of the cpu preset); its criterion card marks it unreliable. Its
        # column would feed alpha near-random ranks, so it is left out (still scored and carded). Put it back
        # with `--alpha-criteria all` (or score it directly: criteria.askllm.mode=direct)
        alpha_left_out={"askllm": "its distilled student at the cpu sample (384 documents) keeps nothing of its "
                        "teacher: held-out teacher-student Spearman 0.06 on 85 documents (benchmarks/RESULTS.md); "
                        "its card marks it unreliable"},
    ),
    "paper": replace(
        BASE,
        name="paper",
        n_configs=3000,
        omega_max=0.1,
        baseline_keep_fraction=0.05,
        criteria={"edu": {"mode": "direct", "max_length": 512},
                  "askllm": {"sample": 100_000, "max_doc_tokens": 512}},
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
        criteria={"dclm": {"epochs": 5}, "edu": {"train_docs": 160, "max_length": 96, "sample": 64},
                  "askllm": {"sample": 12, "max_doc_tokens": 48}},
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
        export_margin_noise=None,  # 4-step proxies: the runs that test every step export the search optimum
        noise_repeats=4,
        search_rounds=2,
        round_size=4,
        search_samples=2000,
    ),
}

DEFAULT_PRESET = "cpu"

