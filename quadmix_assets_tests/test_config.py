"""The presets' values, frozen before presets became ``replace`` of a shared base and overrides moved into
one function (:func:`quadmix_assets.config.resolve_config`): a refactor must not change a single value."""

from __future__ import annotations

import pytest

from quadmix_assets.config import get_preset, resolve_config
from quadmix_assets.presets import PRESETS

# captured from the literals of presets.py at commit d3a42dc (before the refactor); changed on purpose since:
# the cpu objective (commit 03fddcf, 2026-12-03: the same repeatability rule measured at 60 proxy steps);
# alpha_left_out (2026-12-07: cpu leaves askllm out of alpha, its student lost its teacher); the proxy schedule
# and weight-average overrides (2026-12-07: cpu's proxies decay their learning rate to zero); export_margin_noise
# (2026-12-07: the export rule, off in test); cpu's Edu student sample 800 -> 3200 (2026-12-07: at 800 its student
# leaned and lost its teacher)
CPU_ASKLLM_WHY = ("its distilled student at the cpu sample (384 documents) keeps nothing of its teacher: held-out "
                  "teacher-student Spearman 0.06 on 85 documents (benchmarks/RESULTS.md); its card marks it unreliable")
FROZEN = {'cpu': {'alpha_left_out': {'askllm': CPU_ASKLLM_WHY},
         'askllm_max_doc_tokens': 128,
         'askllm_mode': 'distill',
         'askllm_sample': 384,
         'baseline_keep_fraction': 0.25,
         'dclm_epochs': 20,
         'domain_epochs': 15,
         'edu_max_length': 256,
         'edu_mode': 'distill',
         'edu_sample': 3200,
         'edu_train_docs': 1000,
         'export_margin_noise': 1.4142135623730951,
         'feature_docs': 2048,
         'lambda_scale': 'log',
         'n_configs': 64,
         'name': 'cpu',
         'noise_repeats': 16,
         'normaliser_max_exact': 2000000,
         'normaliser_sample_size': 100000,
         'objective_sets': ('copa', 'gsm8k', 'jeopardy_all', 'lambada_openai', 'openbook_qa', 'siqa', 'winogrande'),
         'omega_max': 0.5,
         'proxy_batch_size': 16,
         'proxy_average_last': None,
         'proxy_group_size': 4,
         'proxy_lr_schedule': 'linear',
         'proxy_model': 'cpu-tiny',
         'proxy_steps': 60,
         'proxy_workers': None,
         'regressor_ceiling_share': 0.5,
         'regressor_cv_folds': 5,
         'regressor_cv_repeats': 5,
         'regressor_min_spearman': 0.0,
         'regressor_valid_fraction': 0.2,
         'round_explore_share': 0.25,
         'round_min_gain_noise': 0.5,
         'round_size': 16,
         'search_rounds': 2,
         'search_samples': 100000,
         'search_top_k': 10,
         'seed': 20250423,
         'target_examples': 48,
         'tokenizer_train_docs': 4000,
         'tokenizer_vocab': 4096},
 'paper': {'alpha_left_out': {},
           'askllm_max_doc_tokens': 512,
           'askllm_mode': 'distill',
           'askllm_sample': 100000,
           'baseline_keep_fraction': 0.05,
           'dclm_epochs': 20,
           'domain_epochs': 15,
           'edu_max_length': 512,
           'edu_mode': 'direct',
           'edu_sample': 1000,
           'edu_train_docs': 2800,
           'export_margin_noise': 1.4142135623730951,
           'feature_docs': 2048,
           'lambda_scale': 'log',
           'n_configs': 3000,
           'name': 'paper',
           'noise_repeats': 16,
           'normaliser_max_exact': 2000000,
           'normaliser_sample_size': 100000,
           'objective_sets': None,
           'omega_max': 0.1,
           'proxy_batch_size': None,
           'proxy_average_last': None,
           'proxy_group_size': 8,
           'proxy_lr_schedule': None,
           'proxy_model': 'regmix-1m',
           'proxy_steps': None,
           'proxy_workers': None,
           'regressor_ceiling_share': 0.5,
           'regressor_cv_folds': 5,
           'regressor_cv_repeats': 5,
           'regressor_min_spearman': 0.9,
           'regressor_valid_fraction': 0.06666666666666667,
           'round_explore_share': 0.25,
           'round_min_gain_noise': 1.0,
           'round_size': 16,
           'search_rounds': 1,
           'search_samples': 100000,
           'search_top_k': 10,
           'seed': 20250423,
           'target_examples': None,
           'tokenizer_train_docs': 200000,
           'tokenizer_vocab': 50432},
 'test': {'alpha_left_out': {},
          'askllm_max_doc_tokens': 48,
          'askllm_mode': 'distill',
          'askllm_sample': 12,
          'baseline_keep_fraction': 0.25,
          'dclm_epochs': 5,
          'domain_epochs': 10,
          'edu_max_length': 96,
          'edu_mode': 'distill',
          'edu_sample': 64,
          'edu_train_docs': 160,
          'export_margin_noise': None,
          'feature_docs': 2048,
          'lambda_scale': 'log',
          'n_configs': 4,
          'name': 'test',
          'noise_repeats': 4,
          'normaliser_max_exact': 2000000,
          'normaliser_sample_size': 10000,
          'objective_sets': None,
          'omega_max': 0.5,
          'proxy_batch_size': 2,
          'proxy_average_last': None,
          'proxy_group_size': 8,
          'proxy_lr_schedule': None,
          'proxy_model': 'cpu-tiny',
          'proxy_steps': 4,
          'proxy_workers': None,
          'regressor_ceiling_share': None,
          'regressor_cv_folds': 3,
          'regressor_cv_repeats': 2,
          'regressor_min_spearman': None,
          'regressor_valid_fraction': 0.2,
          'round_explore_share': 0.25,
          'round_min_gain_noise': None,
          'round_size': 4,
          'search_rounds': 2,
          'search_samples': 2000,
          'search_top_k': 10,
          'seed': 7,
          'target_examples': 8,
          'tokenizer_train_docs': 300,
          'tokenizer_vocab': 512}}


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_presets_keep_their_values(name):
    # a criterion's preset values (dclm_epochs, edu_mode, ...) live in the preset's `criteria` mapping since
    # the criterion registry declares them; to_dict() gives them by their flat names, as recorded
    assert PRESETS[name].to_dict() == FROZEN[name]
    assert resolve_config(name).preset.to_dict() == FROZEN[name]


def test_overrides_resolve_in_one_place():
    cfg = resolve_config("cpu", {"n_configs": 8, "proxy_model": None, "search_samples": 500})
    assert cfg.preset.n_configs == 8 and cfg.preset.search_samples == 500
    assert cfg.preset.proxy_model == FROZEN["cpu"]["proxy_model"]  # None keeps the preset's value
    assert get_preset("test", n_configs=3) == resolve_config("test", {"n_configs": 3}).preset
    with pytest.raises(ValueError):
        resolve_config("cpu", {"n_configs": 0})
    with pytest.raises(ValueError):
        resolve_config("cpu", {"no_such_field": 1})
    with pytest.raises(ValueError):
        resolve_config("laptop")
    # a stored run's recorded values: None is a value there
    assert resolve_config("cpu", {"target_examples": None}, none_keeps=False).preset.target_examples is None


def test_settings_resource_uses_the_same_resolution(tmp_path):
    from quadmix_assets.dagster_support.resources import QuadmixSettings

    s = QuadmixSettings.from_env(corpus_glob=str(tmp_path / "*.jsonl"), storage_root=str(tmp_path), preset="test",
                                 n_configs=5, edu_mode="direct", search_samples=99)
    assert s.config() == resolve_config("test", {"n_configs": 5, "search_samples": 99}, modes={"edu": "direct"})
    assert s.run_preset() == s.config().preset and s.config().teacher("edu").mode == "direct"
    assert s.config().teacher("askllm").mode == FROZEN["test"]["askllm_mode"]


def test_alpha_is_the_presets_choice_with_a_reason_and_the_settings_may_change_it(tmp_path):
    from quadmix_assets.config import LEFT_OUT_BY_SETTINGS
    from quadmix_assets.dagster_support.resources import QuadmixSettings
    from quadmix_assets.scoring.criteria import CRITERIA

    cpu = resolve_config("cpu")
    assert cpu.alpha == tuple(c for c in CRITERIA if c != "askllm") and cpu.alpha_left_out == {"askllm": CPU_ASKLLM_WHY}
    assert resolve_config("test").alpha == CRITERIA and resolve_config("paper").alpha == CRITERIA  # tests exercise all
    assert resolve_config("cpu", alpha_criteria="all").alpha == CRITERIA
    some = resolve_config("cpu", alpha_criteria=" langid , dclm ")
    assert some.alpha == ("dclm", "langid")  # registry order, whatever the order given
    assert some.alpha_left_out == {"heuristic": LEFT_OUT_BY_SETTINGS, "edu": LEFT_OUT_BY_SETTINGS, "askllm": CPU_ASKLLM_WHY}
    for bad in ("nope", "", "dclm,nope"):
        with pytest.raises(ValueError, match="alpha_criteria"):
            resolve_config("cpu", alpha_criteria=bad)
    # a stored run's recorded preset gives the same columns back (selection.stored resolves it so)
    from quadmix_assets.config import preset_keys

    recorded = {k: v for k, v in some.preset.to_dict().items() if k in preset_keys()}
    assert resolve_config("cpu", recorded, none_keeps=False).alpha == ("dclm", "langid")
    settings = QuadmixSettings(corpus_glob=str(tmp_path / "*.jsonl"), storage_root=str(tmp_path / "s"), data_dir=str(tmp_path),
                               preset="test", alpha_criteria="dclm,heuristic,langid,edu")
    assert settings.config().alpha == ("dclm", "heuristic", "langid", "edu")
    assert settings.config().alpha_left_out == {"askllm": LEFT_OUT_BY_SETTINGS}
