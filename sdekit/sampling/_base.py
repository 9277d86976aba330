"""Shared pieces of every sampler: the model-with-meaning, the result, the sampler ABC."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Int

from .._custom_types import Array, Data, Float, Key
from .._model import call_model
from .._validate import check_output_shape
from ..parameterisation import AbstractPrediction, convert
from ..parameterisation import prediction as as_prediction
from ..processes import AbstractProcess


class PredictionFn(eqx.Module):
    """A network together with what its output means, bound to a process.

    ``model`` is called as ``model(x, t)`` (or ``model(x, t, cond=cond)``) with ``x`` the full
    batch of states and ``t`` a per-example time array of shape ``(N,)``; ``prediction`` is one
    of ``eps``, ``x0``, ``score``, ``v``, ``velocity``. Samplers ask for whatever they need
    (`score`, `x0`, `eps`, ...) and the conversion is exact
    (:mod:`sdekit.parameterisation`).
    """

    process: AbstractProcess
    model: Callable
    prediction: AbstractPrediction = eqx.field(default="eps", converter=as_prediction)
    cond: Any = None

    def raw(self, x: Float[Array, "batch *state"], t: Any) -> Float[Array, "batch *out"]:
        """The network's output at states ``x`` (batch first), time ``t`` (scalar or ``(N,)``)."""
        t = jnp.asarray(t, dtype=x.dtype)
        if t.ndim == 0:
            t = jnp.full((x.shape[0],), t, dtype=x.dtype)
        out = call_model(self.model, x, t, self.cond)
        check_output_shape("model", out, self.process.prediction_shape(x.shape))
        return out

    def as_(
        self, kind: str | AbstractPrediction, x: Float[Array, "batch *state"], t: Any
    ) -> Float[Array, "batch *out"]:
        """The prediction converted to ``kind``."""
        t = jnp.asarray(t, dtype=x.dtype)
        return convert(self.process, self.raw(x, t), x, t, source=self.prediction, target=kind)

    def score(self, x: Float[Array, "batch *state"], t: Any) -> Float[Array, "batch *out"]:
        return self.as_("score", x, t)

    def eps(self, x: Float[Array, "batch *state"], t: Any) -> Float[Array, "batch *out"]:
        return self.as_("eps", x, t)

    def x0(self, x: Float[Array, "batch *state"], t: Any) -> Float[Array, "batch *out"]:
        return self.as_("x0", x, t)

    def velocity(self, x: Float[Array, "batch *state"], t: Any) -> Float[Array, "batch *out"]:
        return self.as_("velocity", x, t)

    def reverse_drift(self, x: Data, t: Any, *, ode: bool = False) -> Data:
        """Drift of the reverse-time SDE (``ode=False``) or of the probability-flow ODE, in
        *reverse* time ``tau = t1 - t``: ``-f + g^2 s`` or ``-f + g^2 s / 2``."""
        p = self.process
        if ode:  # -dx/dt of the probability flow (an interpolant's velocity is finite at t = 1)
            return -self.velocity(x, t)
        s = self.score(x, t)
        t = jnp.asarray(t, dtype=x.dtype)
        g = p.diffusion(t, x)
        return -p.drift(t, x) + (0.5 if ode else 1.0) * g**2 * s


class SampleResult(eqx.Module):
    """What every sampler returns.

    **Fields:** ``samples`` (data part of the final state), ``nfe`` (network evaluations),
    ``num_steps`` (solver steps, accepted and rejected), ``num_rejected`` (adaptive solvers),
    ``ts`` and ``trajectory`` (the states at ``ts``, when asked for; ``None`` otherwise),
    ``state`` (the full final state, e.g. PSLD's ``[x, m]``; with ``denoise="tweedie"`` the
    state before the denoising step, whose data prediction is ``samples``).
    """

    samples: Float[Array, "batch *dims"]
    nfe: Int[Array, ""]
    num_steps: Int[Array, ""]
    num_rejected: Int[Array, ""]
    state: Float[Array, "batch *state"]
    ts: Float[Array, " steps"] | None = None
    trajectory: Float[Array, "steps batch *state"] | None = None


class SolveStats(eqx.Module):
    """Statistics of one `AbstractSampler.solve`: ``nfe`` (network evaluations), ``num_steps``
    (solver steps, accepted and rejected), ``num_rejected`` (adaptive solvers), and, when the
    trajectory was asked for, ``ts`` (the times of the saved states) and ``trajectory``."""

    nfe: Int[Array, ""]
    num_steps: Int[Array, ""]
    num_rejected: Int[Array, ""]
    ts: Float[Array, " steps"] | None = None
    trajectory: Float[Array, "steps batch *state"] | None = None


#: How the process families a sampler may require are described in its error message.
_KIND_HINTS: dict[str, str] = {
    "AbstractAffineGaussianProcess":
        " (x_t = alpha(t) x_0 + sigma(t) eps: VP, SubVP, VE, EDM, LogSNR)",
    "AbstractLinearSDE": " (PSLD, CLD, LinearSDE)",
}


def require_kind(method: Any, process: AbstractProcess, kind: type) -> None:
    """Raise a readable TypeError unless ``process`` is an instance of ``kind``."""
    if not isinstance(process, kind):
        name = kind.__name__
        raise TypeError(
            f"{type(method).__name__} needs an {name}{_KIND_HINTS.get(name, '')}; "
            f"got {type(process).__name__}."
        )


def is_bounded(process: AbstractProcess) -> bool:
    """Whether ``process`` declares a bounded domain (``process.bounded``)."""
    return bool(type(process).bounded)


class AbstractSampler(eqx.Module):
    """A sampling method. Subclasses implement `solve` on a prior state ``z1``.

    ``solve`` integrates from ``t_start`` (default ``process.t1``) down to ``t_end`` and returns
    the final state with its `SolveStats`; `sdekit.sampling.sample` draws the prior, applies the
    final denoising step and extracts the data part. Fixed-step methods subclass
    `AbstractFixedStepSampler` and only write a ``step``.

    **Capabilities** (class attributes, read by `sample`; a subclass may turn one into a
    property of its settings):

    - ``ode``: deterministic (probability-flow ODE) or stochastic (reverse SDE);
    - ``returns_x0``: the last step already returns a data prediction (no final denoising);
    - ``order``: the method's (weak) order of convergence, for the docs and the tests;
    - ``requires``: the process family it needs (e.g. `AbstractAffineGaussianProcess`);
    - ``keeps_in_domain``: it applies ``process.reflect`` after every accepted step; a method
      without it refuses bounded processes (``process.bounded``).
    """

    ode: ClassVar[bool] = False
    returns_x0: ClassVar[bool] = False
    order: ClassVar[float] = 1.0
    requires: ClassVar[type] = AbstractProcess
    keeps_in_domain: ClassVar[bool] = False

    @abc.abstractmethod
    def solve(
        self,
        key: Key,
        fn: PredictionFn,
        z1: Data,
        t_end: Any,
        *,
        save_trajectory: bool = False,
        t_start: Any = None,
    ) -> tuple[Data, SolveStats]:
        """Return ``(z_end, stats)``: the state at ``t_end`` from ``z1`` at ``t_start``
        (default ``fn.process.t1``) and its `SolveStats`."""

    def clip_prediction(self, x0: Data) -> Data:
        """The method's clipping of a data prediction (``clip_x0``; identity without one), also
        applied to `sample`'s final ``tweedie`` denoising."""
        return x0

    def check_process(self, process: AbstractProcess) -> None:
        """Raise a readable error if this method cannot sample ``process``."""
        require_kind(self, process, self.requires)
        if is_bounded(process) and not self.keeps_in_domain:
            raise ValueError(
                f"argument `method`: {type(self).__name__} does not keep a bounded process "
                f"({type(process).__name__}.bounded is True) in its domain after every step; "
                "use a method with keeps_in_domain=True (every sdekit fixed-step and adaptive "
                "method has it)."
            )

