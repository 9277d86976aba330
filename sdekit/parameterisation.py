r"""What a network's output means, and the exact conversions between meanings.

A Gaussian process has $x_t = \mu(x_0, t) + C_t\,\varepsilon$ with $\varepsilon \sim
\mathcal N(0, I)$. A network may predict

| kind | module | meaning |
| --- | --- | --- |
| ``"eps"`` | [`Eps`][sdekit.parameterisation.Eps] | the noise $\varepsilon$ |
| ``"x0"`` | [`X0`][sdekit.parameterisation.X0] | the data $x_0$ (a denoiser) |
| ``"score"`` | [`Score`][sdekit.parameterisation.Score] | $\nabla_x \log p_t(x_t)$ |
| ``"v"`` | `V` | $v = \alpha\varepsilon - \sigma x_0$ (Salimans & Ho 2022; affine only) |
| ``"velocity"`` | `Velocity` | $\dot x = f - \tfrac12 g^2 \nabla\log p_t$ (probability flow) |

Each kind is a final module that owns its conversion to and from the noise; every other
conversion goes through the noise, except where a direct form is exact for more processes
(score and velocity convert into each other for *any* process, the non-Gaussian reflected ones
included) or more stable (an interpolant's velocity to data). The string names are shorthands
that [`prediction`][sdekit.parameterisation.prediction] resolves to the modules.

Shapes: ``eps`` has the network's output shape (``process.prediction_shape``), ``x0`` the
data's, ``score`` and ``velocity`` the state's. An augmented process whose network predicts only
some components (CLD, PSLD's ``score_m`` mode) may also be given a *score* of the network's
shape: it is read as the state's score with 0 for the other components
(``process.expand_predicted``).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, final

import equinox as eqx

from ._custom_types import Array, Data, Float, TimeT
from ._validate import arg_error
from .processes import AbstractAffineGaussianProcess, AbstractGaussianProcess, AbstractProcess


def _require(process: AbstractProcess, kind: type, what: str) -> None:
    if not isinstance(process, kind):
        extra = " (closed-form p(x_t | x_0))" if kind is AbstractGaussianProcess else ""
        raise TypeError(f"{what} needs an {kind.__name__}{extra}; got "
                        f"{type(process).__name__}.")


class AbstractPrediction(eqx.Module):
    """What a network's output means. Subclasses are final modules without fields; each
    converts its kind to and from the noise ``eps`` (`to_eps`, `from_eps`) and may give direct
    conversions to other kinds (`convert_to`)."""

    #: The shorthand name (``"eps"``, ``"x0"``, ``"score"``, ``"v"``, ``"velocity"``).
    name: ClassVar[str]

    @abc.abstractmethod
    def to_eps(self, process: AbstractProcess, value: Data, x_t: Data, t: TimeT) -> Data:
        """The noise prediction equivalent to ``value`` at ``(x_t, t)``."""

    @abc.abstractmethod
    def from_eps(self, process: AbstractProcess, eps: Data, x_t: Data, t: TimeT) -> Data:
        """This kind's prediction equivalent to the noise prediction ``eps`` at ``(x_t, t)``."""

    def normalise(self, process: AbstractProcess, value: Data, x_t: Data) -> Data:
        """The value in this kind's canonical shape (the identity but for scores)."""
        return value

    def convert_to(self, target: AbstractPrediction, process: AbstractProcess, value: Data,
                   x_t: Data, t: TimeT) -> Data:
        """``value`` (this kind) as a ``target`` prediction; through the noise unless a direct
        form exists."""
        value = self.normalise(process, value, x_t)
        if type(target) is type(self):
            return value
        return target.from_eps(process, self.to_eps(process, value, x_t, t), x_t, t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: Any) -> bool:
        """Equal to a prediction of the same kind and to its shorthand name."""
        if isinstance(other, str):
            return other == self.name
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.name)


@final
class Eps(AbstractPrediction):
    """The noise ``eps`` of ``x_t = mu(x_0, t) + C_t eps``."""

    name: ClassVar[str] = "eps"

    def to_eps(self, process, value, x_t, t):
        return value

    def from_eps(self, process, eps, x_t, t):
        return eps


@final
class X0(AbstractPrediction):
    """The data ``x_0`` (a denoiser's output): ``eps = C_t^{-1} (x_t - mu(x_0, t))``."""

    name: ClassVar[str] = "x0"

    def to_eps(self, process, value, x_t, t):
        _require(process, AbstractGaussianProcess, "converting a 'x0' prediction")
        return process.x0_to_eps(value, x_t, t)

    def from_eps(self, process, eps, x_t, t):
        _require(process, AbstractGaussianProcess, "converting to a 'x0' prediction")
        return process.eps_to_x0(eps, x_t, t)


@final
class Score(AbstractPrediction):
    """The score ``grad log p_t(x_t) = -C_t^{-T} eps``; converts to and from the velocity of
    any process directly."""

    name: ClassVar[str] = "score"

    def normalise(self, process, value, x_t):
        shape, state = tuple(value.shape), tuple(x_t.shape)
        if shape == state:
            return value
        want = tuple(process.prediction_shape(state))
        if shape != want:
            raise ValueError(
                f"argument `value`: got a score of shape {shape}, expected the state's shape "
                f"{state} or the network's output shape {want}.")
        return process.expand_predicted(value, state)

    def to_eps(self, process, value, x_t, t):
        _require(process, AbstractGaussianProcess, "converting a 'score' prediction")
        return process.score_to_eps(value, x_t, t)

    def from_eps(self, process, eps, x_t, t):
        _require(process, AbstractGaussianProcess, "converting to a 'score' prediction")
        return process.eps_to_score(eps, x_t, t)

    def convert_to(self, target, process, value, x_t, t):
        if type(target) is Velocity:
            return process.score_to_velocity(self.normalise(process, value, x_t), x_t, t)
        return super().convert_to(target, process, value, x_t, t)


@final
class V(AbstractPrediction):
    """Salimans & Ho's ``v = alpha(t) eps - sigma(t) x_0`` (affine processes)."""

    name: ClassVar[str] = "v"

    def to_eps(self, process, value, x_t, t):
        _require(process, AbstractAffineGaussianProcess, "a 'v' prediction")
        return process.v_to_eps(value, x_t, t)

    def from_eps(self, process, eps, x_t, t):
        _require(process, AbstractAffineGaussianProcess, "a 'v' prediction")
        return process.eps_to_v(eps, x_t, t)


@final
class Velocity(AbstractPrediction):
    """The probability-flow velocity ``dx/dt = f(t, x) - g(t)^2 score / 2``; converts to and
    from the score of any process directly, and to the data through the process's
    `velocity_to_x0` (a stable closed form for interpolants)."""

    name: ClassVar[str] = "velocity"

    def to_eps(self, process, value, x_t, t):
        _require(process, AbstractGaussianProcess, "converting a 'velocity' prediction")
        return process.velocity_to_eps(value, x_t, t)

    def from_eps(self, process, eps, x_t, t):
        _require(process, AbstractGaussianProcess, "converting to a 'velocity' prediction")
        return process.eps_to_velocity(eps, x_t, t)

    def convert_to(self, target, process, value, x_t, t):
        if type(target) is Score:
            return process.velocity_to_score(value, x_t, t)
        if type(target) is X0:
            _require(process, AbstractGaussianProcess, "converting a 'velocity' prediction")
            return process.velocity_to_x0(value, x_t, t)
        return super().convert_to(target, process, value, x_t, t)


#: The prediction kinds by their shorthand names.
PREDICTIONS: dict[str, AbstractPrediction] = {
    k.name: k() for k in (Eps, X0, Score, V, Velocity)
}


def prediction(kind: str | AbstractPrediction, *, name: str = "prediction") -> AbstractPrediction:
    """The prediction module of ``kind`` (a module, or one of the names of `PREDICTIONS`)."""
    if isinstance(kind, AbstractPrediction):
        return kind
    if isinstance(kind, str) and kind in PREDICTIONS:
        return PREDICTIONS[kind]
    raise arg_error(name, kind, "one of " + ", ".join(repr(k) for k in PREDICTIONS)
                    + " or an AbstractPrediction")


def convert(
    process: AbstractProcess,
    value: Float[Array, "*vdims"],
    x_t: Float[Array, "*sdims"],
    t: TimeT,
    *,
    source: str | AbstractPrediction,
    target: str | AbstractPrediction,
) -> Float[Array, "*odims"]:
    """Convert ``value`` (a ``source`` prediction at ``(x_t, t)``) to a ``target`` prediction.

    Exact for every Gaussian process; ``t`` may be a scalar, per example or per element.
    Score and velocity predictions convert into each other for any process (no Gaussian
    needed). A ``score`` of the network's shape (an augmented process predicting some
    components) is read as the state's score with 0 for the others; a ``score`` target has the
    state's shape.
    """
    src = prediction(source, name="source")
    dst = prediction(target, name="target")
    return src.convert_to(dst, process, value, x_t, t)


def to_eps(process: AbstractProcess, value: Float[Array, "*vdims"], x_t: Float[Array, "*sdims"],
           t: TimeT, source: str | AbstractPrediction) -> Float[Array, "*edims"]:
    """Convert a prediction of kind ``source`` to a noise prediction."""
    return convert(process, value, x_t, t, source=source, target=Eps())


def from_eps(process: AbstractProcess, eps: Float[Array, "*edims"], x_t: Float[Array, "*sdims"],
             t: TimeT, target: str | AbstractPrediction) -> Float[Array, "*vdims"]:
    """Convert a noise prediction to a prediction of kind ``target``."""
    return convert(process, eps, x_t, t, source=Eps(), target=target)


def edm_weight(sigma: Any, sigma_data: float = 0.5) -> Any:
    """EDM's loss weight ``(sigma^2 + sd^2) / (sigma sd)^2`` on the denoiser error."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


__all__ = [
    "PREDICTIONS",
    "AbstractPrediction",
    "Eps",
    "Score",
    "V",
    "Velocity",
    "X0",
    "convert",
    "edm_weight",
    "from_eps",
    "prediction",
    "to_eps",
]
