"""Shared test helpers: Gaussian data with an exact score under every affine Gaussian process."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from sdekit._validate import broadcast_time


def make_gaussian(d: int = 8, seed: int = 0):
    """A mean and a full, well-conditioned covariance."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=d).astype(np.float32) * 0.5
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    cov = a @ a.T + 0.3 * np.eye(d)
    cov = cov / np.max(np.diag(cov))
    return mu, cov.astype(np.float32)


def oracle_score(process, mu, cov):
    """Exact score of ``p_t = N(alpha mu, alpha^2 Sigma + sigma^2 I)`` for data ``N(mu, Sigma)``.

    Uses the eigendecomposition ``Sigma = V diag(w) V^T`` computed once in numpy, so the compiled
    samplers contain only matrix products (a batched LAPACK solve inside a compiled loop was seen
    to hang jaxlib's CPU runtime for one sampler at batch 4096).
    """
    w_np, v_np = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    mu = jnp.asarray(mu)
    w = jnp.asarray(w_np, dtype=mu.dtype)
    v = jnp.asarray(v_np, dtype=mu.dtype)

    def score(x, t):
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
        a = process.alpha(t)[:, None]
        s = process.sigma(t)[:, None]
        r = (x - a * mu.astype(x.dtype)) @ v.astype(x.dtype)
        return -(r / (a**2 * w.astype(x.dtype) + s**2)) @ v.T.astype(x.dtype)

    return score


def oracle_eps(process, mu, cov):
    score = oracle_score(process, mu, cov)

    def eps(x, t):
        tb = broadcast_time(jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1]), x)
        return -process.sigma(tb) * score(x, t)

    return eps


def cov_error(samples, mu, cov):
    x = np.asarray(samples, dtype=np.float64)
    m = x.mean(0)
    c = np.cov(x.T)
    return float(np.linalg.norm(m - mu) / np.linalg.norm(mu)), float(
        np.linalg.norm(c - cov) / np.linalg.norm(cov)
    )
