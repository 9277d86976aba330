"""Stochastic interpolants (SiT; Ma et al. 2024) as affine Gaussian processes.

An interpolant between data ``x_0`` and noise ``eps ~ N(0, I)`` is
``x_t = alpha(t) x_0 + sigma(t) eps``, which is exactly the marginal of an affine Gaussian
process. sdekit writes it in its own time convention, **t = 0 data, t = 1 noise**. SiT's code
runs the other way (its ``t = 0`` is noise, ``t = 1`` data); with ``s = 1 - t`` for SiT's time,
``alpha(t) = alpha_SiT(1 - t)``, ``sigma(t) = sigma_SiT(1 - t)``, every time derivative
changes sign, and SiT's velocity (pointing towards the data) is minus sdekit's velocity
``dx/dt`` (pointing towards the noise).

| path | ``alpha(t)`` | ``sigma(t)`` | ``f = alpha'/alpha`` | ``g^2 / 2`` (SiT's ``drift_var``) |
| --- | --- | --- | --- | --- |
| ``linear`` | ``1 - t`` | ``t`` | ``-1 / (1 - t)`` | ``t / (1 - t)`` |
| ``gvp`` | ``cos(pi t / 2)`` | ``sin(pi t / 2)`` | ``-(pi/2) tan(pi t / 2)`` | ``(pi/2) tan(pi t / 2)`` |
| ``vp`` | ``exp(-B(t) / 2)`` | ``sqrt(1 - alpha^2)`` | ``-beta(t) / 2`` | ``beta(t) / 2`` |

with ``beta(t) = beta_min + t (beta_max - beta_min)`` and ``B(t) = int_0^t beta`` (the ``vp``
path is sdekit's linear `VP` process; SiT calls ``beta_min``, ``beta_max`` ``sigma_min``,
``sigma_max``).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._custom_types import Array, Data, Time
from .._errors import arg_error, broadcast_time, check_choice, check_less, check_positive
from ._base import AbstractAffineGaussianProcess

PATHS: tuple[str, ...] = ("linear", "gvp", "vp")


def _float(t: Time) -> Array:
    return jnp.asarray(t, dtype=jnp.result_type(t, float))


class Interpolant(AbstractAffineGaussianProcess):
    """A SiT stochastic interpolant ``x_t = alpha(t) x_0 + sigma(t) eps`` (paths ``linear``,
    ``gvp``, ``vp``; see the module docstring for the formulas and the mapping to SiT's time).

    As a process it is the affine SDE ``dx = f(t) x dt + g(t) dW`` with these marginals
    (SiT's ``SBDM`` diffusion); other diffusion forms with the same marginals are sampler
    options ([`InterpolantSDE`][sdekit.sampling.InterpolantSDE]). Velocity predictions
    convert to noise, score and data through the stable forms

    ``eps = (alpha u - alpha' x) / (alpha sigma' - sigma alpha')`` and
    ``x_0 = (sigma' x - sigma u) / (alpha sigma' - sigma alpha')``

    (the denominator is 1 for ``linear`` and ``pi/2`` for ``gvp``), so a velocity model can be
    integrated from ``t = 1`` where ``f`` and ``g`` are infinite.

    **Arguments:** `path` (``linear``, ``gvp`` or ``vp``), `beta_min`/`beta_max` (``vp``
    only), `t0`/`t1` (the time domain; the default ``[0, 1]`` is SiT's for velocity models,
    use [`sit_interval`][sdekit.objectives.sit_interval] for the others).

    Every method takes ``t`` as a scalar or an array aligned with the leading axes of the data
    (per example, per channel, per position or per element).
    """

    path: str = "linear"
    beta_min: float = 0.1
    beta_max: float = 20.0
    t0: float = 0.0
    t1: float = 1.0

    def __check_init__(self):
        check_choice("path", self.path, PATHS)
        check_positive("beta_max", self.beta_max)
        if not 0.0 <= float(self.beta_min) <= float(self.beta_max):
            raise arg_error("beta_min", self.beta_min, f"a value in [0, beta_max={self.beta_max}]")
        check_less("t0", self.t0, "t1", self.t1)
        if float(self.t0) < 0.0 or float(self.t1) > 1.0:
            raise ValueError(
                f"arguments `t0` and `t1`: got t0={self.t0!r} and t1={self.t1!r}, expected "
                "0 <= t0 < t1 <= 1 (an interpolant is defined on [0, 1])."
            )

    # --- schedule --------------------------------------------------------------------------
    def beta(self, t: Time) -> Array:
        """``beta(t) = beta_min + t (beta_max - beta_min)`` (the ``vp`` path's rate)."""
        return self.beta_min + (self.beta_max - self.beta_min) * _float(t)

    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = beta_min t + (beta_max - beta_min) t^2 / 2`` (``vp`` path)."""
        t = _float(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def alpha(self, t: Time) -> Array:
        t = _float(t)
        if self.path == "linear":
            return 1.0 - t
        if self.path == "gvp":
            return jnp.cos(0.5 * math.pi * t)
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def sigma(self, t: Time) -> Array:
        t = _float(t)
        if self.path == "linear":
            return t
        if self.path == "gvp":
            return jnp.sin(0.5 * math.pi * t)
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def d_alpha(self, t: Time) -> Array:
        """``d alpha / dt`` (sdekit time; SiT's ``d_alpha_t`` is its negative at ``1 - t``)."""
        t = _float(t)
        if self.path == "linear":
            return -jnp.ones_like(t)
        if self.path == "gvp":
            return -0.5 * math.pi * jnp.sin(0.5 * math.pi * t)
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t: Time) -> Array:
        """``d sigma / dt`` (infinite at ``t = 0`` for ``vp``, as in SiT)."""
        t = _float(t)
        if self.path == "linear":
            return jnp.ones_like(t)
        if self.path == "gvp":
            return 0.5 * math.pi * jnp.cos(0.5 * math.pi * t)
        return 0.5 * self.beta(t) * self.alpha(t) ** 2 / self.sigma(t)

    def logsnr(self, t: Time) -> Array:
        if self.path == "vp":
            b = self.integrated_beta(t)
            return -b - jnp.log(-jnp.expm1(-b))
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def f(self, t: Time) -> Array:
        """``alpha'/alpha`` in the stable ratio form (minus SiT's ``d_alpha/alpha``)."""
        t = _float(t)
        if self.path == "linear":
            return -1.0 / (1.0 - t)
        if self.path == "gvp":
            return -0.5 * math.pi * jnp.tan(0.5 * math.pi * t)
        return -0.5 * self.beta(t)

    def drift_var(self, t: Time) -> Array:
        """SiT's ``drift_var = sigma sigma' - f sigma^2 = g^2 / 2`` (its ``SBDM`` diffusion)."""
        t = _float(t)
        if self.path == "linear":
            return t / (1.0 - t)
        if self.path == "gvp":
            return 0.5 * math.pi * jnp.tan(0.5 * math.pi * t)
        return 0.5 * self.beta(t)

    def g2(self, t: Time) -> Array:
        return 2.0 * self.drift_var(t)

    def prior_std(self) -> Array:
        return self.sigma(jnp.asarray(self.t1))

    # --- velocity conversions (stable forms) ----------------------------------------------
    def _coefs(self, t: Time, x: Data):
        t = broadcast_time(t, x)
        a, s = self.alpha(t), self.sigma(t)
        da, ds = self.d_alpha(t), self.d_sigma(t)
        if self.path == "linear":
            det = jnp.ones_like(t)
        elif self.path == "gvp":
            det = jnp.full_like(t, 0.5 * math.pi)
        else:  # alpha sigma' - sigma alpha' = alpha beta / (2 sigma) (alpha^2 + sigma^2)
            det = 0.5 * self.beta(t) * a / s
        return a, s, da, ds, det

    def velocity_to_eps(self, u: Data, x_t: Data, t: Time) -> Data:
        """Noise from a velocity ``u = dx/dt``: ``(alpha u - alpha' x) / (alpha sigma' - sigma alpha')``."""
        a, _, da, _, det = self._coefs(t, x_t)
        return (a * u - da * x_t) / det

    def eps_to_velocity(self, eps: Data, x_t: Data, t: Time) -> Data:
        """Velocity from a noise prediction: ``(alpha' x + (alpha sigma' - sigma alpha') eps) / alpha``."""
        a, _, da, _, det = self._coefs(t, x_t)
        return (da * x_t + det * eps) / a

    def velocity_to_x0(self, u: Data, x_t: Data, t: Time) -> Data:
        """Data from a velocity: ``(sigma' x - sigma u) / (alpha sigma' - sigma alpha')``
        (for ``linear``: ``x - t u``)."""
        _, s, _, ds, det = self._coefs(t, x_t)
        return (ds * x_t - s * u) / det

    def conditional_velocity(self, x0: Data, eps: Data, t: Time) -> Data:
        """The training target ``u = alpha'(t) x_0 + sigma'(t) eps`` (minus SiT's ``u_t``)."""
        t = broadcast_time(t, x0)
        return self.d_alpha(t) * x0 + self.d_sigma(t) * eps


def sit_time(t: Time) -> Array:
    """SiT's time of sdekit's ``t`` (and back): ``1 - t`` (SiT: 0 noise, 1 data)."""
    return 1.0 - _float(t)


__all__ = ["PATHS", "Interpolant", "sit_time"]
