"""Samplers for processes on a bounded domain (reflected diffusion, Lou & Ermon 2023), keeping
every iterate inside the domain.

- `ReflectedPC`: the reference's predictor-corrector sampler: reflected Euler-Maruyama
  predictor ``x <- F(x + g^2 s h + g sqrt(h) z)`` and an optional Langevin corrector
  ``x <- F(x + e s + sqrt(2 e) xi)``, ``e = 2 (snr mean|xi| / mean|s|)^2``, with the fold ``F``
  (or the clip, "thresholding") after each update. ``dt="reference"`` reproduces the original
  code (grid ``linspace(t1, t_end, N)``, ``N - 1`` updates of length ``t1 / N``);
  ``dt="grid"`` takes ``N`` steps of the grid's own spacing.
- `ReflectedODE`: the probability-flow ODE ``dx/dt = -g^2 s / 2`` with the reference's
  mollifier ``b(x) = exp((4 - 1 / (x (1 - x))) / moll)`` multiplying the velocity near the walls,
  evaluated at ``F(x)``; adaptive (diffrax, PID controller, the reference's ``rtol = atol =
  1e-5``) or fixed-step; the reflection is applied after every accepted step.
- `ReflectedAdaptiveSDE`: the reverse SDE with an adaptive stochastic diffrax solver, the
  reflection applied after every accepted step (adaptive control of reflected SDEs is not
  standard: the error estimate is the unreflected step's).

`Reflecting` is the diffrax solver wrapper that applies a reflection map after every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx

from .._custom_types import Data, Key
from .._errors import arg_error, check_choice
from ..processes import AbstractProcess
from ._affine import check_steps
from ._base import AbstractSampler, PredictionFn
from ._solvers import _ODE_SOLVERS, _SDE_SOLVERS, _check_adaptive, _nfe, _solver

PROJECTIONS: tuple[str, ...] = ("fold", "clip")
DT_CONVENTIONS: tuple[str, ...] = ("reference", "grid")
CORRECTORS: tuple[str, ...] = ("none", "langevin")


def require_bounded(method: Any, process: AbstractProcess) -> None:
    """Raise a readable TypeError unless ``process`` declares a bounded box domain."""
    if not getattr(process, "bounded", False):
        raise TypeError(
            f"{type(method).__name__} samples processes on a bounded domain (e.g. ReflectedVE); "
            f"got {type(process).__name__}, which does not declare `bounded = True`."
        )


def _project(process, kind):
    if kind == "fold":
        return process.reflect
    lo, hi = float(process.lower), float(process.upper)
    return lambda x: jnp.clip(x, lo, hi)


def mollifier(x: Data, moll: float) -> Data:
    """The reference ODE sampler's bump ``b(x) = exp((4 - 1 / (x (1 - x))) / moll)`` on [0, 1]:
    ``b(1/2) = 1``, ``b -> 0`` at the walls (0 outside)."""
    q = x * (1.0 - x)
    safe = jnp.where(q > 0, q, 1.0)
    return jnp.where(q > 0, jnp.exp((4.0 - 1.0 / safe) / moll), 0.0).astype(x.dtype)


class Reflecting(dfx.AbstractAdaptiveSolver, dfx.AbstractWrappedSolver):
    """Wrap a diffrax solver so that ``reflect`` is applied to the state after every step.

    The error estimate is the wrapped solver's (of the step before reflection), so adaptive
    step-size control works unchanged; a first-same-as-last stage is not recomputed after a
    reflection (reflections are rare when the vector field is tangent at the walls).
    """

    solver: dfx.AbstractSolver
    reflect: Callable

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # type: ignore[override]
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, err, dense, state, result = self.solver.step(
            terms, t0, t1, y0, args, solver_state, made_jump)
        return self.reflect(y1), err, dense, state, result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def _saveat(save_trajectory):
    # The final state and (optionally) every accepted step, padded with inf by diffrax.
    subs = [dfx.SubSaveAt(t1=True)] + ([dfx.SubSaveAt(steps=True)] if save_trajectory else [])
    return dfx.SaveAt(subs=subs)


def _finish(sol, p, t1, stats, save_trajectory):
    if save_trajectory:
        stats.update(ts=t1 - sol.ts[1], trajectory=sol.ys[1])
    return p.reflect(sol.ys[0][-1]), stats


class ReflectedPC(AbstractSampler):
    """The reference PC sampler for bounded processes (reflected EM predictor, optional Langevin
    corrector, fold or clip after every update).

    **Arguments:** ``num_steps`` (``N``, 1000); ``dt``: ``"reference"`` (``N - 1`` updates of
    length ``t1 / N`` on ``linspace(t1, t_end, N)``, as the original code) or ``"grid"`` (``N``
    steps of the grid spacing); ``corrector``: ``"none"`` (the reference's default) or
    ``"langevin"`` with ``snr`` (0.01 in the reference's configs) and ``n_corrector`` steps;
    ``projection``: ``"fold"`` (reflection, the reference) or ``"clip"`` (thresholding);
    ``return_mean``: return the last step's drift-only update ``x_bar`` instead of ``x``
    (the reference's ``denoiser=mean``). **NFE** = updates ``* (1 + n_corrector)``.
    """

    num_steps: int = 1000
    dt: str = "reference"
    corrector: str = "none"
    snr: float = 0.01
    n_corrector: int = 1
    projection: str = "fold"
    return_mean: bool = False
    ode: ClassVar[bool] = False

    def __check_init__(self):
        check_steps(self.num_steps)
        check_choice("dt", self.dt, DT_CONVENTIONS)
        check_choice("corrector", self.corrector, CORRECTORS)
        check_choice("projection", self.projection, PROJECTIONS)
        if not float(self.snr) > 0:
            raise arg_error("snr", self.snr, "a value > 0")
        if isinstance(self.n_corrector, bool) or int(self.n_corrector) != self.n_corrector or \
                int(self.n_corrector) < 1:
            raise arg_error("n_corrector", self.n_corrector, "an integer >= 1")
        if self.dt == "reference" and int(self.num_steps) < 2:
            raise arg_error("num_steps", self.num_steps, "an integer >= 2 with dt='reference'")

    def check_process(self, process: AbstractProcess) -> None:
        require_bounded(self, process)

    def grid(self, t1: float, t_end: float):
        """``(times, step lengths)`` of the updates."""
        n = int(self.num_steps)
        if self.dt == "reference":
            ts = jnp.linspace(t1, t_end, n)[:-1]
            return ts, jnp.full_like(ts, t1 / n)
        ts = jnp.linspace(t1, t_end, n + 1)
        return ts[:-1], ts[:-1] - ts[1:]

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        proj = _project(p, self.projection)
        ts, hs = self.grid(float(p.t1), float(t_end))
        ts, hs = ts.astype(z1.dtype), hs.astype(z1.dtype)
        m = int(self.n_corrector) if self.corrector == "langevin" else 0

        def norm(x):
            return jnp.mean(jnp.sqrt(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=-1)))

        def corrector(z, t, k):
            def one(z, kk):
                s = fn.score(z, t)
                xi = jr.normal(kk, z.shape, z.dtype)
                ns = norm(s)  # 0 where the score vanishes (uniform law at t1): no step
                e = jnp.where(ns > 0, 2.0 * (self.snr * norm(xi) / jnp.where(ns > 0, ns, 1.0)) ** 2,
                              0.0)
                return proj(z + e * s + jnp.sqrt(2.0 * e) * xi), None

            z, _ = jax.lax.scan(one, z, jr.split(k, m))
            return z

        def body(carry, inp):
            z, _ = carry
            t, h, k = inp
            kc, kp = jr.split(k)
            if m:
                z = corrector(z, t, kc)
            g = p.diffusion(t, z)
            mean = z + h * fn.reverse_drift(z, t)
            z = proj(mean + g * jnp.sqrt(h) * jr.normal(kp, z.shape, z.dtype))
            mean = proj(mean)
            return (z, mean), (z if save_trajectory else None)

        (z, mean), traj = jax.lax.scan(body, (z1, z1), (ts, hs, jr.split(key, ts.shape[0])))
        n = ts.shape[0]
        stats = dict(nfe=jnp.asarray(n * (1 + m)), num_steps=jnp.asarray(n),
                     num_rejected=jnp.asarray(0))
        if save_trajectory:
            stats.update(ts=ts - hs, trajectory=traj)
        return (mean if self.return_mean else z), stats


class ReflectedODE(AbstractSampler):
    """Probability-flow ODE for a bounded process, with the reference's wall treatment.

    The velocity ``-g(t)^2 s(F(x), t) / 2`` (reverse time) is multiplied by the mollifier
    ``b(F(x))`` (``moll=200``; ``moll=None`` disables it) and evaluated at the folded state; the
    prior draw is mapped to ``[side_eps, 1 - side_eps]^d`` (0.01, as the reference). Adaptive
    (``num_steps=None``: ``solver`` with ``PIDController(rtol, atol)``, default Tsit5 at
    ``1e-5``) or fixed-step (``num_steps`` steps of ``solver``: ``euler``, ``heun``, ...). The
    reflection is applied after every accepted step, so every iterate stays in the domain.
    """

    rtol: float = 1e-5
    atol: float = 1e-5
    solver: Any = "tsit5"
    num_steps: int | None = None
    moll: float | None = 200.0
    side_eps: float = 0.01
    max_steps: int = 4096
    ode: ClassVar[bool] = True

    def __check_init__(self):
        table = dict(_ODE_SOLVERS, euler=dfx.Euler)
        _check_adaptive(self, table)
        if self.num_steps is not None:
            check_steps(self.num_steps)
        if self.moll is not None and not float(self.moll) > 0:
            raise arg_error("moll", self.moll, "None (no mollifier) or a value > 0")
        if not 0.0 <= float(self.side_eps) < 0.5:
            raise arg_error("side_eps", self.side_eps, "a margin in [0, 0.5)")

    def check_process(self, process: AbstractProcess) -> None:
        require_bounded(self, process)

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        t1 = float(p.t1)
        lo, hi = float(p.lower), float(p.upper)
        eps = self.side_eps * (hi - lo)
        z1 = (lo + eps) + (hi - lo - 2 * eps) * (z1 - lo) / (hi - lo)

        def field(tau, z, args):
            x = p.reflect(z)
            v = fn.reverse_drift(x, t1 - tau, ode=True)
            if self.moll is not None:
                v = v * mollifier((x - lo) / (hi - lo), float(self.moll))
            return v

        solver = _solver(self.solver, dict(_ODE_SOLVERS, euler=dfx.Euler), "solver")
        span = t1 - float(t_end)
        if self.num_steps is None:
            controller = dfx.PIDController(rtol=self.rtol, atol=self.atol)
            dt0, max_steps = span / 64, int(self.max_steps)
        else:
            controller = dfx.ConstantStepSize()
            dt0, max_steps = span / int(self.num_steps), int(self.num_steps)
        saveat = _saveat(save_trajectory)
        sol = dfx.diffeqsolve(
            dfx.ODETerm(field), Reflecting(solver, p.reflect), 0.0, span, dt0=dt0, y0=z1,
            saveat=saveat, stepsize_controller=controller, max_steps=max_steps,
        )
        n = sol.stats["num_steps"]
        stats = dict(nfe=_nfe(solver, n), num_steps=n, num_rejected=sol.stats["num_rejected_steps"])
        return _finish(sol, p, t1, stats, save_trajectory)


class ReflectedAdaptiveSDE(AbstractSampler):
    """Reverse SDE of a bounded process with an adaptive stochastic diffrax solver (default
    Heun: additive noise, Ito = Stratonovich), ``PIDController(rtol, atol)``, a
    ``VirtualBrownianTree``, and the reflection after every accepted step."""

    rtol: float = 1e-2
    atol: float = 1e-2
    solver: Any = "heun"
    max_steps: int = 4096
    brownian_tol: float | None = None
    ode: ClassVar[bool] = False

    def __check_init__(self):
        _check_adaptive(self, _SDE_SOLVERS)

    def check_process(self, process: AbstractProcess) -> None:
        require_bounded(self, process)

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        t1 = float(p.t1)
        span = t1 - float(t_end)
        solver = _solver(self.solver, _SDE_SOLVERS, "solver")
        levy = dfx.SpaceTimeLevyArea if isinstance(solver, (dfx.ShARK, dfx.SRA1, dfx.SPaRK)) \
            else None
        tol = span / 2**12 if self.brownian_tol is None else self.brownian_tol
        bm = dfx.VirtualBrownianTree(0.0, span, tol=tol, shape=jax.ShapeDtypeStruct(
            z1.shape, z1.dtype), key=key, **({"levy_area": levy} if levy else {}))

        def diag(tau, z, args):
            g = p.diffusion(t1 - tau, z)
            return lx.DiagonalLinearOperator(jnp.broadcast_to(g, z.shape).astype(z.dtype))

        terms = dfx.MultiTerm(
            dfx.ODETerm(lambda tau, z, args: fn.reverse_drift(p.reflect(z), t1 - tau)),
            dfx.ControlTerm(diag, bm),
        )
        saveat = _saveat(save_trajectory)
        sol = dfx.diffeqsolve(
            terms, Reflecting(solver, p.reflect), 0.0, span, dt0=span / 64, y0=z1, saveat=saveat,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol,
                                                  dtmin=span / self.max_steps),
            max_steps=int(self.max_steps),
        )
        n = sol.stats["num_steps"]
        stats = dict(nfe=_nfe(solver, n), num_steps=n, num_rejected=sol.stats["num_rejected_steps"])
        return _finish(sol, p, t1, stats, save_trajectory)


__all__ = [
    "CORRECTORS",
    "DT_CONVENTIONS",
    "PROJECTIONS",
    "Reflecting",
    "ReflectedAdaptiveSDE",
    "ReflectedODE",
    "ReflectedPC",
    "mollifier",
    "require_bounded",
]
