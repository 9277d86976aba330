"""SiT's SDE sampler with a free diffusion coefficient, for any affine Gaussian process.

For every ``w(t) >= 0`` the reverse-time SDE (sdekit time: data at 0, noise at 1)

``dx = [-v(x, t) + w(t) s(x, t)] dtau + sqrt(2 w(t)) dW``,   ``tau = t_start - t``

has the marginals of the process (``v = dx/dt`` is the probability-flow velocity, ``s`` the
score); ``w = g^2 / 2`` is the usual reverse SDE, ``w = 0`` the probability-flow ODE. SiT
(Ma et al. 2024) writes the same SDE forward in its time ``1 - t``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key, Time
from .._validate import arg_error, check_choice, static_int
from ..parameterisation import convert
from ..processes import AbstractAffineGaussianProcess, AbstractProcess
from ._base import PredictionFn
from ._grids import AbstractGrid
from ._loop import AbstractFixedStepSampler

#: SiT's ``--diffusion-form`` values (its misspelt internal key ``inccreasing-decreasing`` is
#: accepted too).
DIFFUSION_FORMS: tuple[str, ...] = (
    "constant", "SBDM", "sigma", "linear", "decreasing", "increasing-decreasing",
)
LAST_STEPS: tuple[Any, ...] = (None, "mean", "tweedie", "euler")


def _form(form: str) -> str:
    form = "increasing-decreasing" if form == "inccreasing-decreasing" else form
    check_choice("diffusion", form, DIFFUSION_FORMS)
    return form


def diffusion_coefficient(process: AbstractAffineGaussianProcess, t: Time, form: str = "sigma",
                          norm: float = 1.0) -> Array:
    """SiT's ``w(t)`` (``compute_diffusion``) at sdekit time ``t`` (SiT's time is ``1 - t``).

    | form | ``w(t)`` |
    | --- | --- |
    | ``constant`` | ``norm`` |
    | ``SBDM`` | ``norm g(t)^2 / 2`` (SiT's ``drift_var``; for ``linear`` ``t / (1 - t)``) |
    | ``sigma`` | ``norm sigma(t)`` |
    | ``linear`` | ``norm t`` |
    | ``decreasing`` | ``(1 - norm cos(pi t))^2 / 4`` (``norm`` inside the square, as coded) |
    | ``increasing-decreasing`` | ``norm sin(pi t)^2`` |
    """
    form = _form(form)
    t = jnp.asarray(t, dtype=jnp.result_type(t, float))
    if form == "constant":
        return jnp.full_like(t, norm)
    if form == "SBDM":
        return norm * process.drift_var(t)
    if form == "sigma":
        return norm * process.sigma(t)
    if form == "linear":
        return norm * t
    if form == "decreasing":
        return 0.25 * (1.0 - norm * jnp.cos(math.pi * t)) ** 2
    return norm * jnp.sin(math.pi * t) ** 2


def velocity_and_score(fn: PredictionFn, x: Data, t: Any) -> tuple[Data, Data]:
    """The velocity ``dx/dt`` and the score from **one** network evaluation; ``t`` is a scalar,
    per example or per element (then the network receives it as is)."""
    t = jnp.asarray(t, dtype=x.dtype)
    out = fn.raw(x, t)
    p, kind = fn.process, fn.prediction
    return convert(p, out, x, t, source=kind, target="velocity"), convert(
        p, out, x, t, source=kind, target="score")


class SiTGrid(AbstractGrid):
    """SiT's SDE grid: ``linspace(t_start, t_end + h_last, num_steps)`` then ``t_end``
    (``h_last``: the sampler's last step size)."""

    name: ClassVar[str] = "sit"
    requires: ClassVar[type] = AbstractAffineGaussianProcess
    last_step_size: float = 0.0

    def __call__(self, process, num_steps, t_start, t_end, *, dtype=None, sigma_min=None,
                 sigma_max=None):
        ts = jnp.linspace(t_start, t_end + self.last_step_size, int(num_steps), dtype=dtype)
        return jnp.concatenate([ts, jnp.asarray([t_end], dtype)])


class InterpolantSDE(AbstractFixedStepSampler):
    """SiT's SDE sampler (``Sampler.sample_sde``) for any affine Gaussian process, as a step on
    sdekit's shared loop.

    The grid (``grid="sit"``) has ``num_steps`` points from ``t_start`` (default
    ``process.t1``) down to ``t_end + last_step_size`` (``t_end`` is `sample`'s, default
    ``process.t0``) plus ``t_end``: ``num_steps - 1`` stochastic steps, then the last step to
    ``t_end``. With ``F(x, t) = -v(x, t) + w(t) s(x, t)`` and ``h`` the grid spacing, each step
    draws ``xi``:

    - ``solver="euler"`` (Euler–Maruyama): ``x + F(x, t) h + sqrt(2 w(t) h) xi``;
    - ``solver="heun"`` (SiT's stochastic Heun): ``x~ = x + sqrt(2 w(t) h) xi``,
      ``K1 = F(x~, t)``, ``K2 = F(x~ + h K1, t - h)``, ``x~ + h (K1 + K2) / 2``.

    ``diffusion``/``norm``: the form of ``w`` (`diffusion_coefficient`; SiT's CLI default
    ``sigma``). ``last_step``: ``mean`` (``x + F h_last``, no noise), ``tweedie`` (the
    posterior mean ``E[x_0 | x]``), ``euler`` (a probability-flow step ``x - v h_last``) or
    ``None`` (the grid then ends at ``t_end``). One network call gives both ``v`` and ``s``.
    ``mean`` keeps the score term ``w s h_last``, which biases the result where ``w(t_end)``
    is large: with ``diffusion="constant"`` use ``last_step="euler"`` (on a Gaussian oracle
    ``mean`` leaves a 12 % covariance error at any step count, ``euler`` about 1 %).
    **NFE** = ``(num_steps - 1)`` (Euler) or ``2 (num_steps - 1)`` (Heun), plus 1 for a last
    step. The result is final (`sample` adds no denoising step). Singular ends (the ``SBDM``
    diffusion where ``alpha = 0``, a score evaluated where ``sigma = 0``) raise a clear error
    instead of producing NaN.
    """

    num_steps: int | None = None
    grid: Any = "sit"
    solver: str = "euler"
    diffusion: str = "sigma"
    norm: float = 1.0
    last_step: str | None = "mean"
    last_step_size: float = 0.04
    ode: ClassVar[bool] = False
    returns_x0: ClassVar[bool] = True
    order: ClassVar[float] = 1.0
    requires: ClassVar[type] = AbstractAffineGaussianProcess
    grid_kinds: ClassVar[tuple[type, ...]] = (SiTGrid,)
    default_steps: ClassVar[int] = 250

    def __check_init__(self):
        if static_int("num_steps", self.num_steps, 2) < 2:
            raise arg_error("num_steps", self.num_steps, "an integer >= 2")
        check_choice("solver", self.solver, ("euler", "heun"))
        _form(self.diffusion)
        if not float(self.norm) >= 0:
            raise arg_error("norm", self.norm, "a value >= 0")
        if self.last_step not in LAST_STEPS:
            raise arg_error("last_step", self.last_step, "None, 'mean', 'tweedie' or 'euler'")
        if self.last_step is not None and not 0 < float(self.last_step_size) < 1:
            raise arg_error("last_step_size", self.last_step_size,
                            "a value in (0, 1) (or last_step=None)")

    @property
    def step_nfe(self) -> int:  # type: ignore[override]
        return 2 if self.solver == "heun" else 1

    @property
    def final_nfe(self) -> int:  # type: ignore[override]
        return 0 if self.last_step is None else 1

    def w(self, process: AbstractProcess, t: Time) -> Array:
        """``w(t)`` of this sampler."""
        return diffusion_coefficient(process, t, self.diffusion, self.norm)

    def named_grid(self, process: AbstractProcess, t_start: Any, t_end: Any, dtype: Any) -> Array:
        """SiT's grid: ``linspace(t_start, t_end + h_last, num_steps)`` then ``t_end``."""
        h_last = 0.0 if self.last_step is None else float(self.last_step_size)
        t_start, t_end = float(t_start), float(t_end)
        t_grid_end = t_end + h_last
        if not t_grid_end < t_start:
            raise arg_error("t_end", t_end, f"a time below t_start - last_step_size = "
                            f"{t_start - h_last} (t_start = {t_start})")
        with jax.ensure_compile_time_eval():  # concrete checks, also when traced by `sample`
            self._check_ends(process, t_end, t_start, t_grid_end, h_last)
        return SiTGrid(h_last)(process, self.num_steps, t_start, t_end, dtype=dtype)

    def _check_ends(self, process, t_end, t_start, t_grid_end, h_last):
        w0 = float(self.w(process, t_start))
        singular = self.diffusion == "SBDM" and not float(process.alpha(t_start)) > 1e-6
        if singular or not math.isfinite(w0):  # SBDM: g^2/2 diverges where alpha -> 0
            raise arg_error("t_start", t_start, f"a time where the {self.diffusion!r} diffusion "
                            "is finite (e.g. 1 - 1e-3: see sdekit.objectives.sit_interval)")
        evaluated_end = t_grid_end if (self.solver == "heun" or h_last > 0) else None
        if evaluated_end is not None and not float(process.sigma(evaluated_end)) > 0:
            raise arg_error("t_end", t_end, "a time with sigma(t) > 0 (the score is evaluated "
                            "there), or a last step (last_step='mean', ...)")

    def _drift(self, fn: PredictionFn, x: Data, t: Any) -> Data:
        v, s = velocity_and_score(fn, x, t)
        return -v + self.w(fn.process, t).astype(x.dtype) * s

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        h = t - t_next
        noise = jnp.sqrt(2.0 * self.w(fn.process, t).astype(z.dtype) * h) * jr.normal(
            key, z.shape, z.dtype)
        if self.solver == "heun":
            zt = z + noise
            k1 = self._drift(fn, zt, t)
            k2 = self._drift(fn, zt + h * k1, t_next)
            return zt + 0.5 * h * (k1 + k2), memory
        return z + self._drift(fn, z, t) * h + noise, memory

    def final_step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key) -> Data:
        h = t - t_next
        if self.last_step == "mean":
            return z + self._drift(fn, z, t) * h
        if self.last_step == "tweedie":
            return fn.x0(z, t)
        if self.last_step == "euler":
            return z - fn.velocity(z, t) * h
        return z


__all__ = ["DIFFUSION_FORMS", "LAST_STEPS", "InterpolantSDE", "diffusion_coefficient",
           "velocity_and_score"]
