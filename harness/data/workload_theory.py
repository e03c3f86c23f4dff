#!/usr/bin/env python3
"""Theoretical exact-attention statistics of each workload (reference/variants.md section 8).

Evaluates, for n = 1024 and d = 64 and each workload's default parameters, the statistics the
model predicts: mean over rows of entropy / log n, n_eff / n (n_eff = 1 / sum_j p_ij^2), the
maximum weight, the weight on key 0 (sink) and the mean attended distance (local_decay). These
are the `theory` values and the basis of the documented ranges in workloads.cpp.

Each prediction is computed from the model's logit distribution, not from the C++ generator:
- gaussian: given q, logits are N(0, tau^2 |g|^2 / d) with |g|^2 ~ chi^2_d; finite-n expectations
  are evaluated by sampling that distribution (asymptotically n_eff/n = E exp(-tau^2 |g|^2/d)).
- clustered: a query sees its cluster's Binomial(n, 1/C) keys with logit variance
  sigma^2 (a^2 + sigma^2); other clusters' weights are negligible (their logits are about a^2 sqrt(d)
  lower).
- local_decay: the logit is a deterministic kernel (alpha/F) sum_f cos(omega_f (i - j)): the
  softmax is evaluated exactly in double.
- low_rank: a query row sees S segment logits N(0, tau^2), each repeated n/S times.
- sink: the sink logit gamma (beta + z) against n - 1 logits N(0, |q|^2/d).
- small_norm: logits rho cos(theta), cos(theta) ~ N(0, 1/d).

Usage: python3 workload_theory.py   (needs NumPy; about 10 s)
"""
import math

import numpy as np

N, D = 1024, 64
LOG_N = math.log(N)
rng = np.random.default_rng(12345)


def row_stats(logits):
    """Mean entropy/log n, n_eff/n and max weight of softmax rows of a (rows, n) logit array."""
    s = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    n = logits.shape[1]
    h = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=1)
    return h.mean() / math.log(n), (1.0 / (p**2).sum(axis=1)).mean() / n, p.max(axis=1).mean()


def gaussian(tau, rows=4000):
    sigma = tau * np.sqrt(rng.chisquare(D, rows) / D)
    return row_stats(sigma[:, None] * rng.standard_normal((rows, N)))


def clustered(clusters=16, a=2.0, sigma=0.3, rows=4000):
    var = sigma**2 * (a**2 + sigma**2)
    out = []
    for _ in range(rows):
        m = max(rng.binomial(N, 1.0 / clusters), 1)
        s = math.sqrt(var) * rng.standard_normal(m)
        p = np.exp(s - s.max())
        p /= p.sum()
        out.append((-(p * np.log(p)).sum() / LOG_N, 1.0 / (p**2).sum() / N, p.max()))
    return tuple(np.mean(out, axis=0))


def local_decay(alpha, n=N, d=D):
    f = d // 2
    omega = np.exp(np.linspace(math.log(2 * math.pi / (4 * n)), math.log(2 * math.pi / 4), f))
    delta = np.arange(n)[:, None] - np.arange(n)[None, :]
    kernel = np.zeros((n, n))
    for w in omega:
        kernel += np.cos(w * delta)
    s = alpha / f * kernel
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    stats = row_stats(alpha / f * kernel)
    return stats + ((p * np.abs(delta)).sum(axis=1).mean(),)


def low_rank(tau=1.0, segments=16, draws=20000):
    m = N // segments
    out = []
    for _ in range(draws):
        sigma = tau * math.sqrt(rng.chisquare(D) / D)
        s = sigma * rng.standard_normal(segments)
        p = np.exp(s - s.max())
        p /= p.sum()
        out.append(((math.log(m) - (p * np.log(p)).sum()) / LOG_N, m / (p**2).sum() / N,
                    p.max() / m))
    return tuple(np.mean(out, axis=0))


def sink(beta=3.0, gamma=4.0, rows=40000, chunk=2000):
    out = []
    for _ in range(rows // chunk):
        z = rng.standard_normal(chunk)
        q2 = rng.chisquare(D - 1, chunk) + (z + beta) ** 2  # |q|^2 with q = g + beta u
        others = np.sqrt(q2 / D)[:, None] * rng.standard_normal((chunk, N - 1))
        s = np.concatenate([(gamma * (z + beta))[:, None], others], axis=1)
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        h = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=1) / LOG_N
        out.append(np.stack([h, 1.0 / (p**2).sum(axis=1) / N, p.max(axis=1), p[:, 0]], axis=1))
    return tuple(np.concatenate(out).mean(axis=0))


def small_norm(rho=1.0, rows=2000):
    return row_stats(rho * rng.standard_normal((rows, N)) / math.sqrt(D))


def show(name, values, labels=("entropy/log n", "n_eff/n", "max weight")):
    print(f"{name:24s} " + "  ".join(f"{l} {v:.4g}" for l, v in zip(labels, values)))


if __name__ == "__main__":
    for tau in (1, 2, 4, 8):
        show(f"gaussian tau={tau}", gaussian(tau))
    show("clustered", clustered())
    for alpha in (1, 2, 4, 8, 16):
        show(f"local_decay alpha={alpha}", local_decay(alpha),
             ("entropy/log n", "n_eff/n", "max weight", "mean distance"))
    show("low_rank", low_rank())
    show("sink", sink(), ("entropy/log n", "n_eff/n", "max weight", "weight on key 0"))
    show("small_norm", small_norm())
