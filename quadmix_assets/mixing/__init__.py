"""Mixture specifications: the configs a run samples (random draws and named baselines)."""

from quadmix_assets.mixing.specs import MixtureSpec, baseline_specs, drawn_specs, global_params

__all__ = ["MixtureSpec", "baseline_specs", "drawn_specs", "global_params"]
