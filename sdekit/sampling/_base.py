"""Shared pieces of every sampler: the model-with-meaning, the result, the sampler ABC."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array, Data, Key
from .._errors import check_choice, check_output_shape
from .._model import call_model
from ..parameterisation import PREDICTIONS, convert
from ..processes import AbstractGaussianProcess, AbstractProcess


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
    prediction: str = "eps"
    cond: Any = None

    def __check_init__(self):
        check_choice("prediction", self.prediction, PREDICTIONS)

    def raw(self, x: Data, t: Any) -> Data:
        """The network's output at states ``x`` (batch first) and time ``t`` (scalar or ``(N,)``)."""
        t = jnp.asarray(t, dtype=x.dtype)
        if t.ndim == 0:
            t = jnp.full((x.shape[0],), t, dtype=x.dtype)
        out = call_model(self.model, x, t, self.cond)
        check_output_shape("model", out, self.process.prediction_shape(x.shape))
        return out

    def as_(self, kind: str, x: Data, t: Any) -> Data:
        """The prediction converted to ``kind``."""
        t = jnp.asarray(t, dtype=x.dtype)
        return convert(self.process, self.raw(x, t), x, t, source=self.prediction, target=kind)

    def score(self, x: Data, t: Any) -> Data:
        return self.as_("score", x, t)

    def eps(self, x: Data, t: Any) -> Data:
        return self.as_("eps", x, t)

    def x0(self, x: Data, t: Any) -> Data:
        return self.as_("x0", x, t)

    def velocity(self, x: Data, t: Any) -> Data:
        return self.as_("velocity", x, t)

    def reverse_drift(self, x: Data, t: Any, *, ode: bool = False) -> Data:
        """Drift of the reverse-time SDE (``ode=False``) or of the probability-flow ODE, in
        *reverse* time ``tau = t1 - t``: ``-f + g^2 s`` or ``-f + g^2 s / 2``."""
        p = self.process
        if ode and hasattr(p, "velocity_to_eps"):  # interpolants: the velocity is finite at t = 1
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
    ``state`` (the full final state, e.g. PSLD's ``[x, m]``).
    """

    samples: Data
    nfe: Array
    num_steps: Array
    num_rejected: Array
    state: Data
    ts: Array | None = None
    trajectory: Data | None = None


class AbstractSampler(eqx.Module):
    """A sampling method. Subclasses implement `solve` on a prior state ``z1``.

    ``solve`` integrates from ``process.t1`` down to ``t_end`` and returns the final state with
    its statistics; `sdekit.sampling` draws the prior, applies the final denoising
    step and extracts the data part.
    """

    @abc.abstractmethod
    def solve(
        self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *, save_trajectory: bool = False
    ) -> tuple[Data, dict]:
        """Return ``(z_end, stats)`` with ``stats`` holding ``nfe``, ``num_steps``,
        ``num_rejected`` and optionally ``ts``/``trajectory``."""

    def check_process(self, process: AbstractProcess) -> None:
        """Raise a readable error if this method cannot sample ``process``."""


def require_gaussian(method: Any, process: AbstractProcess) -> None:
    if not isinstance(process, AbstractGaussianProcess):
        raise TypeError(
            f"{type(method).__name__} needs an AbstractGaussianProcess; got {type(process).__name__}."
        )
