"""Quality: the models (domain and DCLM classifiers, the Edu teacher, the distilled students), the
per-shard domain labels and raw scores of every registered criterion, the criteria's evaluation and the
global normaliser, with their checks."""
