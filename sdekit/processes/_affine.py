"""Affine Gaussian processes ``p(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I)`` from a schedule.

Every affine process holds a [`AbstractSchedule`][sdekit.processes.AbstractSchedule] (``alpha``,
``sigma``, their log-SNR, the SDE coefficients and the inverses) and a static time domain
``[t0, t1]``; the SDE, the marginals, the prior and the parameterisation conversions are written
once here in terms of the schedule. [`AffineProcess`][sdekit.processes.AffineProcess] takes any
schedule; `VP`, `SubVP`, `VE`, `EDM` and `LogSNR` are affine processes with named constructors.
"""

import math
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Batch, Dims, Key, PerExample, Shape, Time, TimeT
from .._validate import arg_error, broadcast_time, static_float
from ._base import AbstractGaussianProcess, check_time_domain
from ._schedules import AbstractSchedule


class AbstractAffineGaussianProcess(AbstractGaussianProcess):
    """Gaussian process with ``p(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I)``.

    The SDE is ``dx = f(t) x dt + g(t) dW`` with ``f = d log alpha / dt`` and
    ``g^2 = d sigma^2 / dt - 2 f sigma^2``. Concrete processes hold a `schedule`
    (an [`AbstractSchedule`][sdekit.processes.AbstractSchedule]) and the static time domain
    ``t0``, ``t1``; every method here is written in terms of the schedule, so samplers and
    objectives never need to know which process they have.
    """

    schedule: eqx.AbstractVar[AbstractSchedule]
    t0: eqx.AbstractVar[float]
    t1: eqx.AbstractVar[float]

    def __check_init__(self):
        if not isinstance(self.schedule, AbstractSchedule):
            raise arg_error("schedule", type(self.schedule).__name__, "an AbstractSchedule")
        check_time_domain(self.t0, self.t1)  # before evaluating the schedule there
        self.schedule.check_times(self.t0, self.t1)

    # --- the schedule --------------------------------------------------------------------------
    def alpha(self, t: Time) -> Array:
        """Signal scale ``alpha(t)``."""
        return self.schedule.alpha(t)

    def sigma(self, t: Time) -> Array:
        """Noise scale ``sigma(t)``."""
        return self.schedule.sigma(t)

    def logsnr(self, t: Time) -> Array:
        """``log(alpha^2 / sigma^2)``."""
        return self.schedule.logsnr(t)

    def f(self, t: Time) -> Array:
        """Drift coefficient ``f(t) = d log alpha / dt``."""
        return self.schedule.f(t)

    def g2(self, t: Time) -> Array:
        """Squared diffusion ``g(t)^2 = d sigma^2/dt - 2 f(t) sigma(t)^2``."""
        return self.schedule.g2(t)

    def d_alpha(self, t: Time) -> Array:
        """``d alpha / dt`` (the schedule's closed form, or forward-mode autodiff)."""
        return self.schedule.d_alpha(t)

    def d_sigma(self, t: Time) -> Array:
        """``d sigma / dt`` (the schedule's closed form, or forward-mode autodiff)."""
        return self.schedule.d_sigma(t)

    def drift_var(self, t: Time) -> Array:
        """``g(t)^2 / 2`` (SiT's ``drift_var``, the diffusion of its ``SBDM`` form)."""
        return 0.5 * self.g2(t)

    def noise_scale(self, t: Time) -> Array:
        """The scale of the noise in the transition: ``sigma(t)``."""
        return self.sigma(t)

    def scaled_sigma(self, t: Time) -> Array:
        """``sigma(t) / alpha(t) = exp(-logsnr(t) / 2)``, the noise level of ``x_t / alpha(t)``."""
        return jnp.exp(-0.5 * self.logsnr(t))

    def t_from_logsnr(self, logsnr: Any, *, iters: int = 64) -> Array:
        """The time with ``logsnr(t) = logsnr``: the schedule's closed form, or a bisection on
        ``[0, t1]`` (values outside the range clamped to it)."""
        return self.schedule.t_from_logsnr(logsnr, t_min=0.0, t_max=self.t1, iters=iters)

    def t_from_scaled_sigma(self, sigma: Any, *, iters: int = 64) -> Array:
        """The time with ``sigma(t) / alpha(t) = sigma``: the schedule's closed form, or a
        bisection of the log-SNR on ``[0, t1]`` (values outside the range clamped to it)."""
        return self.schedule.t_from_scaled_sigma(sigma, t_min=0.0, t_max=self.t1, iters=iters)

    # --- SDE -----------------------------------------------------------------------------------
    def drift(self, t: TimeT, x: Dims) -> Dims:
        return self.f(broadcast_time(t, x)) * x

    def diffusion(self, t: TimeT, x: Dims) -> Dims:
        return jnp.broadcast_to(jnp.sqrt(self.g2(broadcast_time(t, x))), x.shape)

    # --- marginals -----------------------------------------------------------------------------
    def marginal(self, x0: Dims, t: TimeT) -> tuple[Dims, Dims]:
        t = broadcast_time(t, x0)
        return self.alpha(t) * x0, jnp.broadcast_to(self.sigma(t), x0.shape)

    def perturb(self, x0: Dims, t: TimeT, eps: Dims) -> Dims:
        t = broadcast_time(t, x0)
        return self.alpha(t) * x0 + self.sigma(t) * eps

    def conditional_score(self, x_t: Dims, x0: Dims, t: TimeT) -> Dims:
        t = broadcast_time(t, x_t)
        return -(x_t - self.alpha(t) * x0) / self.sigma(t) ** 2

    # --- prior ---------------------------------------------------------------------------------
    def prior_std(self) -> Array:
        """Standard deviation of the prior ``N(0, prior_std^2 I)`` (``sigma(t1)``, or 1 for the
        variance-preserving schedules)."""
        return self.schedule.prior_std(self.t1)

    def prior_sample(self, key: Key, shape: Shape) -> Batch:
        return self.prior_std() * jr.normal(key, tuple(shape))

    def prior_log_prob(self, z: Batch) -> PerExample:
        s = self.prior_std()
        lp = -0.5 * (z / s) ** 2 - jnp.log(s) - 0.5 * math.log(2 * math.pi)
        return jnp.sum(lp.reshape(lp.shape[0], -1), axis=-1)

    # --- parameterisation conversions ----------------------------------------------------------
    def eps_to_score(self, eps: Dims, x_t: Dims, t: TimeT) -> Dims:
        return -eps / self.sigma(broadcast_time(t, x_t))

    def score_to_eps(self, score: Dims, x_t: Dims, t: TimeT) -> Dims:
        return -score * self.sigma(broadcast_time(t, x_t))

    def eps_to_x0(self, eps: Dims, x_t: Dims, t: TimeT) -> Dims:
        t = broadcast_time(t, x_t)
        return (x_t - self.sigma(t) * eps) / self.alpha(t)

    def x0_to_eps(self, x0: Dims, x_t: Dims, t: TimeT) -> Dims:
        t = broadcast_time(t, x_t)
        return (x_t - self.alpha(t) * x0) / self.sigma(t)

    def v_to_eps(self, v: Dims, x_t: Dims, t: TimeT) -> Dims:
        """``eps`` from ``v = alpha eps - sigma x0`` (Salimans & Ho), for any alpha, sigma."""
        t = broadcast_time(t, x_t)
        a, s = self.alpha(t), self.sigma(t)
        return (s * x_t + a * v) / (a**2 + s**2)

    def eps_to_v(self, eps: Dims, x_t: Dims, t: TimeT) -> Dims:
        """``v = alpha eps - sigma x0`` from a noise prediction."""
        t = broadcast_time(t, x_t)
        a, s = self.alpha(t), self.sigma(t)
        x0 = (x_t - s * eps) / a
        return a * eps - s * x0


def _t0(v: Any) -> float:
    return static_float("t0", v)


def _t1(v: Any) -> float:
    return static_float("t1", v)


class AffineProcess(AbstractAffineGaussianProcess):
    """The affine Gaussian process of any schedule: ``x_t = alpha(t) x_0 + sigma(t) eps``,
    ``dx = f(t) x dt + g(t) dW`` on ``[t0, t1]``, prior ``N(0, prior_std^2 I)``.

    **Arguments:**

    - `schedule`: an [`AbstractSchedule`][sdekit.processes.AbstractSchedule] (e.g.
      ``LinearBetaSchedule(0.1, 20.0)``, ``LogSNRCosineSchedule()``, or your own subclass).
    - `t0`, `t1`: the time domain (static Python floats), ``0 <= t0 < t1``.

    ```python
    import sdekit as sk
    from sdekit.processes import AffineProcess, LinearBetaSchedule

    p = AffineProcess(LinearBetaSchedule(beta_min=0.1, beta_max=20.0))
    assert float(p.alpha(0.5)) == float(sk.VP().alpha(0.5))
    ```
    """

    schedule: AbstractSchedule
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, schedule: AbstractSchedule, t0: Any = 1e-5, t1: Any = 1.0):
        self.schedule = schedule
        self.t0 = _t0(t0)
        self.t1 = _t1(t1)


__all__ = ["AbstractAffineGaussianProcess", "AffineProcess"]
