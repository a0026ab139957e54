"""QuaDMix parameter configs and the parameter space they are drawn from (QUADMIX.md sections 3-4).

One config holds, for ``M`` domains and ``N`` quality criteria, ``M * (N + 4)`` numbers:

* ``alpha[m, n]`` -- the weight of criterion ``n`` in domain ``m`` (rows non-negative, summing to 1);
* ``lam[m] > 0``, ``omega[m] in [0, 1]``, ``eta[m] >= 0``, ``eps[m] >= 0`` -- the sampling function
  ``S(r) = (2 / (1 + exp(-lam * (omega - r)))) ** eta + eps`` if ``r <= omega`` else ``eps``.

A config is identified by :attr:`QuadMixParams.config_id`, a content hash of its canonical numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["QuadMixParams", "ParamSpace", "ROW_SUM_TOLERANCE"]

#: How far a row of ``alpha`` may be from summing to 1.
ROW_SUM_TOLERANCE = 1e-6

_VECTOR_FIELDS = ("lam", "omega", "eta", "eps")
_VECTOR_NAMES = {"lam": "lambda", "omega": "omega", "eta": "eta", "eps": "eps"}


def _frozen(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class QuadMixParams:
    """One QuaDMix parameter config for ``M`` domains and ``N`` criteria.

    ``alpha`` has shape ``(M, N)``; ``lam``, ``omega``, ``eta`` and ``eps`` have shape ``(M,)``.
    All are stored as read-only ``float64`` copies. Validation (``ValueError`` otherwise): every value
    finite; ``alpha >= 0`` with every row summing to 1 within ``1e-6``; ``lam > 0``;
    ``0 <= omega <= 1``; ``eta >= 0``; ``eps >= 0``.

    Equality compares the numbers exactly; the hash is that of :attr:`config_id`.
    """

    alpha: np.ndarray
    lam: np.ndarray
    omega: np.ndarray
    eta: np.ndarray
    eps: np.ndarray

    def __post_init__(self) -> None:
        alpha = _frozen(self.alpha, "alpha")
        if alpha.ndim != 2 or alpha.shape[0] < 1 or alpha.shape[1] < 1:
            raise ValueError(
                f"alpha must have shape (M domains, N criteria) with M, N >= 1; got shape {alpha.shape}"
            )
        m = alpha.shape[0]
        object.__setattr__(self, "alpha", alpha)
        for name in _VECTOR_FIELDS:
            arr = _frozen(getattr(self, name), name)
            if arr.shape != (m,):
                raise ValueError(f"{name} must have shape ({m},) (one value per domain); got {arr.shape}")
            object.__setattr__(self, name, arr)

        for name in ("alpha", *_VECTOR_FIELDS):
            arr = getattr(self, name)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite; got {arr.tolist()}")
        if np.any(alpha < 0):
            raise ValueError(f"alpha must be >= 0; got {alpha.tolist()}")
        sums = alpha.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
        if bad.size:
            raise ValueError(
                f"every row of alpha must sum to 1 (within {ROW_SUM_TOLERANCE}); "
                f"rows {bad.tolist()} sum to {sums[bad].tolist()}"
            )
        if np.any(self.lam <= 0):
            raise ValueError(f"lambda must be > 0; got {self.lam.tolist()}")
        if np.any((self.omega < 0) | (self.omega > 1)):
            raise ValueError(f"omega must be in [0, 1]; got {self.omega.tolist()}")
        if np.any(self.eta < 0):
            raise ValueError(f"eta must be >= 0; got {self.eta.tolist()}")
        if np.any(self.eps < 0):
            raise ValueError(f"eps must be >= 0; got {self.eps.tolist()}")

    # ------------------------------------------------------------------ shape
    @property
    def n_domains(self) -> int:
        """``M``, the number of domains."""
        return int(self.alpha.shape[0])

    @property
    def n_criteria(self) -> int:
        """``N``, the number of quality criteria."""
        return int(self.alpha.shape[1])

    # --------------------------------------------------------------- identity
    def canonical_json(self) -> str:
        """The canonical JSON text that :attr:`config_id` hashes.

        Keys sorted, no whitespace; the shape ``[M, N]`` under ``"shape"``; every number written as
        ``repr(float(x))`` (a string; ``-0.0`` is written as ``0.0``); alpha row-major.
        """

        def canon(arr: np.ndarray) -> list[str]:
            return [repr(float(x) + 0.0) for x in arr.reshape(-1)]

        doc = {
            "shape": [self.n_domains, self.n_criteria],
            "alpha": canon(self.alpha),
            "lambda": canon(self.lam),
            "omega": canon(self.omega),
            "eta": canon(self.eta),
            "eps": canon(self.eps),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @property
    def config_id(self) -> str:
        """``sha256(canonical_json())``, first 16 hex characters: stable across runs and machines."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuadMixParams):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("alpha", *_VECTOR_FIELDS)
        )

    def __hash__(self) -> int:
        return hash(self.config_id)

    def __reduce__(self):
        # Re-validate (and re-freeze the arrays) when unpickled or deep-copied.
        return (type(self), (self.alpha, self.lam, self.omega, self.eta, self.eps))

    def __repr__(self) -> str:
        return (
            f"QuadMixParams(config_id={self.config_id!r}, n_domains={self.n_domains}, "
            f"n_criteria={self.n_criteria})"
        )

    # ----------------------------------------------------------------- vector
    def to_vector(self) -> np.ndarray:
        """The ``M * (N + 4)`` numbers in the order alpha (row-major), lambda, omega, eta, eps."""
        return np.concatenate(
            [self.alpha.reshape(-1), self.lam, self.omega, self.eta, self.eps]
        ).astype(np.float64, copy=False)

    @classmethod
    def from_vector(cls, vec: Any, n_domains: int, n_criteria: int) -> QuadMixParams:
        """Inverse of :meth:`to_vector`."""
        m, n = int(n_domains), int(n_criteria)
        v = np.asarray(vec, dtype=np.float64).reshape(-1)
        if v.shape[0] != m * (n + 4):
            raise ValueError(
                f"a vector for {m} domains x {n} criteria has {m * (n + 4)} numbers; got {v.shape[0]}"
            )
        k = m * n
        return cls(
            alpha=v[:k].reshape(m, n),
            lam=v[k : k + m],
            omega=v[k + m : k + 2 * m],
            eta=v[k + 2 * m : k + 3 * m],
            eps=v[k + 3 * m : k + 4 * m],
        )

    @staticmethod
    def feature_names(n_domains: int, n_criteria: int) -> list[str]:
        """Names of the :meth:`to_vector` entries: ``alpha[m,n]``, ``lambda[m]``, ``omega[m]``,
        ``eta[m]``, ``eps[m]``."""
        m, n = int(n_domains), int(n_criteria)
        names = [f"alpha[{i},{j}]" for i in range(m) for j in range(n)]
        for f in _VECTOR_FIELDS:
            names.extend(f"{_VECTOR_NAMES[f]}[{i}]" for i in range(m))
        return names

    # ------------------------------------------------------------------- dict
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists of floats) that :meth:`from_dict` turns back into an equal config."""
        return {
            "alpha": [[float(x) for x in row] for row in self.alpha],
            "lambda": [float(x) for x in self.lam],
            "omega": [float(x) for x in self.omega],
            "eta": [float(x) for x in self.eta],
            "eps": [float(x) for x in self.eps],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuadMixParams:
        """Inverse of :meth:`to_dict` (also accepts the key ``lam`` for ``lambda``)."""
        try:
            lam = d["lambda"] if "lambda" in d else d["lam"]
            return cls(alpha=d["alpha"], lam=lam, omega=d["omega"], eta=d["eta"], eps=d["eps"])
        except KeyError as exc:
            raise ValueError(f"a QuadMixParams dict needs the key {exc}") from None

    @classmethod
    def mean(cls, configs: Sequence[QuadMixParams]) -> QuadMixParams:
        """The element-wise mean of several configs, with every alpha row re-normalised to sum to 1
        (the paper's "average of the top-k predicted configs")."""
        if not configs:
            raise ValueError("mean() needs at least one config")
        shapes = {(c.n_domains, c.n_criteria) for c in configs}
        if len(shapes) != 1:
            raise ValueError(f"configs have different shapes: {sorted(shapes)}")
        alpha = np.mean([c.alpha for c in configs], axis=0)
        alpha = alpha / alpha.sum(axis=1, keepdims=True)
        return cls(
            alpha=alpha,
            lam=np.mean([c.lam for c in configs], axis=0),
            omega=np.mean([c.omega for c in configs], axis=0),
            eta=np.mean([c.eta for c in configs], axis=0),
            eps=np.mean([c.eps for c in configs], axis=0),
        )


@dataclass(frozen=True)
class ParamSpace:
    """The space configs are drawn from: the paper's Algorithm 1 (QUADMIX.md section 4).

    For each config, with ``u`` a fresh ``U[0, 1)`` number each time:

    * ``a_n = u`` per criterion, ``at_n = a_n / sum(a)``; ``b[m, n] = u``;
      ``alpha[m, n] = at_n * b[m, n] / sum_i(at_i * b[m, i])``;
    * ``lambda_m = 10 ** (3 u)`` (``lambda_scale="log"``, in ``[1, 1000)``) or ``1000 * (1 - u)``
      (``"linear"``, in ``(0, 1000]``, never 0);
    * ``omega_m = omega_max * u``; ``eta_m = u``; ``eps_m = u / 1000``.

    Reproducibility: ``np.random.default_rng(seed)`` draws, in this order, ``a`` of shape ``(n, N)``,
    ``b`` ``(n, M, N)``, ``u_lambda`` ``(n, M)``, ``u_omega`` ``(n, M)``, ``eta`` ``(n, M)``,
    ``u_eps`` ``(n, M)`` (each with ``Generator.random``). Changing this order changes every config.
    """

    n_domains: int
    n_criteria: int
    omega_max: float = 0.1
    lambda_scale: str = "log"

    def __post_init__(self) -> None:
        for name in ("n_domains", "n_criteria"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
            object.__setattr__(self, name, int(v))
        om = float(self.omega_max)
        if not (math.isfinite(om) and 0.0 < om <= 1.0):
            raise ValueError(f"omega_max must be in (0, 1]; got {self.omega_max!r}")
        object.__setattr__(self, "omega_max", om)
        if self.lambda_scale not in ("log", "linear"):
            raise ValueError(f"lambda_scale must be 'log' or 'linear'; got {self.lambda_scale!r}")

    @property
    def n_features(self) -> int:
        """``M * (N + 4)``, the length of a config vector."""
        return self.n_domains * (self.n_criteria + 4)

    def sample_arrays(self, n: int, seed: int | None) -> dict[str, np.ndarray]:
        """Draw ``n`` configs as stacked arrays: ``alpha`` ``(n, M, N)``, ``lam``, ``omega``, ``eta``,
        ``eps`` ``(n, M)``. Fully vectorised; see the class docstring for the rule and the draw order."""
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0; got {n}")
        m, k = self.n_domains, self.n_criteria
        rng = np.random.default_rng(seed)
        a = rng.random((n, k))
        b = rng.random((n, m, k))
        u_lam = rng.random((n, m))
        u_omega = rng.random((n, m))
        eta = rng.random((n, m))
        u_eps = rng.random((n, m))

        with np.errstate(invalid="ignore", divide="ignore"):
            at = a / a.sum(axis=1, keepdims=True)
            alpha = b  # b is not used again: compute in place
            alpha *= at[:, None, :]
            den = alpha[:, :, 0].copy()
            for j in range(1, k):
                den += alpha[:, :, j]
            alpha /= den[:, :, None]
        # A zero denominator has probability ~2**-53 per draw; fall back to equal weights there.
        bad = ~(den > 0)
        if bad.any():
            alpha[bad] = 1.0 / k

        if self.lambda_scale == "log":
            lam = 10.0 ** (3.0 * u_lam)
        else:
            lam = 1000.0 * (1.0 - u_lam)
        return {
            "alpha": alpha,
            "lam": lam,
            "omega": self.omega_max * u_omega,
            "eta": eta,
            "eps": u_eps / 1000.0,
        }

    def sample(self, n: int, seed: int | None) -> list[QuadMixParams]:
        """Draw ``n`` configs (the same ones :meth:`sample_arrays` gives for this seed)."""
        arr = self.sample_arrays(n, seed)
        return [
            QuadMixParams(
                alpha=arr["alpha"][i],
                lam=arr["lam"][i],
                omega=arr["omega"][i],
                eta=arr["eta"][i],
                eps=arr["eps"][i],
            )
            for i in range(arr["alpha"].shape[0])
        ]

    @staticmethod
    def arrays_to_matrix(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Stack :meth:`sample_arrays` output into an ``(n, M * (N + 4))`` matrix whose rows are the
        configs' :meth:`QuadMixParams.to_vector` (the regression's feature matrix)."""
        alpha = np.asarray(arrays["alpha"], dtype=np.float64)
        n = alpha.shape[0]
        parts = [alpha.reshape(n, -1)]
        parts += [np.asarray(arrays[f], dtype=np.float64).reshape(n, -1) for f in _VECTOR_FIELDS]
        return np.concatenate(parts, axis=1)

    def feature_names(self) -> list[str]:
        """Names of the config-vector entries for this space."""
        return QuadMixParams.feature_names(self.n_domains, self.n_criteria)

