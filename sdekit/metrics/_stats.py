"""FID, Inception Score, KID and precision/recall from features (numpy), including the exact
arithmetic of the metric tools (see `sdekit.metrics.Protocol`)."""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import Any

import numpy as np


class RankDeficientWarning(UserWarning):
    """A covariance estimated from fewer samples than feature dimensions (rank < d): the FID is
    still computed (the tools compute it too) but is biased upward and varies with the sample
    count; papers use 10 000 to 50 000 samples."""


def warn_rank_deficient(n: int, d: int, name: str) -> None:
    if n <= d:
        warnings.warn(
            f"argument `{name}`: {n} samples of {d}-d features, so the covariance has rank at "
            f"most {n - 1} < {d}: the FID is computed but biased upward and not comparable to "
            "published numbers (use 10k-50k samples).", RankDeficientWarning, stacklevel=3)


def _as_2d(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(
            f"argument `{name}`: got shape {a.shape}, expected (n >= 2, dim) features "
            "(at least 2 samples: a covariance needs 2)."
        )
    if not np.all(np.isfinite(a)):
        bad = int(np.sum(~np.isfinite(a).all(axis=1)))
        raise ValueError(f"argument `{name}`: {bad} of {a.shape[0]} rows contain NaN or inf.")
    return a


def _positive_int(name: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"argument `{name}`: got {value!r}, expected an int >= {lo}.")
    return int(value)


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
        finite = np.isfinite(f).all(axis=1)
        if not finite.all():
            raise ValueError(
                f"argument `features`: {int((~finite).sum())} of {nb} rows contain NaN or inf "
                f"(first at row {int(np.argmin(finite))} of this batch; {self.n} rows were "
                "added before); the statistics are left unchanged.")
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


def covariance_term(sigma1: Any, sigma2: Any, *, method: str = "sqrtm",
                    eps: float = 1e-6) -> float:
    """``tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``, the covariance part of the Fréchet distance.

    Args:
        sigma1: ``(d, d)`` covariance.
        sigma2: ``(d, d)`` covariance.
        method: ``"sqrtm"`` (pytorch-fid / clean-fid: ``scipy.linalg.sqrtm(S1 @ S2)``; if that
            is not finite, ``eps * I`` is added to both and it is taken again; a complex root
            must have a negligible imaginary diagonal, and its real part is used), ``"eigvals"``
            (torch-fidelity: the real part of the sum of the complex square roots of the
            eigenvalues of ``S1 @ S2``) or ``"eigh"`` (``sum sqrt(eig(S1^(1/2) S2 S1^(1/2)))``
            with two symmetric eigendecompositions: several times faster at d = 2048, no complex
            round-off; equal to the others to round-off).
        eps: the ``sqrtm`` fallback's diagonal offset.
    """
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = sigma1.shape[0]
    for name, arr in (("sigma1", sigma1), ("sigma2", sigma2)):
        if arr.shape != (d, d):
            raise ValueError(f"argument `{name}`: got shape {arr.shape}, expected {(d, d)}.")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"argument `{name}`: contains NaN or inf.")
    if method not in ("sqrtm", "eigvals", "eigh"):
        raise ValueError(f"argument `method`: got {method!r}, expected 'sqrtm', 'eigvals' or "
                         "'eigh'.")
    traces = float(np.trace(sigma1) + np.trace(sigma2))
    if method == "eigh":
        w, v = np.linalg.eigh(0.5 * (sigma1 + sigma1.T))
        r1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
        m = r1 @ sigma2 @ r1
        ev = np.linalg.eigvalsh(0.5 * (m + m.T))
        return traces - 2.0 * float(np.sqrt(np.clip(ev, 0.0, None)).sum())
    if method == "eigvals":
        ev = np.linalg.eigvals(sigma1.dot(sigma2)).astype(np.complex128)
        return traces - 2.0 * float(np.sum(np.sqrt(ev)).real)
    from scipy import linalg  # only here: importing sdekit.metrics stays free of scipy

    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            worst = np.max(np.abs(covmean.imag))
            raise ValueError(f"matrix square root has an imaginary component of {worst:.3g}.")
        covmean = covmean.real
    return traces - 2.0 * float(np.trace(covmean))


def frechet_distance(
    mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, eps: float = 1e-6, method: str = "sqrtm"
) -> float:
    """Fréchet distance ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians.

    With ``method="sqrtm"`` this is pytorch-fid's computation (and TTUR's): the matrix square
    root of ``S1 S2`` with ``scipy.linalg.sqrtm``; if it is not finite (singular product),
    ``eps * I`` is added to both covariances and it is taken again; a complex result must have
    a negligible imaginary diagonal (else ``ValueError``) and its real part is used.
    ``"eigvals"`` is torch-fidelity's; ``"eigh"`` computes the same trace from two symmetric
    eigendecompositions (see `covariance_term`). For a protocol's exact arithmetic (means in
    float32 for torch-fidelity and clean-fid) use `sdekit.metrics.Protocol.frechet_distance`.

    Args:
        mu1: mean ``(d,)`` of the first set.
        sigma1: covariance ``(d, d)`` of the first set.
        mu2: mean of the second set.
        sigma2: covariance of the second set.
        eps: the diagonal offset used when the product is singular (``sqrtm`` only).
        method: ``"sqrtm"``, ``"eigvals"`` or ``"eigh"``.

    Returns:
        The distance (a Python float).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,):
        raise ValueError(f"argument `mu2`: got shape {mu2.shape}, expected {(d,)}.")
    if np.shape(np.atleast_2d(sigma1)) != (d, d):
        raise ValueError(f"argument `sigma1`: got shape {np.shape(sigma1)}, expected {(d, d)}.")
    diff = mu1 - mu2
    return float(diff @ diff) + covariance_term(sigma1, sigma2, method=method, eps=eps)


def trace_sqrt_product_lowrank(features1: Any, features2: Any) -> float:
    """``tr((S1 S2)^(1/2))`` for the sample covariances of two feature sets, in
    ``O(n1 n2 d)``: with ``S1 = A^T A`` and ``S2 = B^T B`` (``A`` the centred rows of set 1
    over ``sqrt(n1 - 1)``), the nonzero eigenvalues of ``S1 S2`` are the squared singular
    values of ``A B^T``, so the trace is its nuclear norm. Exact (no ``eps``), and cheap when a
    set has fewer rows than dimensions.

    Args:
        features1: ``(n1, d)``, n1 >= 2.
        features2: ``(n2, d)``, n2 >= 2.
    """
    f1, f2 = _as_2d("features1", features1), _as_2d("features2", features2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"arguments `features1` and `features2`: {f1.shape[1]} and "
                         f"{f2.shape[1]} features, expected the same.")
    a = (f1 - f1.mean(axis=0)) / np.sqrt(f1.shape[0] - 1)
    b = (f2 - f2.mean(axis=0)) / np.sqrt(f2.shape[0] - 1)
    return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())


def fid_from_features(
    features1: Any, features2: Any, *, eps: float = 1e-6, method: str = "sqrtm",
    protocol: Any = None,
) -> float:
    """FID between two ``(n, d)`` feature sets.

    Without ``protocol``: `frechet_distance` of their float64 statistics (``method`` as there).
    With one: the protocol's own computation (`sdekit.metrics.Protocol.fid`; ``method`` is then
    ``"tool"`` or ``"fast"``, and ``"sqrtm"`` means ``"tool"``).

    Args:
        features1: ``(n1, d)`` features, n1 >= 2.
        features2: ``(n2, d)`` features, n2 >= 2.
        eps: see `frechet_distance` (without a protocol).
        method: see above.
        protocol: a `sdekit.metrics.Protocol` or its name, or ``None``.
    """
    if protocol is not None:
        from ._protocols import get_protocol

        return get_protocol(protocol).fid(features1, features2,
                                          method="tool" if method == "sqrtm" else method)
    f1, f2 = _as_2d("features1", features1), _as_2d("features2", features2)
    warn_rank_deficient(min(f1.shape[0], f2.shape[0]), f1.shape[1], "features")
    m1, s1 = feature_statistics(f1)
    m2, s2 = feature_statistics(f2)
    return frechet_distance(m1, s1, m2, s2, eps=eps, method=method)


def inception_score(
    logits: Any, *, splits: int = 10, shuffle_seed: int | None = None
) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))``, mean and std over ``splits`` chunks.

    Salimans et al. (2016): softmax of the logits (in float64), the set cut into ``splits``
    consecutive chunks ``[i n // splits, (i + 1) n // splits)``, ``p(y)`` the mean within each
    chunk; the std is the population one. torch-fidelity first permutes the rows with
    ``RandomState(2020).permutation(n)`` (``shuffle_seed=2020``).

    Args:
        logits: ``(n, classes)`` logits (the Inception protocols use the bias-free
            ``pool3 @ fc.weight.T``).
        splits: number of chunks, 1 <= splits <= n.
        shuffle_seed: permute the rows with ``numpy.random.RandomState(shuffle_seed)`` first
            (``None``: keep the order).

    Returns:
        ``(mean, std)`` over the chunks.
    """
    lg = _as_2d("logits", logits)
    if not (isinstance(splits, int) and 1 <= splits <= lg.shape[0]):
        raise ValueError(f"argument `splits`: got {splits!r}, expected an int in [1, n] "
                         f"(n = {lg.shape[0]}).")
    if shuffle_seed is not None:
        lg = lg[np.random.RandomState(shuffle_seed).permutation(lg.shape[0])]
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
    """Unbiased MMD^2 with the polynomial kernel ``(x.y / d + coef0)^degree`` (KID's kernel),
    in float64."""
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


def _kid_args(features1, features2, subsets, subset_size):
    f1 = _as_2d("features1", features1)
    f2 = _as_2d("features2", features2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"arguments `features1` and `features2`: {f1.shape[1]} and "
                         f"{f2.shape[1]} features, expected the same.")
    _positive_int("subsets", subsets)
    _positive_int("subset_size", subset_size, lo=2)
    return (np.asarray(features1, np.float32), np.asarray(features2, np.float32))


def kernel_inception_distance(
    features1: Any,
    features2: Any,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): unbiased cubic-polynomial MMD^2 averaged over random subsets,
    in float64 (no tool's arithmetic; for a tool's, use `sdekit.metrics.Protocol`).

    Each of ``subsets`` rounds draws ``min(subset_size, n1, n2)`` rows of each set without
    replacement (``numpy.random.default_rng(seed)``, first from set 1 then from set 2) and
    computes `polynomial_mmd2`.

    Args:
        features1: ``(n1, d)`` features of the first set.
        features2: ``(n2, d)`` features of the second set.
        subsets: number of rounds (>= 1).
        subset_size: rows per round (>= 2).
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` over the rounds.
    """
    _kid_args(features1, features2, subsets, subset_size)
    f1 = _as_2d("features1", features1)
    f2 = _as_2d("features2", features2)
    m = min(subset_size, f1.shape[0], f2.shape[0])
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        a = f1[rng.choice(f1.shape[0], m, replace=False)]
        b = f2[rng.choice(f2.shape[0], m, replace=False)]
        vals.append(polynomial_mmd2(a, b))
    return float(np.mean(vals)), float(np.std(vals))


def kid_torch_fidelity(
    features1: Any, features2: Any, *, subsets: int = 100, subset_size: int = 1000,
    seed: int = 2020, degree: int = 3, gamma: float | None = None, coef0: float = 1,
) -> tuple[float, float]:
    """KID as torch-fidelity 0.4.0 computes it.

    ``RandomState(seed)``; per subset, ``subset_size`` rows of set 1 then of set 2 without
    replacement (the size may not exceed either set); the kernel ``(X Y^T gamma + coef0)^degree``
    (``gamma = 1 / d``) and the unbiased MMD^2's sums in float32, as the tool runs them on its
    float32 features; mean and population std over the subsets.

    Args:
        features1: ``(n1, d)``, set 1 (torch-fidelity's ``input1``, the generated set).
        features2: ``(n2, d)``, set 2.
        subsets: number of subsets.
        subset_size: rows per subset (<= n1 and <= n2).
        seed: the RandomState seed (torch-fidelity's ``rng_seed``).
        degree: kernel degree.
        gamma: kernel scale (``None``: ``1 / d``).
        coef0: kernel offset.

    Returns:
        ``(mean, std)``.
    """
    f1, f2 = _kid_args(features1, features2, subsets, subset_size)
    n1, n2 = f1.shape[0], f2.shape[0]
    if subset_size > n1 or subset_size > n2:
        raise ValueError(f"argument `subset_size`: got {subset_size}, but the sets have {n1} and "
                         f"{n2} rows; torch-fidelity needs subset_size <= both.")
    g = 1.0 / f1.shape[1] if gamma is None else gamma
    m = subset_size
    rng = np.random.RandomState(seed)
    vals = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(n1, m, replace=False)]
        y = f2[rng.choice(n2, m, replace=False)]
        kxx = (np.matmul(x, x.T) * g + coef0) ** degree
        kyy = (np.matmul(y, y.T) * g + coef0) ** degree
        kxy = (np.matmul(x, y.T) * g + coef0) ** degree
        off_xx = (kxx.sum(axis=1) - np.diagonal(kxx)).sum()
        off_yy = (kyy.sum(axis=1) - np.diagonal(kyy)).sum()
        vals[i] = (off_xx + off_yy) / (m * (m - 1)) - 2 * kxy.sum(axis=0).sum() / (m * m)
    return float(np.mean(vals)), float(np.std(vals))


def kid_clean_fid(
    features1: Any, features2: Any, *, subsets: int = 100, subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """KID as clean-fid 0.1.35's ``kernel_distance`` computes it.

    ``m = min(n1, n2, subset_size)``; per subset, ``m`` rows of set 2 then of set 1 without
    replacement, drawn from ``RandomState(seed)`` (clean-fid draws from numpy's global state:
    this equals clean-fid after ``numpy.random.seed(seed)``); kernel ``(x . y / d + 1)^3`` and
    sums in float32; returns the mean only.

    Args:
        features1: ``(n1, d)``, set 1 (clean-fid's ``feats1``).
        features2: ``(n2, d)``, set 2.
        subsets: number of subsets.
        subset_size: the most rows per subset.
        seed: the RandomState seed.

    Returns:
        The KID (a float).
    """
    f1, f2 = _kid_args(features1, features2, subsets, subset_size)
    d = f1.shape[1]
    m = min(f1.shape[0], f2.shape[0], subset_size)
    rng = np.random.RandomState(seed)
    t = 0
    for _ in range(subsets):
        x = f2[rng.choice(f2.shape[0], m, replace=False)]
        y = f1[rng.choice(f1.shape[0], m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / subsets / m)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def knn_radii(features: Any, *, k: int = 3, block_size: int = 10_000) -> np.ndarray:
    """Distance of each point to its ``k``-th nearest neighbour in the same set (itself excluded).

    Args:
        features: ``(n, d)``, n > k.
        k: neighbourhood size (3 in Kynkäänniemi et al. and the VDPM evaluation).
        block_size: rows of the pairwise-distance matrix computed at once (>= 1).

    Returns:
        ``(n,)`` radii.
    """
    f = _as_2d("features", features)
    _positive_int("block_size", block_size)
    if not (isinstance(k, int) and 1 <= k < f.shape[0]):
        raise ValueError(f"argument `k`: got {k!r}, expected an int in [1, n - 1] "
                         f"(n = {f.shape[0]}).")
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

    Precision: the fraction of generated points inside the k-NN ball (boundary included) of at
    least one real point. Recall: the fraction of real points inside the k-NN ball of at least
    one generated point. This is the estimator of the NVlabs reference code and of
    torch-fidelity's ``prc``; apply it to VGG-16 features (`sdekit.metrics.vgg16_features`, the
    paper's) or to a protocol's Inception pool3 features (the variant some tools print).

    Args:
        real_features: ``(n, d)``, n > k.
        fake_features: ``(m, d)``, m > k.
        k: neighbourhood size.
        block_size: rows of each pairwise-distance block (>= 1).

    Returns:
        ``(precision, recall)``.
    """
    real = _as_2d("real_features", real_features)
    fake = _as_2d("fake_features", fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"features of different widths: {real.shape[1]} and {fake.shape[1]}.")
    _positive_int("block_size", block_size)
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
