"""The one loss evaluator against the two of before (commit 215f73d, read with ``git show``): ``python
benchmarks/loss_evaluator_check.py [COMMIT]`` trains six small proxies on random tokens and prints whether
``proxy.model.evaluate_losses`` gives the stored-proxy losses bit for bit (batch sizes 64, 16, 7) and how far
the bounded evaluation RegMix and ``quadmix compare`` now use moves from the old ``selection.compare.set_losses``."""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from quadmix_assets.proxy import model as new

commit = sys.argv[1] if len(sys.argv) > 1 else "215f73d"
root = Path(__file__).resolve().parents[1]
old_dir = Path(tempfile.mkdtemp(prefix="quadmix-old-loss-"))
show = lambda path: subprocess.run(["git", "show", f"{commit}:{path}"], cwd=root, check=True, capture_output=True, text=True).stdout
(old_dir / "old_model.py").write_text(show("quadmix_assets/proxy/model.py"))
(old_dir / "old_compare.py").write_text(show("quadmix_assets/selection/compare.py").replace(
    "from quadmix_assets.proxy.model import ProxyConfig, _state_parts, forward, train_proxies",
    "from old_model import ProxyConfig, _state_parts, forward, train_proxies"))
sys.path.insert(0, str(old_dir))
import old_compare  # noqa: E402
import old_model  # noqa: E402

cfg = new.preset("cpu-tiny", vocab_size=512, seq_len=64, batch_size=4, steps=20, warmup_steps=2)
rng = np.random.default_rng(0)
K = 6
run = new.train_proxies(cfg, rng.integers(1, 512, size=(K, cfg.steps * cfg.batch_size, cfg.seq_len + 1)), seeds=list(range(K)))
sets = {f"s{j}": [np.r_[0, rng.integers(1, 512, size=int(n))] for n in rng.integers(1, 200, size=40)] for j in range(3)}
for bs in (64, 16, 7):
    a, b = old_model.evaluate_losses(run.state, sets, batch_size=bs), new.evaluate_losses(run.state, sets, batch_size=bs)
    print(f"stored-proxy path, batch {bs}: bit-identical {all(a[k].tobytes() == b[k].tobytes() for k in a)}")
old, bounded = old_compare.set_losses(run.state, sets), new.evaluate_losses(run.state, sets, max_logits=new.MAX_LOGITS)
print("RegMix / compare losses, old set_losses vs evaluate_losses(max_logits): max abs diff",
      max(float(np.abs(old[k] - bounded[k]).max()) for k in sets))
