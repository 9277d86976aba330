r"""VDPM's variational-bound objective (Kingma et al. 2021, "Variational Diffusion Models";
Ho et al. 2020, eq. 5), in bits per dimension, with the reference code's conventions.

One call samples one term of the bound: $t$ snapped up to the sampling grid $1/T, \dots, 1$
and $s = t - 1/T$;

- for $s > 0$, $\mathrm{KL}\big(q(x_s \mid x_t, x_0)\,\|\,p_\theta(x_s \mid x_t)\big)$ with the
  true posterior's ``fixed_small`` variance against the model's variance choice,
  $\mathrm{KL}(\mathcal N(\mu_1, e^{\ell_1}) \| \mathcal N(\mu_2, e^{\ell_2})) =
  \tfrac12(-1 + \ell_2 - \ell_1 + e^{\ell_1 - \ell_2} + (\mu_1 - \mu_2)^2 e^{-\ell_2})$;
- for $s = 0$, the decoder's negative log-likelihood of $x_0$ under a Gaussian with mean
  $\hat x_0$, discretised to 256 bins of width $2/255$ on $[-1, 1]$ (edge bins to
  $\pm\infty$; the normal CDF in its tanh approximation, a $10^{-12}$ floor in the log).

Both are averaged over dimensions and divided by $\ln 2$; the sampled term is not multiplied
by $T$ (as the reference).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array, Data, Key
from .._model import call_model
from .._validate import arg_error, static_int
from ..parameterisation import AbstractPrediction, convert, prediction
from ..processes import AbstractAffineGaussianProcess
from ..processes._posterior import _check_variance, posterior_coefficients
from ._base import AbstractObjective, mean_per_example
from ._time import AbstractTimeSampler, DiscreteTime
from ._weighting import AbstractWeighting, Constant


def approx_std_normal_cdf(z: Array) -> Array:
    """The tanh approximation of the standard normal CDF (DDPM, VDPM):
    ``(1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) / 2``."""
    return 0.5 * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))


def discretized_gaussian_nll_bpd(x0: Data, mean: Data, log_var: Data) -> Array:
    """``-log p(x0)`` per example in bits/dim under a Gaussian of mean ``mean`` and
    log-variance ``log_var`` discretised to 256 bins on ``[-1, 1]`` (bins ``x +- 1/255``; edge
    bins to ``+-inf``; tanh CDF; a ``1e-12`` floor)."""
    inv_std = jnp.exp(-0.5 * log_var)
    c = x0 - mean
    cdf_plus = approx_std_normal_cdf(inv_std * (c + 1.0 / 255.0))
    cdf_min = approx_std_normal_cdf(inv_std * (c - 1.0 / 255.0))
    log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, 1e-12))
    log_1m_cdf_min = jnp.log(jnp.maximum(1.0 - cdf_min, 1e-12))
    log_delta = jnp.log(jnp.maximum(cdf_plus - cdf_min, 1e-12))
    logp = jnp.where(x0 < -0.999, log_cdf_plus, jnp.where(x0 > 0.999, log_1m_cdf_min, log_delta))
    return -mean_per_example(logp) / math.log(2.0)


def gaussian_kl_bpd(mean1: Data, log_var1: Any, mean2: Data, log_var2: Any) -> Array:
    """``KL(N(mean1, e^lv1) || N(mean2, e^lv2))`` averaged over dims, in bits/dim, per example."""
    kl = 0.5 * (-1.0 + log_var2 - log_var1 + jnp.exp(log_var1 - log_var2)
                + (mean1 - mean2) ** 2 * jnp.exp(-log_var2))
    kl = jnp.broadcast_to(kl, jnp.broadcast_shapes(jnp.shape(kl), jnp.shape(mean1)))
    return mean_per_example(kl) / math.log(2.0)


def vlb_terms(process: AbstractAffineGaussianProcess, x0: Data, x_t: Data, x0_hat: Data,
              t: Any, s: Any, variance: str = "fixed_large",
              intp_frac: float = 0.0) -> tuple[Array, Array]:
    """``(kl, decoder_nll)`` per example in bits/dim for the step ``t -> s``: the KL between the
    true posterior (``fixed_small``) and the model's (``variance``), and the decoder NLL of
    ``x0`` under mean ``x0_hat`` and the model's log-variance."""

    def per_example(v):
        v = jnp.asarray(v, x_t.dtype)
        return v.reshape(v.shape + (1,) * (x_t.ndim - v.ndim)) if v.ndim else v

    c_xt, c_x0, lv_true = posterior_coefficients(process, t, s, "fixed_small", dtype=x_t.dtype)
    _, _, lv_model = posterior_coefficients(process, t, s, variance, intp_frac, dtype=x_t.dtype)
    c_xt, c_x0, lv_true, lv_model = map(per_example, (c_xt, c_x0, lv_true, lv_model))
    mean_true = c_xt * x_t + c_x0 * x0
    mean_model = c_xt * x_t + c_x0 * x0_hat
    kl = gaussian_kl_bpd(mean_true, lv_true, mean_model, lv_model)
    nll = discretized_gaussian_nll_bpd(x0, x0_hat, jnp.broadcast_to(lv_model, x0.shape))
    return kl, nll


class VLB(AbstractObjective):
    """One sampled term of the variational bound in bits/dim (VDPM's ``--loss-type kl``; see
    the module docstring).

    **Arguments:**

    - `process`: an affine Gaussian process (VDPM: `LogSNR`).
    - `prediction`: what the network outputs (its data prediction is not clipped).
    - `num_timesteps`: the sampling grid's ``T`` the times are snapped to.
    - `variance`, `intp_frac`: the model's posterior variance (``fixed_small``,
      ``fixed_large``, ``fixed_medium``).
    - `time_sampler`: default ``DiscreteTime(num_timesteps)``.
    """

    process: AbstractAffineGaussianProcess
    prediction: AbstractPrediction = eqx.field(default="eps", converter=prediction)
    num_timesteps: int = eqx.field(static=True, default=1000)
    variance: str = eqx.field(static=True, default="fixed_large")
    intp_frac: float = 0.0
    time_sampler: AbstractTimeSampler | None = None
    weighting: AbstractWeighting = Constant()

    def __check_init__(self):
        if not isinstance(self.process, AbstractAffineGaussianProcess):
            raise arg_error("process", type(self.process).__name__,
                            "an AbstractAffineGaussianProcess (VDPM: LogSNR)")
        static_int("num_timesteps", self.num_timesteps, 1)
        _check_variance(self.variance, self.intp_frac)

    def default_times(self) -> AbstractTimeSampler:
        return DiscreteTime(self.num_timesteps)

    def per_example(self, model: Callable, x0: Data, t: Any, eps: Data, cond: Any = None,
                    key: Key | None = None, *, aux: Any = None) -> Array:
        """The sampled term per example (bits/dim) at times ``t`` (snapped up to the grid)."""
        n = self.num_timesteps
        t = jnp.clip(jnp.ceil(t * n), 1, n) / n
        s = jnp.maximum(t - 1.0 / n, 0.0)
        x_t = self.process.perturb(x0, t, eps)
        out = call_model(model, x_t, t, cond, key)
        x0_hat = convert(self.process, out, x_t, t, source=self.prediction, target="x0")
        s_safe = jnp.where(s > 0, s, 0.5 / n)
        kl, _ = vlb_terms(self.process, x0, x_t, x0_hat, t, s_safe, self.variance, self.intp_frac)
        _, nll = vlb_terms(self.process, x0, x_t, x0_hat, t, s, self.variance, self.intp_frac)
        return jnp.where(s > 0, kl, nll)


__all__ = [
    "VLB",
    "approx_std_normal_cdf",
    "discretized_gaussian_nll_bpd",
    "gaussian_kl_bpd",
    "vlb_terms",
]
