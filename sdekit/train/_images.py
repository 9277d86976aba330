"""Writing sample grids (images) and scatter plots (2-D toy data) as PNG files with pillow."""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["save_image_grid", "image_grid"]


def image_grid(
    images: Any,
    *,
    nrow: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    padding: int = 2,
) -> np.ndarray:
    """Tile a batch of NHWC images (1 or 3 channels, or ``(N, H, W)``) into one uint8 image.

    Args:
        images: array of shape ``(N, H, W, C)`` with ``C`` in {1, 3}, or ``(N, H, W)``.
        nrow: images per row (default ``ceil(sqrt(N))``).
        value_range: the values mapped to black and white.
        padding: pixels between images.

    Returns:
        A uint8 array ``(rows, cols, C)``.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] < 1:
        raise ValueError(
            f"argument `images`: got shape {np.shape(images)}, expected (N, H, W, C) with C in "
            "(1, 3), "
            "(N, H, W), or (N, 2) points."
        )
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(
            f"argument `value_range`: got {value_range!r}, expected (low, high) with low < high."
        )
    x = np.nan_to_num(x, nan=lo, posinf=hi, neginf=lo)
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    x = np.round(x * 255.0).astype(np.uint8)
    n, h, w, c = x.shape
    if nrow is not None and not (
        isinstance(nrow, int) and not isinstance(nrow, bool) and nrow >= 1
    ):
        raise ValueError(f"argument `nrow`: got {nrow!r}, expected None or an int >= 1.")
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol_rows = int(math.ceil(n / nrow))
    grid = np.zeros(
        (ncol_rows * (h + padding) + padding, nrow * (w + padding) + padding, c), np.uint8
    )
    for i in range(n):
        r, col = divmod(i, nrow)
        y0 = padding + r * (h + padding)
        x0 = padding + col * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = x[i]
    return grid


def _scatter(points: np.ndarray, size: int = 512, radius: float = 1.5) -> Image.Image:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    pts = points[np.all(np.isfinite(points), axis=1)]
    margin = 16
    draw.rectangle([margin - 1, margin - 1, size - margin, size - margin], outline=(200, 200, 200))
    if len(pts) == 0:
        return img
    lo = pts.min(axis=0)
    hi = pts.max(axis=0)
    centre = (lo + hi) / 2
    half = max(float(np.max(hi - lo)) / 2, 1e-6) * 1.05
    scale = (size - 2 * margin) / (2 * half)
    # origin axes, if visible
    ox = margin + (0 - (centre[0] - half)) * scale
    oy = size - margin - (0 - (centre[1] - half)) * scale
    if margin <= ox <= size - margin:
        draw.line([ox, margin, ox, size - margin], fill=(225, 225, 225))
    if margin <= oy <= size - margin:
        draw.line([margin, oy, size - margin, oy], fill=(225, 225, 225))
    for px, py in pts:
        u = margin + (px - (centre[0] - half)) * scale
        v = size - margin - (py - (centre[1] - half)) * scale
        draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=(31, 119, 180))
    return img


def save_image_grid(
    images: Any,
    path: str | os.PathLike,
    *,
    nrow: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> pathlib.Path:
    """Save samples as a PNG: a grid for images, a scatter plot for 2-D points.

    Args:
        images: NHWC images with 1 or 3 channels, ``(N, H, W)`` grey images, or ``(N, 2)`` points
            (drawn as a scatter plot with automatic axis range).
        path: output file (parent directories are created).
        nrow: images per grid row.
        value_range: pixel values mapped to black and white (default [-1, 1]).

    Returns:
        The path written.
    """
    x = np.asarray(images)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if x.ndim == 2:
        if x.shape[1] != 2:
            raise ValueError(
                f"argument `images`: got points of shape {x.shape}, expected (N, 2) for a scatter "
                "plot."
            )
        _scatter(x.astype(np.float64)).save(path, format="PNG")
        return path
    grid = image_grid(x, nrow=nrow, value_range=value_range)
    mode = "L" if grid.shape[-1] == 1 else "RGB"
    Image.fromarray(grid[..., 0] if mode == "L" else grid).save(path, format="PNG")
    return path
