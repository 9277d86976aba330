"""Per-example numpy transforms for images in HWC layout.

Random transforms take ``(image, rng)`` with a ``numpy.random.Generator`` (grain's
``random_map`` supplies one per example, derived from the pipeline seed and the example's
position, so they are reproducible and resumable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["scale", "dequantize", "random_flip", "random_c4", "random_d4", "RANGES"]

RANGES = ("[-1,1]", "[0,1]")


def _check_range(value_range: str) -> None:
    if value_range not in RANGES:
        raise ValueError(f"argument `value_range`: got {value_range!r}, expected one of {RANGES}.")


def scale(image: Any, value_range: str = "[-1,1]") -> np.ndarray:
    """uint8 pixels to float32: ``x / 127.5 - 1`` for ``"[-1,1]"``, ``x / 255`` for ``"[0,1]"``."""
    _check_range(value_range)
    x = np.asarray(image, np.float32)
    return x / 127.5 - 1.0 if value_range == "[-1,1]" else x / 255.0


def dequantize(image: Any, rng: np.random.Generator, value_range: str = "[-1,1]") -> np.ndarray:
    """Uniform dequantisation: ``(x + u) / 256`` with ``u ~ U[0, 1)``, mapped to ``value_range``.

    Gives a continuous density on [0, 1] (or [-1, 1]) whose integer bins hold the pixel
    probabilities, as used for likelihood (bits/dim) training.
    """
    _check_range(value_range)
    x = (np.asarray(image, np.float32) + rng.random(np.shape(image), dtype=np.float32)) / 256.0
    return 2.0 * x - 1.0 if value_range == "[-1,1]" else x


def random_flip(image: Any, rng: np.random.Generator) -> np.ndarray:
    """Horizontal (left-right) flip with probability 1/2."""
    x = np.asarray(image)
    return np.ascontiguousarray(x[:, ::-1]) if rng.random() < 0.5 else x


def random_c4(image: Any, rng: np.random.Generator) -> np.ndarray:
    """Rotation by a uniformly random multiple of 90 degrees (the group C4)."""
    x = np.asarray(image)
    return np.ascontiguousarray(np.rot90(x, k=int(rng.integers(4)), axes=(0, 1)))


def random_d4(image: Any, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random element of D4: a 90-degree rotation, then a horizontal flip or not."""
    x = random_c4(image, rng)
    return np.ascontiguousarray(x[:, ::-1]) if rng.random() < 0.5 else x
