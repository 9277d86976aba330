r"""The Gaussian posterior $q(x_s \mid x_t, x_0)$ of an affine process, $s < t$ (Ho, Jain &
Abbeel 2020; written in log-SNR as in VDPM). With $r = e^{\lambda_t - \lambda_s}$:

$$\mathbb E[x_s \mid x_t, x_0] = r \frac{\alpha_s}{\alpha_t} x_t + (1 - r)\,\alpha_s x_0,$$

and the variance is ``fixed_small`` $(1 - r)\sigma_s^2$ (the true posterior variance),
``fixed_large`` $(1 - r)\sigma_t^2$ (the forward transition's, DDPM's $\beta_t$) or
``fixed_medium`` (log-interpolated with ``intp_frac``). Ancestral sampling, DDIM and VDPM's
variational bound share these coefficients.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from .._custom_types import Array
from .._validate import arg_error, check_choice, static_real
from ._affine import AbstractAffineGaussianProcess
from ._schedules import log1mexp


def log_coefficients(process: AbstractAffineGaussianProcess, t: Any, s: Any, dtype: Any) -> dict:
    """The logs of ``r = exp(logsnr_t - logsnr_s)``, ``1 - r``, ``alpha`` and ``sigma`` at both
    times, without cancellation."""
    t = jnp.asarray(t, dtype=dtype)
    s = jnp.asarray(s, dtype=dtype)
    log_r = process.logsnr(t) - process.logsnr(s)
    return dict(
        log_r=log_r,
        log_1mr=log1mexp(jnp.minimum(log_r, -1e-30)),
        log_a_t=jnp.log(process.alpha(t)),
        log_a_s=jnp.log(process.alpha(s)),
        log_sig_t=jnp.log(process.sigma(t)),
        log_sig_s=jnp.log(process.sigma(s)),
    )


VARIANCES: tuple[str, ...] = ("fixed_small", "fixed_large", "fixed_medium")


def _check_variance(variance: Any, intp_frac: Any) -> None:
    check_choice("variance", variance, VARIANCES)
    static_real("intp_frac", intp_frac, "a value in [0, 1]", lambda v: True)
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
    if not isinstance(process, AbstractAffineGaussianProcess):
        raise TypeError("posterior_coefficients needs an AbstractAffineGaussianProcess (x_t = "
                        f"alpha(t) x_0 + sigma(t) eps); got {type(process).__name__}.")
    _check_variance(variance, intp_frac)
    q = log_coefficients(process, t, s, jnp.result_type(t, s, float) if dtype is None else dtype)
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


__all__ = ["VARIANCES", "log_coefficients", "posterior_coefficients"]
