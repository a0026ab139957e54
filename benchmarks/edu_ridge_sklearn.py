"""The Edu head fitted by the old hand-written ridge (numpy ``solve`` on the centred normal equations) and by
scikit-learn's ``Ridge(solver="cholesky")`` (what ``scoring/edu_scorer.py`` uses now), on the real training set
exactly as the ``edu_teacher`` asset builds it for a preset: ``python benchmarks/edu_ridge_sklearn.py [PRESET]
[DATA_DIR]`` prints the chosen alphas, the largest weight / bias differences and the largest absolute
difference of the stored float32 predictions (on the head's training documents and on every other LLM-scored
document), and whether they are bit-identical."""
import json
import sys

import numpy as np

from quadmix_assets import settings as env
from quadmix_assets.presets import PRESETS
from quadmix_assets.scoring import edu_scorer
from quadmix_assets.scoring.distill import sample_for_annotation
from quadmix_assets.scoring.edu_scorer import TextEncoder, load_edu_training_set, train_edu_head


def numpy_ridge(x, y, alpha):  # the head's ridge before scikit-learn (commit 215f73d)
    xm, ym = x.mean(0), float(y.mean())
    xc = x - xm
    a = xc.T @ xc + alpha * np.eye(x.shape[1])
    w = np.linalg.solve(a, xc.T @ (y - ym))
    return w, ym - float(xm @ w)


preset = PRESETS[sys.argv[1] if len(sys.argv) > 1 else "cpu"]
data_dir = sys.argv[2] if len(sys.argv) > 2 else env.data_dir()
ids, texts, scores = load_edu_training_set(data_dir)
keep = np.sort(sample_for_annotation(ids, min(preset.edu_train_docs, len(ids)), seed=preset.seed))  # as edu_teacher
rest = np.setdiff1d(np.arange(len(ids)), keep)
encoder = TextEncoder(None, max_length=preset.edu_max_length)
emb, _ = encoder.encode([texts[i] for i in keep])
emb_rest, _ = encoder.encode([texts[i] for i in rest]) if len(rest) else (np.zeros((0, emb.shape[1]), np.float32), None)
heads = {}
for name, ridge in (("numpy", numpy_ridge), ("sklearn", edu_scorer._ridge)):
    edu_scorer._ridge = ridge
    heads[name], _ = train_edu_head(emb, scores[keep], [ids[i] for i in keep], seed=preset.seed)
old, new = heads["numpy"], heads["sklearn"]
out = {
    "preset": preset.name, "train_docs": int(len(keep)), "other_docs": int(len(rest)),
    "alpha": [old.alpha, new.alpha],
    "max_abs_weight_diff_float32": float(np.abs(old.weights - new.weights).max()),
    "weights_bit_identical": bool(old.weights.tobytes() == new.weights.tobytes()),
    "bias": [old.bias, new.bias],
    "cv_mae_max_abs_diff": max(abs(old.meta["cv_mae"][k] - new.meta["cv_mae"][k]) for k in old.meta["cv_mae"]),
    "head_version_equal": old.version == new.version,
}
for label, x in (("training_docs", emb), ("other_docs", emb_rest)):
    a, b = old.predict(x), new.predict(x)
    out[f"{label}_max_abs_pred_diff"] = float(np.abs(a - b).max()) if len(a) else 0.0
    out[f"{label}_preds_bit_identical"] = bool(a.tobytes() == b.tobytes())
    out[f"{label}_preds_differing"] = int((a != b).sum())
print(json.dumps(out, indent=1))
