"""Sample-quality metrics that need no pretrained network: MMD (Gaussian kernel), sliced
Wasserstein, energy distance and a Fréchet distance on any feature function."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._stats import _sq_dists, feature_statistics, frechet_distance


def _flat(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    a = a.reshape(a.shape[0], -1)
    if a.shape[0] < 2:
        raise ValueError(f"argument `{name}`: got {a.shape[0]} samples, expected at least 2.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"argument `{name}`: contains NaN or inf.")
    return a


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _flat("x", x), _flat("y", y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"arguments `x` and `y`: samples of {a.shape[1]} and {b.shape[1]} dimensions."
        )
    return a, b


def median_bandwidth(x: Any, y: Any) -> float:
    """The median heuristic: median pairwise distance in the pooled sample (distinct pairs)."""
    a, b = _pair(x, y)
    z = np.concatenate([a, b])
    d = np.sqrt(_sq_dists(z, z))
    iu = np.triu_indices(z.shape[0], 1)
    return float(np.median(d[iu]))


def mmd(
    x: Any,
    y: Any,
    *,
    bandwidth: float | Sequence[float] | None = None,
    unbiased: bool = True,
) -> float:
    """Squared maximum mean discrepancy with the Gaussian kernel ``exp(-|a - b|^2 / (2 h^2))``.

    Samples are flattened to vectors. With several bandwidths the kernel is their sum.

    Args:
        x: ``(n, ...)`` samples of the first distribution.
        y: ``(m, ...)`` samples of the second.
        bandwidth: ``h`` (or a list of them); default `median_bandwidth`.
        unbiased: the U-statistic (diagonal terms left out; can be slightly negative) instead of
            the V-statistic.

    Returns:
        MMD^2 (a float).
    """
    a, b = _pair(x, y)
    hs = [median_bandwidth(a, b)] if bandwidth is None else np.atleast_1d(bandwidth).tolist()
    if not all(h > 0 for h in hs):
        raise ValueError(f"argument `bandwidth`: got {bandwidth!r}, expected values > 0.")

    def k(p, q):
        d2 = _sq_dists(p, q)
        return sum(np.exp(-d2 / (2.0 * h * h)) for h in hs)

    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    n, m = a.shape[0], b.shape[0]
    if unbiased:
        return float(
            (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2.0 * kxy.mean()
        )
    return float(kxx.mean() + kyy.mean() - 2.0 * kxy.mean())


def _quantiles(v: np.ndarray, levels: np.ndarray) -> np.ndarray:
    s = np.sort(v, axis=0)
    n = s.shape[0]
    idx = np.minimum(np.floor(levels * n).astype(int), n - 1)
    return s[idx]


def sliced_wasserstein(
    key: Any, x: Any, y: Any, *, n_projections: int = 128, p: int = 2
) -> float:
    """Sliced Wasserstein-p distance ``(E_theta W_p^p(theta.x, theta.y))^(1/p)``.

    Directions ``theta`` are uniform on the sphere (normalised Gaussians drawn from ``key``);
    each 1-D distance is between the empirical quantile functions (exact for equal sample sizes,
    and for unequal ones by merging the two sets of quantile levels).

    Args:
        key: JAX PRNG key for the directions.
        x: ``(n, ...)`` samples.
        y: ``(m, ...)`` samples.
        n_projections: number of directions.
        p: the order (>= 1).

    Returns:
        The distance (a float).
    """
    import jax

    a, b = _pair(x, y)
    if not (isinstance(n_projections, int) and n_projections >= 1):
        raise ValueError(f"argument `n_projections`: got {n_projections!r}, expected an int >= 1.")
    if not p >= 1:
        raise ValueError(f"argument `p`: got {p!r}, expected >= 1.")
    theta = np.asarray(jax.random.normal(key, (a.shape[1], n_projections)), np.float64)
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    pa, pb = a @ theta, b @ theta
    n, m = pa.shape[0], pb.shape[0]
    if n == m:
        diff = np.sort(pa, axis=0) - np.sort(pb, axis=0)
        wp = np.mean(np.abs(diff) ** p, axis=0)
    else:
        cuts = np.unique(np.concatenate([np.arange(n + 1) / n, np.arange(m + 1) / m]))
        widths = np.diff(cuts)
        mids = 0.5 * (cuts[1:] + cuts[:-1])
        diff = _quantiles(pa, mids) - _quantiles(pb, mids)
        wp = (np.abs(diff) ** p * widths[:, None]).sum(axis=0)
    return float(np.mean(wp) ** (1.0 / p))


def energy_distance(x: Any, y: Any) -> float:
    """Squared energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (V-statistics, Euclidean).

    In one dimension this is the square of ``scipy.stats.energy_distance``.

    Args:
        x: ``(n, ...)`` samples.
        y: ``(m, ...)`` samples.

    Returns:
        The squared distance (a float, >= 0).
    """
    a, b = _pair(x, y)
    dxy = np.sqrt(_sq_dists(a, b)).mean()
    dxx = np.sqrt(_sq_dists(a, a)).mean()
    dyy = np.sqrt(_sq_dists(b, b)).mean()
    return float(2.0 * dxy - dxx - dyy)


def frechet_feature_distance(
    feature_fn: Callable[[Any], Any] | None,
    x: Any,
    y: Any,
    *,
    batch_size: int = 1024,
    eps: float = 1e-6,
    method: str = "eigh",
) -> float:
    """Fréchet distance between the Gaussians fitted to ``feature_fn(x)`` and ``feature_fn(y)``.

    FID with a feature network of your choice (a small classifier's penultimate layer for toy
    images, the identity for low-dimensional data).

    Args:
        feature_fn: maps a batch ``(b, ...)`` to ``(b, d)`` features (any array type); ``None``
            uses the flattened samples themselves.
        x: ``(n, ...)`` samples.
        y: ``(m, ...)`` samples.
        batch_size: samples per call of ``feature_fn``.
        eps: see `frechet_distance`.
        method: see `frechet_distance` (default ``"eigh"``, the faster one).

    Returns:
        The distance (a float).
    """

    def feats(name, s):
        s = np.asarray(s)
        if feature_fn is None:
            return _flat(name, s)
        parts = [np.asarray(feature_fn(s[i:i + batch_size]), np.float64)
                 for i in range(0, s.shape[0], batch_size)]
        return _flat(name, np.concatenate(parts))

    fx, fy = feats("x", x), feats("y", y)
    if fx.shape[1] != fy.shape[1]:
        raise ValueError(f"feature_fn gave {fx.shape[1]} and {fy.shape[1]} features.")
    m1, s1 = feature_statistics(fx)
    m2, s2 = feature_statistics(fy)
    return frechet_distance(m1, s1, m2, s2, eps=eps, method=method)
