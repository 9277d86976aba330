"""Abstract forward processes.

Time runs from data to noise: ``t = t0`` (about 0) is data, ``t = t1`` is the prior. A process is
the Itô SDE ``dx = f(t, x) dt + g(t, x) dW`` together with its reflection map and its prior.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax.random as jr

from .._custom_types import Array, Data, Key, Shape, Time
from .._validate import check_order, check_real


def check_time_domain(t0: Any, t1: Any) -> None:
    """``t0`` and ``t1`` finite with ``0 <= t0 < t1`` (errors name the argument)."""
    check_real("t0", t0, lo=0.0)
    check_real("t1", t1)
    check_order("t0", t0, "t1", t1)


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

    # Every concrete process has the fields ``t0`` and ``t1`` (static Python floats,
    # ``0 <= t0 < t1``): the time domain it is trained on. They are not declared here (an
    # ``AbstractVar`` would put them first in every subclass's positional arguments).

    def __check_init__(self):
        try:
            t0, t1 = self.t0, self.t1
        except AttributeError as e:
            raise TypeError(f"{type(self).__name__} must have the fields `t0` and `t1` (its time "
                            "domain).") from e
        check_time_domain(t0, t1)

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

    def expand_predicted(self, value: Data, state_shape: Shape) -> Data:
        """A network output of shape ``prediction_shape(state_shape)`` as a state-shaped array
        (zeros for the components the network does not predict). The identity unless the
        network predicts only some components of an augmented state."""
        return value

    # --- score <-> probability-flow velocity (any process) -----------------------------------
    def score_to_velocity(self, score: Data, x_t: Data, t: Time) -> Data:
        """The probability-flow velocity ``dx/dt = f(t, x) - g(t)^2 s / 2`` of a score."""
        g = self.diffusion(t, x_t)
        return self.drift(t, x_t) - 0.5 * g**2 * score

    def velocity_to_score(self, velocity: Data, x_t: Data, t: Time) -> Data:
        """The score ``2 (f(t, x) - u) / g(t)^2`` of a probability-flow velocity ``u``."""
        g = self.diffusion(t, x_t)
        return 2.0 * (self.drift(t, x_t) - velocity) / g**2

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

    # --- velocity <-> noise (generic routes through the score; closed forms override) -------
    def velocity_to_eps(self, velocity: Data, x_t: Data, t: Time) -> Data:
        """Noise prediction from a probability-flow velocity (through the score)."""
        return self.score_to_eps(self.velocity_to_score(velocity, x_t, t), x_t, t)

    def eps_to_velocity(self, eps: Data, x_t: Data, t: Time) -> Data:
        """Probability-flow velocity from a noise prediction (through the score)."""
        return self.score_to_velocity(self.eps_to_score(eps, x_t, t), x_t, t)

    def velocity_to_x0(self, velocity: Data, x_t: Data, t: Time) -> Data:
        """Data prediction from a probability-flow velocity (through the noise)."""
        return self.eps_to_x0(self.velocity_to_eps(velocity, x_t, t), x_t, t)

    def sample_marginal(self, key: Key, x0: Data, t: Time) -> Data:
        shape = self.state_shape(x0.shape)
        eps = jr.normal(key, shape, dtype=x0.dtype)
        return self.perturb(x0, t, eps)


