"""Proxy-model stage of QuaDMix (QUADMIX.md section 5): target sets, tokenizer, token streams from
mixture manifests, K stacked LLaMA-style proxy models trained together, and the LightGBM regression +
search. Plain library: no Dagster imports."""
