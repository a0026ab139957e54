"""The optimisation loop over stored proxy results (no Dagster): the regressor's training set, its fit,
the next round's configs and the final search (QUADMIX.md §5, made iterative as NVIDIA's CLIMB does).

* Training set: the configs of rounds 1..r (random draws, then each later round's proposals) whose
  proxy (repeat 0) finished on the current manifest. It is defined by the registered configs, never by
  whichever files happen to exist (a resumed run learns from the same points).
* Features: the raw config numbers and the statistics of the sampled mixture (:mod:`.features`),
  computed on one seeded document sample for training points and candidates alike.
* Rounds: ``round_size`` configs per later round; ``1 - explore_share`` of them are the best-predicted
  of a candidate pool (fresh draws plus blends of the best-predicted draws with fresh ones), the rest
  fresh draws. A round is skipped when the predicted gain over the best measured loss is below the
  measured proxy noise.
* Search: the element-wise mean of the top-k predicted of ``n`` fresh configs (the paper's rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quadmix_assets.method import ParamSpace, QuadMixParams
from quadmix_assets.mixing import MixtureSpec
from quadmix_assets.mixing.features import document_features
from quadmix_assets.mixing.store import alpha_criteria, configs_doc, training_entries
from quadmix_assets.storage import StorageRoot, layout

from .features import DocumentTable, arrays_config, config_arrays, feature_names, mixture_features, mixture_features_parallel
from .parallel import default_workers
from .runs import current_objective, stored_loss
from .surrogate import Surrogate, select_surrogate


@dataclass
class TrainingSet:
    specs: list[MixtureSpec]
    rounds: list[int]
    y: np.ndarray
    left_out: dict[str, int]


def training_set(storage: StorageRoot, up_to_round: int | None = None) -> TrainingSet:
    specs, rounds, y = [], [], []
    left_out = {"no_finished_proxy": 0}
    objective = current_objective(storage)
    for d in training_entries(storage, up_to_round):
        loss = stored_loss(storage, d["mixture_id"], objective=objective)
        if loss is None:
            left_out["no_finished_proxy"] += 1
            continue
        specs.append(MixtureSpec.from_dict(d))
        rounds.append(int(d.get("round", 1)))
        y.append(loss)
    return TrainingSet(specs, rounds, np.asarray(y, np.float64), left_out)


def space_of(storage: StorageRoot) -> ParamSpace:
    configs = configs_doc(storage)
    s = configs["space"]
    return ParamSpace(s["n_domains"], len(alpha_criteria(configs)), omega_max=s["omega_max"], lambda_scale=s["lambda_scale"])


def document_table(storage: StorageRoot, max_docs: int | None, seed: int) -> tuple[DocumentTable, list[str], list[str]]:
    """The documents the mixture statistics are computed on (the normaliser's shards), criteria and
    domain names."""
    configs = configs_doc(storage)
    space = configs["space"]
    criteria = alpha_criteria(configs)
    card = storage.read_json(layout.normaliser_card())
    t = document_features(storage, card["shards"], criteria)
    ranks = np.column_stack([t[f"s_{c}"].to_numpy() for c in criteria])
    docs = DocumentTable.build(ranks, t["domain"].to_numpy().astype(np.int64), t["n_tokens"].to_numpy(), space["n_domains"],
                               max_docs=max_docs, seed=seed)
    names = storage.read_json(layout.model_card("domain_classifier")).get("domain_names")
    return docs, criteria, list(names) if names and len(names) == space["n_domains"] else None


def fit(storage: StorageRoot, preset, ts: TrainingSet) -> tuple[Surrogate, DocumentTable]:
    docs, criteria, dnames = document_table(storage, preset.feature_docs, preset.seed)
    params = [s.params for s in ts.specs]
    raw = np.stack([p.to_vector() for p in params])
    stats = mixture_features(docs, params)
    sur = select_surrogate(raw, stats, ts.y, raw_names=QuadMixParams.feature_names(docs.n_domains, docs.n_criteria),
                           stats_names=feature_names(docs.n_domains, criteria, dnames), n_criteria=docs.n_criteria,
                           folds=preset.regressor_cv_folds,
                           repeats=preset.regressor_cv_repeats, seed=preset.seed)
    return sur, docs


def predict_arrays(sur: Surrogate, docs: DocumentTable, arrays: dict[str, np.ndarray]) -> np.ndarray:
    raw = ParamSpace.arrays_to_matrix(arrays)
    stats = (mixture_features_parallel(docs, arrays, workers=default_workers()) if sur.feature_set != "raw"
             else np.zeros((len(raw), 0)))
    return sur.predict(raw, stats)


def blend(a: dict[str, np.ndarray], b: dict[str, np.ndarray], t: np.ndarray) -> dict[str, np.ndarray]:
    """Configs on the segment between ``a`` and ``b`` (arrays of equal shape), ``t`` in [0, 1] per row:
    alpha rows re-normalised, lambda interpolated in log space, the rest linearly. Stays in the space."""
    t2, t3 = t[:, None], t[:, None, None]
    alpha = (1 - t3) * a["alpha"] + t3 * b["alpha"]
    alpha /= alpha.sum(axis=2, keepdims=True)
    return {"alpha": alpha, "lam": np.exp((1 - t2) * np.log(a["lam"]) + t2 * np.log(b["lam"])),
            "omega": (1 - t2) * a["omega"] + t2 * b["omega"], "eta": (1 - t2) * a["eta"] + t2 * b["eta"],
            "eps": (1 - t2) * a["eps"] + t2 * b["eps"]}


def _take(arrays: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in arrays.items()}


def propose_round(sur: Surrogate, docs: DocumentTable, space: ParamSpace, *, n: int, explore_share: float, pool: int,
                  seed: int) -> tuple[list[QuadMixParams], np.ndarray, dict]:
    """The next round's ``n`` configs and their predicted losses: the best predicted of a pool of fresh
    draws and of blends of the best 32 draws with other fresh draws (exploitation), plus fresh draws
    (exploration)."""
    n_explore = int(round(n * explore_share))
    n_exploit = n - n_explore
    fresh = space.sample_arrays(pool, seed)
    pred = predict_arrays(sur, docs, fresh)
    top = np.argsort(pred, kind="stable")[:32]
    rng = np.random.default_rng([seed, 1])
    partners = space.sample_arrays(pool, seed + 1)
    anchor = top[rng.integers(0, len(top), pool)]
    local = blend(_take(fresh, anchor), partners, rng.uniform(0.0, 0.5, pool))
    pred_local = predict_arrays(sur, docs, local)
    cand = {k: np.concatenate([fresh[k], local[k]]) for k in fresh}
    pred_all = np.concatenate([pred, pred_local])
    best = np.argsort(pred_all, kind="stable")[:n_exploit]
    explore = space.sample_arrays(n_explore, seed + 2)
    configs = [arrays_config(cand, int(i)) for i in best] + [arrays_config(explore, i) for i in range(n_explore)]
    predicted = np.concatenate([pred_all[best], predict_arrays(sur, docs, explore) if n_explore else np.zeros(0)])
    info = {"pool": int(2 * pool), "exploit": int(n_exploit), "explore": int(n_explore), "seed": int(seed),
            "best_predicted_loss": float(pred_all.min()), "median_predicted_loss": float(np.median(pred_all))}
    return configs, predicted, info


def search(sur: Surrogate, docs: DocumentTable, space: ParamSpace, *, n: int, top_k: int, seed: int) -> tuple[QuadMixParams, dict]:
    """The paper's rule: the element-wise mean of the ``top_k`` best-predicted of ``n`` fresh configs."""
    arrays = space.sample_arrays(n, seed)
    pred = predict_arrays(sur, docs, arrays)
    top = np.argsort(pred, kind="stable")[:top_k]
    best = QuadMixParams.mean([arrays_config(arrays, int(i)) for i in top])
    pred_best = float(predict_arrays(sur, docs, config_arrays([best]))[0])
    return best, {"top_predicted_losses": [float(pred[i]) for i in top], "n": int(n), "seed": int(seed), "top_k": int(top_k),
                  "predicted_loss_of_mean": pred_best, "median_predicted_loss": float(np.median(pred))}


def best_measured(storage: StorageRoot) -> tuple[str | None, float | None]:
    """The training config (any round) with the lowest measured proxy loss."""
    ts = training_set(storage)
    if not len(ts.y):
        return None, None
    i = int(np.argmin(ts.y))
    return ts.specs[i].mixture_id, float(ts.y[i])


def measured_rank(storage: StorageRoot, mixture_id: str) -> dict:
    """Rank (1 = lowest loss) of a mixture's measured proxy loss among every measured training config."""
    loss = stored_loss(storage, mixture_id)
    ts = training_set(storage)
    if loss is None or not len(ts.y):
        return {}
    others = ts.y[[s.mixture_id != mixture_id for s in ts.specs]]
    rank = int((others < loss).sum()) + 1
    return {"loss": loss, "rank": rank, "of": int(len(others) + 1), "percentile": rank / (len(others) + 1),
            "best_measured": float(ts.y.min()), "median_measured": float(np.median(ts.y))}
