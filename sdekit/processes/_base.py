"""Abstract forward processes.

Time runs from data to noise: ``t = t0`` (about 0) is data, ``t = t1`` is the prior. A process is
the Itô SDE ``dx = f(t, x) dt + g(t, x) dW`` together with its reflection map and its prior.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key, Shape, Time
from .._errors import broadcast_time


class AbstractProcess(eqx.Module):
    """A forward diffusion ``dx = f(t, x) dt + g(t, x) dW`` on a state space.

    Subclasses provide the drift ``f``, the diffusion ``g`` (a scalar or an array broadcastable
    to the state: sdekit's processes have diagonal noise), the prior at ``t1`` and a way to draw
    ``x_t ~ p(x_t | x_0)``.

    Processes whose state carries extra variables (CLD, PSLD: ``z = concat([x, m], -1)``)
    override `state_shape` and `data_part`; for every other process the state is the
    data.
    """

    #: Whether the state space is bounded; a bounded process folds states back with `reflect`,
    #: and the samplers apply it after every step (or refuse the process).
    bounded: ClassVar[bool] = False

    # Concrete subclasses supply ``t0`` and ``t1`` (the time domain the process is trained on) as
    # fields; they are not declared here so that each subclass keeps its own field order.

    def __check_init__(self):
        for name in ("t0", "t1"):
            if not hasattr(self, name):
                raise TypeError(f"{type(self).__name__} must define the attribute `{name}`.")
        if not float(self.t0) < float(self.t1):
            raise ValueError(
                f"arguments `t0` and `t1`: got t0={self.t0!r} and t1={self.t1!r}, expected t0 < t1."
            )

    @abc.abstractmethod
    def drift(self, t: Time, x: Data) -> Data:
        """Forward drift ``f(t, x)``."""

    @abc.abstractmethod
    def diffusion(self, t: Time, x: Data) -> Array:
        """Forward diffusion ``g(t, x)``: a scalar or an array broadcastable to ``x``."""

    def reflect(self, x: Data) -> Data:
        """Map a state back into the domain (bounded processes). The identity by default."""
        return x

    def state_shape(self, data_shape: Shape) -> Shape:
        """Shape of the process state for data of shape ``data_shape``."""
        return tuple(data_shape)

    def prediction_shape(self, state_shape: Shape) -> Shape:
        """Shape of a network's output for states of shape ``state_shape`` (the state's own)."""
        return tuple(state_shape)

    def data_part(self, z: Data) -> Data:
        """The data part of a state (the identity unless the state is augmented)."""
        return z

    @abc.abstractmethod
    def prior_sample(self, key: Key, shape: Shape) -> Data:
        """Draw a state from the prior at ``t1``; ``shape`` is the *data* shape (batch first)."""

    @abc.abstractmethod
    def prior_log_prob(self, z: Data) -> Array:
        """Log-density of prior states ``z`` (leading batch axis), summed per example: ``(N,)``."""

    @abc.abstractmethod
    def sample_marginal(self, key: Key, x0: Data, t: Time) -> Data:
        """Draw ``x_t ~ p(x_t | x_0)``; ``t`` is a scalar or aligned with ``x0``'s leading axes."""


class AbstractGaussianProcess(AbstractProcess):
    """A process whose transition ``p(x_t | x_0)`` is Gaussian in closed form.

    Its noise ``eps ~ N(0, I)`` has the shape of the state, and ``x_t = mean(x_0, t) + C_t eps``
    for a (per-element or per-pixel) factor ``C_t``; the conditional score is
    ``-C_t^{-T} eps``. The conversions between network parameterisations (``eps``, ``x0``,
    ``score``) are methods here so that :mod:`sdekit.parameterisation` can convert for any
    Gaussian process, including augmented ones.
    """

    @abc.abstractmethod
    def marginal(self, x0: Data, t: Time) -> tuple[Data, Array]:
        """Mean and covariance description (a std for scalar processes) of ``p(x_t | x_0)``."""

    @abc.abstractmethod
    def perturb(self, x0: Data, t: Time, eps: Data) -> Data:
        """``x_t = mean(x_0, t) + C_t eps`` for given noise ``eps`` (shape of the state)."""

    @abc.abstractmethod
    def conditional_score(self, x_t: Data, x0: Data, t: Time) -> Data:
        """``grad_{x_t} log p(x_t | x_0)``."""

    @abc.abstractmethod
    def eps_to_score(self, eps: Data, x_t: Data, t: Time) -> Data:
        """Score from a noise prediction."""

    @abc.abstractmethod
    def score_to_eps(self, score: Data, x_t: Data, t: Time) -> Data:
        """Noise prediction from a score."""

    @abc.abstractmethod
    def eps_to_x0(self, eps: Data, x_t: Data, t: Time) -> Data:
        """Data prediction from a noise prediction."""

    @abc.abstractmethod
    def x0_to_eps(self, x0: Data, x_t: Data, t: Time) -> Data:
        """Noise prediction from a data prediction."""

    def sample_marginal(self, key: Key, x0: Data, t: Time) -> Data:
        shape = self.state_shape(x0.shape)
        eps = jr.normal(key, shape, dtype=x0.dtype)
        return self.perturb(x0, t, eps)


class AbstractAffineGaussianProcess(AbstractGaussianProcess):
    """Gaussian process with ``p(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I)``.

    VP, sub-VP, VE, EDM and the log-SNR family are of this kind. The SDE is
    ``dx = f(t) x dt + g(t) dW`` with ``f = d log alpha / dt`` and
    ``g^2 = d sigma^2 / dt - 2 f sigma^2``; subclasses give ``alpha`` and ``sigma`` and may
    override the derivatives with closed forms (the defaults use forward-mode autodiff).
    """

    @abc.abstractmethod
    def alpha(self, t: Time) -> Array:
        """Signal scale ``alpha(t)``."""

    @abc.abstractmethod
    def sigma(self, t: Time) -> Array:
        """Noise scale ``sigma(t)``."""

    def logsnr(self, t: Time) -> Array:
        """``log(alpha^2 / sigma^2)``."""
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def _dt(self, fn, t):
        t = jnp.asarray(t, dtype=jnp.result_type(t, float))
        return jax.jvp(fn, (t,), (jnp.ones_like(t),))

    def f(self, t: Time) -> Array:
        """Drift coefficient ``f(t) = d log alpha / dt``."""
        _, d = self._dt(lambda s: jnp.log(self.alpha(s)), t)
        return d

    def g2(self, t: Time) -> Array:
        """Squared diffusion ``g(t)^2 = d sigma^2/dt - 2 f(t) sigma(t)^2``."""
        s2, ds2 = self._dt(lambda s: self.sigma(s) ** 2, t)
        return ds2 - 2.0 * self.f(t) * s2

    # --- SDE -------------------------------------------------------------------------------
    def drift(self, t: Time, x: Data) -> Data:
        return self.f(broadcast_time(t, x)) * x

    def diffusion(self, t: Time, x: Data) -> Array:
        return jnp.broadcast_to(jnp.sqrt(self.g2(broadcast_time(t, x))), x.shape)

    # --- marginals -------------------------------------------------------------------------
    def marginal(self, x0: Data, t: Time) -> tuple[Data, Array]:
        t = broadcast_time(t, x0)
        return self.alpha(t) * x0, jnp.broadcast_to(self.sigma(t), x0.shape)

    def perturb(self, x0: Data, t: Time, eps: Data) -> Data:
        t = broadcast_time(t, x0)
        return self.alpha(t) * x0 + self.sigma(t) * eps

    def conditional_score(self, x_t: Data, x0: Data, t: Time) -> Data:
        t = broadcast_time(t, x_t)
        return -(x_t - self.alpha(t) * x0) / self.sigma(t) ** 2

    # --- prior -----------------------------------------------------------------------------
    def prior_std(self) -> Array:
        """Standard deviation of the prior ``N(0, sigma(t1)^2 I)``."""
        return self.sigma(jnp.asarray(self.t1))

    def prior_sample(self, key: Key, shape: Shape) -> Data:
        return self.prior_std() * jr.normal(key, tuple(shape))

    def prior_log_prob(self, z: Data) -> Array:
        s = self.prior_std()
        lp = -0.5 * (z / s) ** 2 - jnp.log(s) - 0.5 * math.log(2 * math.pi)
        return jnp.sum(lp.reshape(lp.shape[0], -1), axis=-1)

    # --- parameterisation conversions ------------------------------------------------------
    def eps_to_score(self, eps: Data, x_t: Data, t: Time) -> Data:
        return -eps / self.sigma(broadcast_time(t, x_t))

    def score_to_eps(self, score: Data, x_t: Data, t: Time) -> Data:
        return -score * self.sigma(broadcast_time(t, x_t))

    def eps_to_x0(self, eps: Data, x_t: Data, t: Time) -> Data:
        t = broadcast_time(t, x_t)
        return (x_t - self.sigma(t) * eps) / self.alpha(t)

    def x0_to_eps(self, x0: Data, x_t: Data, t: Time) -> Data:
        t = broadcast_time(t, x_t)
        return (x_t - self.alpha(t) * x0) / self.sigma(t)

    def v_to_eps(self, v: Data, x_t: Data, t: Time) -> Data:
        """``eps`` from ``v = alpha eps - sigma x0`` (Salimans & Ho), for any alpha, sigma."""
        t = broadcast_time(t, x_t)
        a, s = self.alpha(t), self.sigma(t)
        return (s * x_t + a * v) / (a**2 + s**2)

    def eps_to_v(self, eps: Data, x_t: Data, t: Time) -> Data:
        t = broadcast_time(t, x_t)
        a, s = self.alpha(t), self.sigma(t)
        x0 = (x_t - s * eps) / a
        return a * eps - s * x0
