"""The image resizes of the metric tools, as separable resampling matrices.

Each resize below is linear and separable: along one axis, output sample ``i`` is a weighted sum
of input samples, so the whole resize is ``R_h @ image @ R_w^T`` per channel. The matrices are
built once per (kind, input size, output size) in float64 from each library's definition:

- ``"torch-bilinear"``: ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False)`` without antialiasing (pytorch-fid): source coordinate
  ``(i + 0.5) * in / out - 0.5``, negative values clamped to 0, the two neighbours weighted
  linearly, the upper one clamped to the last sample.
- ``"tf1-bilinear"``: TensorFlow 1.x ``ResizeBilinear`` with ``align_corners=False`` and no half
  pixel centres (the 2015 Inception graph; torch-fidelity's ``interpolate_bilinear_2d_like_
  tensorflow1x`` and the ``grid_sample`` resize inside the TorchScript Inception clean-fid's
  ``legacy_tensorflow`` mode runs): source coordinate ``i * in / out``, the upper neighbour
  clamped to the last sample.
- ``"pil-bicubic"``: Pillow's ``Image.resize(resample=BICUBIC)`` on a float (``"F"``) image
  (clean-fid): the cubic convolution kernel with ``a = -0.5``, support 2 widened by the scale
  factor when shrinking (antialiasing), centres at ``(i + 0.5) * in / out``, taps cut at the
  image border and the weights renormalised to sum to one. Pillow resizes rows first, then
  columns, keeping a float32 intermediate image.

Coordinates are computed in float32 where the original computes them in float32.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

RESIZE_KINDS = ("torch-bilinear", "tf1-bilinear", "pil-bicubic")


def _linear(src: np.ndarray, n_in: int) -> np.ndarray:
    """Rows of linear interpolation weights at float32 source coordinates ``src`` (>= 0)."""
    n_out = src.shape[0]
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo.astype(np.float32)).astype(np.float32)
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), (np.float32(1.0) - frac).astype(np.float64))
    np.add.at(m, (rows, hi), frac.astype(np.float64))
    return m


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
                    np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0))


@functools.lru_cache(maxsize=64)
def resize_matrix(kind: str, n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` float64 matrix of one axis of a resize.

    Args:
        kind: ``"torch-bilinear"``, ``"tf1-bilinear"`` or ``"pil-bicubic"`` (see the module
            docstring for each library's definition).
        n_in: input samples along the axis (>= 1).
        n_out: output samples (>= 1).

    Returns:
        The matrix ``R`` with ``out = R @ in`` along that axis (read-only).
    """
    if kind not in RESIZE_KINDS:
        raise ValueError(f"argument `kind`: got {kind!r}, expected one of {RESIZE_KINDS}.")
    for name, v in (("n_in", n_in), ("n_out", n_out)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"argument `{name}`: got {v!r}, expected an int >= 1.")
    if kind == "torch-bilinear":
        scale = np.float32(n_in / n_out)
        src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        m = _linear(np.maximum(src, np.float32(0.0)), n_in)
    elif kind == "tf1-bilinear":
        src = np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)
        m = _linear(src, n_in)
    else:
        scale = n_in / n_out
        filterscale = max(scale, 1.0)
        support = 2.0 * filterscale
        m = np.zeros((n_out, n_in))
        for i in range(n_out):
            centre = (i + 0.5) * scale
            lo = max(int(centre - support + 0.5), 0)  # int() truncates like C's (int)
            hi = min(int(centre + support + 0.5), n_in)
            w = _bicubic((np.arange(lo, hi) - centre + 0.5) / filterscale)
            total = w.sum()
            m[i, lo:hi] = w / total if total != 0.0 else w
    m.setflags(write=False)
    return m


def resize_images(x: Any, kind: str, size: int) -> Any:
    """Resize a NHWC float batch to ``size`` x ``size`` with one of the tools' resizes.

    Rows are resampled first, then columns (Pillow's order), each as a float32 matrix product at
    full precision. An input already of the target size is returned unchanged (as every tool
    does).

    Args:
        x: ``(n, h, w, c)`` float32 JAX or numpy array.
        kind: see `resize_matrix`.
        size: the output side.

    Returns:
        ``(n, size, size, c)`` float32 JAX array.
    """
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(x, jnp.float32)
    h, w = int(x.shape[1]), int(x.shape[2])
    if (h, w) == (size, size):
        return x
    rw = jnp.asarray(resize_matrix(kind, w, size), jnp.float32)
    rh = jnp.asarray(resize_matrix(kind, h, size), jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("bw,nhwc->nhbc", rw, x, precision=hi)
    return jnp.einsum("ah,nhbc->nabc", rh, x, precision=hi)
