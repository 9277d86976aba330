"""The one entry point: ``sample(key, process, model, shape, *, method=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import ArrayLike, Float, Key, Shape
from .._validate import arg_error, check_choice
from ..processes import AbstractGaussianProcess, AbstractProcess
from ._ancestral import Ancestral
from ._base import AbstractSampler, PredictionFn, SampleResult
from ._conditions import AbstractCondition
from ._ddim import DDIM
from ._dpm_solver import DPMSolverPP
from ._edm import EDMSampler
from ._grids import AbstractGrid
from ._loop import AbstractFixedStepSampler
from ._pc import PC
from ._solvers import ODE, AdaptiveODE, AdaptiveSDE, EulerMaruyama

#: String shorthands for methods (objects are the real interface).
METHODS: dict[str, Callable[[], AbstractSampler]] = {
    "euler_maruyama": EulerMaruyama,
    "em": EulerMaruyama,
    "sde": EulerMaruyama,
    "adaptive_sde": AdaptiveSDE,
    "ode": AdaptiveODE,
    "adaptive_ode": AdaptiveODE,
    "ode_euler": lambda: ODE(solver="euler"),
    "ode_heun": lambda: ODE(solver="heun"),
    "pc": lambda: PC(),
    "ddim": lambda: DDIM(),
    "ancestral": lambda: Ancestral(),
    "ddpm": lambda: Ancestral(),
    "edm_heun": lambda: EDMSampler(solver="heun"),
    "edm_euler": lambda: EDMSampler(solver="euler"),
    "dpm_solver++": lambda: DPMSolverPP(),
    "dpmpp_2m": lambda: DPMSolverPP(),
}

DENOISE = ("auto", "none", "tweedie", "euler")


def resolve_method(method: Any) -> AbstractSampler:
    """Turn a method object or shorthand string into a sampler object."""
    if isinstance(method, AbstractSampler):
        return method
    if isinstance(method, str):
        check_choice("method", method, tuple(METHODS))
        return METHODS[method]()
    raise arg_error("method", method, "an AbstractSampler or one of " + ", ".join(METHODS))


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        items = tuple(shape)
    except TypeError:
        raise arg_error("shape", shape, "a tuple of integers with a leading batch axis, "
                        "e.g. (N, d)") from None
    for s in items:
        ok = isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_))
        if not ok or int(s) < 1:
            raise arg_error("shape", shape, "a tuple of integers >= 1 with a leading batch axis, "
                            "e.g. (N, d)")
    if len(items) < 2:
        raise arg_error("shape", shape, "a data shape with a leading batch axis, e.g. (N, d)")
    return tuple(int(s) for s in items)


def _check_time(name: str, value: Any, process: AbstractProcess) -> float:
    if isinstance(value, jax.core.Tracer):
        raise arg_error(name, "a traced value", "a concrete time (sample's times are static)")
    if isinstance(value, (bool, str)) or np.ndim(value) != 0:
        raise arg_error(name, value, "a scalar time")
    v = float(value)
    t0, t1 = float(process.t0), float(process.t1)
    if not (np.isfinite(v) and t0 <= v <= t1):
        raise arg_error(name, value, f"a time in [process.t0, process.t1] = [{t0}, {t1}]")
    return v


def _explicit_grid_ends(sampler: AbstractSampler, process: AbstractProcess, t_start: Any,
                        t_end: Any) -> tuple[float, float]:
    """``t_start`` and ``t_end`` of an explicit grid (checked against the given ones)."""
    g = np.asarray(sampler.grid, np.float64)
    inner = g[:-1] if sampler.returns_x0 else g  # the last entry only labels an x0 prediction
    t0, t1 = float(process.t0), float(process.t1)
    tol = 4 * np.finfo(np.asarray(sampler.grid).dtype).eps * max(1.0, abs(t1))  # float32 grids
    if inner.min() < t0 - tol or inner.max() > t1 + tol or g[-1] < 0:
        raise arg_error("grid", f"times in [{g.min()}, {g.max()}]",
                        f"times in [process.t0, process.t1] = [{t0}, {t1}]")
    for name, given, own in (("t_start", t_start, g[0]), ("t_end", t_end, g[-1])):
        if given is not None and float(given) != float(own):
            raise ValueError(f"arguments `{name}` and `method`: got {name}={given!r} and a "
                             f"method whose explicit grid runs from {g[0]} to {g[-1]}; leave "
                             f"{name}=None or make it match the grid.")
    return float(g[0]), float(g[-1])


def sample(
    key: Key,
    process: AbstractProcess,
    model: Callable,
    shape: Shape,
    *,
    method: Any = "euler_maruyama",
    prediction: Any = "eps",
    cond: Any = None,
    t_end: float | None = None,
    denoise: str = "auto",
    save_trajectory: bool = False,
    jit: bool = True,
    x_start: Float[ArrayLike, "batch *state"] | None = None,
    t_start: float | None = None,
    condition: AbstractCondition | None = None,
) -> SampleResult:
    """Draw samples from a trained (or exact) model by solving the reverse process.

    **Arguments:**

    - `key`: a PRNG key.
    - `process`: the forward process the model was trained on.
    - `model`: a callable ``model(x, t[, cond])`` on a batch of states, ``t`` of shape ``(N,)``.
    - `shape`: the *data* shape including the batch, e.g. ``(64, 32, 32, 3)``.
    - `method`: a sampler object (`EulerMaruyama`, `ODE`, `AdaptiveODE`,
      `AdaptiveSDE`, ...) or a shorthand string from ``METHODS``.
    - `prediction`: what the model outputs: ``eps``, ``x0``, ``score``, ``v`` or ``velocity``
      (or the modules of `sdekit.parameterisation`).
    - `cond`: optional conditioning passed to the model (class labels).
    - `t_end`: where the solver stops (default ``process.t0``, or the last time of the
      method's explicit grid).
    - `denoise`: the final step from ``t_end`` to 0: ``tweedie`` (the posterior mean
      ``E[x_0 | x_t]`` from the model, Gaussian processes), ``euler`` (one drift-only step of
      length ``t_end``, as in PSLD), ``none``, or ``auto`` (``none`` when the method's last step
      already returns a data prediction, else ``tweedie`` for Gaussian processes, otherwise
      ``none``). Each denoising step costs one NFE.
    - `save_trajectory`: also return the states along the way.
    - `x_start`: start from this *state* (shape ``process.state_shape(shape)``) at ``t_start``
      instead of a prior draw: SDEdit (``x_start = process.sample_marginal(key, x0, t_start)``),
      inpainting loops, partial sampling.
    - `t_start`: where the solver starts (default ``process.t1``, or the first time of the
      method's explicit grid). Without ``x_start`` the prior draw is used as the state there.
    - `condition`: conditioning at sampling time, e.g.
      [`AsyncGeneration`][sdekit.sampling.AsyncGeneration] (every element on its own schedule:
      inpainting with a model trained on per-element times, graded adherence, delays). A
      condition that cannot work with ``method`` or ``process`` says why.

    **Returns:** a `SampleResult` with the data part of the final state and the NFE.
    """
    sampler = resolve_method(method)
    check_choice("denoise", denoise, DENOISE)
    shape = _check_shape(shape)
    if isinstance(sampler, AbstractFixedStepSampler) and not isinstance(sampler.grid,
                                                                        AbstractGrid):
        t_start, t_end = _explicit_grid_ends(sampler, process, t_start, t_end)
    else:
        t_start = float(process.t1) if t_start is None else _check_time("t_start", t_start,
                                                                        process)
        t_end = float(process.t0) if t_end is None else _check_time("t_end", t_end, process)
    if not t_end < t_start:
        raise ValueError(f"arguments `t_end` and `t_start`: got t_end={t_end!r} and "
                         f"t_start={t_start!r}, expected t_end < t_start.")
    if x_start is not None:
        want = tuple(process.state_shape(shape))
        if tuple(np.shape(x_start)) != want:
            raise arg_error("x_start", f"an array of shape {tuple(np.shape(x_start))}",
                            f"a state of shape process.state_shape(shape) = {want}")
    if denoise == "auto":
        if sampler.returns_x0:
            denoise = "none"  # the sampler's last step already returns its x0 prediction
        else:
            denoise = "tweedie" if isinstance(process, AbstractGaussianProcess) else "none"
    if denoise == "tweedie" and not isinstance(process, AbstractGaussianProcess):
        raise TypeError("denoise='tweedie' needs an AbstractGaussianProcess; "
                        f"got {type(process).__name__}.")
    sampler.check_process(process)
    _check_not_donated(model)
    if condition is not None:
        if not isinstance(condition, AbstractCondition):
            raise arg_error("condition", type(condition).__name__,
                            "None or a sampling condition (an AbstractCondition)")
        condition.check(sampler, process, shape)
    fn = PredictionFn(process, model, prediction, cond)
    run = eqx.filter_jit(_run) if jit else _run
    return run(key, fn, sampler, shape, t_start, t_end, denoise, save_trajectory, x_start,
               condition)


def _check_not_donated(model: Any) -> None:
    for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_array)):
        if isinstance(leaf, jax.Array) and leaf.is_deleted():
            raise arg_error("model", "a model whose arrays were donated to a training step",
                            "live arrays (make_train_step(..., donate=True) reuses the input "
                            "state's memory and deletes its arrays: sample from the state the "
                            "step returned, or keep a copy, jax.tree.map(lambda a: a.copy(), "
                            "model), before the step)")


def _run(key, fn, sampler, shape, t_start, t_end, denoise, save_trajectory, x_start, condition):
    if condition is not None:
        return condition.run(key, fn, sampler, shape, t_start=t_start, t_end=t_end,
                             denoise=denoise, save_trajectory=save_trajectory, x_start=x_start)
    p = fn.process
    k_prior, k_solve = jr.split(key)
    if x_start is None:
        z1 = p.prior_sample(k_prior, shape)
    else:
        z1 = jnp.asarray(x_start, dtype=jnp.result_type(x_start, float))
    z, stats = sampler.solve(k_solve, fn, z1, t_end, save_trajectory=save_trajectory,
                             t_start=t_start)
    nfe = stats.nfe
    samples = None
    if denoise == "tweedie":
        samples = sampler.clip_prediction(fn.x0(z, t_end))  # data shape, also when augmented
        if samples.shape == z.shape:
            samples = p.reflect(samples)
        nfe = nfe + 1
    elif denoise == "euler":
        z = p.reflect(z + t_end * fn.reverse_drift(z, t_end, ode=bool(sampler.ode)))
        nfe = nfe + 1
    return SampleResult(
        samples=p.data_part(z) if samples is None else samples,
        nfe=jnp.asarray(nfe),
        num_steps=jnp.asarray(stats.num_steps),
        num_rejected=jnp.asarray(stats.num_rejected),
        state=z,
        ts=stats.ts,
        trajectory=stats.trajectory,
    )
