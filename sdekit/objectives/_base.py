r"""The one interface of every training objective.

An objective holds a process, a time sampler and a weighting, and defines the loss of each
example for given draws; its call is the same for all objectives:

$$\mathcal L(\theta) = \mathbb E_{t \sim p(t),\ \xi}\Big[\tfrac1N \textstyle\sum_i
\ell_\theta(x_0^{(i)}, t_i, \xi_i)\Big],$$

with ``(t, xi, dropout key) = objective.draw(key, x0)`` and ``ell = objective.per_example``.
Objectives that need state besides the model (the EMA target network of the equivariance
regulariser) keep it in an *auxiliary state*: `init_aux` makes it from the model, `update_aux`
advances it after every optimiser step, and `fit` / `make_train_step` carry and checkpoint it.
"""

import abc
from collections.abc import Callable
from typing import Any, final

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Float, Key
from .._validate import broadcast_time
from ..processes import AbstractProcess
from ._time import AbstractTimeSampler, UniformTime
from ._weighting import AbstractWeighting


class AbstractObjective(eqx.Module):
    """A training loss ``objective(model, key, x0, cond=None, *, aux=None) -> scalar``.

    Subclasses declare the fields ``process``, ``time_sampler`` (``None``: the objective's
    `default_times`) and ``weighting``, and write `per_example`; they may override `draw` (what
    one call draws), `default_times`, and the auxiliary-state hooks `init_aux` / `update_aux`.
    The call itself is final.
    """

    process: eqx.AbstractVar[AbstractProcess]
    time_sampler: eqx.AbstractVar[AbstractTimeSampler | None]
    weighting: eqx.AbstractVar[AbstractWeighting]

    # --- what a subclass writes ----------------------------------------------------------------
    @abc.abstractmethod
    def per_example(self, model: Callable, x0: Data, t: Any, *noise: Data, cond: Any = None,
                    key: Key | None = None, aux: Any = None) -> Float[Array, " batch"]:
        """The loss of each example ``(N,)`` for given times ``t`` and noise ``noise`` (what
        `draw` returns), deterministic given them; ``key`` is the model's dropout key."""

    # --- what a subclass may override ----------------------------------------------------------
    def default_times(self) -> AbstractTimeSampler:
        """The time sampler used when ``time_sampler`` is None: ``U[process.t0, process.t1]``."""
        return UniformTime(float(self.process.t0), float(self.process.t1))

    def draw(self, key: Key, x0: Data) -> tuple[Array, tuple, Key]:
        """``(t, noise, model_key)`` for one call: times from the time sampler (at least float32),
        standard normal noise of the state's shape, and the model's dropout key."""
        k_t, k_eps, k_drop = jr.split(key, 3)
        t = self.times(k_t, x0.shape)
        t = t.astype(jnp.promote_types(x0.dtype, jnp.float32))
        eps = jr.normal(k_eps, self.process.state_shape(x0.shape), x0.dtype)
        return t, (eps,), k_drop

    def init_aux(self, model: Any) -> Any:
        """The auxiliary state for a fresh run (``None``: the objective keeps none)."""
        return None

    def update_aux(self, aux: Any, model: Any) -> Any:
        """The auxiliary state after an optimiser step that produced ``model``."""
        return aux

    # --- shared ----------------------------------------------------------------------------
    @property
    def times(self) -> AbstractTimeSampler:
        """The time sampler in use."""
        return self.time_sampler if self.time_sampler is not None else self.default_times()

    def weight(self, t: Any, x: Data) -> Array:
        """``lambda(t)`` broadcast against ``x``."""
        return self.weighting(self.process, broadcast_time(t, x), x)

    @final
    def __call__(self, model: Callable, key: Key, x0: Float[Array, "batch *dims"],
                 cond: Any = None, *, aux: Any = None) -> Float[Array, ""]:
        t, noise, k_model = self.draw(key, x0)
        return jnp.mean(self.per_example(model, x0, t, *noise, cond=cond, key=k_model, aux=aux))


def mean_per_example(err: Array) -> Array:
    """The mean over every axis but the first: ``(N, ...) -> (N,)``."""
    return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)


__all__ = ["AbstractObjective", "mean_per_example"]
