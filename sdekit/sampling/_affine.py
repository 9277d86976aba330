"""Shared algebra of the samplers written for affine Gaussian processes.

An affine process has ``x_t = alpha(t) x_0 + sigma(t) eps``. The scaled state ``x_t / alpha(t)``
is data plus noise of level ``sigma~(t) = sigma(t) / alpha(t) = exp(-logsnr(t) / 2)``, which is
how EDM and DPM-Solver see every process. This module maps noise levels back to process times
(`sigma_to_time`: the process's ``t_from_scaled_sigma``, a closed form where its schedule
has one, a vectorised bisection on the log-SNR otherwise); the grids uniform or Karras-spaced in
``sigma~`` or uniform in log-SNR are in ``_grids.py``.
"""

import math
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array, Data, Float
from .._validate import arg_error, static
from ..processes import AbstractAffineGaussianProcess, AbstractProcess
from ._base import PredictionFn, require_kind
from ._grids import AFFINE_GRIDS
from ._loop import AbstractFixedStepSampler


def require_affine(method: Any, process: AbstractProcess) -> None:
    """Raise a readable TypeError unless ``process`` is an affine Gaussian process."""
    require_kind(method, process, AbstractAffineGaussianProcess)


def scaled_sigma(process: AbstractAffineGaussianProcess, t: Any) -> Array:
    """``sigma~(t) = sigma(t) / alpha(t)``, the noise level of ``x_t / alpha(t)``."""
    return process.scaled_sigma(t)


def sigma_to_time(process: AbstractAffineGaussianProcess, sigma: Any, *, iters: int = 64) -> Array:
    """The process time ``t`` with ``sigma(t) / alpha(t) = sigma`` (elementwise).

    ``sigma~`` is increasing in ``t``. This is the process's own
    `t_from_scaled_sigma`: a closed form where its schedule has one (VP, sub-VP, VE, EDM and
    the linear, sigmoid and cosine log-SNR schedules), a bisection of the log-SNR on
    ``[0, t1]`` otherwise (values outside the range are clamped to it).
    """
    return process.t_from_scaled_sigma(sigma, iters=iters)


def check_sigma_range(sigma_min: Any, sigma_max: Any) -> None:
    """``0 < sigma_min < sigma_max`` (``sigma_max`` may be ``inf``: no upper clipping)."""
    static("sigma_min", sigma_min)
    static("sigma_max", sigma_max)
    if isinstance(sigma_min, bool) or not (float(sigma_min) >= 0 and np.isfinite(float(sigma_min))):
        raise arg_error("sigma_min", sigma_min, "a finite value >= 0")
    if isinstance(sigma_max, bool) or not float(sigma_max) > float(sigma_min):
        raise ValueError(f"arguments `sigma_min` and `sigma_max`: got sigma_min={sigma_min!r} and "
                         f"sigma_max={sigma_max!r}, expected sigma_min < sigma_max.")


def _clip_or_none(value: float, lower: bool) -> float | None:
    """``sigma_min = 0`` / ``sigma_max = inf`` mean no clipping."""
    v = float(value)
    if (lower and v <= 0) or (not lower and math.isinf(v)):
        return None
    return v


class DynamicThreshold(eqx.Module):
    """Dynamic thresholding of a data prediction (Saharia et al. 2022, "Imagen", section 2.3):
    per example, ``s = max(quantile(|x0|, percentile), bound)``, then
    ``x0 <- clip(x0, -s, s) * bound / s``. With ``bound = 1`` a prediction inside ``[-1, 1]`` is
    unchanged and a saturated one is pulled back inside. Pass it as ``clip_x0`` to any sampler
    that forms an x0 prediction."""

    percentile: float = 0.995
    bound: float = 1.0

    def __check_init__(self):
        static("percentile", self.percentile)
        if not 0.0 < float(self.percentile) <= 1.0:
            raise arg_error("percentile", self.percentile, "a value in (0, 1]")
        static("bound", self.bound)
        if not (float(self.bound) > 0 and np.isfinite(float(self.bound))):
            raise arg_error("bound", self.bound, "a finite value > 0")

    def __call__(self, x0: Float[Array, "batch *dims"]) -> Float[Array, "batch *dims"]:
        flat = jnp.abs(x0.reshape(x0.shape[0], -1))
        s = jnp.maximum(jnp.quantile(flat, self.percentile, axis=-1), self.bound)
        s = s.reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)
        return jnp.clip(x0, -s, s) * (self.bound / s)


def clip(x0: Array, value: Any) -> Array:
    """Clip a data prediction: ``None`` (no-op), a value ``v`` (to ``[-v, v]``) or a
    `DynamicThreshold`."""
    if value is None:
        return x0
    if isinstance(value, DynamicThreshold):
        return value(x0)
    return jnp.clip(x0, -value, value)


def check_clip(value: Any) -> None:
    if value is None or isinstance(value, DynamicThreshold):
        return
    static("clip_x0", value)
    if isinstance(value, bool) or np.ndim(value) != 0 or not float(value) > 0 \
            or not np.isfinite(float(value)):
        raise arg_error("clip_x0", value, "None, a finite value v > 0 (x0 is clipped to [-v, v]) "
                        "or a DynamicThreshold")


class AbstractAffineSampler(AbstractFixedStepSampler):
    """A fixed-step sampler for affine Gaussian processes: the grids of `affine_grid`
    (``uniform``, ``quadratic``, ``karras``, ``logsnr``, ``edm``) and an x0 clipping option
    (``clip_x0``: ``None``, a value or a `DynamicThreshold`) for its data predictions."""

    clip_x0: eqx.AbstractVar[Any]

    requires: ClassVar[type] = AbstractAffineGaussianProcess
    grid_kinds: ClassVar[tuple[type, ...]] = AFFINE_GRIDS

    def __check_init__(self):
        check_clip(self.clip_x0)

    def clip_prediction(self, x0: Data) -> Data:
        return clip(x0, self.clip_x0)

    def x0(self, fn: PredictionFn, z: Data, t: Any) -> Data:
        """The model's (clipped) data prediction at ``(z, t)``."""
        return clip(fn.x0(z, t), self.clip_x0)
