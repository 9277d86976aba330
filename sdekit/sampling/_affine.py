"""Shared algebra of the samplers written for affine Gaussian processes.

An affine process has ``x_t = alpha(t) x_0 + sigma(t) eps``. The scaled state ``x_t / alpha(t)``
is data plus noise of level ``sigma~(t) = sigma(t) / alpha(t) = exp(-logsnr(t) / 2)``, which is
how EDM and DPM-Solver see every process. This module maps noise levels back to process times
(`sigma_to_time`: the process's ``t_from_scaled_sigma``, a closed form where its schedule
has one, a vectorised bisection on the log-SNR otherwise) and builds time grids that are uniform or
Karras-spaced in ``sigma~`` or uniform in log-SNR.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array, Data, Float
from .._errors import arg_error, check_choice
from ..processes import AbstractAffineGaussianProcess, AbstractProcess
from ._base import PredictionFn, require_kind
from ._grids import GRIDS, time_grid
from ._loop import AbstractFixedStepSampler, check_int, concrete

#: Grids of the affine samplers: ``time_grid``'s kinds plus ``logsnr`` (uniform in log-SNR) and
#: ``edm`` (Karras et al.'s rho-spaced noise levels ``sigma~``, mapped back to process times).
AFFINE_GRIDS: tuple[str, ...] = GRIDS + ("logsnr", "edm")


def require_affine(method: Any, process: AbstractProcess) -> None:
    """Raise a readable TypeError unless ``process`` is an affine Gaussian process."""
    require_kind(method, process, AbstractAffineGaussianProcess)


def check_steps(num_steps: Any) -> None:
    check_int("num_steps", num_steps, 1)


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


def affine_grid(
    process: AbstractAffineGaussianProcess,
    kind: str,
    num_steps: int,
    t_start: Any,
    t_end: Any,
    *,
    rho: float = 7.0,
    dtype: Any = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> Array:
    """``num_steps + 1`` decreasing process times from ``t_start`` to ``t_end``, in ``dtype``.

    ``uniform``/``quadratic``/``karras`` are `sdekit.sampling.time_grid` (spaced in the
    process's own time); ``logsnr`` is uniform in ``logsnr(t)``; ``edm`` is Karras et al.'s
    ``sigma_i = (s_max^(1/rho) + i/N (s_min^(1/rho) - s_max^(1/rho)))^rho`` on
    ``sigma~ = sigma/alpha``, mapped back through `sigma_to_time`. For these two, ``s_max`` is
    ``sigma~(t_start)`` clipped to ``sigma_max`` and ``s_min`` is ``sigma~(t_end)`` clipped to
    ``sigma_min`` (``None``: no clipping); an end is exactly ``t_start`` / ``t_end`` unless it
    was clipped.
    """
    check_choice("grid", kind, AFFINE_GRIDS)
    check_steps(num_steps)
    dtype = jnp.result_type(float) if dtype is None else dtype
    if kind in GRIDS:
        return time_grid(kind, num_steps, t_start, t_end, rho=rho, dtype=dtype)
    n = int(num_steps)
    i = jnp.arange(n + 1, dtype=dtype) / n
    sig, first, last = _sigma_range(process, kind, i, t_start, t_end, rho, dtype,
                                    sigma_min, sigma_max)
    ts = sigma_to_time(process, sig).astype(dtype)
    return ts.at[0].set(jnp.where(first, t_start, ts[0])).at[-1].set(
        jnp.where(last, t_end, ts[-1]))


def _sigma_range(process, kind, i, t_start, t_end, rho, dtype, sigma_min, sigma_max):
    """Noise levels ``sigma~`` at the fractions ``i`` of the (clipped) range, and whether each end
    is the unclipped ``t_start`` / ``t_end``."""
    ends = jnp.stack([jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype)])
    lam = process.logsnr(ends).astype(dtype)  # logsnr = -2 log sigma~
    lam_hi, lam_lo = lam[0], lam[1]
    first = last = jnp.asarray(True)
    if sigma_max is not None:
        cap = jnp.asarray(-2.0 * math.log(sigma_max), dtype)
        first = lam_hi >= cap
        lam_hi = jnp.maximum(lam_hi, cap)
    if sigma_min is not None:
        floor = jnp.asarray(-2.0 * math.log(sigma_min), dtype)
        last = lam_lo <= floor
        lam_lo = jnp.minimum(lam_lo, floor)
    if kind == "logsnr":
        return jnp.exp(-0.5 * (lam_hi + i * (lam_lo - lam_hi))), first, last
    a, b = jnp.exp(-0.5 * lam_hi / rho), jnp.exp(-0.5 * lam_lo / rho)
    return (a + i * (b - a)) ** rho, first, last


def check_sigma_range(sigma_min: Any, sigma_max: Any) -> None:
    """``0 < sigma_min < sigma_max`` (``sigma_max`` may be ``inf``: no upper clipping)."""
    concrete("sigma_min", sigma_min)
    concrete("sigma_max", sigma_max)
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
        concrete("percentile", self.percentile)
        if not 0.0 < float(self.percentile) <= 1.0:
            raise arg_error("percentile", self.percentile, "a value in (0, 1]")
        concrete("bound", self.bound)
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
    concrete("clip_x0", value)
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
    grid_kinds: ClassVar[tuple[str, ...]] = AFFINE_GRIDS

    def __check_init__(self):
        check_clip(self.clip_x0)

    def sigma_limits(self) -> tuple[float | None, float | None]:
        """``(sigma_min, sigma_max)`` of the ``logsnr`` / ``edm`` grids (``None``: the process's
        own range)."""
        return None, None

    def named_grid(self, process, t_start, t_end, dtype):
        lo, hi = self.sigma_limits()
        return affine_grid(process, self.grid, self.num_steps, t_start, t_end, dtype=dtype,
                           sigma_min=lo, sigma_max=hi)

    def clip_prediction(self, x0: Data) -> Data:
        return clip(x0, self.clip_x0)

    def x0(self, fn: PredictionFn, z: Data, t: Any) -> Data:
        """The model's (clipped) data prediction at ``(z, t)``."""
        return clip(fn.x0(z, t), self.clip_x0)
