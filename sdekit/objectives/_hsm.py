r"""Score matching for linear augmented SDEs (PSLD, CLD, any ``LinearSDE``), eps-parameterised.

- `HSM`: hybrid score matching (Dockhorn et al. 2022, "Score-Based Generative Modeling with
  Critically-Damped Langevin Diffusion"; Pandey & Mandt 2023, "A Complete Recipe for Diffusion
  Generative Models", PSLD's training loss): the auxiliary initial state
  $m_0 \sim \mathcal N(0, \kappa M)$ is marginalised analytically, so
  $z_t = \Phi(t)\,[x_0, 0] + C_t\,\varepsilon$ with $C_t$ the factor of the HSM kernel
  covariance, and $\ell = \lambda(t)\,\overline{\|\varepsilon_\theta(z_t, t) - \varepsilon\|^2}$
  over the predicted components.
- `AugmentedDSM`: plain DSM on the augmented state: $z_0 = [x_0, m_0]$ with $m_0$ drawn from
  the initial covariance and the kernel $p(z_t \mid z_0)$ (no initial covariance). Its
  regression target is the conditional score written in the *process's* eps units,
  $\varepsilon^* = -C_t^\top \nabla \log p(z_t \mid z_0)$ with the HSM factor $C_t$, so that a
  DSM-trained network is sampled consistently (the reference code converts a DSM model with the
  HSM factor although it was trained on the DSM factor's eps).

Both draw ``t ~ U(t_min, t_max)`` per example (default ``U(1e-5, 1)``, PSLD's ``eps_train``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Float, Key, TimeT
from .._model import call_model
from .._validate import arg_error, check_output_shape
from ..processes import AbstractLinearSDE
from ._base import AbstractObjective, mean_per_example
from ._time import AbstractTimeSampler, UniformTime
from ._weighting import AbstractWeighting, Constant, FunctionWeighting


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


class _AugmentedLoss(AbstractObjective):
    """Fields and time sampling shared by the losses of linear augmented SDEs."""

    process: AbstractLinearSDE
    time_sampler: AbstractTimeSampler | None = None
    weighting: AbstractWeighting = Constant()

    def __check_init__(self):
        if not isinstance(self.process, AbstractLinearSDE):
            raise arg_error("process", type(self.process).__name__,
                            "an AbstractLinearSDE (LinearSDE, PSLD, CLD)")
        if not isinstance(self.weighting, (Constant, FunctionWeighting)):
            raise arg_error("weighting", self.weighting, "Constant() or a FunctionWeighting "
                            "of t (the augmented losses weight by time only)")

    def default_times(self) -> AbstractTimeSampler:
        """``U(1e-5, process.t1)`` (PSLD's ``eps_train``)."""
        return UniformTime(1e-5, float(self.process.t1))

    def _error(self, model, z_t, t, target, cond, key) -> Array:
        p = self.process
        out = call_model(model, z_t, t, cond, key)
        check_output_shape("model", out, p.prediction_shape(z_t.shape))
        return mean_per_example(self.weight(t, out) * (out - target) ** 2)


class HSM(_AugmentedLoss):
    """Hybrid score matching for a linear augmented SDE (see the module docstring).

    **Arguments:** `process` (an ``AbstractLinearSDE``), `time_sampler` (default
    ``UniformTime(1e-5, process.t1)``), `weighting` (default `Constant`).
    """

    def per_example(self, model: Callable, x0: Float[Array, "batch *dims"], t: TimeT,
                    eps: Float[Array, "batch *sdims"], cond: Any = None,
                    key: Key | None = None, *, aux: Any = None) -> Float[Array, " batch"]:
        """Per-example losses for given ``t`` and ``eps`` (deterministic; for tests)."""
        p = self.process
        z_t = p.perturb(x0, t, eps)
        return self._error(model, z_t, t, p.select_predicted(eps), cond, key)


class AugmentedDSM(_AugmentedLoss):
    """DSM on the augmented state with the initial auxiliary variables sampled explicitly
    (PSLD's ``dsm`` mode, with a consistent eps target; see the module docstring)."""

    def draw(self, key, x0):
        """``(t, (eps, eps0), model_key)``: ``eps0`` draws ``z_0 ~ N([x_0, 0], Sigma_0)``."""
        k_t, k_eps, k_0, k_drop = jr.split(key, 4)
        t = self.times(k_t, x0.shape).astype(jnp.promote_types(x0.dtype, jnp.float32))
        shape = self.process.state_shape(x0.shape)
        return t, (jr.normal(k_eps, shape, x0.dtype), jr.normal(k_0, shape, x0.dtype)), k_drop

    def per_example(self, model: Callable, x0: Float[Array, "batch *dims"], t: TimeT,
                    eps: Float[Array, "batch *sdims"], eps0: Float[Array, "batch *sdims"],
                    cond: Any = None, key: Key | None = None, *,
                    aux: Any = None) -> Float[Array, " batch"]:
        """Per-example losses; ``eps0`` (state-shaped) draws ``z_0 ~ N([x_0, 0], Sigma_0)``."""
        p = self.process
        z0 = p.sample_initial_state(x0, eps0)
        zero = np.zeros((p.k, p.k))
        z_t = p.perturb_state(z0, t, eps, initial_covariance=zero)
        cond_score = p.kernel_score(eps, z_t, t, initial_covariance=zero)
        target = p.score_to_eps(cond_score, z_t, t)
        return self._error(model, z_t, t, target, cond, key)


__all__ = ["AugmentedDSM", "HSM", "hsm_loss"]
