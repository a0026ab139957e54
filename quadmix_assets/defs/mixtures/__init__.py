"""Mixtures: the mixture configs, each mixture's scores and its sampled manifest, with their checks."""
