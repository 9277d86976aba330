"""FID, Inception Score, KID and precision/recall from features (float64 numpy)."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np


def _as_2d(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(
            f"argument `{name}`: got shape {a.shape}, expected (n >= 2, dim) features."
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"argument `{name}`: contains NaN or inf.")
    return a


class StreamingStats:
    """Mean and covariance of feature vectors, accumulated batch by batch in float64.

    Batches are merged with Chan et al.'s pairwise update (no sum of squares cancellation). The
    covariance is the unbiased one (the population covariance times ``n / (n - 1)``), as in
    pytorch-fid and the TTUR reference code.

    Args:
        dim: the feature dimension.
    """

    def __init__(self, dim: int):
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"argument `dim`: got {dim!r}, expected an int >= 1.")
        self.dim = dim
        self.n = 0
        self._mean = np.zeros(dim)
        self._m2 = np.zeros((dim, dim))

    def update(self, features: Any) -> StreamingStats:
        """Add a batch ``(b, dim)`` of features; returns ``self``."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(
                f"argument `features`: got shape {f.shape}, expected (batch, {self.dim})."
            )
        nb = f.shape[0]
        if nb == 0:
            return self
        mb = f.mean(axis=0)
        c = f - mb
        m2b = c.T @ c
        n = self.n
        delta = mb - self._mean
        tot = n + nb
        self._m2 += m2b + np.outer(delta, delta) * (n * nb / tot)
        self._mean += delta * (nb / tot)
        self.n = tot
        return self

    @property
    def mean(self) -> np.ndarray:
        """The mean ``(dim,)``."""
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """The unbiased covariance ``(dim, dim)`` (needs at least 2 vectors)."""
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 feature vectors, got {self.n}.")
        return self._m2 / (self.n - 1)


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, covariance)`` of ``(n, dim)`` features; the covariance is unbiased (``n - 1``).

    Args:
        features: ``(n, dim)`` array, n >= 2.

    Returns:
        float64 ``(dim,)`` mean and ``(dim, dim)`` covariance.
    """
    f = _as_2d("features", features)
    s = StreamingStats(f.shape[1]).update(f)
    return s.mean, s.cov


def frechet_distance(
    mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, eps: float = 1e-6, method: str = "sqrtm"
) -> float:
    """Fréchet distance ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians.

    As in pytorch-fid / TTUR: the matrix square root of ``S1 S2`` is taken with
    ``scipy.linalg.sqrtm``; if it is not finite (singular product), ``eps * I`` is added to both
    covariances and it is taken again; a complex result must have a negligible imaginary
    diagonal (else ``ValueError``) and its real part is used.

    ``method="eigh"`` computes the same trace as ``sum sqrt(eig(S1^(1/2) S2 S1^(1/2)))`` with two
    symmetric eigendecompositions: several times faster at d = 2048 and free of complex round-off;
    the two agree to round-off on well-conditioned covariances.

    Args:
        mu1: mean ``(d,)`` of the first set.
        sigma1: covariance ``(d, d)`` of the first set.
        mu2: mean of the second set.
        sigma2: covariance of the second set.
        eps: the diagonal offset used when the product is singular (``sqrtm`` only).
        method: ``"sqrtm"`` (pytorch-fid's computation) or ``"eigh"``.

    Returns:
        The distance (a Python float).
    """
    from scipy import linalg

    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    for name, arr, shape in (("mu2", mu2, (d,)), ("sigma1", sigma1, (d, d)),
                             ("sigma2", sigma2, (d, d))):
        if arr.shape != shape:
            raise ValueError(f"argument `{name}`: got shape {arr.shape}, expected {shape}.")
    if method not in ("sqrtm", "eigh"):
        raise ValueError(f"argument `method`: got {method!r}, expected 'sqrtm' or 'eigh'.")
    diff = mu1 - mu2
    if method == "eigh":
        w, v = np.linalg.eigh(0.5 * (sigma1 + sigma1.T))
        r1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
        m = r1 @ sigma2 @ r1
        ev = np.linalg.eigvalsh(0.5 * (m + m.T))
        tr_covmean = np.sqrt(np.clip(ev, 0.0, None)).sum()
        return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            worst = np.max(np.abs(covmean.imag))
            raise ValueError(f"matrix square root has an imaginary component of {worst:.3g}.")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(
    features1: Any, features2: Any, *, eps: float = 1e-6, method: str = "sqrtm"
) -> float:
    """FID between two ``(n, d)`` feature sets: `frechet_distance` of their statistics."""
    m1, s1 = feature_statistics(features1)
    m2, s2 = feature_statistics(features2)
    return frechet_distance(m1, s1, m2, s2, eps=eps, method=method)


def inception_score(logits: Any, *, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))``, mean and std over ``splits`` chunks.

    The standard protocol (Salimans et al. 2016): softmax of the 1008-way logits, the set cut in
    ``splits`` consecutive equal chunks (the last takes the remainder), ``p(y)`` the mean within
    each chunk.

    Args:
        logits: ``(n, classes)`` logits (`InceptionV3` returns them).
        splits: number of chunks.

    Returns:
        ``(mean, std)`` over the chunks.
    """
    lg = _as_2d("logits", logits)
    if not (isinstance(splits, int) and 1 <= splits <= lg.shape[0]):
        raise ValueError(f"argument `splits`: got {splits!r}, expected an int in [1, n].")
    logp = lg - lg.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    n = lg.shape[0]
    bounds = [i * n // splits for i in range(splits + 1)]
    scores = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        lp = logp[a:b]
        p = np.exp(lp)
        log_py = np.log(p.mean(axis=0))
        kl = (p * (lp - log_py)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def polynomial_mmd2(x: Any, y: Any, *, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 with the polynomial kernel ``(x.y / d + coef0)^degree`` (KID's kernel)."""
    x = _as_2d("x", x)
    y = _as_2d("y", y)
    d = x.shape[1]
    kxx = (x @ x.T / d + coef0) ** degree
    kyy = (y @ y.T / d + coef0) ** degree
    kxy = (x @ y.T / d + coef0) ** degree
    m, n = x.shape[0], y.shape[0]
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def kernel_inception_distance(
    features1: Any,
    features2: Any,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): unbiased cubic-polynomial MMD^2 averaged over random subsets.

    Each of ``subsets`` rounds draws ``min(subset_size, n1, n2)`` rows of each set without
    replacement (``numpy.random.default_rng(seed)``, first from set 1 then from set 2) and
    computes `polynomial_mmd2`.

    Args:
        features1: ``(n1, d)`` features of the first set.
        features2: ``(n2, d)`` features of the second set.
        subsets: number of rounds.
        subset_size: rows per round.
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` over the rounds.
    """
    f1 = _as_2d("features1", features1)
    f2 = _as_2d("features2", features2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features of different widths: {f1.shape[1]} and {f2.shape[1]}.")
    if not (isinstance(subsets, int) and subsets >= 1):
        raise ValueError(f"argument `subsets`: got {subsets!r}, expected an int >= 1.")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        a = f1[rng.choice(f1.shape[0], m, replace=False)]
        b = f2[rng.choice(f2.shape[0], m, replace=False)]
        vals.append(polynomial_mmd2(a, b))
    return float(np.mean(vals)), float(np.std(vals))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def knn_radii(features: Any, *, k: int = 3, block_size: int = 10_000) -> np.ndarray:
    """Distance of each point to its ``k``-th nearest neighbour in the same set (itself excluded).

    Args:
        features: ``(n, d)``, n > k.
        k: neighbourhood size (3 in Kynkäänniemi et al. and the VDPM evaluation).
        block_size: rows of the pairwise-distance matrix computed at once.

    Returns:
        ``(n,)`` radii.
    """
    f = _as_2d("features", features)
    if not (isinstance(k, int) and 1 <= k < f.shape[0]):
        raise ValueError(f"argument `k`: got {k!r}, expected an int in [1, n - 1].")
    out = np.empty(f.shape[0])
    for i in range(0, f.shape[0], block_size):
        d = _sq_dists(f[i:i + block_size], f)
        out[i:i + block_size] = np.sqrt(np.partition(d, k, axis=1)[:, k])
    return out


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int) -> float:
    inside = np.zeros(points.shape[0], dtype=bool)
    r2 = radii**2
    for i in range(0, points.shape[0], block):
        d = _sq_dists(points[i:i + block], centres)
        inside[i:i + block] = (d <= r2[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(
    real_features: Any, fake_features: Any, *, k: int = 3, block_size: int = 10_000
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN radii.

    Precision: the fraction of generated points inside the k-NN ball of at least one real point.
    Recall: the fraction of real points inside the k-NN ball of at least one generated point.

    Args:
        real_features: ``(n, d)``.
        fake_features: ``(m, d)``.
        k: neighbourhood size.
        block_size: rows of each pairwise-distance block.

    Returns:
        ``(precision, recall)``.
    """
    real = _as_2d("real_features", real_features)
    fake = _as_2d("fake_features", fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"features of different widths: {real.shape[1]} and {fake.shape[1]}.")
    r_real = knn_radii(real, k=k, block_size=block_size)
    r_fake = knn_radii(fake, k=k, block_size=block_size)
    precision = _coverage(fake, real, r_real, block_size)
    recall = _coverage(real, fake, r_fake, block_size)
    return precision, recall


def save_stats(path: str | os.PathLike, mu: Any, sigma: Any, **extra: Any) -> pathlib.Path:
    """Write reference statistics as ``.npz`` with the keys ``mu`` and ``sigma`` (the TTUR /
    pytorch-fid layout, so their stats files and ours are interchangeable); ``extra`` arrays
    (e.g. ``features`` for KID and precision/recall) are stored alongside."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mu=np.asarray(mu), sigma=np.asarray(sigma), **extra)
    return path


def load_stats(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a statistics ``.npz`` (ours, TTUR's ``fid_stats_cifar10_train.npz`` or pytorch-fid's);
    returns a dict with ``mu``, ``sigma`` and whatever else the file holds."""
    with np.load(path) as z:
        out = {k: z[k] for k in z.files}
    if "mu" not in out or "sigma" not in out:
        raise ValueError(
            f"{path}: a statistics file needs arrays 'mu' and 'sigma', has {sorted(out)}."
        )
    return out
