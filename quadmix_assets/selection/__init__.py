"""Selection baselines and the paper-style comparison (issue 3, item 7), as plain libraries (no Dagster).

* :mod:`.dsir`: DSIR, hashed n-gram importance resampling toward the target half of the target sets;
* :mod:`.regmix`: RegMix-style domain reweighting fitted by the same proxy-regression loop;
* :mod:`.compare`: one evaluation model per selection method at one token budget, judged on the
  held-out half only (loss per set, multiple-choice accuracy by log-likelihood);
* :mod:`.stored`: the same comparison read from a pipeline's storage root (``quadmix compare``).
"""
