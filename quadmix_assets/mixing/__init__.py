"""Mixtures: the configs a run samples (random draws and named baselines) and what is computed of them.

Modules, one job each (layers, top to bottom; a module imports only those below it, checked by
import-linter):

- :mod:`.fanin`: the fan-in interface the mixture assets use (:func:`~.fanin.open_fan_in`), with the
  in-memory (numpy) and out-of-core (DuckDB) engines behind it;
- :mod:`.fanin_duckdb`: the out-of-core engine's steps;
- :mod:`.scores` (a mixture's per-document scores and their sums from a features table, numpy),
  :mod:`.features` (the feature reader) and :mod:`.store` (the spec store: specs, rounds, scores cards);
- :mod:`.specs`: what a mixture is (:class:`MixtureSpec`), drawn configs and baselines.
"""

from quadmix_assets.mixing.specs import MixtureSpec, baseline_specs, drawn_specs, global_params

__all__ = ["MixtureSpec", "baseline_specs", "drawn_specs", "global_params"]
