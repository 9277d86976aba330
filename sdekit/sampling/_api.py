"""The one entry point: ``sample(key, process, model, shape, *, method=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Key, Shape
from .._errors import arg_error, check_choice
from ..processes import AbstractGaussianProcess, AbstractProcess
from ._ancestral import Ancestral
from ._base import AbstractSampler, PredictionFn, SampleResult
from ._ddim import DDIM
from ._dpm_solver import DPMSolverPP
from ._edm import EDMSampler
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


def sample(
    key: Key,
    process: AbstractProcess,
    model: Callable,
    shape: Shape,
    *,
    method: Any = "euler_maruyama",
    prediction: str = "eps",
    cond: Any = None,
    t_end: float | None = None,
    denoise: str = "auto",
    save_trajectory: bool = False,
    jit: bool = True,
) -> SampleResult:
    """Draw samples from a trained (or exact) model by solving the reverse process.

    **Arguments:**

    - `key`: a PRNG key.
    - `process`: the forward process the model was trained on.
    - `model`: a callable ``model(x, t[, cond])`` on a batch of states, ``t`` of shape ``(N,)``.
    - `shape`: the *data* shape including the batch, e.g. ``(64, 32, 32, 3)``.
    - `method`: a sampler object (`EulerMaruyama`, `ODE`, `AdaptiveODE`,
      `AdaptiveSDE`, ...) or a shorthand string from ``METHODS``.
    - `prediction`: what the model outputs: ``eps``, ``x0``, ``score``, ``v`` or ``velocity``.
    - `cond`: optional conditioning passed to the model (class labels).
    - `t_end`: where the solver stops (default ``process.t0``).
    - `denoise`: the final step from ``t_end`` to 0: ``tweedie`` (the posterior mean
      ``E[x_0 | x_t]`` from the model, Gaussian processes), ``euler`` (one drift-only step of
      length ``t_end``, as in PSLD), ``none``, or ``auto`` (``tweedie`` for Gaussian processes,
      otherwise ``none``). Each denoising step costs one NFE.
    - `save_trajectory`: also return the states along the way.

    **Returns:** a `SampleResult` with the data part of the final state and the NFE.
    """
    sampler = resolve_method(method)
    check_choice("denoise", denoise, DENOISE)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise arg_error("shape", shape, "a data shape with a leading batch axis, e.g. (N, d)")
    t_end = float(process.t0 if t_end is None else t_end)
    if not t_end < float(process.t1):
        raise arg_error("t_end", t_end, f"a time below process.t1 = {process.t1}")
    if denoise == "auto" and getattr(sampler, "returns_x0", False):
        denoise = "none"  # the sampler's last step already returns its x0 prediction
    if denoise == "auto":
        denoise = "tweedie" if isinstance(process, AbstractGaussianProcess) else "none"
    if denoise == "tweedie" and not isinstance(process, AbstractGaussianProcess):
        raise TypeError(f"denoise='tweedie' needs an AbstractGaussianProcess; got {type(process).__name__}.")
    sampler.check_process(process)
    fn = PredictionFn(process, model, prediction, cond)
    run = eqx.filter_jit(_run) if jit else _run
    return run(key, fn, sampler, shape, t_end, denoise, save_trajectory)


def _run(key, fn, sampler, shape, t_end, denoise, save_trajectory):
    p = fn.process
    k_prior, k_solve = jr.split(key)
    z1 = p.prior_sample(k_prior, shape)
    z, stats = sampler.solve(k_solve, fn, z1, t_end, save_trajectory=save_trajectory)
    nfe = stats["nfe"]
    samples = None
    if denoise == "tweedie":
        samples = fn.x0(z, t_end)  # the data prediction (data shape, also for augmented states)
        nfe = nfe + 1
    elif denoise == "euler":
        z = p.reflect(z + t_end * fn.reverse_drift(z, t_end, ode=bool(sampler.ode)))
        nfe = nfe + 1
    return SampleResult(
        samples=p.data_part(z) if samples is None else samples,
        nfe=jnp.asarray(nfe),
        num_steps=jnp.asarray(stats["num_steps"]),
        num_rejected=jnp.asarray(stats["num_rejected"]),
        state=z,
        ts=stats.get("ts"),
        trajectory=stats.get("trajectory"),
    )
