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
| ``gvp`` | ``cos(pi t/2)`` | ``sin(pi t/2)`` | ``-(pi/2) tan(pi t/2)`` | ``(pi/2) tan(pi t/2)`` |
| ``vp`` | ``exp(-B(t) / 2)`` | ``sqrt(1 - alpha^2)`` | ``-beta(t) / 2`` | ``beta(t) / 2`` |

with ``beta(t) = beta_min + t (beta_max - beta_min)`` and ``B(t) = int_0^t beta`` (the ``vp``
path is sdekit's linear `VP` process; SiT calls ``beta_min``, ``beta_max`` ``sigma_min``,
``sigma_max``).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array, Data, ScalarTime, Time
from .._validate import arg_error, broadcast_time, check_choice, check_order, static_float
from ._affine import AbstractAffineGaussianProcess
from ._schedules import AbstractSchedule, LinearBetaSchedule

PATHS: tuple[str, ...] = ("linear", "gvp", "vp")


def _float(t: Time) -> Array:
    return jnp.asarray(t, dtype=jnp.result_type(t, float))


class LinearInterpolantSchedule(AbstractSchedule):
    """SiT's ``Linear`` path (rectified flow): ``alpha(t) = 1 - t``, ``sigma(t) = t`` (sdekit
    time), with closed forms ``f = -1/(1 - t)``, ``g^2 = 2 t/(1 - t)`` and the inverses
    ``t = 1 / (1 + exp(logsnr / 2))``, ``t = s / (1 + s)`` for ``s = sigma/alpha``."""

    def alpha(self, t: Time) -> Array:
        return 1.0 - _float(t)

    def sigma(self, t: Time) -> Array:
        return _float(t)

    def d_alpha(self, t: Time) -> Array:
        """``d alpha / dt = -1``."""
        return -jnp.ones_like(_float(t))

    def d_sigma(self, t: Time) -> Array:
        """``d sigma / dt = 1``."""
        return jnp.ones_like(_float(t))

    def f(self, t: Time) -> Array:
        return -1.0 / (1.0 - _float(t))

    def g2(self, t: Time) -> Array:
        t = _float(t)
        return 2.0 * t / (1.0 - t)

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        return 1.0 / (1.0 + jnp.exp(0.5 * _float(logsnr)))

    def t_from_scaled_sigma(self, sigma: Any, **kwargs: Any) -> Array:
        s = _float(sigma)
        return s / (1.0 + s)


class GVPSchedule(AbstractSchedule):
    """SiT's ``GVP`` path (generalised variance preserving, ``alpha^2 + sigma^2 = 1``):
    ``alpha(t) = cos(pi t / 2)``, ``sigma(t) = sin(pi t / 2)`` (sdekit time), with closed forms
    ``f = -(pi/2) tan(pi t / 2)``, ``g^2 = pi tan(pi t / 2)`` and
    ``t = (2/pi) atan(sigma/alpha)``. ``alpha`` is evaluated as ``sin(pi (1 - t) / 2)`` and the
    tangent as ``sigma / alpha``, so that ``alpha(1) = 0`` exactly in floating point (``cos``
    of the rounded ``pi / 2`` is ``-4e-8`` in float32) and ``f``, ``g^2`` and the log-SNR keep
    their sign and reach their limits (0, infinity) at both ends."""

    def alpha(self, t: Time) -> Array:
        return jnp.sin(0.5 * math.pi * (1.0 - _float(t)))

    def sigma(self, t: Time) -> Array:
        return jnp.sin(0.5 * math.pi * _float(t))

    def d_alpha(self, t: Time) -> Array:
        """``d alpha / dt = -(pi/2) sin(pi t / 2)``."""
        return -0.5 * math.pi * jnp.sin(0.5 * math.pi * _float(t))

    def d_sigma(self, t: Time) -> Array:
        """``d sigma / dt = (pi/2) cos(pi t / 2)``."""
        return 0.5 * math.pi * jnp.sin(0.5 * math.pi * (1.0 - _float(t)))

    def _tan(self, t: Time) -> Array:
        return self.sigma(t) / self.alpha(t)  # tan(pi t / 2), exact 0 and inf at the ends

    def logsnr(self, t: Time) -> Array:
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def f(self, t: Time) -> Array:
        return -0.5 * math.pi * self._tan(t)

    def g2(self, t: Time) -> Array:
        return math.pi * self._tan(t)

    def prior_std(self, t1: ScalarTime) -> Array:
        return self.sigma(_float(t1))

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        return 2.0 / math.pi * jnp.arctan(jnp.exp(-0.5 * _float(logsnr)))

    def t_from_scaled_sigma(self, sigma: Any, **kwargs: Any) -> Array:
        return 2.0 / math.pi * jnp.arctan(_float(sigma))


def _schedule(path: str, beta_min: Any, beta_max: Any) -> AbstractSchedule:
    check_choice("path", path, PATHS)
    if path == "linear":
        return LinearInterpolantSchedule()
    if path == "gvp":
        return GVPSchedule()
    return LinearBetaSchedule(beta_min, beta_max)


class Interpolant(AbstractAffineGaussianProcess):
    """A SiT stochastic interpolant ``x_t = alpha(t) x_0 + sigma(t) eps`` (paths ``linear``,
    ``gvp``, ``vp``; see the module docstring for the formulas and the mapping to SiT's time).

    It is the affine process of its schedule
    ([`LinearInterpolantSchedule`][sdekit.processes.LinearInterpolantSchedule],
    [`GVPSchedule`][sdekit.processes.GVPSchedule] or, for ``vp``,
    ``LinearBetaSchedule``): the SDE
    ``dx = f(t) x dt + g(t) dW`` with these marginals is SiT's ``SBDM`` diffusion; other
    diffusion forms with the same marginals are sampler options
    ([`InterpolantSDE`][sdekit.sampling.InterpolantSDE]). Velocity predictions convert to
    noise, score and data through the stable forms

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

    schedule: AbstractSchedule
    path: str = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, path: str = "linear", beta_min: Any = 0.1, beta_max: Any = 20.0,
                 t0: Any = 0.0, t1: Any = 1.0):
        self.schedule = _schedule(path, beta_min, beta_max)
        self.path = path
        self.t0 = static_float("t0", t0)
        self.t1 = static_float("t1", t1)
        check_order("t0", self.t0, "t1", self.t1)
        if self.t0 < 0.0 or self.t1 > 1.0:
            raise arg_error("t1" if self.t1 > 1.0 else "t0", self.t1 if self.t1 > 1.0 else self.t0,
                            "0 <= t0 < t1 <= 1 (an interpolant is defined on [0, 1])")

    # --- schedule extras -------------------------------------------------------------------
    def beta(self, t: Time) -> Array:
        """``beta(t) = beta_min + t (beta_max - beta_min)`` (``vp`` path only)."""
        return self._vp("beta").beta(t)

    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = beta_min t + (beta_max - beta_min) t^2 / 2`` (``vp`` path only)."""
        return self._vp("integrated_beta").integrated_beta(t)

    def _vp(self, what: str) -> LinearBetaSchedule:
        if not isinstance(self.schedule, LinearBetaSchedule):
            raise TypeError(f"Interpolant.{what} exists for path='vp' only; got {self.path!r}.")
        return self.schedule

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
            det = 0.5 * self.schedule.beta(t) * a / s
        return a, s, da, ds, det

    def velocity_to_eps(self, u: Data, x_t: Data, t: Time) -> Data:
        """Noise from a velocity ``u = dx/dt``:
        ``(alpha u - alpha' x) / (alpha sigma' - sigma alpha')``."""
        a, _, da, _, det = self._coefs(t, x_t)
        return (a * u - da * x_t) / det

    def eps_to_velocity(self, eps: Data, x_t: Data, t: Time) -> Data:
        """Velocity from a noise prediction:
        ``(alpha' x + (alpha sigma' - sigma alpha') eps) / alpha``."""
        a, _, da, _, det = self._coefs(t, x_t)
        return (da * x_t + det * eps) / a

    def score_to_velocity(self, score: Data, x_t: Data, t: Time) -> Data:
        """Velocity of a score, through the noise (finite where ``f`` and ``g`` are not)."""
        return self.eps_to_velocity(self.score_to_eps(score, x_t, t), x_t, t)

    def velocity_to_score(self, velocity: Data, x_t: Data, t: Time) -> Data:
        """Score of a velocity, through the noise (finite where ``f`` and ``g`` are not)."""
        return self.eps_to_score(self.velocity_to_eps(velocity, x_t, t), x_t, t)

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


__all__ = ["PATHS", "GVPSchedule", "Interpolant", "LinearInterpolantSchedule", "sit_time"]
