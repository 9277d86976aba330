"""Score matching for linear augmented SDEs (PSLD, CLD, any ``LinearSDE``), eps-parameterised.

- `HSM`: hybrid score matching (Dockhorn et al. 2022; PSLD's training loss): the auxiliary
  initial state (``m_0 ~ N(0, kappa M)``) is marginalised analytically, so
  ``z_t = Phi(t) [x_0, 0] + C_t eps`` with ``C_t`` the factor of the HSM kernel covariance, and
  the loss is ``E_{t, x0, eps} mean |eps_theta(z_t, t) - eps|^2`` over the predicted components.
- `AugmentedDSM`: plain DSM on the augmented state: ``z_0 = [x_0, m_0]`` with ``m_0``
  drawn from the initial covariance and the kernel ``p(z_t | z_0)`` (no initial covariance).
  Its regression target is the conditional score written in the *process's* eps units,
  ``eps* = -C_t^T grad log p(z_t | z_0)`` with the HSM factor ``C_t``, so that a DSM-trained
  network is sampled consistently (the reference code converts a DSM model with the HSM factor
  although it was trained on the DSM factor's eps).

Both are called as ``loss(model, key, x0, cond=None) -> scalar`` with ``t ~ U(t_min, t_max)``
per example (default ``U(1e-5, 1)``, PSLD's ``eps_train``), and expose the deterministic
`per_example` / `hsm_loss` for given ``t`` and ``eps``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Float, Key, TimeT
from .._errors import arg_error, check_output_shape
from .._model import call_model
from ..processes import AbstractLinearSDE
from ._time import AbstractTimeSampler, UniformTime


def _check_process(process):
    if not isinstance(process, AbstractLinearSDE):
        raise arg_error(
            "process", type(process).__name__, "an AbstractLinearSDE (LinearSDE, PSLD, CLD)"
        )


def hsm_loss(
    process: AbstractLinearSDE,
    model: Callable,
    x0: Float[Array, "batch *dims"],
    t: TimeT,
    eps: Float[Array, "batch *sdims"],
    cond: Any = None,
    key: Key | None = None,
) -> Float[Array, ""]:
    """HSM loss for given times ``t`` (``(N,)``) and noise ``eps`` (the state's shape):
    ``mean((eps_theta(z_t, t) - eps_P)^2)`` over the batch and all predicted elements."""
    return jnp.mean(HSM(process).per_example(model, x0, t, eps, cond, key))


class _AugmentedLoss(eqx.Module):
    """Fields and time sampling shared by the losses of linear augmented SDEs."""

    process: AbstractLinearSDE
    time_sampler: AbstractTimeSampler | None = None

    def __check_init__(self):
        _check_process(self.process)

    def _times(self) -> AbstractTimeSampler:
        if self.time_sampler is not None:
            return self.time_sampler
        return UniformTime(1e-5, float(self.process.t1))


class HSM(_AugmentedLoss):
    """Hybrid score matching for a linear augmented SDE (see the module docstring).

    **Arguments:** `process` (an ``AbstractLinearSDE``), `time_sampler` (default
    ``UniformTime(1e-5, process.t1)``).
    """


    def per_example(
        self,
        model: Callable,
        x0: Float[Array, "batch *dims"],
        t: TimeT,
        eps: Float[Array, "batch *sdims"],
        cond: Any = None,
        key: Key | None = None,
    ) -> Float[Array, " batch"]:
        """Per-example losses for given ``t`` and ``eps`` (deterministic; for tests)."""
        p = self.process
        z_t = p.perturb(x0, t, eps)
        out = call_model(model, z_t, t, cond, key)
        check_output_shape("model", out, p.prediction_shape(z_t.shape))
        err = (out - p.select_predicted(eps)) ** 2
        return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)

    def __call__(
        self, model: Callable, key: Key, x0: Float[Array, "batch *dims"], cond: Any = None
    ) -> Float[Array, ""]:
        k_t, k_eps, k_drop = jr.split(key, 3)
        t = self._times()(k_t, x0.shape).astype(x0.dtype)
        eps = jr.normal(k_eps, self.process.state_shape(x0.shape), x0.dtype)
        return jnp.mean(self.per_example(model, x0, t, eps, cond, k_drop))


class AugmentedDSM(_AugmentedLoss):
    """DSM on the augmented state with the initial auxiliary variables sampled explicitly
    (PSLD's ``dsm`` mode, with a consistent eps target; see the module docstring)."""


    def per_example(
        self,
        model: Callable,
        x0: Float[Array, "batch *dims"],
        t: TimeT,
        eps: Float[Array, "batch *sdims"],
        eps0: Float[Array, "batch *sdims"],
        cond: Any = None,
        key: Key | None = None,
    ) -> Float[Array, " batch"]:
        """Per-example losses; ``eps0`` (state-shaped) draws ``z_0 ~ N([x_0, 0], Sigma_0)``."""
        p = self.process
        z0 = p.sample_initial_state(x0, eps0)
        zero = np.zeros((p.k, p.k))
        z_t = p.perturb_state(z0, t, eps, initial_covariance=zero)
        cond_score = p.kernel_score(eps, z_t, t, initial_covariance=zero)
        target = p.score_to_eps(cond_score, z_t, t)
        out = call_model(model, z_t, t, cond, key)
        check_output_shape("model", out, p.prediction_shape(z_t.shape))
        err = (out - target) ** 2
        return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)

    def __call__(
        self, model: Callable, key: Key, x0: Float[Array, "batch *dims"], cond: Any = None
    ) -> Float[Array, ""]:
        k_t, k_eps, k_0, k_drop = jr.split(key, 4)
        t = self._times()(k_t, x0.shape).astype(x0.dtype)
        shape = self.process.state_shape(x0.shape)
        eps = jr.normal(k_eps, shape, x0.dtype)
        eps0 = jr.normal(k_0, shape, x0.dtype)
        return jnp.mean(self.per_example(model, x0, t, eps, eps0, cond, k_drop))


__all__ = ["AugmentedDSM", "HSM", "hsm_loss"]
