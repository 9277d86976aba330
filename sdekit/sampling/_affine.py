"""Shared algebra of the samplers written for affine Gaussian processes.

An affine process has ``x_t = alpha(t) x_0 + sigma(t) eps``. The scaled state ``x_t / alpha(t)``
is data plus noise of level ``sigma~(t) = sigma(t) / alpha(t) = exp(-logsnr(t) / 2)``, which is
how EDM and DPM-Solver see every process. This module maps noise levels back to process times
(`sigma_to_time`: the process's ``t_from_scaled_sigma``, a closed form where its schedule
has one, a vectorised bisection on the log-SNR otherwise) and builds time grids that are uniform or
Karras-spaced in ``sigma~`` or uniform in log-SNR.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from .._custom_types import Array
from .._errors import arg_error, check_choice
from ..processes import AbstractAffineGaussianProcess, AbstractProcess
from ._grids import GRIDS, time_grid

#: Grids of the affine samplers: ``time_grid``'s kinds plus ``logsnr`` (uniform in log-SNR) and
#: ``edm`` (Karras et al.'s rho-spaced noise levels ``sigma~``, mapped back to process times).
AFFINE_GRIDS: tuple[str, ...] = GRIDS + ("logsnr", "edm")


def require_affine(method: Any, process: AbstractProcess) -> None:
    """Raise a readable TypeError unless ``process`` is an affine Gaussian process."""
    if not isinstance(process, AbstractAffineGaussianProcess):
        raise TypeError(
            f"{type(method).__name__} needs an AbstractAffineGaussianProcess "
            f"(x_t = alpha(t) x_0 + sigma(t) eps: VP, SubVP, VE, EDM, LogSNR); "
            f"got {type(process).__name__}."
        )


def check_steps(num_steps: Any) -> None:
    if isinstance(num_steps, bool) or int(num_steps) != num_steps or int(num_steps) < 1:
        raise arg_error("num_steps", num_steps, "an integer >= 1")


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
    t_start: float,
    t_end: float,
    *,
    rho: float = 7.0,
    dtype: Any = jnp.float32,
) -> Array:
    """``num_steps + 1`` decreasing process times from ``t_start`` to ``t_end`` (exact ends).

    ``uniform``/``quadratic``/``karras`` are `sdekit.sampling.time_grid` (spaced in the
    process's own time); ``logsnr`` is uniform in ``logsnr(t)``; ``edm`` is Karras et al.'s
    ``sigma_i = (s_max^(1/rho) + i/N (s_min^(1/rho) - s_max^(1/rho)))^rho`` on
    ``sigma~ = sigma/alpha``, mapped back through `sigma_to_time`.
    """
    check_choice("grid", kind, AFFINE_GRIDS)
    check_steps(num_steps)
    if kind in GRIDS:
        return time_grid(kind, num_steps, t_start, t_end, rho=rho).astype(dtype)
    n = int(num_steps)
    i = jnp.arange(n + 1, dtype=dtype) / n
    ends = jnp.asarray([t_start, t_end], dtype=dtype)
    if kind == "logsnr":
        lam = process.logsnr(ends)
        lams = lam[0] + i * (lam[1] - lam[0])
        sig = jnp.exp(-0.5 * lams)
    else:
        s = scaled_sigma(process, ends)
        a, b = s[0] ** (1.0 / rho), s[1] ** (1.0 / rho)
        sig = (a + i * (b - a)) ** rho
    ts = sigma_to_time(process, sig).astype(dtype)
    return ts.at[0].set(t_start).at[-1].set(t_end)


def clip(x0: Array, value: float | None) -> Array:
    """Clip a data prediction to ``[-value, value]`` (no-op for ``None``)."""
    return x0 if value is None else jnp.clip(x0, -value, value)


def check_clip(value: Any) -> None:
    if value is not None and not float(value) > 0:
        raise arg_error("clip_x0", value, "None or a value > 0 (x0 is clipped to [-v, v])")
