"""Variance-preserving diffusion parameterised by its log-SNR (VDPM; Kingma et al., Salimans & Ho).

See ``spec/vdpm.md`` section 1: ``alpha^2 = sigmoid(lambda)``, ``sigma^2 = sigmoid(-lambda)`` and
four schedules ``lambda(t)``. Non-legacy schedules are truncated to ``[logsnr_min, logsnr_max]`` by
an affine re-mapping of ``t``, so ``lambda(0) = logsnr_max`` and ``lambda(1) = logsnr_min``
exactly. The formulas are written without cancellation, so float32 is accurate; under
``jax.enable_x64`` and float64 times they agree with the reference to ~1e-12.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._custom_types import Array, Time
from .._errors import check_choice, check_less
from ._base import AbstractAffineGaussianProcess

SCHEDULES = ("linear", "sigmoid", "cosine", "legacy")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def log1mexp(x: Array) -> Array:
    """``log(1 - exp(x))`` for ``x < 0`` without cancellation."""
    return jnp.where(x < -9.0, jnp.log1p(-jnp.exp(x)), jnp.log(-jnp.expm1(x)))


class LogSNR(AbstractAffineGaussianProcess):
    """VP diffusion with a log-SNR schedule: ``linear``, ``sigmoid``, ``cosine`` or ``legacy``.

    - ``linear``: ``alpha^2`` linear in ``u``; ``lambda = logit(u)``.
    - ``sigmoid``: ``lambda(t) = logsnr_max - t (logsnr_max - logsnr_min)``.
    - ``cosine``: ``alpha = cos(pi u / 2)``; ``lambda = -2 log tan(pi u / 2)``.
    - ``legacy``: continuous DDPM linear-beta (1e-4 .. 0.02 over 1000 steps); ignores the range.

    ``u(t) = u_from + (u_to - u_from) t`` with ``u_from = g^{-1}(logsnr_max)``,
    ``u_to = g^{-1}(logsnr_min)``.
    """

    schedule: str = "cosine"
    logsnr_min: float = -20.0
    logsnr_max: float = 20.0
    t0: float = 0.0
    t1: float = 1.0

    def __check_init__(self):
        check_choice("schedule", self.schedule, SCHEDULES)
        check_less("logsnr_min", self.logsnr_min, "logsnr_max", self.logsnr_max)
        check_less("t0", self.t0, "t1", self.t1)

    def logsnr(self, t: Time) -> Array:
        t = jnp.asarray(t, dtype=jnp.result_type(t, float))
        lo, hi = self.logsnr_min, self.logsnr_max
        if self.schedule == "sigmoid":
            return hi - t * (hi - lo)
        if self.schedule == "linear":
            # u and 1 - u as affine maps of t, each computed without cancellation.
            u = _sigmoid(hi) * (1.0 - t) + _sigmoid(lo) * t
            v = _sigmoid(-hi) * (1.0 - t) + _sigmoid(-lo) * t
            return jnp.log(u) - jnp.log(v)
        if self.schedule == "cosine":
            # u_from = (2/pi) atan(exp(-hi/2)); 1 - u_to = (2/pi) atan(exp(lo/2)).
            u_from = 2.0 / math.pi * math.atan(math.exp(-hi / 2))
            w_to = 2.0 / math.pi * math.atan(math.exp(lo / 2))
            u = u_from + (1.0 - w_to - u_from) * t
            w = (1.0 - u_from) * (1.0 - t) + w_to * t  # 1 - u
            small_u = -2.0 * jnp.log(jnp.tan(0.5 * math.pi * jnp.minimum(u, 0.5)))
            small_w = 2.0 * jnp.log(jnp.tan(0.5 * math.pi * jnp.minimum(w, 0.5)))
            return jnp.where(u <= 0.5, small_u, small_w)
        # legacy: log alphabar(t) = 1000 int_0^t log(1 - beta(u)) du, beta from 1e-4 to 0.02.
        # Written as 1000 t [log a - sum_k r^k / (k (k+1))], a = 0.9999, r = 0.0199 t / a, which
        # has no cancellation in float32 (the series converges like 0.02^k).
        r = (0.0199 / 0.9999) * t
        series = jnp.zeros_like(t)
        for k in range(8, 0, -1):
            series = (series + 1.0 / (k * (k + 1))) * r
        log_abar = jnp.minimum(1000.0 * t * (math.log(0.9999) - series), 0.0)
        return log_abar - log1mexp(log_abar - 1e-9)

    def alpha(self, t: Time) -> Array:
        return jnp.exp(0.5 * jax.nn.log_sigmoid(self.logsnr(t)))

    def sigma(self, t: Time) -> Array:
        return jnp.exp(0.5 * jax.nn.log_sigmoid(-self.logsnr(t)))

    def _dlogsnr(self, t: Time) -> tuple[Array, Array]:
        t = jnp.asarray(t, dtype=jnp.result_type(t, float))
        return jax.jvp(self.logsnr, (t,), (jnp.ones_like(t),))

    def f(self, t: Time) -> Array:
        lam, dlam = self._dlogsnr(t)
        return 0.5 * jax.nn.sigmoid(-lam) * dlam

    def g2(self, t: Time) -> Array:
        lam, dlam = self._dlogsnr(t)
        return -jax.nn.sigmoid(-lam) * dlam

    def prior_std(self) -> Array:
        return self.sigma(jnp.asarray(self.t1))
