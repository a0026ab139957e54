"""Which target sets can the proxies see? Per-set repeatability and regressor fit for several objectives,
read from a stored run (no training).

Usage (after `quadmix run`, on its storage root)::

    .venv/bin/python benchmarks/objective_choice.py --storage .quadmix/storage [--threshold 0.35]

Reads the primary proxy runs and the repeats of ``proxy_noise`` and prints:

* per target set, the repeat Spearman rho of its loss across the repeated configs (two seeds);
* for the objectives "every set", "sets with repeat rho >= threshold" and the run's own objective: the
  repeat Spearman of the objective (the noise ceiling) and the regressor's repeated 5-fold CV Spearman
  for every candidate of :func:`quadmix_assets.proxy.surrogate.select_surrogate` (same features, seeds
  and folds as the pipeline), so an objective's fit can be compared with its noise ceiling.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quadmix_assets.method import QuadMixParams  # noqa: E402
from quadmix_assets.proxy.features import feature_names, mixture_features  # noqa: E402
from quadmix_assets.proxy.optimise import document_table, training_set  # noqa: E402
from quadmix_assets.proxy.runs import per_set_repeatability  # noqa: E402
from quadmix_assets.proxy.surrogate import select_surrogate  # noqa: E402
from quadmix_assets.selection.stored import run_preset  # noqa: E402
from quadmix_assets.storage import StorageRoot, layout  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", required=True)
    ap.add_argument("--threshold", type=float, default=0.35)
    a = ap.parse_args()
    st = StorageRoot(a.storage)
    preset = run_preset(st)
    ts = training_set(st)
    noise = st.read_json(layout.proxy_noise())
    ids = noise["mixture_ids"]
    first = {k: st.read_json(layout.proxy_run(k))["target_losses"] for k in ids}
    second = {k: st.read_json(layout.proxy_repeat(k, 1))["target_losses"] for k in ids}
    per = per_set_repeatability(first, second)
    print(f"{len(ids)} configs repeated under a second seed; {len(ts.specs)} training configs")
    print("\n| target set | repeat Spearman |\n|---|---|")
    for k, v in sorted(per.items(), key=lambda t: -t[1]):
        print(f"| {k} | {v:.3f} |")
    docs, crit, dn = document_table(st, preset.feature_docs, preset.seed)
    params = [s.params for s in ts.specs]
    raw = np.stack([p.to_vector() for p in params])
    stats = mixture_features(docs, params)
    own = st.read_json(layout.target_card())["objective_sets"]
    objectives = {"every set": sorted(per), f"repeat rho >= {a.threshold:g}": sorted(k for k, v in per.items() if v >= a.threshold),
                  "the run's objective": sorted(own)}
    print("\n| objective | sets | noise ceiling (repeat Spearman) | chosen regressor | its CV Spearman | every candidate |")
    print("|---|---|---|---|---|---|")
    for name, sets in objectives.items():
        if not sets:
            continue
        y = np.array([np.mean([st.read_json(layout.proxy_run(s.mixture_id))["target_losses"][k] for k in sets]) for s in ts.specs])
        la = [np.mean([first[i][k] for k in sets]) for i in ids]
        lb = [np.mean([second[i][k] for k in sets]) for i in ids]
        ceiling = float(spearmanr(la, lb).statistic)
        sur = select_surrogate(raw, stats, y, raw_names=QuadMixParams.feature_names(docs.n_domains, docs.n_criteria),
                               stats_names=feature_names(docs.n_domains, crit, dn), n_criteria=docs.n_criteria,
                               folds=preset.regressor_cv_folds, repeats=preset.regressor_cv_repeats, seed=preset.seed)
        cands = ", ".join(f"{k} {v['cv_spearman']:.2f}" for k, v in sur.report["candidates"].items())
        print(f"| {name} | {', '.join(sets) if len(sets) < 6 else f'{len(sets)} sets'} | {ceiling:.3f} | {sur.report['chosen']} | "
              f"{sur.report['cv_spearman']:.3f} | {cands} |")


if __name__ == "__main__":
    main()
