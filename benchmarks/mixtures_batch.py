"""K mixtures in one pass (``quadmix_assets.method.batch.sampling_plans``) against the per-config path
(``sampling_plan`` once per config), both computing qbar -> r -> S -> copies for every document.

Usage::

    .venv/bin/python benchmarks/mixtures_batch.py [--configs 3000] [--storage DIR] [--chunk 64] [--check 200]

With ``--storage`` (a folder a ``quadmix run`` wrote) the documents are that run's (the normaliser's shards:
tokens, domains, stored worse-than ranks); without, a generated corpus of the bundled size (14,361
documents, 24 domains, 5 criteria with ties, log-normal tokens). Configs are drawn from the parameter space
with seed 0; each config's draw seed is its index. Both paths run single-threaded in this process, one after
the other; the first ``--check`` configs are compared (copies, bit for bit). Printed: seconds per path,
configs/s and the ratio. On a shared machine only the ratio is comparable.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quadmix_assets.method import ParamSpace, sampling_plan  # noqa: E402
from quadmix_assets.method.batch import sampling_plans  # noqa: E402


def corpus(storage: str | None):
    if storage:
        from quadmix_assets.mixing.features import document_features
        from quadmix_assets.mixing.store import configs_doc
        from quadmix_assets.storage import StorageRoot, layout

        st = StorageRoot(storage)
        card = st.read_json(layout.normaliser_card())
        criteria = configs_doc(st)["space"]["criteria"]
        n_domains = configs_doc(st)["space"]["n_domains"]
        f = document_features(st, card["shards"], criteria)
        ranks = np.column_stack([f[f"s_{c}"].to_numpy() for c in criteria])
        return ranks, f["domain"].to_numpy().astype(np.int64), f["n_tokens"].to_numpy(), f["id_hash"].to_numpy(), n_domains
    rng = np.random.default_rng(0)
    n, m = 14_361, 24
    ranks = np.round(rng.random((n, 5)), 4)
    dom = rng.choice(m, n, p=rng.dirichlet(np.full(m, 0.7)))
    tok = np.maximum(1, rng.lognormal(6.1, 0.9, n)).astype(np.int64)
    keys = rng.integers(0, 2**63, n).astype(np.uint64)
    return ranks, dom, tok, keys, m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=int, default=3000)
    ap.add_argument("--storage", default=None)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--check", type=int, default=200)
    args = ap.parse_args()
    ranks, dom, tok, keys, m = corpus(args.storage)
    configs = ParamSpace(m, ranks.shape[1]).sample(args.configs, seed=0)
    seeds = list(range(len(configs)))
    print(f"{ranks.shape[0]:,} documents, {m} domains, {ranks.shape[1]} criteria, {len(configs):,} configs "
          f"({'stored run ' + args.storage if args.storage else 'generated corpus'})")
    t0 = time.perf_counter()
    batch_tokens = 0
    checked = []
    for k, res in enumerate(sampling_plans(ranks, dom, tok, keys, configs, seeds, chunk=args.chunk)):
        batch_tokens += int(np.dot(res["copies"], tok))
        if k < args.check:
            checked.append(res["copies"])
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_tokens = 0
    same = True
    for k, (p, s) in enumerate(zip(configs, seeds)):
        c = sampling_plan(ranks, dom, tok, keys, p, s)["copies"]
        ref_tokens += int(np.dot(c, tok))
        if k < args.check:
            same &= bool(np.array_equal(c, checked[k]))
    t_one = time.perf_counter() - t0
    print(f"per-config path: {t_one:8.2f} s  ({len(configs) / t_one:8.1f} configs/s)")
    print(f"one pass       : {t_batch:8.2f} s  ({len(configs) / t_batch:8.1f} configs/s)")
    print(f"ratio (per-config seconds / one-pass seconds): {t_one / t_batch:.2f}x")
    print(f"identical copies on the first {min(args.check, len(configs))} configs: {same}; "
          f"sampled tokens over all configs equal: {batch_tokens == ref_tokens}")


if __name__ == "__main__":
    main()
