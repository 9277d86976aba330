"""Reverse-time SDE and probability-flow ODE samplers, fixed-step and adaptive, on diffrax.

All methods integrate in reverse time ``tau = t1 - t`` from ``tau = 0`` (the prior) to
``tau = t1 - t_end``; the network is always evaluated at the forward time ``t``.

- `EulerMaruyama`: reverse SDE, Euler–Maruyama on a fixed grid (Song et al. 2021;
  PSLD's ``em_sde``).
- `AdaptiveSDE`: reverse SDE with a diffrax stochastic solver, ``PIDController`` and a
  ``VirtualBrownianTree`` or a `GridBrownianPath`.
- `ODE`: probability-flow ODE with Euler or Heun on a fixed grid.
- `AdaptiveODE`: probability-flow ODE with Tsit5 / Dopri5 (or any diffrax solver) and
  ``PIDController(rtol, atol)``.

Fixed-step methods run on a plain ``lax.scan`` loop by default and on diffrax's
``diffeqsolve`` + ``StepTo`` with ``backend="diffrax"``; the two are the same algorithm
(tested) and ``benchmarks/sampler_overhead.py`` measures which is faster (see diffrax#517).
"""

from __future__ import annotations

from typing import ClassVar

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx

from .._custom_types import ArrayLike, Data, Key
from .._validate import arg_error, check_choice, static_int, static_real
from ._base import AbstractSampler, PredictionFn, SolveStats
from ._brownian import GridBrownianPath, default_num_cells
from ._grids import AbstractGrid
from ._loop import AbstractFixedStepSampler, Reflecting, nfe_per_step

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


class EulerMaruyama(AbstractFixedStepSampler):
    """Reverse-time SDE by Euler–Maruyama on a fixed grid.

    ``z <- z + h [-f(z, t) + g(t)^2 s(z, t)] + g(t) sqrt(h) xi`` for ``t`` on the grid
    (``uniform``, ``quadratic``, ``karras`` or an explicit array of ``num_steps + 1`` times),
    one network call per step, the reflection map applied after every step. **NFE** =
    ``num_steps``. ``backend="diffrax"`` runs the same algorithm on ``diffeqsolve`` + ``StepTo``.
    """

    num_steps: int | None = None
    grid: str | AbstractGrid | ArrayLike = "uniform"
    backend: str = "scan"
    ode: ClassVar[bool] = False
    order: ClassVar[float] = 1.0
    default_steps: ClassVar[int] = 1000

    def __check_init__(self):
        check_choice("backend", self.backend, ("scan", "diffrax"))

    @property
    def use_diffrax(self) -> bool:
        return self.backend == "diffrax"

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        p = fn.process
        h = t - t_next
        g = p.diffusion(t, z)
        noise = jr.normal(key, z.shape, z.dtype)
        return z + h * fn.reverse_drift(z, t) + g * jnp.sqrt(h) * noise, memory

    def diffrax_problem(self, fn: PredictionFn, key: Key, z1: Data, t_start):
        p = fn.process
        bm = dfx.UnsafeBrownianPath(shape=z1.shape, key=key)
        terms = dfx.MultiTerm(
            dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(z, t_start - tau)),
            dfx.ControlTerm(lambda tau, z, args: _diag(p.diffusion(t_start - tau, z), z), bm),
        )
        return terms, dfx.Euler()


class ODE(AbstractFixedStepSampler):
    """Probability-flow ODE with a fixed-step Euler (order 1) or Heun (order 2) method.

    ``dz/dtau = -f(z, t) + g(t)^2 s(z, t) / 2``. **NFE** = ``num_steps`` (Euler) or
    ``2 num_steps`` (Heun). ``grid`` and ``backend`` as for `EulerMaruyama`.
    """

    num_steps: int | None = None
    solver: str = "heun"
    grid: str | AbstractGrid | ArrayLike = "uniform"
    backend: str = "scan"
    ode: ClassVar[bool] = True
    default_steps: ClassVar[int] = 100

    def __check_init__(self):
        check_choice("solver", self.solver, ("euler", "heun"))
        check_choice("backend", self.backend, ("scan", "diffrax"))

    @property
    def order(self) -> float:  # type: ignore[override]
        return 2.0 if self.solver == "heun" else 1.0

    @property
    def step_nfe(self) -> int:  # type: ignore[override]
        return 2 if self.solver == "heun" else 1

    @property
    def use_diffrax(self) -> bool:
        return self.backend == "diffrax"

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        h = t - t_next
        d1 = fn.reverse_drift(z, t, ode=True)
        z_e = z + h * d1
        if self.solver == "heun":
            d2 = fn.reverse_drift(z_e, t_next, ode=True)
            z_e = z + 0.5 * h * (d1 + d2)
        return z_e, memory

    def diffrax_problem(self, fn: PredictionFn, key: Key, z1: Data, t_start):
        term = dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(z, t_start - tau, ode=True))
        return term, dfx.Heun() if self.solver == "heun" else dfx.Euler()


def _check_adaptive(method, table) -> None:
    for name in ("rtol", "atol"):
        static_real(name, getattr(method, name), "a finite value > 0", lambda v: v > 0)
    static_int("max_steps", method.max_steps, 1)
    if method.dt0 is not None:
        static_real("dt0", method.dt0, "None or a finite value > 0", lambda v: v > 0)
    _solver(method.solver, table, "solver")


def _solver(value, table, name):
    if isinstance(value, str):
        check_choice(name, value, tuple(table))
        return table[value]()
    if not isinstance(value, dfx.AbstractSolver):
        raise arg_error(name, value, "one of " + ", ".join(repr(k) for k in table)
                        + " or a diffrax solver")
    return value


class AdaptiveODE(AbstractSampler):
    """Probability-flow ODE with an adaptive diffrax solver (default Tsit5) and
    ``PIDController(rtol, atol)``. **NFE** is computed from the solver's accepted and rejected
    steps (Tsit5/Dopri5: ``6 steps + 1``). Every step ends with ``process.reflect``
    (`Reflecting`)."""

    rtol: float = 1e-5
    atol: float = 1e-5
    solver: object = "tsit5"
    max_steps: int = 4096
    dt0: float | None = None
    ode: ClassVar[bool] = True
    order: ClassVar[float] = 5.0
    keeps_in_domain: ClassVar[bool] = True

    def __check_init__(self):
        _check_adaptive(self, _ODE_SOLVERS)

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end, *,
              save_trajectory: bool = False, t_start=None):
        t_start = fn.process.t1 if t_start is None else t_start
        solver = _solver(self.solver, _ODE_SOLVERS, "solver")
        term = dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(z, t_start - tau, ode=True))
        span = t_start - t_end
        dt0 = span / 64 if self.dt0 is None else self.dt0
        saveat = dfx.SaveAt(t1=True, steps=True) if save_trajectory else dfx.SaveAt(t1=True)
        sol = dfx.diffeqsolve(
            term, Reflecting.forward_mode(solver, fn.process), 0.0, span, dt0=dt0, y0=z1,
            saveat=saveat,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol),
            max_steps=self.max_steps, adjoint=dfx.ForwardMode(),
        )
        return _adaptive_result(sol, solver, fn.process, t_start, save_trajectory)


class AdaptiveSDE(AbstractSampler):
    """Reverse SDE with an adaptive stochastic diffrax solver (default Heun, valid because
    sdekit's processes have additive noise, where Itô and Stratonovich agree), a
    ``PIDController(rtol, atol)`` and a Brownian path of resolution ``brownian_tol`` (default
    ``span / 4096``) that rejected steps re-use. Every step ends with ``process.reflect``
    (`Reflecting`).

    ``brownian="tree"`` (default) is diffrax's ``VirtualBrownianTree``; ``brownian="grid"`` is
    `GridBrownianPath`, the same law (for a power-of-two ``brownian_cells``) at a fraction of
    the cost per step: the path is stored on ``brownian_cells`` cells (default 64, halved until
    the grid fits in 1 GiB) and refined inside a cell down to ``brownian_tol``. Both paths give
    the stochastic Runge–Kutta solvers (``"shark"``, ``"sra1"``, ``"spark"``) their space-time
    Lévy area.
    """

    rtol: float = 1e-2
    atol: float = 1e-2
    solver: object = "heun"
    max_steps: int = 4096
    dt0: float | None = None
    brownian_tol: float | None = None
    brownian: str = "tree"
    brownian_cells: int | None = None
    ode: ClassVar[bool] = False
    order: ClassVar[float] = 1.0
    keeps_in_domain: ClassVar[bool] = True

    def __check_init__(self):
        _check_adaptive(self, _SDE_SOLVERS)
        if self.brownian_tol is not None:
            static_real("brownian_tol", self.brownian_tol,
                       "None or a finite value > 0 (the Brownian path's time resolution)",
                       lambda v: v > 0)
        check_choice("brownian", self.brownian, ("tree", "grid"))
        if self.brownian_cells is not None:
            if self.brownian != "grid":
                raise arg_error("brownian_cells", self.brownian_cells,
                                "None with brownian='tree' (cells are for brownian='grid')")
            static_int("brownian_cells", self.brownian_cells, 1)
        if self.brownian == "grid" and _grid_levy_area(_solver(self.solver, _SDE_SOLVERS,
                                                                "solver")) is None:
            raise arg_error("solver", self.solver, "a solver that needs at most space-time Lévy "
                            "area with brownian='grid' (GridBrownianPath has no space-time-time "
                            "Lévy area); use brownian='tree'")

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end, *,
              save_trajectory: bool = False, t_start=None):
        p = fn.process
        t_start = p.t1 if t_start is None else t_start
        solver = _solver(self.solver, _SDE_SOLVERS, "solver")
        span = t_start - t_end
        srk = isinstance(solver, (dfx.ShARK, dfx.SRA1, dfx.SPaRK))
        levy = dfx.SpaceTimeLevyArea if srk else None
        tol = span / 2**12 if self.brownian_tol is None else self.brownian_tol
        shape = jax.ShapeDtypeStruct(z1.shape, z1.dtype)
        if self.brownian == "grid":
            bm = self._grid_path(span, tol, shape, key, _grid_levy_area(solver))
        else:
            bm = dfx.VirtualBrownianTree(0.0, span, tol=tol, shape=shape, key=key,
                                         **({"levy_area": levy} if levy else {}))
        terms = dfx.MultiTerm(
            dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(z, t_start - tau)),
            dfx.ControlTerm(lambda tau, z, args: _diag(p.diffusion(t_start - tau, z), z), bm),
        )
        dt0 = span / 64 if self.dt0 is None else self.dt0
        saveat = dfx.SaveAt(t1=True, steps=True) if save_trajectory else dfx.SaveAt(t1=True)
        sol = dfx.diffeqsolve(
            terms, Reflecting(solver, p), 0.0, span, dt0=dt0, y0=z1, saveat=saveat,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol,
                                                  dtmin=span / self.max_steps),
            max_steps=self.max_steps,
        )
        return _adaptive_result(sol, solver, fn.process, t_start, save_trajectory)

    def _grid_path(self, span, tol, shape, key, levy_area) -> GridBrownianPath:
        for name, v in (("t_start - t_end", span), ("brownian_tol", tol)):
            if isinstance(v, jax.core.Tracer):
                raise arg_error(name, f"a traced value {v}", "a concrete number with "
                                "brownian='grid' (the grid's size is static): pass t_start and "
                                "t_end as Python floats, or use brownian='tree'")
        levy = levy_area is dfx.SpaceTimeLevyArea
        cells = self.brownian_cells
        cells = default_num_cells(shape, levy=levy) if cells is None else cells
        try:
            return GridBrownianPath(0.0, float(span), shape, key, num_cells=cells,
                                    tol=float(tol), levy_area=levy_area)
        except ValueError as e:
            raise ValueError(f"AdaptiveSDE(brownian='grid', brownian_cells={cells}): {e} "
                             "Pass a smaller `brownian_cells`.") from e


def _grid_levy_area(solver):
    """What the grid path must provide for ``solver``: ``BrownianIncrement``,
    ``SpaceTimeLevyArea``, or None (more than the grid path has)."""
    srk = (dfx.AbstractSRK, dfx.AbstractFosterLangevinSRK)
    need = solver.minimal_levy_area if isinstance(solver, srk) else None
    for have in (dfx.BrownianIncrement, dfx.SpaceTimeLevyArea):
        if need is None or issubclass(have, need):
            return have
    return None


def _adaptive_result(sol, solver, process, t_start, save_trajectory):
    n = sol.stats["num_steps"]
    rej = sol.stats["num_rejected_steps"]
    _nfe(solver, 1)  # a clear error for a solver whose cost is unknown
    per, extra = nfe_per_step(solver, process, _SOLVER_NFE)
    # SaveAt(steps=True): one row per accepted step (the last one at t_end), then rows padded
    # with inf up to max_steps
    stats = SolveStats(nfe=jnp.asarray(per * n + extra), num_steps=jnp.asarray(n),
                       num_rejected=jnp.asarray(rej),
                       ts=t_start - sol.ts if save_trajectory else None,
                       trajectory=sol.ys if save_trajectory else None)
    if save_trajectory:
        return sol.ys[n - rej - 1], stats
    return sol.ys[-1], stats


__all__ = ["AdaptiveODE", "AdaptiveSDE", "EulerMaruyama", "ODE"]
