"""Scalar-schedule Gaussian processes: VP, sub-VP, VE and EDM (score_sde, Karras et al.)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._custom_types import Array, Time
from .._errors import check_choice, check_less, check_positive
from ._base import AbstractAffineGaussianProcess


class VP(AbstractAffineGaussianProcess):
    """Variance-preserving SDE ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dW`` (Song et al., 2021).

    ``schedule="linear"``: ``beta(t) = beta_min + t (beta_max - beta_min)``, so
    ``alpha(t) = exp(-B(t)/2)`` with ``B(t) = int_0^t beta``.

    ``schedule="cosine"`` (Nichol & Dhariwal): ``alpha(t) = cos(phi(t)) / cos(phi(0))`` with
    ``phi(t) = pi/2 (t + s)/(1 + s)``, ``s = 0.008``; ``beta(t) = pi/(1+s) tan(phi(t))`` diverges
    at ``t = 1``, so its default ``t1`` is 0.999.

    In both cases ``sigma(t)^2 = 1 - alpha(t)^2`` and the prior is ``N(0, I)``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    schedule: str = "linear"
    cosine_s: float = 0.008
    t0: float = 1e-5
    t1: float = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.t1 is None:
            self.t1 = 0.999 if self.schedule == "cosine" else 1.0

    def __check_init__(self):
        check_choice("schedule", self.schedule, ("linear", "cosine"))
        check_positive("beta_max", self.beta_max)
        if self.beta_min < 0:
            raise ValueError(f"argument `beta_min`: got {self.beta_min!r}, expected a value >= 0.")
        if self.beta_min > self.beta_max:
            raise ValueError(
                f"arguments `beta_min` and `beta_max`: got {self.beta_min!r} and {self.beta_max!r}, "
                "expected beta_min <= beta_max."
            )
        check_less("t0", self.t0, "t1", self.t1)

    def _phi(self, t):
        return 0.5 * math.pi * (t + self.cosine_s) / (1.0 + self.cosine_s)

    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = int_0^t beta(s) ds = -2 log alpha(t)``."""
        t = jnp.asarray(t)
        if self.schedule == "linear":
            return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        c0 = math.cos(self._phi(0.0))
        return -2.0 * (jnp.log(jnp.cos(self._phi(t))) - math.log(c0))

    def beta(self, t: Time) -> Array:
        t = jnp.asarray(t)
        if self.schedule == "linear":
            return self.beta_min + (self.beta_max - self.beta_min) * t
        return math.pi / (1.0 + self.cosine_s) * jnp.tan(self._phi(t))

    def alpha(self, t: Time) -> Array:
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def sigma(self, t: Time) -> Array:
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def logsnr(self, t: Time) -> Array:
        b = self.integrated_beta(t)
        return -b - jnp.log(-jnp.expm1(-b))

    def f(self, t: Time) -> Array:
        return -0.5 * self.beta(t)

    def g2(self, t: Time) -> Array:
        return self.beta(t)

    def prior_std(self) -> Array:
        return jnp.asarray(1.0)


class SubVP(AbstractAffineGaussianProcess):
    """Sub-VP SDE ``dx = -beta/2 x dt + sqrt(beta (1 - exp(-2 B(t)))) dW`` (Song et al., 2021).

    ``alpha = exp(-B/2)``, ``sigma = 1 - exp(-B)``, linear ``beta``; prior ``N(0, I)``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t0: float = 1e-5
    t1: float = 1.0

    def __check_init__(self):
        check_positive("beta_max", self.beta_max)
        if not 0 <= self.beta_min <= self.beta_max:
            raise ValueError(
                f"arguments `beta_min` and `beta_max`: got {self.beta_min!r} and {self.beta_max!r}, "
                "expected 0 <= beta_min <= beta_max."
            )
        check_less("t0", self.t0, "t1", self.t1)

    def integrated_beta(self, t: Time) -> Array:
        t = jnp.asarray(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def beta(self, t: Time) -> Array:
        return self.beta_min + (self.beta_max - self.beta_min) * jnp.asarray(t)

    def alpha(self, t: Time) -> Array:
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def sigma(self, t: Time) -> Array:
        return -jnp.expm1(-self.integrated_beta(t))

    def f(self, t: Time) -> Array:
        return -0.5 * self.beta(t)

    def g2(self, t: Time) -> Array:
        return self.beta(t) * -jnp.expm1(-2.0 * self.integrated_beta(t))

    def prior_std(self) -> Array:
        return jnp.asarray(1.0)


class VE(AbstractAffineGaussianProcess):
    """Variance-exploding SDE with a geometric sigma (Song et al., 2021).

    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, ``alpha = 1``, ``f = 0``,
    ``g^2 = d sigma^2 / dt = 2 sigma^2 log(sigma_max / sigma_min)``. As in score_sde, the state at
    ``t = 0`` already carries noise ``sigma_min``; the prior is ``N(0, sigma_max^2 I)``.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t0: float = 1e-5
    t1: float = 1.0

    def __check_init__(self):
        check_positive("sigma_min", self.sigma_min)
        check_less("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)
        check_less("t0", self.t0, "t1", self.t1)

    def alpha(self, t: Time) -> Array:
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def sigma(self, t: Time) -> Array:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** jnp.asarray(t)

    def logsnr(self, t: Time) -> Array:
        return -2.0 * jnp.log(self.sigma(t))

    def f(self, t: Time) -> Array:
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def g2(self, t: Time) -> Array:
        return 2.0 * math.log(self.sigma_max / self.sigma_min) * self.sigma(t) ** 2


class EDM(AbstractAffineGaussianProcess):
    """Karras et al. (2022): ``sigma(t) = t``, ``alpha = 1``, ``dx = sqrt(2t) dW``.

    Time is the noise level itself, so ``t0 = sigma_min`` and ``t1 = sigma_max``;
    ``sigma_data`` is used by the preconditioning and the ``karras`` weighting.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    t0: float = None  # type: ignore[assignment]
    t1: float = None  # type: ignore[assignment]

    def __post_init__(self):
        self.t0 = self.sigma_min if self.t0 is None else self.t0
        self.t1 = self.sigma_max if self.t1 is None else self.t1

    def __check_init__(self):
        check_positive("sigma_min", self.sigma_min)
        check_less("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)
        check_positive("sigma_data", self.sigma_data)

    def alpha(self, t: Time) -> Array:
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def sigma(self, t: Time) -> Array:
        return jnp.asarray(t, dtype=jnp.result_type(t, float))

    def logsnr(self, t: Time) -> Array:
        return -2.0 * jnp.log(jnp.asarray(t))

    def f(self, t: Time) -> Array:
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def g2(self, t: Time) -> Array:
        return 2.0 * jnp.asarray(t)
