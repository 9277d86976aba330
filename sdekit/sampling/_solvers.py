"""Reverse-time SDE and probability-flow ODE samplers, fixed-step and adaptive, on diffrax.

All methods integrate in reverse time ``tau = t1 - t`` from ``tau = 0`` (the prior) to
``tau = t1 - t_end``; the network is always evaluated at the forward time ``t``.

- `EulerMaruyama`: reverse SDE, Euler–Maruyama on a fixed grid (Song et al. 2021;
  PSLD's ``em_sde``).
- `AdaptiveSDE`: reverse SDE with a diffrax stochastic solver, ``PIDController`` and a
  ``VirtualBrownianTree``.
- `ODE`: probability-flow ODE with Euler or Heun on a fixed grid.
- `AdaptiveODE`: probability-flow ODE with Tsit5 / Dopri5 (or any diffrax solver) and
  ``PIDController(rtol, atol)``.

Fixed-step methods run on a plain ``lax.scan`` loop by default and on diffrax's
``diffeqsolve`` + ``StepTo`` with ``backend="diffrax"``; the two are the same algorithm
(tested) and ``benchmarks/sampler_overhead.py`` measures which is faster (see diffrax#517).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx

from .._custom_types import Data, Key
from .._errors import arg_error, check_choice
from ._base import AbstractSampler, PredictionFn
from ._grids import GRIDS, time_grid

Backend = Literal["scan", "diffrax"]

#: Network evaluations per attempted step, and whether the solver reuses its last stage (FSAL).
_SOLVER_NFE: dict[type, tuple[int, bool]] = {
    dfx.Euler: (1, False),
    dfx.Heun: (2, False),
    dfx.Midpoint: (2, False),
    dfx.Ralston: (2, False),
    dfx.Bosh3: (3, True),
    dfx.Tsit5: (6, True),
    dfx.Dopri5: (6, True),
    dfx.Dopri8: (12, True),
    dfx.ShARK: (2, False),
    dfx.SRA1: (2, False),
    dfx.SEA: (1, False),
    dfx.SPaRK: (3, False),
    dfx.GeneralShARK: (2, False),
}

_ODE_SOLVERS = {"tsit5": dfx.Tsit5, "dopri5": dfx.Dopri5, "dopri8": dfx.Dopri8, "bosh3": dfx.Bosh3,
                "heun": dfx.Heun}
_SDE_SOLVERS = {"heun": dfx.Heun, "shark": dfx.ShARK, "sra1": dfx.SRA1, "spark": dfx.SPaRK}


def _nfe(solver, num_steps):
    per, fsal = _SOLVER_NFE.get(type(solver), (None, False))
    if per is None:
        raise arg_error("solver", type(solver).__name__, "one of " + ", ".join(
            c.__name__ for c in _SOLVER_NFE))
    return per * num_steps + (1 if fsal else 0)


def _diag(g, z):
    return lx.DiagonalLinearOperator(jnp.broadcast_to(g, z.shape).astype(z.dtype))


class EulerMaruyama(AbstractSampler):
    """Reverse-time SDE by Euler–Maruyama on a fixed grid.

    ``z <- z + h [-f(z, t) + g(t)^2 s(z, t)] + g(t) sqrt(h) xi`` for ``t`` on the grid
    (``uniform``, ``quadratic`` or ``karras``), one network call per step, the reflection map
    applied after every step. **NFE** = ``num_steps``.
    """

    num_steps: int = 1000
    grid: str = "uniform"
    backend: str = "scan"
    ode: ClassVar[bool] = False

    def __check_init__(self):
        if int(self.num_steps) < 1:
            raise arg_error("num_steps", self.num_steps, "an integer >= 1")
        check_choice("grid", self.grid, GRIDS)
        check_choice("backend", self.backend, ("scan", "diffrax"))

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        ts = time_grid(self.grid, self.num_steps, p.t1, t_end).astype(z1.dtype)
        n = self.num_steps
        if self.backend == "scan":
            def step(z, inp):
                t, t_next, k = inp
                h = t - t_next
                drift = fn.reverse_drift(z, t)
                g = p.diffusion(t, z)
                z = z + h * drift + g * jnp.sqrt(h) * jr.normal(k, z.shape, z.dtype)
                z = p.reflect(z)
                return z, (z if save_trajectory else None)

            z, traj = jax.lax.scan(step, z1, (ts[:-1], ts[1:], jr.split(key, n)))
        else:
            t1 = p.t1
            bm = dfx.UnsafeBrownianPath(shape=z1.shape, key=key)
            terms = dfx.MultiTerm(
                dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(z, t1 - tau)),
                dfx.ControlTerm(lambda tau, z, args: _diag(p.diffusion(t1 - tau, z), z), bm),
            )
            taus = t1 - ts
            saveat = dfx.SaveAt(ts=taus[1:]) if save_trajectory else dfx.SaveAt(t1=True)
            sol = dfx.diffeqsolve(
                terms, dfx.Euler(), taus[0], taus[-1], dt0=None, y0=z1, saveat=saveat,
                stepsize_controller=dfx.StepTo(ts=taus), adjoint=dfx.ForwardMode(), max_steps=n,
            )
            z = sol.ys[-1]
            traj = sol.ys
        stats = dict(nfe=jnp.asarray(n), num_steps=jnp.asarray(n), num_rejected=jnp.asarray(0))
        if save_trajectory:
            stats.update(ts=ts[1:], trajectory=traj)
        return z, stats


class ODE(AbstractSampler):
    """Probability-flow ODE with a fixed-step Euler (order 1) or Heun (order 2) method.

    ``dz/dtau = -f(z, t) + g(t)^2 s(z, t) / 2``. **NFE** = ``num_steps`` (Euler) or
    ``2 num_steps`` (Heun).
    """

    num_steps: int = 100
    solver: str = "heun"
    grid: str = "uniform"
    backend: str = "scan"
    ode: ClassVar[bool] = True

    def __check_init__(self):
        if int(self.num_steps) < 1:
            raise arg_error("num_steps", self.num_steps, "an integer >= 1")
        check_choice("solver", self.solver, ("euler", "heun"))
        check_choice("grid", self.grid, GRIDS)
        check_choice("backend", self.backend, ("scan", "diffrax"))

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        ts = time_grid(self.grid, self.num_steps, p.t1, t_end).astype(z1.dtype)
        n = self.num_steps
        heun = self.solver == "heun"
        if self.backend == "scan":
            def step(z, inp):
                t, t_next = inp
                h = t - t_next
                d1 = fn.reverse_drift(z, t, ode=True)
                z_e = z + h * d1
                if heun:
                    d2 = fn.reverse_drift(z_e, t_next, ode=True)
                    z_e = z + 0.5 * h * (d1 + d2)
                z_e = p.reflect(z_e)
                return z_e, (z_e if save_trajectory else None)

            z, traj = jax.lax.scan(step, z1, (ts[:-1], ts[1:]))
        else:
            t1 = p.t1
            term = dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(z, t1 - tau, ode=True))
            taus = t1 - ts
            saveat = dfx.SaveAt(ts=taus[1:]) if save_trajectory else dfx.SaveAt(t1=True)
            sol = dfx.diffeqsolve(
                term, dfx.Heun() if heun else dfx.Euler(), taus[0], taus[-1], dt0=None, y0=z1,
                saveat=saveat, stepsize_controller=dfx.StepTo(ts=taus), max_steps=n,
                adjoint=dfx.ForwardMode(),
            )
            z, traj = sol.ys[-1], sol.ys
        nfe = (2 if heun else 1) * n
        stats = dict(nfe=jnp.asarray(nfe), num_steps=jnp.asarray(n), num_rejected=jnp.asarray(0))
        if save_trajectory:
            stats.update(ts=ts[1:], trajectory=traj)
        return z, stats


def _check_adaptive(method, table) -> None:
    for name in ("rtol", "atol"):
        if not float(getattr(method, name)) > 0:
            raise arg_error(name, getattr(method, name), "a value > 0")
    if int(method.max_steps) < 1:
        raise arg_error("max_steps", method.max_steps, "an integer >= 1")
    _solver(method.solver, table, "solver")


def _solver(value, table, name):
    if isinstance(value, str):
        check_choice(name, value, tuple(table))
        return table[value]()
    return value


class AdaptiveODE(AbstractSampler):
    """Probability-flow ODE with an adaptive diffrax solver (default Tsit5) and
    ``PIDController(rtol, atol)``. **NFE** is computed from the solver's accepted and rejected
    steps (Tsit5/Dopri5: ``6 steps + 1``)."""

    rtol: float = 1e-5
    atol: float = 1e-5
    solver: object = "tsit5"
    max_steps: int = 4096
    dt0: float | None = None
    ode: ClassVar[bool] = True

    def __check_init__(self):
        _check_adaptive(self, _ODE_SOLVERS)

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        t1 = p.t1
        solver = _solver(self.solver, _ODE_SOLVERS, "solver")
        term = dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(z, t1 - tau, ode=True))
        span = t1 - t_end
        dt0 = span / 64 if self.dt0 is None else self.dt0
        saveat = dfx.SaveAt(t1=True, steps=True) if save_trajectory else dfx.SaveAt(t1=True)
        sol = dfx.diffeqsolve(
            term, solver, 0.0, span, dt0=dt0, y0=z1, saveat=saveat,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol),
            max_steps=self.max_steps, adjoint=dfx.ForwardMode(),
        )
        return _adaptive_result(sol, solver, t1, save_trajectory)


class AdaptiveSDE(AbstractSampler):
    """Reverse SDE with an adaptive stochastic diffrax solver (default Heun, valid because
    sdekit's processes have additive noise, where Itô and Stratonovich agree), a
    ``PIDController(rtol, atol)`` and a ``VirtualBrownianTree`` (so rejected steps re-use the
    same Brownian path)."""

    rtol: float = 1e-2
    atol: float = 1e-2
    solver: object = "heun"
    max_steps: int = 4096
    dt0: float | None = None
    brownian_tol: float | None = None
    ode: ClassVar[bool] = False

    def __check_init__(self):
        _check_adaptive(self, _SDE_SOLVERS)

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        t1 = p.t1
        solver = _solver(self.solver, _SDE_SOLVERS, "solver")
        span = t1 - t_end
        levy = dfx.SpaceTimeLevyArea if isinstance(solver, (dfx.ShARK, dfx.SRA1, dfx.SPaRK)) else None
        tol = span / 2**12 if self.brownian_tol is None else self.brownian_tol
        bm = dfx.VirtualBrownianTree(0.0, span, tol=tol, shape=jax.ShapeDtypeStruct(
            z1.shape, z1.dtype), key=key, **({"levy_area": levy} if levy else {}))
        terms = dfx.MultiTerm(
            dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(z, t1 - tau)),
            dfx.ControlTerm(lambda tau, z, args: _diag(p.diffusion(t1 - tau, z), z), bm),
        )
        dt0 = span / 64 if self.dt0 is None else self.dt0
        saveat = dfx.SaveAt(t1=True, steps=True) if save_trajectory else dfx.SaveAt(t1=True)
        sol = dfx.diffeqsolve(
            terms, solver, 0.0, span, dt0=dt0, y0=z1, saveat=saveat,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol,
                                                  dtmin=span / self.max_steps),
            max_steps=self.max_steps,
        )
        return _adaptive_result(sol, solver, t1, save_trajectory)


def _adaptive_result(sol, solver, t1, save_trajectory):
    n = sol.stats["num_steps"]
    rej = sol.stats["num_rejected_steps"]
    stats = dict(nfe=_nfe(solver, n), num_steps=n, num_rejected=rej)
    if save_trajectory:  # SaveAt(steps=True): rows past the last step are padded with inf
        stats.update(ts=t1 - sol.ts[:-1], trajectory=sol.ys[:-1])
    return sol.ys[-1], stats


__all__ = ["AdaptiveODE", "AdaptiveSDE", "EulerMaruyama", "ODE"]
