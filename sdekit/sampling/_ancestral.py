"""Ancestral sampling (Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models",
Algorithm 2) with the posterior ``q(x_s | x_t, x0)`` of any affine Gaussian process, written in
log-SNR as in VDPM (``spec/vdpm.md`` section 5).

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
from .._errors import arg_error, check_choice
from ..processes import AbstractAffineGaussianProcess
from ._affine import AbstractAffineSampler, DynamicThreshold, require_affine
from ._base import PredictionFn
from ._ddim import _logs
from ._loop import check_real

VARIANCES: tuple[str, ...] = ("fixed_small", "fixed_large", "fixed_medium")


def _check_variance(variance: Any, intp_frac: Any) -> None:
    check_choice("variance", variance, VARIANCES)
    check_real("intp_frac", intp_frac, "a value in [0, 1]", lambda v: True)
    if not 0.0 <= float(intp_frac) <= 1.0:
        raise arg_error("intp_frac", intp_frac, "a value in [0, 1]")


def posterior_coefficients(
    process: AbstractAffineGaussianProcess,
    t: Any,
    s: Any,
    variance: str = "fixed_small",
    intp_frac: float = 0.0,
    *,
    dtype: Any = None,
) -> tuple[Array, Array, Array]:
    """``(c_xt, c_x0, log_var)`` of ``q(x_s | x_t, x0)`` (mean ``c_xt x_t + c_x0 x0``) for
    ``s < t``, with the variance choice ``fixed_small``, ``fixed_large`` or ``fixed_medium``."""
    require_affine(ancestral_step, process)
    _check_variance(variance, intp_frac)
    q = _logs(process, t, s, jnp.result_type(t, s, float) if dtype is None else dtype)
    c_xt = jnp.exp(q["log_r"] + q["log_a_s"] - q["log_a_t"])
    c_x0 = jnp.exp(q["log_1mr"] + q["log_a_s"])
    small = q["log_1mr"] + 2.0 * q["log_sig_s"]
    large = q["log_1mr"] + 2.0 * q["log_sig_t"]
    if variance == "fixed_small":
        log_var = small
    elif variance == "fixed_large":
        log_var = large
    else:
        log_var = (1.0 - intp_frac) * small + intp_frac * large
    return c_xt, c_x0, log_var


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
    grid: str | ArrayLike = "uniform"
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
