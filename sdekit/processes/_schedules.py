"""Noise schedules: ``alpha(t)`` and ``sigma(t)`` of ``x_t = alpha(t) x_0 + sigma(t) eps``.

A schedule is a small `equinox.Module` (numeric parameters are pytree leaves, so it can be
``jit``-ed, ``vmap``-ed and differentiated) with the signal scale ``alpha(t)``, the noise scale
``sigma(t)``, their log-SNR ``logsnr(t) = log(alpha^2 / sigma^2)``, the coefficients of the
SDE that has these marginals,

- ``f(t) = d log alpha / dt`` (drift ``f(t) x``),
- ``g2(t) = d sigma^2 / dt - 2 f(t) sigma(t)^2`` (squared diffusion),

and inverses (`t_from_logsnr`, `t_from_scaled_sigma`): closed forms where they exist, a
vectorised bisection otherwise. [`AffineProcess`][sdekit.processes.AffineProcess] turns any
schedule into a Gaussian process; `VP`, `SubVP`, `VE`, `EDM` and `LogSNR` are affine
processes built from the schedules here.

To write a new schedule, subclass [`AbstractSchedule`][sdekit.processes.AbstractSchedule] and give
``alpha`` and ``sigma``; override ``logsnr``, ``f``, ``g2`` and the inverses when closed forms
are more accurate than the defaults (forward-mode autodiff and bisection).

Time runs from data (``t = 0``) to noise (``t = 1``, or ``sigma_max`` for `EDMSchedule`).
"""

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array, ScalarTime, Time
from .._validate import arg_error, check_order, check_real


def _ft(t: Any) -> Array:
    """``t`` as a floating array (the default float dtype for integer input)."""
    return jnp.asarray(t, dtype=jnp.result_type(t, float))


def _const(fn, *params):
    """Evaluate a constant of the parameters: in float64 numpy (returned as a Python float, so
    it stays weakly typed) when every parameter is concrete, with ``jax.numpy`` otherwise."""
    if any(isinstance(p, jax.Array) for p in params):
        return fn(jnp, *params)
    return float(fn(np, *[np.float64(p) for p in params]))


# ------------------------------------------------------------------------------------------------
# the linear beta schedule, written once (VP, sub-VP, LinearSDE, PSLD, CLD)
# ------------------------------------------------------------------------------------------------
def linear_beta(beta_min: Any, beta_max: Any, t: Time) -> Array:
    """``beta(t) = beta_min + t (beta_max - beta_min)``."""
    return beta_min + (beta_max - beta_min) * _ft(t)


def linear_beta_integral(beta_min: Any, beta_max: Any, t: Time) -> Array:
    """``B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2``."""
    t = _ft(t)
    return beta_min * t + 0.5 * (beta_max - beta_min) * t**2


def linear_beta_integral_inverse(beta_min: Any, beta_max: Any, b: Any) -> Array:
    """The ``t >= 0`` with ``B(t) = b`` (``b >= 0``), written without cancellation:
    ``t = 2 b / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) b))``."""
    b = _ft(b)
    den = beta_min + jnp.sqrt(beta_min**2 + 2.0 * (beta_max - beta_min) * b)
    return jnp.where(b == 0, jnp.zeros_like(b), 2.0 * b / jnp.where(den == 0, 1.0, den))


# ------------------------------------------------------------------------------------------------
# the abstract schedule
# ------------------------------------------------------------------------------------------------
class AbstractSchedule(eqx.Module):
    """``alpha(t)`` and ``sigma(t)`` of an affine Gaussian path ``x_t = alpha x_0 + sigma eps``.

    Subclasses give `alpha` and `sigma`. The defaults of `logsnr`, `f`, `g2`
    (forward-mode autodiff) and of the inverses (bisection, assuming the log-SNR decreases in
    ``t``) are exact up to rounding; subclasses override them with closed forms.
    """

    @abc.abstractmethod
    def alpha(self, t: Time) -> Array:
        """Signal scale ``alpha(t)``."""

    @abc.abstractmethod
    def sigma(self, t: Time) -> Array:
        """Noise scale ``sigma(t)``."""

    def logsnr(self, t: Time) -> Array:
        """``log(alpha(t)^2 / sigma(t)^2)``."""
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def d_alpha(self, t: Time) -> Array:
        """``d alpha / dt`` (forward-mode autodiff unless a closed form overrides it)."""
        t = _ft(t)
        return jax.jvp(self.alpha, (t,), (jnp.ones_like(t),))[1]

    def d_sigma(self, t: Time) -> Array:
        """``d sigma / dt`` (forward-mode autodiff unless a closed form overrides it)."""
        t = _ft(t)
        return jax.jvp(self.sigma, (t,), (jnp.ones_like(t),))[1]

    def f(self, t: Time) -> Array:
        """Drift coefficient ``f(t) = d log alpha / dt``."""
        t = _ft(t)
        _, d = jax.jvp(lambda s: jnp.log(self.alpha(s)), (t,), (jnp.ones_like(t),))
        return d

    def g2(self, t: Time) -> Array:
        """Squared diffusion ``g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2``."""
        t = _ft(t)
        s2, ds2 = jax.jvp(lambda s: self.sigma(s) ** 2, (t,), (jnp.ones_like(t),))
        return ds2 - 2.0 * self.f(t) * s2

    def prior_std(self, t1: ScalarTime) -> Array:
        """Standard deviation of the prior ``N(0, prior_std^2 I)`` at the end time ``t1``
        (``sigma(t1)`` unless the schedule is variance preserving, where it is 1)."""
        return self.sigma(_ft(t1))

    def t_from_logsnr(
        self, logsnr: Any, *, t_min: float = 0.0, t_max: float = 1.0, iters: int = 64
    ) -> Array:
        """The time with ``logsnr(t) = logsnr`` (elementwise).

        Default: a vectorised bisection on ``[t_min, t_max]`` (values outside the range are
        clamped to it); closed forms override it."""
        target = _ft(logsnr)
        lo = jnp.full_like(target, t_min)
        hi = jnp.full_like(target, t_max)

        def body(_, bounds):
            a, b = bounds
            mid = 0.5 * (a + b)
            lam = self.logsnr(mid)
            above = jnp.where(jnp.isnan(lam), True, lam > target)  # still too clean: go later
            return jnp.where(above, mid, a), jnp.where(above, b, mid)

        lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
        return 0.5 * (lo + hi)

    def t_from_scaled_sigma(
        self, sigma: Any, *, t_min: float = 0.0, t_max: float = 1.0, iters: int = 64
    ) -> Array:
        """The time with ``sigma(t) / alpha(t) = sigma`` (the noise level of ``x_t / alpha(t)``,
        which EDM and DPM-Solver step in); ``t_from_logsnr(-2 log sigma)`` unless a closed form
        is more accurate."""
        sigma = _ft(sigma)
        return self.t_from_logsnr(-2.0 * jnp.log(sigma), t_min=t_min, t_max=t_max, iters=iters)

    def check_times(self, t0: float, t1: float) -> None:
        """Raise a ``ValueError`` naming ``t0``/``t1`` if the schedule is not usable on
        ``[t0, t1]``: ``alpha`` and ``sigma`` finite at both ends, ``alpha(t0) > 0`` (the data
        is visible) and ``sigma(t1) > 0`` (the prior has a scale). Skipped for traced
        parameters."""
        if any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(self)):
            return
        with jax.ensure_compile_time_eval():
            ends = jnp.asarray([t0, t1], dtype=jnp.float32)
            a = np.asarray(self.alpha(ends), np.float64)
            s = np.asarray(self.sigma(ends), np.float64)
        for i, name, t in ((0, "t0", t0), (1, "t1", t1)):
            if not (np.isfinite(a[i]) and np.isfinite(s[i])):
                raise arg_error(
                    name, t, f"a time where {type(self).__name__} is finite (alpha={a[i]:g}, "
                    f"sigma={s[i]:g} there)"
                )
        if not a[0] > 0:
            raise arg_error("t0", t0, f"a time with alpha(t0) > 0 (got alpha={a[0]:g})")
        if not s[1] > 0:
            raise arg_error("t1", t1, f"a time with sigma(t1) > 0 (got sigma={s[1]:g})")


# ------------------------------------------------------------------------------------------------
# variance preserving: linear and cosine beta; sub-VP
# ------------------------------------------------------------------------------------------------
class AbstractVPSchedule(AbstractSchedule):
    """Variance preserving: ``alpha = exp(-B(t)/2)``, ``sigma^2 = 1 - alpha^2`` with
    ``B(t) = int_0^t beta``; SDE ``dx = -beta/2 x dt + sqrt(beta) dW``, prior ``N(0, I)``.
    Subclasses give `beta`, `integrated_beta` and its inverse."""

    @abc.abstractmethod
    def beta(self, t: Time) -> Array:
        """``beta(t)``."""

    @abc.abstractmethod
    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = int_0^t beta(s) ds = -2 log alpha(t)``."""

    @abc.abstractmethod
    def t_from_integrated_beta(self, b: Any) -> Array:
        """The time with ``B(t) = b``."""

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

    def d_alpha(self, t: Time) -> Array:
        """Closed form: ``alpha' = -beta alpha / 2``."""
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t: Time) -> Array:
        """Closed form: ``sigma' = beta alpha^2 / (2 sigma)`` (infinite at ``t = 0``)."""
        return 0.5 * self.beta(t) * self.alpha(t) ** 2 / self.sigma(t)

    def prior_std(self, t1: ScalarTime) -> Array:
        return jnp.ones((), dtype=_ft(t1).dtype)

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        """Closed form: ``B = log(1 + exp(-logsnr))``."""
        return self.t_from_integrated_beta(jnp.logaddexp(0.0, -_ft(logsnr)))

    def t_from_scaled_sigma(self, sigma: Any, **kwargs: Any) -> Array:
        """Closed form: ``B = log(1 + sigma^2)``."""
        return self.t_from_integrated_beta(jnp.log1p(_ft(sigma) ** 2))


class _LinearBeta(eqx.Module):
    """``beta_min``/``beta_max`` of a linear ``beta`` with its check, ``beta`` and its integral:
    shared by the VP and sub-VP schedules."""

    beta_min: Any = 0.1
    beta_max: Any = 20.0

    def __check_init__(self):
        check_real("beta_min", self.beta_min, lo=0.0)
        check_real("beta_max", self.beta_max, lo=0.0, lo_open=True)
        check_order("beta_min", self.beta_min, "beta_max", self.beta_max, strict=False)

    def beta(self, t: Time) -> Array:
        """``beta(t)``."""
        return linear_beta(self.beta_min, self.beta_max, t)

    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = int_0^t beta``."""
        return linear_beta_integral(self.beta_min, self.beta_max, t)


class LinearBetaSchedule(_LinearBeta, AbstractVPSchedule):
    """VP with a linear ``beta(t) = beta_min + t (beta_max - beta_min)`` (Song et al. 2021;
    DDPM's schedule in continuous time). `VP`'s default."""

    def t_from_integrated_beta(self, b: Any) -> Array:
        return linear_beta_integral_inverse(self.beta_min, self.beta_max, b)


class CosineSchedule(AbstractVPSchedule):
    """VP with Nichol & Dhariwal's cosine schedule: ``alpha(t) = cos(phi(t)) / cos(phi(0))``,
    ``phi(t) = pi/2 (t + s)/(1 + s)``; ``beta(t) = pi/(1+s) tan(phi(t))`` diverges at ``t = 1``,
    so processes built on it need ``t1 < 1``."""

    s: Any = 0.008

    def __check_init__(self):
        check_real("s", self.s, lo=0.0)

    def _phi(self, t):
        return 0.5 * math.pi * (t + self.s) / (1.0 + self.s)

    def beta(self, t: Time) -> Array:
        return math.pi / (1.0 + self.s) * jnp.tan(self._phi(_ft(t)))

    def integrated_beta(self, t: Time) -> Array:
        log_c0 = _const(lambda xp, s: xp.log(xp.cos(0.5 * math.pi * s / (1.0 + s))), self.s)
        return -2.0 * (jnp.log(jnp.cos(self._phi(_ft(t)))) - log_c0)

    def t_from_integrated_beta(self, b: Any) -> Array:
        # cos(phi) = c0 exp(-B/2) and sin(phi)^2 = sin(phi0)^2 + c0^2 (1 - exp(-B)): both sides
        # of atan2 without cancellation.
        c0 = _const(lambda xp, s: xp.cos(0.5 * math.pi * s / (1.0 + s)), self.s)
        s0 = _const(lambda xp, s: xp.sin(0.5 * math.pi * s / (1.0 + s)), self.s)
        b = jnp.maximum(_ft(b), 0.0)
        phi = jnp.arctan2(jnp.sqrt(s0**2 - c0**2 * jnp.expm1(-b)), c0 * jnp.exp(-0.5 * b))
        return phi * (2.0 / math.pi) * (1.0 + self.s) - self.s

    def check_times(self, t0: float, t1: float) -> None:
        if not t1 < 1.0:
            raise arg_error(
                "t1", t1, "t1 < 1 for the cosine schedule (beta(t) diverges at t = 1; e.g. 0.999)"
            )
        super().check_times(t0, t1)


class SubVPSchedule(_LinearBeta, AbstractSchedule):
    """Sub-VP (Song et al. 2021): ``alpha = exp(-B/2)``, ``sigma = 1 - exp(-B)`` with a linear
    ``beta``; ``g^2 = beta (1 - exp(-2B))``; prior ``N(0, I)``."""

    def alpha(self, t: Time) -> Array:
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def sigma(self, t: Time) -> Array:
        return -jnp.expm1(-self.integrated_beta(t))

    def f(self, t: Time) -> Array:
        return -0.5 * self.beta(t)

    def g2(self, t: Time) -> Array:
        return self.beta(t) * -jnp.expm1(-2.0 * self.integrated_beta(t))

    def prior_std(self, t1: ScalarTime) -> Array:
        return jnp.ones((), dtype=_ft(t1).dtype)

    def t_from_scaled_sigma(self, sigma: Any, **kwargs: Any) -> Array:
        """Closed form: ``sigma / alpha = 2 sinh(B/2)``, so ``B = 2 asinh(sigma / 2)``."""
        b = 2.0 * jnp.arcsinh(0.5 * _ft(sigma))
        return linear_beta_integral_inverse(self.beta_min, self.beta_max, b)

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        return self.t_from_scaled_sigma(jnp.exp(-0.5 * _ft(logsnr)))


# ------------------------------------------------------------------------------------------------
# variance exploding: geometric (VE) and sigma = t (EDM)
# ------------------------------------------------------------------------------------------------
class GeometricSchedule(AbstractSchedule):
    """VE (Song et al. 2021): ``alpha = 1``, ``sigma(t) = sigma_min (sigma_max/sigma_min)^t``,
    ``g^2 = 2 log(sigma_max/sigma_min) sigma(t)^2``."""

    sigma_min: Any = 0.01
    sigma_max: Any = 50.0

    def __check_init__(self):
        check_real("sigma_min", self.sigma_min, lo=0.0, lo_open=True)
        check_real("sigma_max", self.sigma_max, lo=0.0, lo_open=True)
        check_order("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)

    def _log_ratio(self):
        return _const(lambda xp, a, b: xp.log(b / a), self.sigma_min, self.sigma_max)

    def alpha(self, t: Time) -> Array:
        return jnp.ones_like(_ft(t))

    def sigma(self, t: Time) -> Array:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** _ft(t)

    def logsnr(self, t: Time) -> Array:
        return -2.0 * jnp.log(self.sigma(t))

    def f(self, t: Time) -> Array:
        return jnp.zeros_like(_ft(t))

    def g2(self, t: Time) -> Array:
        return 2.0 * self._log_ratio() * self.sigma(t) ** 2

    def t_from_scaled_sigma(self, sigma: Any, **kwargs: Any) -> Array:
        """Closed form: ``t = log(sigma / sigma_min) / log(sigma_max / sigma_min)``."""
        return jnp.log(_ft(sigma) / self.sigma_min) / self._log_ratio()

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        return self.t_from_scaled_sigma(jnp.exp(-0.5 * _ft(logsnr)))


class EDMSchedule(AbstractSchedule):
    """Karras et al. (2022): ``alpha = 1``, ``sigma(t) = t`` (time is the noise level),
    ``dx = sqrt(2t) dW``."""

    def alpha(self, t: Time) -> Array:
        return jnp.ones_like(_ft(t))

    def sigma(self, t: Time) -> Array:
        return _ft(t)

    def logsnr(self, t: Time) -> Array:
        return -2.0 * jnp.log(_ft(t))

    def f(self, t: Time) -> Array:
        return jnp.zeros_like(_ft(t))

    def g2(self, t: Time) -> Array:
        return 2.0 * _ft(t)

    def t_from_scaled_sigma(self, sigma: Any, **kwargs: Any) -> Array:
        """Closed form: ``t = sigma``."""
        return _ft(sigma)

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        return jnp.exp(-0.5 * _ft(logsnr))


# ------------------------------------------------------------------------------------------------
# log-SNR schedules (VDPM: Kingma et al. 2021; Salimans & Ho 2022)
# ------------------------------------------------------------------------------------------------
def log1mexp(x: Array) -> Array:
    """``log(1 - exp(x))`` for ``x < 0`` without cancellation."""
    return jnp.where(x < -9.0, jnp.log1p(-jnp.exp(x)), jnp.log(-jnp.expm1(x)))


class AbstractLogSNRSchedule(AbstractSchedule):
    """Variance preserving schedules given by their log-SNR ``lambda(t)``:
    ``alpha^2 = sigmoid(lambda)``, ``sigma^2 = sigmoid(-lambda)``,
    ``f = sigmoid(-lambda) lambda' / 2``, ``g^2 = -sigmoid(-lambda) lambda'`` (all without
    cancellation in float32). Subclasses give `logsnr`."""

    @abc.abstractmethod
    def logsnr(self, t: Time) -> Array:
        """``lambda(t)``."""

    def alpha(self, t: Time) -> Array:
        return jnp.exp(0.5 * jax.nn.log_sigmoid(self.logsnr(t)))

    def sigma(self, t: Time) -> Array:
        return jnp.exp(0.5 * jax.nn.log_sigmoid(-self.logsnr(t)))

    def dlogsnr(self, t: Time) -> tuple[Array, Array]:
        """``(lambda(t), d lambda / dt)`` by forward-mode autodiff."""
        t = _ft(t)
        return jax.jvp(self.logsnr, (t,), (jnp.ones_like(t),))

    def f(self, t: Time) -> Array:
        lam, dlam = self.dlogsnr(t)
        return 0.5 * jax.nn.sigmoid(-lam) * dlam

    def g2(self, t: Time) -> Array:
        lam, dlam = self.dlogsnr(t)
        return -jax.nn.sigmoid(-lam) * dlam


class _TruncatedLogSNR(AbstractLogSNRSchedule):
    """Shared checks of the truncated schedules: ``lambda(0) = logsnr_max``,
    ``lambda(1) = logsnr_min``."""

    logsnr_min: eqx.AbstractVar[Any]
    logsnr_max: eqx.AbstractVar[Any]

    def __check_init__(self):
        check_real("logsnr_min", self.logsnr_min)
        check_real("logsnr_max", self.logsnr_max)
        check_order("logsnr_min", self.logsnr_min, "logsnr_max", self.logsnr_max)


class LogSNRSigmoidSchedule(_TruncatedLogSNR):
    """``lambda(t) = logsnr_max - t (logsnr_max - logsnr_min)`` (linear in log-SNR)."""

    logsnr_min: Any = -20.0
    logsnr_max: Any = 20.0

    def logsnr(self, t: Time) -> Array:
        hi, lo = self.logsnr_max, self.logsnr_min
        return hi - _ft(t) * (hi - lo)

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        """Closed form: ``t = (logsnr_max - lambda) / (logsnr_max - logsnr_min)``."""
        hi, lo = self.logsnr_max, self.logsnr_min
        return (hi - _ft(logsnr)) / (hi - lo)


class LogSNRLinearSchedule(_TruncatedLogSNR):
    """``alpha^2 = u`` linear in time, ``lambda = logit(u)``, ``u(t)`` affine with
    ``lambda(0) = logsnr_max`` and ``lambda(1) = logsnr_min``."""

    logsnr_min: Any = -20.0
    logsnr_max: Any = 20.0

    def _ends(self):
        sg = lambda xp, x: 1.0 / (1.0 + xp.exp(-x))  # noqa: E731
        hi, lo = self.logsnr_max, self.logsnr_min
        return (
            _const(sg, hi),
            _const(sg, lo),
            _const(lambda xp, x: sg(xp, -x), hi),
            _const(lambda xp, x: sg(xp, -x), lo),
        )

    def logsnr(self, t: Time) -> Array:
        t = _ft(t)
        u_hi, u_lo, v_hi, v_lo = self._ends()
        # u and 1 - u as affine maps of t, each computed without cancellation.
        u = u_hi * (1.0 - t) + u_lo * t
        v = v_hi * (1.0 - t) + v_lo * t
        return jnp.log(u) - jnp.log(v)

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        """Closed form through ``u = sigmoid(lambda)`` (or ``1 - u``, whichever is small),
        clamped to ``[0, 1]``."""
        lam = _ft(logsnr)
        u_hi, u_lo, v_hi, v_lo = self._ends()
        t_u = (jax.nn.sigmoid(lam) - u_hi) / (u_lo - u_hi)
        t_v = (jax.nn.sigmoid(-lam) - v_hi) / (v_lo - v_hi)
        return jnp.clip(jnp.where(lam > 0, t_v, t_u), 0.0, 1.0)


class LogSNRCosineSchedule(_TruncatedLogSNR):
    """``alpha = cos(pi u / 2)``, ``lambda = -2 log tan(pi u / 2)``, ``u(t)`` affine with
    ``lambda(0) = logsnr_max`` and ``lambda(1) = logsnr_min``."""

    logsnr_min: Any = -20.0
    logsnr_max: Any = 20.0

    def _ends(self):
        # u_from = (2/pi) atan(exp(-hi/2)); 1 - u_to = (2/pi) atan(exp(lo/2)).
        u_from = _const(lambda xp, h: 2.0 / math.pi * xp.arctan(xp.exp(-h / 2)), self.logsnr_max)
        w_to = _const(lambda xp, lo: 2.0 / math.pi * xp.arctan(xp.exp(lo / 2)), self.logsnr_min)
        return u_from, w_to

    def logsnr(self, t: Time) -> Array:
        t = _ft(t)
        u_from, w_to = self._ends()
        u = u_from + (1.0 - w_to - u_from) * t
        w = (1.0 - u_from) * (1.0 - t) + w_to * t  # 1 - u
        small_u = -2.0 * jnp.log(jnp.tan(0.5 * math.pi * jnp.minimum(u, 0.5)))
        small_w = 2.0 * jnp.log(jnp.tan(0.5 * math.pi * jnp.minimum(w, 0.5)))
        return jnp.where(u <= 0.5, small_u, small_w)

    def t_from_logsnr(self, logsnr: Any, **kwargs: Any) -> Array:
        """Closed form through ``u = (2/pi) atan(exp(-lambda/2))`` (or ``1 - u``), clamped to
        ``[0, 1]``."""
        lam = _ft(logsnr)
        u_from, w_to = self._ends()
        u = 2.0 / math.pi * jnp.arctan(jnp.exp(-0.5 * lam))
        w = 2.0 / math.pi * jnp.arctan(jnp.exp(0.5 * lam))
        t_u = (u - u_from) / (1.0 - w_to - u_from)
        t_w = 1.0 - (w - w_to) / (1.0 - u_from - w_to)
        return jnp.clip(jnp.where(lam >= 0, t_u, t_w), 0.0, 1.0)


class LogSNRLegacySchedule(AbstractLogSNRSchedule):
    """Continuous DDPM linear beta (``1e-4 .. 0.02`` over 1000 steps):
    ``log alphabar(t) = 1000 int_0^t log(1 - beta(u)) du``. No truncation range; the inverse
    is a bisection."""

    def logsnr(self, t: Time) -> Array:
        t = _ft(t)
        # Written as 1000 t [log a - sum_k r^k / (k (k+1))], a = 0.9999, r = 0.0199 t / a, which
        # has no cancellation in float32 (the series converges like 0.02^k).
        r = (0.0199 / 0.9999) * t
        series = jnp.zeros_like(t)
        for k in range(8, 0, -1):
            series = (series + 1.0 / (k * (k + 1))) * r
        log_abar = jnp.minimum(1000.0 * t * (math.log(0.9999) - series), 0.0)
        return log_abar - log1mexp(log_abar - 1e-9)


#: The log-SNR schedules by the names `LogSNR` takes.
LOGSNR_SCHEDULES: dict[str, type[AbstractLogSNRSchedule]] = {
    "linear": LogSNRLinearSchedule,
    "sigmoid": LogSNRSigmoidSchedule,
    "cosine": LogSNRCosineSchedule,
    "legacy": LogSNRLegacySchedule,
}

__all__ = [
    "LOGSNR_SCHEDULES",
    "AbstractLogSNRSchedule",
    "AbstractSchedule",
    "AbstractVPSchedule",
    "CosineSchedule",
    "EDMSchedule",
    "GeometricSchedule",
    "LinearBetaSchedule",
    "LogSNRCosineSchedule",
    "LogSNRLegacySchedule",
    "LogSNRLinearSchedule",
    "LogSNRSigmoidSchedule",
    "SubVPSchedule",
    "linear_beta",
    "linear_beta_integral",
    "linear_beta_integral_inverse",
    "log1mexp",
]
