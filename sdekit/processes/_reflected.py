"""Processes with a closed-form, non-Gaussian transition, and reflected VE diffusion on [0, 1]^d.

`AbstractClosedFormTransitionProcess` is the interface denoising score matching needs:
``x_t`` drawn from noise (``perturb``), ``grad log p(x_t | x_0)`` (``conditional_score``), its
log-density and a noise scale; nothing assumes the transition is Gaussian or affine.

`ReflectedVE` is the reflected VE SDE of Lou & Ermon (2023, "Reflected Diffusion Models"):
``dx = g(t) dW + dL`` on [0, 1]^d with ``sigma(t) = sigma_min (sigma_max/sigma_min)^t`` and
``g(t)^2 = d sigma^2/dt``; its transition is the reflected heat kernel
(`sdekit.processes.heat_kernel_score`) and its prior is uniform.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key, Shape, Time
from .._validate import broadcast_time, static_float
from ._base import AbstractProcess
from ._heat_kernel import fold, heat_kernel_log_density, heat_kernel_score
from ._schedules import GeometricSchedule


class AbstractClosedFormTransitionProcess(AbstractProcess):
    """A process whose transition ``p(x_t | x_0)`` is known in closed form but is not Gaussian.

    ``x_t = perturb(x_0, t, eps)`` for standard normal ``eps`` of the state's shape (so training
    can record and replay its noise), and ``conditional_score`` / ``conditional_log_prob`` are
    exact. ``noise_scale(t)`` is the scale of ``eps`` inside the transition (``sigma(t)``): the
    natural loss weight (``noise_scale^2``) and network conditioning. Samplers treat such a
    process through its score only (``prediction="score"`` or ``"velocity"``): there is no
    ``eps``/``x0`` algebra.
    """

    @abc.abstractmethod
    def perturb(self, x0: Data, t: Time, eps: Data) -> Data:
        """``x_t`` for given standard normal noise ``eps`` (shape of the state)."""

    @abc.abstractmethod
    def conditional_score(self, x_t: Data, x0: Data, t: Time) -> Data:
        """``grad_{x_t} log p(x_t | x_0)``."""

    @abc.abstractmethod
    def conditional_log_prob(self, x_t: Data, x0: Data, t: Time) -> Array:
        """``log p(x_t | x_0)`` summed per example: ``(N,)``."""

    @abc.abstractmethod
    def noise_scale(self, t: Time) -> Array:
        """The scale ``sigma(t)`` of the noise in the transition."""

    def sample_marginal(self, key: Key, x0: Data, t: Time) -> Data:
        eps = jr.normal(key, self.state_shape(x0.shape), dtype=x0.dtype)
        return self.perturb(x0, t, eps)


class ReflectedVE(AbstractClosedFormTransitionProcess):
    """Reflected variance-exploding SDE on the unit cube [0, 1]^d (Lou & Ermon 2023).

    ``dx = g(t) dW + nu dL`` (reflection at the faces), ``sigma(t) = sigma_min
    (sigma_max / sigma_min)^t``, ``g(t)^2 = 2 log(sigma_max / sigma_min) sigma(t)^2``, no drift.
    As in score_sde's VE SDE, the state at ``t = 0`` already carries noise ``sigma_min`` and the
    transition from data is the reflected heat kernel of std ``sigma(t)``:
    ``x_t = fold(x_0 + sigma(t) eps)``. The prior is uniform on [0, 1]^d (``prior_log_prob`` = 0
    inside, ``-inf`` outside): at ``sigma_max = 5`` the kernel differs from 1 by ``5e-54``.

    ``reflect`` is the fold map, so every sampler keeps its iterates in [0, 1]^d.
    ``reference_compatible=True`` evaluates the conditional score as the reference code does
    (switch ``sqrt(0.02)``, ``+1e-12``; see `sdekit.processes.heat_kernel_score`).

    Defaults: CIFAR-10 generation (``sigma_min=0.01``); the likelihood models use ``1e-4``.
    """

    schedule: GeometricSchedule
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    reference_compatible: bool = eqx.field(static=True)

    #: The state lives in the closed box ``[lower, upper]^d``.
    bounded: ClassVar[bool] = True
    lower: ClassVar[float] = 0.0
    upper: ClassVar[float] = 1.0

    def __init__(self, sigma_min: Any = 0.01, sigma_max: Any = 5.0, t0: Any = 1e-5,
                 t1: Any = 1.0, reference_compatible: bool = False):
        self.schedule = GeometricSchedule(sigma_min, sigma_max)
        self.t0 = static_float("t0", t0)
        self.t1 = static_float("t1", t1)
        if not isinstance(reference_compatible, bool):
            raise ValueError(f"argument `reference_compatible`: got {reference_compatible!r}, "
                             "expected True or False.")
        self.reference_compatible = reference_compatible

    @property
    def sigma_min(self) -> Any:
        """``sigma(0)``."""
        return self.schedule.sigma_min

    @property
    def sigma_max(self) -> Any:
        """``sigma(1)``."""
        return self.schedule.sigma_max

    # --- schedule --------------------------------------------------------------------------
    def sigma(self, t: Time) -> Array:
        """``sigma(t) = sigma_min (sigma_max / sigma_min)^t``."""
        return self.schedule.sigma(t)

    def noise_scale(self, t: Time) -> Array:
        return self.sigma(t)

    def g2(self, t: Time) -> Array:
        """``g(t)^2 = d sigma(t)^2 / dt = 2 log(sigma_max / sigma_min) sigma(t)^2``."""
        return self.schedule.g2(t)

    def time_of_sigma(self, sigma: Time) -> Array:
        """The inverse schedule: ``t`` with ``sigma(t) = sigma``."""
        return self.schedule.t_from_scaled_sigma(sigma)

    # --- SDE -------------------------------------------------------------------------------
    def drift(self, t: Time, x: Data) -> Data:
        return jnp.zeros_like(x)

    def diffusion(self, t: Time, x: Data) -> Array:
        tb = broadcast_time(t, x)
        return jnp.broadcast_to(jnp.sqrt(self.g2(tb)), x.shape).astype(x.dtype)

    def reflect(self, x: Data) -> Data:
        """The fold map ``F(u) = 1 - |1 - (u mod 2)|`` into [0, 1]."""
        return fold(x)

    # --- prior -----------------------------------------------------------------------------
    def prior_sample(self, key: Key, shape: Shape) -> Data:
        return jr.uniform(key, tuple(shape))

    def prior_log_prob(self, z: Data) -> Array:
        inside = jnp.all(((z >= 0) & (z <= 1)).reshape(z.shape[0], -1), axis=-1)
        return jnp.where(inside, 0.0, -jnp.inf).astype(jnp.result_type(z, float))

    # --- transition ------------------------------------------------------------------------
    def perturb(self, x0: Data, t: Time, eps: Data) -> Data:
        return fold(x0 + self.sigma(broadcast_time(t, x0)) * eps)

    def conditional_score(self, x_t: Data, x0: Data, t: Time) -> Data:
        s = self.sigma(broadcast_time(t, x_t)).astype(x_t.dtype)
        return heat_kernel_score(x_t, x0, s, reference_compatible=self.reference_compatible)

    def conditional_log_prob(self, x_t: Data, x0: Data, t: Time) -> Array:
        s = self.sigma(broadcast_time(t, x_t)).astype(x_t.dtype)
        lp = heat_kernel_log_density(x_t, x0, s)
        return jnp.sum(lp.reshape(lp.shape[0], -1), axis=-1)




class ReflectedMixture(eqx.Module):
    """A closed-form data law on [0, 1]^d for oracle tests: independent coordinates, each a
    mixture of atoms ``a_j`` with weights ``pi_j``, diffused by a `ReflectedVE`.

    At time ``t`` every coordinate has the density ``p_t(x) = sum_j pi_j K_sigma(t)(x | a_j)``,
    so the score (a softmax-weighted heat-kernel score) and the log-density are exact. Called as
    ``oracle(x, t)`` it returns the score: pass it to `sdekit.sampling.sample` with
    ``prediction="score"``. ``atoms=None``-style uniform data has score 0: use
    `ReflectedMixture.uniform`.
    """

    process: ReflectedVE
    atoms: Array
    weights: Array
    is_uniform: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        a, w = jnp.asarray(self.atoms), jnp.asarray(self.weights)
        if a.ndim != 1 or a.shape != w.shape:
            raise ValueError(f"arguments `atoms` and `weights`: got shapes {a.shape} and "
                             f"{w.shape}, expected two 1-d arrays of the same length.")
        if not self.is_uniform:
            if not bool(jnp.all((a >= 0) & (a <= 1))):
                raise ValueError(f"argument `atoms`: got {a}, expected values in [0, 1].")
            if not bool(jnp.all(w > 0)) or abs(float(jnp.sum(w)) - 1.0) > 1e-6:
                raise ValueError(f"argument `weights`: got {w}, expected positive weights "
                                 "summing to 1.")

    @classmethod
    def uniform(cls, process: ReflectedVE) -> ReflectedMixture:
        """Uniform data on [0, 1]^d: invariant under the reflected heat flow, score 0."""
        return cls(process, jnp.zeros((1,)), jnp.ones((1,)), is_uniform=True)

    def _parts(self, x, t):
        sigma = self.process.sigma(broadcast_time(t, x)).astype(x.dtype)
        a = jnp.asarray(self.atoms, x.dtype)
        logw = jnp.log(jnp.asarray(self.weights, x.dtype))
        xe, se = x[..., None], sigma[..., None]
        return (logw + heat_kernel_log_density(xe, a, se), heat_kernel_score(xe, a, se))

    def score(self, x: Data, t: Time) -> Data:
        """``grad log p_t(x)``, elementwise."""
        if self.is_uniform:
            return jnp.zeros_like(x)
        logk, s = self._parts(x, t)
        return jnp.sum(jax.nn.softmax(logk, axis=-1) * s, axis=-1)

    def log_prob(self, x: Data, t: Time) -> Array:
        """``log p_t(x)`` summed per example: ``(N,)``."""
        if self.is_uniform:
            return jnp.zeros(x.shape[:1], jnp.result_type(x, float))
        logk, _ = self._parts(x, t)
        lp = jax.nn.logsumexp(logk, axis=-1)
        return jnp.sum(lp.reshape(lp.shape[0], -1), axis=-1)

    def sample_data(self, key: Key, shape: Shape) -> Data:
        """Draws from the data law (``t = 0`` before the ``sigma_min`` smoothing)."""
        if self.is_uniform:
            return jr.uniform(key, tuple(shape))
        idx = jr.categorical(key, jnp.log(jnp.asarray(self.weights)), shape=tuple(shape))
        return jnp.asarray(self.atoms)[idx]

    def __call__(self, x: Data, t: Time, cond: Any = None) -> Data:
        return self.score(x, t)


__all__ = ["AbstractClosedFormTransitionProcess", "ReflectedMixture", "ReflectedVE"]
