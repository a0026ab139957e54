"""A naive, independent implementation of QUADMIX.md sections 2-4, for the method tests.

Plain Python loops over documents (O(n^2) where the definition is O(n^2)), written from the
spec's formulas only; it does not import ``quadmix_assets``. Keep it obviously correct, not fast.
"""

from __future__ import annotations

import hashlib
import math

MASK64 = (1 << 64) - 1


# ------------------------------------------------------------------ section 2: normalisation
def worse_than_rank(scores, tokens):
    """s(x) = tokens of docs with score strictly greater than score(x) / all tokens (counts if 0)."""
    scores = [float(s) for s in scores]
    weights = list(tokens)
    if sum(weights) == 0:
        weights = [1] * len(scores)
    total = sum(weights)
    out = []
    for sx in scores:
        greater = 0
        for sy, wy in zip(scores, weights):
            if sy > sx:
                greater += wy
        out.append(greater / total)
    return out


def share_greater_than(value, ref_scores, ref_tokens):
    """Share of reference tokens (counts if they total 0) strictly greater than ``value``."""
    weights = list(ref_tokens)
    if sum(weights) == 0:
        weights = [1] * len(ref_scores)
    total = sum(weights)
    return sum(w for s, w in zip(ref_scores, weights) if float(s) > value) / total


# ------------------------------------------------------------------ section 2: aggregation
def aggregate(ranks, domains, tokens, alpha):
    """qbar(x) = sum_n alpha[d(x)][n] * s_n(x); r(x) = domain tokens with qbar <= qbar(x) / domain
    tokens (a domain with 0 tokens uses counts)."""
    n_docs = len(domains)
    qbar = []
    for x in range(n_docs):
        q = 0.0
        for n in range(len(alpha[domains[x]])):
            q += float(alpha[domains[x]][n]) * float(ranks[x][n])
        qbar.append(q)
    r = []
    for x in range(n_docs):
        members = [y for y in range(n_docs) if domains[y] == domains[x]]
        weights = {y: tokens[y] for y in members}
        if sum(weights.values()) == 0:
            weights = {y: 1 for y in members}
        total = sum(weights.values())
        below = sum(weights[y] for y in members if qbar[y] <= qbar[x])
        r.append(below / total)
    return qbar, r


# ------------------------------------------------------------------ section 3: sampling function
def sampling_value(r, lam, omega, eta, eps):
    """S(r) for one document."""
    if r <= omega:
        return (2.0 / (1.0 + math.exp(-lam * (omega - r)))) ** eta + eps
    return eps


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def seed64(seed):
    if isinstance(seed, str):
        return int.from_bytes(hashlib.blake2b(seed.encode("utf-8"), digest_size=8).digest(), "little")
    return int(seed) % (1 << 64)


def doc_key(doc_id):
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


def uniform(key, seed):
    return (splitmix64(int(key) ^ splitmix64(seed64(seed))) >> 11) / float(1 << 53)


def copies(expected, key, seed):
    whole = math.floor(expected)
    return whole + (1 if uniform(key, seed) < expected - whole else 0)


# ------------------------------------------------------------------ section 4: Algorithm 1
def draw_configs(n, seed, n_domains, n_criteria, omega_max=0.1, lambda_scale="log"):
    """The paper's Algorithm 1 with loops; the random numbers come from numpy's default_rng(seed) in
    the documented order a (n,N), b (n,M,N), u_lambda, u_omega, eta, u_eps (each (n,M))."""
    import numpy as np  # only as the random source

    rng = np.random.default_rng(seed)
    a = rng.random((n, n_criteria)).tolist()
    b = rng.random((n, n_domains, n_criteria)).tolist()
    u_lam = rng.random((n, n_domains)).tolist()
    u_omega = rng.random((n, n_domains)).tolist()
    eta = rng.random((n, n_domains)).tolist()
    u_eps = rng.random((n, n_domains)).tolist()
    configs = []
    for i in range(n):
        sa = sum(a[i])
        at = [v / sa for v in a[i]]
        alpha = []
        for m in range(n_domains):
            prods = [at[j] * b[i][m][j] for j in range(n_criteria)]
            den = sum(prods)
            alpha.append([p / den for p in prods])
        if lambda_scale == "log":
            lam = [10.0 ** (3.0 * u) for u in u_lam[i]]
        else:
            lam = [1000.0 * (1.0 - u) for u in u_lam[i]]
        configs.append(
            {
                "alpha": alpha,
                "lambda": lam,
                "omega": [omega_max * u for u in u_omega[i]],
                "eta": list(eta[i]),
                "eps": [u / 1000.0 for u in u_eps[i]],
            }
        )
    return configs
