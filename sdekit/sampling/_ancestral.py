"""Ancestral sampling (Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models",
Algorithm 2) with the posterior ``q(x_s | x_t, x0)`` of any affine Gaussian process, written in
log-SNR as in VDPM (Kingma et al. 2021).

With ``r = exp(logsnr_t - logsnr_s)``:

``mean = r (alpha_s / alpha_t) x_t + (1 - r) alpha_s x0``,

- ``fixed_small``: ``var = (1 - r) sigma_s^2`` (the true posterior variance),
- ``fixed_large``: ``var = (1 - r) sigma_t^2`` (the forward transition's variance, DDPM's beta_t),
- ``fixed_medium``: ``log var = (1 - f) log small + f log large``, ``f = intp_frac``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, ArrayLike, Data, Float, Key
from ..processes import AbstractAffineGaussianProcess
from ..processes._posterior import VARIANCES, _check_variance, posterior_coefficients
from ._affine import AbstractAffineSampler, DynamicThreshold
from ._base import PredictionFn
from ._grids import AbstractGrid


def ancestral_step(
    process: AbstractAffineGaussianProcess,
    x_t: Float[Array, "batch *dims"],
    x0_hat: Float[Array, "batch *dims"],
    t: Any,
    s: Any,
    noise: Float[Array, "batch *dims"] | None = None,
    *,
    variance: str = "fixed_large",
    intp_frac: float = 0.0,
) -> Float[Array, "batch *dims"]:
    """One ancestral step ``x_s = mean + exp(log_var / 2) noise`` from ``t`` to ``s < t``.

    Pure: no clipping, no model call; ``noise=None`` returns the posterior mean.
    """
    c_xt, c_x0, log_var = posterior_coefficients(process, t, s, variance, intp_frac,
                                                 dtype=x_t.dtype)
    out = c_xt * x_t + c_x0 * x0_hat
    if noise is not None:
        out = out + jnp.exp(0.5 * log_var) * noise
    return out


class Ancestral(AbstractAffineSampler):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) for any affine Gaussian process.

    Each step predicts ``x0`` (optionally clipped: ``clip_x0=1`` as VDPM does, or a
    `DynamicThreshold`) and draws ``x_s`` from the posterior with the chosen ``variance``
    (``fixed_small``, ``fixed_large``, ``fixed_medium`` with ``intp_frac``). With
    ``final_x0=True`` (VDPM's rule) the last step returns the (clipped) ``x0`` without noise.
    ``grid`` as for `DDIM`. **NFE** = ``num_steps``.
    """

    num_steps: int | None = None
    variance: str = "fixed_large"
    intp_frac: float = 0.0
    grid: str | AbstractGrid | ArrayLike = "uniform"
    clip_x0: float | DynamicThreshold | None = None
    final_x0: bool = True
    ode: ClassVar[bool] = False
    order: ClassVar[float] = 1.0
    default_steps: ClassVar[int] = 1000

    def __check_init__(self):
        _check_variance(self.variance, self.intp_frac)

    @property
    def returns_x0(self) -> bool:  # type: ignore[override]
        """Whether the last step returns a data prediction (no final denoising)."""
        return bool(self.final_x0)

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        noise = jr.normal(key, z.shape, z.dtype)
        z = ancestral_step(fn.process, z, self.x0(fn, z, t), t, t_next, noise,
                           variance=self.variance, intp_frac=self.intp_frac)
        return z, memory

    def final_step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key) -> Data:
        return self.x0(fn, z, t)


__all__ = ["VARIANCES", "Ancestral", "ancestral_step", "posterior_coefficients"]
