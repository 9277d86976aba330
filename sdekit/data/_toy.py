"""2-D toy distributions for quick experiments and tests."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

__all__ = ["TOY_DATASETS", "toy_data"]

TOY_DATASETS = (
    "gaussian",
    "gaussian_mixture",
    "two_moons",
    "checkerboard",
    "swiss_roll",
    "circles",
    "pinwheel",
)


def _seed_from_key(key: Any) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, jax.Array):
        data = jr.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        return int(np.asarray(data, np.uint64).ravel().sum() & 0xFFFFFFFF) ^ int(
            np.asarray(data).ravel()[-1]
        )
    raise ValueError(
        f"argument `seed`: got {type(key).__name__}, expected an int seed or a PRNG key."
    )


def toy_data(
    seed: Any = None, name: str | None = None, n: int | None = None, *, key: Any = None
) -> np.ndarray:
    """``n`` samples of a 2-D toy distribution, float32 ``(n, 2)``, roughly in [-4, 4]^2.

    Distributions: ``"gaussian"`` (standard normal), ``"gaussian_mixture"`` (8 Gaussians with
    std 0.15 on a circle of radius 2.8), ``"two_moons"``, ``"checkerboard"`` (uniform on the
    black squares of a 4x4 board covering [-4, 4]^2), ``"swiss_roll"``, ``"circles"`` (two
    concentric rings), ``"pinwheel"`` (5 arms).

    Args:
        seed: int seed (or a PRNG key); the data are generated with numpy from it.
            ``key=`` is the old spelling (deprecated).
        name: one of ``TOY_DATASETS``.
        n: number of points.

    Returns:
        float32 array ``(n, 2)``.
    """
    if key is not None:
        if seed is not None:
            raise ValueError("arguments `seed` and `key`: got both, expected only `seed`.")
        warnings.warn("toy_data(key=...) is deprecated: use seed=", DeprecationWarning, 2)
        seed = key
    if seed is None:
        raise ValueError("argument `seed`: got None, expected an int seed.")
    if name not in TOY_DATASETS:
        raise ValueError(
            f"argument `name`: got {name!r}, expected one of {', '.join(map(repr, TOY_DATASETS))}."
        )
    if not (isinstance(n, (int, np.integer)) and n > 0):
        raise ValueError(f"argument `n`: got {n!r}, expected a positive int.")
    rng = np.random.default_rng(_seed_from_key(seed))
    if name == "gaussian":
        x = rng.standard_normal((n, 2))
    elif name == "gaussian_mixture":
        k = rng.integers(0, 8, n)
        angle = 2 * np.pi * k / 8
        centres = 2.8 * np.stack([np.cos(angle), np.sin(angle)], 1)
        x = centres + 0.15 * rng.standard_normal((n, 2))
    elif name == "two_moons":
        upper = rng.random(n) < 0.5
        s = np.pi * rng.random(n)
        xa = np.stack([np.cos(s), np.sin(s)], 1)
        xb = np.stack([1 - np.cos(s), 0.5 - np.sin(s)], 1)
        x = np.where(upper[:, None], xa, xb) + 0.05 * rng.standard_normal((n, 2))
        x = 2.0 * (x - np.array([0.5, 0.25]))
    elif name == "checkerboard":
        u = rng.random((n, 2)) * 4.0 - 2.0  # [-2, 2]^2, 4x4 unit cells
        cell = np.floor(u).astype(int)
        flip = (cell[:, 0] + cell[:, 1]) % 2 == 1
        u[flip, 0] = np.where(u[flip, 0] < 1.0, u[flip, 0] + 1.0, u[flip, 0] - 3.0)
        x = 2.0 * u
    elif name == "swiss_roll":
        t = 1.5 * np.pi * (1 + 2 * rng.random(n))
        x = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 3.0 + 0.1 * rng.standard_normal((n, 2))
    elif name == "circles":
        r = np.where(rng.random(n) < 0.5, 1.5, 3.0)
        a = 2 * np.pi * rng.random(n)
        x = r[:, None] * np.stack([np.cos(a), np.sin(a)], 1) + 0.08 * rng.standard_normal((n, 2))
    else:  # pinwheel
        arms = rng.integers(0, 5, n)
        feats = rng.standard_normal((n, 2)) * np.array([0.3, 0.05]) + np.array([1.0, 0.0])
        angle = 2 * np.pi * arms / 5 + 0.25 * np.exp(feats[:, 0])
        c, s = np.cos(angle), np.sin(angle)
        x = 2.0 * np.stack(
            [c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], 1
        )
    return x.astype(np.float32)
