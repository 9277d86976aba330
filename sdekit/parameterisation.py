"""What a network's output means, and the exact conversions between meanings.

This module is the single place for the algebra between the predictions a network can make for a
Gaussian process with ``x_t = mean(x_0, t) + C_t eps``:

- ``"eps"``: the noise ``eps``;
- ``"x0"``: the data ``x_0`` (a denoiser);
- ``"score"``: ``grad log p_t(x_t)``;
- ``"v"``: ``v = alpha eps - sigma x_0`` (Salimans & Ho; affine Gaussian processes only);
- ``"velocity"``: the probability-flow velocity ``dx/dt = f(t, x) - g(t)^2 score / 2``.

All conversions go through ``eps``; every process supplies ``eps <-> score`` and
``eps <-> x0`` (augmented processes through their Cholesky factor), affine processes also
``eps <-> v``.

Shapes: ``eps`` has the network's output shape (``process.prediction_shape``), ``x0`` the
data's, ``score`` and ``velocity`` the state's. An augmented process whose network predicts only
some components (CLD, PSLD's ``score_m`` / ``score_x`` modes) may also be given a *score* of the
network's shape, the score of the predicted components (e.g. CLD's velocity part
``grad_m log p_t``): it is read as the state's score with 0 for the other components, as
``eps_to_score`` returns it. That is exact wherever the other components carry no noise
(their score multiplies ``g^2 = 0`` in the reverse drift) and, with the process's triangular
factor, for ``score -> eps``.

[`Precond`][sdekit.parameterisation.Precond] wraps any network with EDM's preconditioning
(Karras et al. 2022, Table 1) for any affine Gaussian process, returning an ``x0`` prediction.
"""

from __future__ import annotations

from typing import Any, Literal

import equinox as eqx
import jax.numpy as jnp

from ._custom_types import Array, Data, Float, Time, TimeT
from ._errors import broadcast_time, check_choice, check_positive
from ._model import call_model
from .processes import AbstractAffineGaussianProcess, AbstractGaussianProcess, AbstractProcess

Prediction = Literal["eps", "x0", "score", "v", "velocity"]
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "score", "v", "velocity")


def _require_gaussian(process: AbstractProcess, what: str) -> AbstractGaussianProcess:
    if not isinstance(process, AbstractGaussianProcess):
        raise TypeError(
            f"{what} needs an AbstractGaussianProcess (closed-form p(x_t | x_0)); "
            f"got {type(process).__name__}."
        )
    return process


def _velocity_to_score(process: AbstractProcess, u: Data, x_t: Data, t: Time) -> Data:
    g = process.diffusion(t, x_t)
    return 2.0 * (process.drift(t, x_t) - u) / g**2


def _score_to_velocity(process: AbstractProcess, s: Data, x_t: Data, t: Time) -> Data:
    g = process.diffusion(t, x_t)
    return process.drift(t, x_t) - 0.5 * g**2 * s


def _state_score(process: AbstractProcess, value: Data, x_t: Data) -> Data:
    """A score of the network's shape (predicted components only) as the state's score, zeros
    for the other components; any other value unchanged."""
    shape, state = tuple(jnp.shape(value)), tuple(jnp.shape(x_t))
    if shape == state or not hasattr(process, "expand_predicted"):
        return value
    if shape != tuple(process.prediction_shape(state)):
        raise ValueError(
            f"argument `value`: got a score of shape {shape}, expected the state's shape {state} "
            f"or the network's output shape {tuple(process.prediction_shape(state))}."
        )
    return process.expand_predicted(value, state)


def to_eps(
    process: AbstractProcess,
    value: Float[Array, "*vdims"],
    x_t: Float[Array, "*sdims"],
    t: TimeT,
    source: str,
) -> Float[Array, "*edims"]:
    """Convert a prediction of kind ``source`` to a noise prediction."""
    check_choice("source", source, PREDICTIONS)
    if source == "eps":
        return value
    p = _require_gaussian(process, f"converting a {source!r} prediction")
    if source == "x0":
        return p.x0_to_eps(value, x_t, t)
    if source == "score":
        return p.score_to_eps(_state_score(p, value, x_t), x_t, t)
    if source == "velocity":
        if hasattr(p, "velocity_to_eps"):  # a stable closed form (interpolants)
            return p.velocity_to_eps(value, x_t, t)
        return p.score_to_eps(_velocity_to_score(p, value, x_t, t), x_t, t)
    if not isinstance(p, AbstractAffineGaussianProcess):
        raise TypeError(f"'v' predictions need an affine Gaussian process; got {type(p).__name__}.")
    return p.v_to_eps(value, x_t, t)


def from_eps(
    process: AbstractProcess,
    eps: Float[Array, "*edims"],
    x_t: Float[Array, "*sdims"],
    t: TimeT,
    target: str,
) -> Float[Array, "*vdims"]:
    """Convert a noise prediction to a prediction of kind ``target``."""
    check_choice("target", target, PREDICTIONS)
    if target == "eps":
        return eps
    p = _require_gaussian(process, f"converting to a {target!r} prediction")
    if target == "x0":
        return p.eps_to_x0(eps, x_t, t)
    if target == "score":
        return p.eps_to_score(eps, x_t, t)
    if target == "velocity":
        if hasattr(p, "eps_to_velocity"):  # a stable closed form (interpolants)
            return p.eps_to_velocity(eps, x_t, t)
        return _score_to_velocity(p, p.eps_to_score(eps, x_t, t), x_t, t)
    if not isinstance(p, AbstractAffineGaussianProcess):
        raise TypeError(f"'v' predictions need an affine Gaussian process; got {type(p).__name__}.")
    return p.eps_to_v(eps, x_t, t)


def convert(
    process: AbstractProcess,
    value: Float[Array, "*vdims"],
    x_t: Float[Array, "*sdims"],
    t: TimeT,
    *,
    source: str,
    target: str,
) -> Float[Array, "*odims"]:
    """Convert ``value`` (a ``source`` prediction at ``(x_t, t)``) to a ``target`` prediction.

    Exact for every Gaussian process; ``t`` may be a scalar, per example or per element.
    Score and velocity predictions convert directly for any process (no Gaussian needed). A
    ``score`` of the network's shape (an augmented process predicting some components) is read
    as the state's score with 0 for the others (see the module doc); a ``score`` target has the
    state's shape.
    """
    check_choice("source", source, PREDICTIONS)
    check_choice("target", target, PREDICTIONS)
    if source == "score":
        value = _state_score(process, value, x_t)
    if source == target:
        return value
    if source == "velocity" and target == "x0" and hasattr(process, "velocity_to_x0"):
        return process.velocity_to_x0(value, x_t, t)
    if {source, target} == {"score", "velocity"} and not hasattr(process, "velocity_to_eps"):
        if source == "score":
            return _score_to_velocity(process, value, x_t, t)
        return _velocity_to_score(process, value, x_t, t)
    return from_eps(process, to_eps(process, value, x_t, t, source), x_t, t, target)


class Precond(eqx.Module):
    """EDM preconditioning (Karras et al. 2022) around any network, for any affine process.

    With ``s = alpha(t)`` and ``sigma~ = sigma(t) / alpha(t)`` (the noise level of ``x_t / s``),
    the wrapper returns the ``x0`` prediction

    ``D(x_t, t) = c_skip x_t / s + c_out F(c_in x_t / s, c_noise)``

    with ``c_skip = sd^2 / (sigma~^2 + sd^2)``, ``c_out = sigma~ sd / sqrt(sigma~^2 + sd^2)``,
    ``c_in = 1 / sqrt(sigma~^2 + sd^2)`` and ``c_noise = log(sigma~) / 4``. The network
    runs in whatever dtype it likes; the skip path and scalings stay float32. Use it with
    ``prediction="x0"``.
    """

    net: Any
    process: AbstractAffineGaussianProcess
    sigma_data: float = 0.5

    def __check_init__(self):
        check_positive("sigma_data", self.sigma_data)
        if not isinstance(self.process, AbstractAffineGaussianProcess):
            raise TypeError(
                "argument `process`: got "
                f"{type(self.process).__name__}, expected an AbstractAffineGaussianProcess."
            )

    def coefficients(self, t: Time) -> tuple[Any, Any, Any, Any]:
        """``(c_skip, c_out, c_in, c_noise)`` at time ``t`` (in the ``x_t / alpha`` frame)."""
        t = jnp.asarray(t)
        sig = self.process.sigma(t) / self.process.alpha(t)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sig**2 + sd2)
        c_out = sig * self.sigma_data / jnp.sqrt(sig**2 + sd2)
        c_in = 1.0 / jnp.sqrt(sig**2 + sd2)
        c_noise = 0.25 * jnp.log(sig)
        return c_skip, c_out, c_in, c_noise

    def __call__(
        self, x: Float[Array, "batch *dims"], t: TimeT, cond: Any = None, *, key: Any = None
    ) -> Float[Array, "batch *dims"]:
        tb = broadcast_time(t, x)
        scale = self.process.alpha(tb)
        c_skip, c_out, c_in, _ = self.coefficients(tb)
        _, _, _, c_noise = self.coefficients(jnp.asarray(t))
        x_hat = x / scale
        out = call_model(self.net, (c_in * x_hat).astype(x.dtype), c_noise, cond, key)
        return c_skip * x_hat + c_out * out.astype(jnp.float32)


def edm_weight(sigma: Any, sigma_data: float = 0.5) -> Any:
    """EDM's loss weight ``(sigma^2 + sd^2) / (sigma sd)^2`` on the denoiser error."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


__all__ = [
    "PREDICTIONS",
    "Precond",
    "Prediction",
    "convert",
    "edm_weight",
    "from_eps",
    "to_eps",
]
