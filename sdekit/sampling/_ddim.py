"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12) for any affine
Gaussian process, written in log-SNR as in VDPM (Kingma et al. 2021).

One step from ``t`` to ``s < t`` with the data prediction ``x0`` and ``eps`` re-derived from it:

``x_s = alpha_s x0 + sqrt(sigma_s^2 - var) eps + sqrt(var) z``,
``var = eta^2 (1 - r) sigma_s^2``, ``r = exp(logsnr_t - logsnr_s)``,

i.e. ``x_s = c_xt x_t + c_x0 x0 + sqrt(var) z`` with ``c_xt = sigma_s sqrt(1 - eta^2 (1 - r)) /
sigma_t`` and ``c_x0 = alpha_s (1 - sqrt(r (1 - eta^2 (1 - r))))``. The general ``alpha``/``sigma``
form makes it valid for VP, sub-VP, VE, EDM and every log-SNR schedule. ``eta = 0`` is the
deterministic DDIM (a first-order solver of the probability-flow ODE in log-SNR); ``eta = 1`` is
ancestral sampling with the true posterior variance (``fixed_small``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, ArrayLike, Data, Float, Key
from .._validate import arg_error, static
from ..processes import AbstractAffineGaussianProcess
from ..processes._posterior import log_coefficients
from ._affine import AbstractAffineSampler, DynamicThreshold, require_affine
from ._base import PredictionFn
from ._grids import AbstractGrid


def _check_eta(eta: Any) -> None:
    static("eta", eta)
    if isinstance(eta, bool) or np.ndim(eta) != 0 or not 0.0 <= float(eta) <= 1.0:
        raise arg_error("eta", eta, "a value in [0, 1]")


def ddim_coefficients(
    process: AbstractAffineGaussianProcess, t: Any, s: Any, eta: float = 0.0, *, dtype: Any = None
) -> tuple[Array, Array, Array]:
    """``(c_xt, c_x0, std)`` of the DDIM step from ``t`` to ``s < t``: ``x_s = c_xt x_t + c_x0 x0
    + std z``."""
    require_affine(ddim_step, process)
    dt = jnp.result_type(t, s, float) if dtype is None else dtype
    q = log_coefficients(process, t, s, dt)
    one_m_r = jnp.exp(q["log_1mr"])
    keep = jnp.log1p(-(eta**2) * one_m_r)  # log(1 - eta^2 (1 - r))
    c_xt = jnp.exp(q["log_sig_s"] - q["log_sig_t"] + 0.5 * keep)
    c_x0 = jnp.exp(q["log_a_s"]) * -jnp.expm1(0.5 * (q["log_r"] + keep))
    std = eta * jnp.exp(0.5 * q["log_1mr"] + q["log_sig_s"])
    return c_xt, c_x0, std


def ddim_step(
    process: AbstractAffineGaussianProcess,
    x_t: Float[Array, "batch *dims"],
    x0_hat: Float[Array, "batch *dims"],
    t: Any,
    s: Any,
    eta: float = 0.0,
    noise: Float[Array, "batch *dims"] | None = None,
) -> Float[Array, "batch *dims"]:
    """One DDIM step from ``x_t`` at time ``t`` to time ``s < t`` given a data prediction.

    Pure: no clipping, no model call; ``noise`` (``z ~ N(0, I)``, shaped like ``x_t``) is only
    used when ``eta > 0`` (``None`` means the mean only).
    """
    _check_eta(eta)
    c_xt, c_x0, std = ddim_coefficients(process, t, s, eta, dtype=x_t.dtype)
    out = c_xt * x_t + c_x0 * x0_hat
    if noise is not None and float(eta) > 0:
        out = out + std * noise
    return out


class DDIM(AbstractAffineSampler):
    """Denoising Diffusion Implicit Models (Song et al. 2021) on a fixed grid, any affine process.

    Each step predicts ``x0`` (optionally clipped: ``clip_x0`` is a value ``v`` for
    ``[-v, v]`` or a `DynamicThreshold`) and applies `ddim_step`; with ``eta = 0`` no noise is
    drawn. With ``final_x0=True`` (VDPM's and DDIM's rule) the last step returns the (clipped)
    ``x0`` prediction itself, so ``sample`` adds no denoising step; otherwise it steps to
    ``t_end``. ``grid``: ``uniform``, ``quadratic``, ``karras`` (in process time), ``logsnr``,
    ``edm`` (Karras spacing of ``sigma/alpha``; use it or ``karras`` for the EDM process) or an
    explicit array of ``num_steps + 1`` times. **NFE** = ``num_steps``.
    """

    num_steps: int | None = None
    eta: float = 0.0
    grid: str | AbstractGrid | ArrayLike = "uniform"
    clip_x0: float | DynamicThreshold | None = None
    final_x0: bool = True
    order: ClassVar[float] = 1.0
    default_steps: ClassVar[int] = 100

    def __check_init__(self):
        _check_eta(self.eta)

    @property
    def ode(self) -> bool:  # type: ignore[override]
        """Deterministic for ``eta = 0``."""
        return float(self.eta) == 0.0

    @property
    def returns_x0(self) -> bool:  # type: ignore[override]
        """Whether the last step returns a data prediction (no final denoising)."""
        return bool(self.final_x0)

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        noise = jr.normal(key, z.shape, z.dtype) if float(self.eta) > 0 else None
        return ddim_step(fn.process, z, self.x0(fn, z, t), t, t_next, self.eta, noise), memory

    def final_step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key) -> Data:
        return self.x0(fn, z, t)


__all__ = ["DDIM", "ddim_coefficients", "ddim_step"]
