"""The one stepping loop of every fixed-step sampler, and the reflecting diffrax solver wrapper.

A fixed-step sampler (`AbstractFixedStepSampler`) writes only its ``step``: one update from time
``t`` to ``t_next < t``. `run_steps` owns everything else: the time grid, the ``lax.scan`` over
it (or diffrax's ``diffeqsolve`` with ``StepTo`` for the samplers that offer that backend), the
per-step keys, the reflection ``process.reflect`` after every step, the trajectory, the NFE and
the typed `SolveStats`. `Reflecting` wraps any diffrax solver so that every step it takes
(accepted or not) ends in the process's domain; the adaptive samplers use it.
"""

import abc
from typing import Any, ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key
from .._validate import arg_error, check_grid_array, static_int
from ..processes import AbstractProcess
from ._base import AbstractSampler, PredictionFn, SolveStats, is_bounded
from ._grids import GRIDS, AbstractGrid, as_grid


class AbstractFixedStepSampler(AbstractSampler):
    """A sampler on a fixed time grid: subclasses write `step` (and, when the last step returns
    a data prediction, `final_step`); the shared loop does the rest.

    Concrete subclasses declare the fields ``num_steps`` (``None``: ``default_steps``, or the
    length of an explicit grid minus one) and ``grid`` (a grid module of ``grid_kinds``, its
    shorthand name, or an explicit array of ``num_steps + 1`` decreasing times), and may set
    the capabilities of
    `AbstractSampler` and ``step_nfe`` / ``final_nfe`` (network calls per step / last step).
    The loop applies ``process.reflect`` after every step.
    """

    num_steps: eqx.AbstractVar[int | None]
    grid: eqx.AbstractVar[Any]

    keeps_in_domain: ClassVar[bool] = True
    grid_kinds: ClassVar[tuple[type, ...]] = GRIDS
    default_steps: ClassVar[int] = 100
    step_nfe: ClassVar[int] = 1
    final_nfe: ClassVar[int] = 1

    def __post_init__(self):
        self.grid = as_grid(self.grid, self.grid_kinds)
        if isinstance(self.grid, AbstractGrid):
            if self.num_steps is None:
                self.num_steps = self.default_steps
            return
        g = self.grid
        if self.num_steps is None:
            self.num_steps = g.shape[0] - 1
        elif static_int("num_steps", self.num_steps, 1) != g.shape[0] - 1:
            raise ValueError(
                f"arguments `num_steps` and `grid`: got num_steps={self.num_steps!r} and a grid "
                f"of {g.shape[0]} times, expected num_steps + 1 times (or num_steps=None)."
            )

    def __check_init__(self):
        static_int("num_steps", self.num_steps, 1)
        if isinstance(self.grid, AbstractGrid):
            if not isinstance(self.grid, self.grid_kinds):
                raise arg_error("grid", self.grid, "one of " + ", ".join(
                    f"{k.__name__}() ({k.name!r})" for k in self.grid_kinds)
                    + f" or an explicit array of times for {type(self).__name__}")
        else:
            check_grid_array(self.grid)

    def sigma_limits(self) -> tuple[float | None, float | None]:
        """``(sigma_min, sigma_max)`` that clip a noise-level grid (``logsnr``, ``edm``;
        ``None``: the process's own range)."""
        return None, None

    # --- what a sampler writes -----------------------------------------------------------------

    def init(self, fn: PredictionFn, z: Data, t: Any) -> Any:
        """The sampler's memory before the first step (multistep history; default ``None``)."""
        return None

    @abc.abstractmethod
    def step(self, fn: PredictionFn, t: Array, t_next: Array, z: Data, memory: Any,
             key: Key) -> tuple[Data, Any]:
        """One update of the state ``z`` from time ``t`` to ``t_next < t``: ``(z_next, memory)``.
        The loop reflects ``z_next`` into the domain afterwards."""

    def final_step(self, fn: PredictionFn, t: Array, t_next: Array, z: Data, memory: Any,
                   key: Key) -> Data:
        """The last update when ``returns_x0``: the data prediction (default: a plain step)."""
        return self.step(fn, t, t_next, z, memory, key)[0]

    def named_grid(self, process: AbstractProcess, t_start: Any, t_end: Any, dtype: Any) -> Array:
        """The ``num_steps + 1`` times of the ``grid`` module from ``t_start`` to ``t_end``."""
        lo, hi = self.sigma_limits()
        return self.grid(process, self.num_steps, t_start, t_end, dtype=dtype, sigma_min=lo,
                         sigma_max=hi)

    @property
    def use_diffrax(self) -> bool:
        """Whether the loop runs on diffrax (``diffeqsolve`` + ``StepTo``) instead of a scan."""
        return False

    def diffrax_problem(self, fn: PredictionFn, key: Key, z1: Data, t_start: Any):
        """``(terms, solver)`` in reverse time ``tau = t_start - t`` for the diffrax backend."""
        raise TypeError(f"{type(self).__name__} has no diffrax backend.")

    # --- what the loop does -----------------------------------------------------------------------

    def times(self, process: AbstractProcess, t_start: Any, t_end: Any, dtype: Any) -> Array:
        """The grid this sampler runs on (named or explicit), in ``dtype``."""
        if isinstance(self.grid, AbstractGrid):
            return self.named_grid(process, t_start, t_end, dtype)
        return jnp.asarray(self.grid, dtype=dtype)

    def nfe(self) -> int:
        """Network evaluations of one solve."""
        n = int(self.num_steps)
        if self.returns_x0:
            return self.step_nfe * (n - 1) + self.final_nfe
        return self.step_nfe * n

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: Any, *,
              save_trajectory: bool = False, t_start: Any = None) -> tuple[Data, SolveStats]:
        """Run the shared loop (see `run_steps`)."""
        t_start = fn.process.t1 if t_start is None else t_start
        return run_steps(self, key, fn, z1, t_start, t_end, save_trajectory)


def run_steps(sampler: AbstractFixedStepSampler, key: Key, fn: PredictionFn, z1: Data,
              t_start: Any, t_end: Any, save_trajectory: bool) -> tuple[Data, SolveStats]:
    """The loop of every fixed-step sampler: grid, keys, steps, reflection, trajectory, stats."""
    p = fn.process
    n = int(sampler.num_steps)
    ts = sampler.times(p, t_start, t_end, z1.dtype)
    keys = jr.split(key, n)
    if sampler.use_diffrax:
        z, traj = _diffrax_loop(sampler, fn, z1, ts, keys, save_trajectory)
    else:
        final = bool(sampler.returns_x0)
        n_scan = n - 1 if final else n
        memory = sampler.init(fn, z1, ts[0])

        def body(carry, inp):
            z, mem = carry
            t, t_next, k = inp
            z, mem = sampler.step(fn, t, t_next, z, mem, k)
            z = p.reflect(z)
            return (z, mem), (z if save_trajectory else None)

        (z, memory), traj = jax.lax.scan(
            body, (z1, memory), (ts[:n_scan], ts[1:n_scan + 1], keys[:n_scan]))
        if final:
            z = p.reflect(sampler.final_step(fn, ts[n - 1], ts[n], z, memory, keys[n - 1]))
            if save_trajectory:
                traj = jnp.concatenate([traj, z[None]], axis=0)
    stats = SolveStats(nfe=jnp.asarray(sampler.nfe()), num_steps=jnp.asarray(n),
                       num_rejected=jnp.asarray(0), ts=ts[1:] if save_trajectory else None,
                       trajectory=traj if save_trajectory else None)
    return z, stats


def _diffrax_loop(sampler, fn, z1, ts, keys, save_trajectory):
    n = ts.shape[0] - 1
    terms, solver = sampler.diffrax_problem(fn, keys[0], z1, ts[0])
    taus = ts[0] - ts
    saveat = dfx.SaveAt(steps=True) if save_trajectory else dfx.SaveAt(t1=True)
    sol = dfx.diffeqsolve(
        terms, Reflecting.forward_mode(solver, fn.process), taus[0], taus[-1], dt0=None, y0=z1,
        saveat=saveat, stepsize_controller=dfx.StepTo(ts=taus), adjoint=dfx.ForwardMode(),
        max_steps=n,
    )
    return sol.ys[-1], sol.ys


def _fsal_state(solver, state) -> bool:
    return isinstance(solver, dfx.AbstractRungeKutta) and isinstance(state, tuple) \
        and len(state) == 2


def nfe_per_step(solver: dfx.AbstractSolver, process: AbstractProcess, table) -> tuple[int, int]:
    """``(per_step, extra)``: network evaluations per attempted step and once per solve of a
    diffrax solver inside `Reflecting` (a bounded process re-evaluates the FSAL stage)."""
    per, fsal = table[type(solver)]
    if fsal and is_bounded(process):
        return per + 1, 0
    return per, (1 if fsal else 0)


class Reflecting(dfx.AbstractWrappedSolver):
    """A diffrax solver that applies ``process.reflect`` to the state at the end of every step
    of the wrapped solver, so that every accepted step ends in the process's domain (for an
    unbounded process this is the wrapped solver). A first-same-as-last solver (Tsit5, Dopri5)
    then evaluates its first stage again at the reflected state (one more NFE per step).

    Dense output between steps interpolates the unreflected stages: save at steps
    (``SaveAt(steps=True)`` / ``t1=True``), as the samplers do.
    """

    solver: dfx.AbstractSolver
    process: AbstractProcess

    @classmethod
    def forward_mode(cls, solver: dfx.AbstractSolver, process: AbstractProcess) -> "Reflecting":
        """The wrapper for ``adjoint=ForwardMode()``: sets the inner Runge–Kutta solver's
        ``scan_kind="bounded"`` as ``diffeqsolve`` does itself for forward mode (it cannot reach
        through the wrapper); the numbers are the same."""
        if isinstance(solver, (dfx.AbstractRungeKutta, dfx.AbstractSRK)) \
                and solver.scan_kind is None:
            solver = eqx.tree_at(lambda s: s.scan_kind, solver, "bounded",
                                 is_leaf=lambda x: x is None)
        return cls(solver, process)

    @property
    def scan_kind(self):
        if isinstance(self.solver, (dfx.AbstractRungeKutta, dfx.AbstractSRK)):
            return self.solver.scan_kind
        return None

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
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
        y1, y_error, dense_info, solver_state, result = self.solver.step(
            terms, t0, t1, y0, args, solver_state, made_jump)
        if not is_bounded(self.process):  # reflect is the identity: the wrapped solver as is
            return y1, y_error, dense_info, solver_state, result
        y1 = self.process.reflect(y1)
        if isinstance(dense_info, dict) and "y1" in dense_info:
            dense_info = dict(dense_info, y1=y1)
        if _fsal_state(self.solver, solver_state):
            # the stored last stage is the vector field at the unreflected state: make the next
            # step evaluate its first stage at the reflected one (one more NFE per step)
            solver_state = (jnp.ones_like(solver_state[0]), solver_state[1])
        return y1, y_error, dense_info, solver_state, result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


__all__ = ["AbstractFixedStepSampler", "Reflecting", "run_steps"]
