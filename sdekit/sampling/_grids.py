r"""Time discretisations for fixed-step samplers, from ``t_start`` (noise) down to ``t_end``.

A grid is a module; its shorthand names stay accepted wherever a sampler takes ``grid``.

| module | shorthand | times |
| --- | --- | --- |
| [`UniformGrid`][sdekit.sampling.UniformGrid] | ``"uniform"`` | equal steps |
| `QuadraticGrid` | ``"quadratic"`` | PSLD's: $\tau_i = T(1 - ((N - i)/N)^2)$ in reverse time |
| `KarrasGrid` | ``"karras"`` | $t_i^{1/\rho}$ uniform from $t_s^{1/\rho}$ to $t_e^{1/\rho}$ (EDM) |
| `LogSNRGrid` | ``"logsnr"`` | uniform in the log-SNR (affine processes) |
| `EDMGrid` | ``"edm"`` | Karras spacing of $\tilde\sigma = \sigma/\alpha$ (affine) |

An explicit 1-D array of ``num_steps + 1`` decreasing times is a grid too.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array
from .._validate import arg_error, check_choice, check_grid_array, static_int, static_real
from ..processes import AbstractAffineGaussianProcess, AbstractProcess


def _traced(*values: Any) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in values)


class AbstractGrid(eqx.Module):
    """A time discretisation: ``grid(process, num_steps, t_start, t_end, dtype=...)`` gives
    ``num_steps + 1`` decreasing times from ``t_start`` to ``t_end``. ``requires`` is the
    process family it needs; ``sigma_min``/``sigma_max`` (noise-level grids) clip the range."""

    name: ClassVar[str]
    requires: ClassVar[type] = AbstractProcess

    @abc.abstractmethod
    def __call__(self, process: AbstractProcess, num_steps: int, t_start: Any, t_end: Any, *,
                 dtype: Any = None, sigma_min: float | None = None,
                 sigma_max: float | None = None) -> Array:
        """The ``num_steps + 1`` times."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: Any) -> bool:
        """Equal to the same grid (same parameters) and to its shorthand name."""
        if isinstance(other, str):
            return other == self.name
        return type(other) is type(self) and jax.tree.leaves(other) == jax.tree.leaves(self)

    def __hash__(self) -> int:
        return hash(self.name)


class UniformGrid(AbstractGrid):
    """Equal steps in the process's time."""

    name: ClassVar[str] = "uniform"

    def __call__(self, process, num_steps, t_start, t_end, *, dtype=None, sigma_min=None,
                 sigma_max=None):
        return time_grid("uniform", num_steps, t_start, t_end, dtype=dtype)


class QuadraticGrid(AbstractGrid):
    """PSLD's grid: big steps near the noise, fine steps near the data."""

    name: ClassVar[str] = "quadratic"

    def __call__(self, process, num_steps, t_start, t_end, *, dtype=None, sigma_min=None,
                 sigma_max=None):
        return time_grid("quadratic", num_steps, t_start, t_end, dtype=dtype)


class KarrasGrid(AbstractGrid):
    """Karras et al.'s rho-spacing in the process's own time (for ``EDM`` that is sigma)."""

    name: ClassVar[str] = "karras"
    rho: float = 7.0

    def __check_init__(self):
        static_real("rho", self.rho, "a finite value > 0", lambda v: v > 0)

    def __call__(self, process, num_steps, t_start, t_end, *, dtype=None, sigma_min=None,
                 sigma_max=None):
        return time_grid("karras", num_steps, t_start, t_end, rho=self.rho, dtype=dtype)


class LogSNRGrid(AbstractGrid):
    """Uniform in the log-SNR (DPM-Solver's choice), between the noise levels
    ``min(sigma~(t_start), sigma_max)`` and ``max(sigma~(t_end), sigma_min)``."""

    name: ClassVar[str] = "logsnr"
    requires: ClassVar[type] = AbstractAffineGaussianProcess

    def __call__(self, process, num_steps, t_start, t_end, *, dtype=None, sigma_min=None,
                 sigma_max=None):
        return affine_grid(process, "logsnr", num_steps, t_start, t_end, dtype=dtype,
                           sigma_min=sigma_min, sigma_max=sigma_max)


class EDMGrid(AbstractGrid):
    """Karras et al.'s rho-spaced noise levels ``sigma~ = sigma/alpha``, mapped back to process
    times."""

    name: ClassVar[str] = "edm"
    requires: ClassVar[type] = AbstractAffineGaussianProcess
    rho: float = 7.0

    def __check_init__(self):
        static_real("rho", self.rho, "a finite value > 0", lambda v: v > 0)

    def __call__(self, process, num_steps, t_start, t_end, *, dtype=None, sigma_min=None,
                 sigma_max=None):
        return affine_grid(process, "edm", num_steps, t_start, t_end, rho=self.rho, dtype=dtype,
                           sigma_min=sigma_min, sigma_max=sigma_max)


#: The process-time grids (any process) by shorthand.
TIME_GRIDS: dict[str, type[AbstractGrid]] = {
    g.name: g for g in (UniformGrid, QuadraticGrid, KarrasGrid)
}
#: Every grid shorthand (the last two need an affine process).
AFFINE_GRIDS_BY_NAME: dict[str, type[AbstractGrid]] = {
    **TIME_GRIDS, "logsnr": LogSNRGrid, "edm": EDMGrid,
}
GRIDS: tuple[type, ...] = tuple(TIME_GRIDS.values())
AFFINE_GRIDS: tuple[type, ...] = tuple(AFFINE_GRIDS_BY_NAME.values())


def as_grid(value: Any, kinds: tuple[type, ...] | None = None) -> Any:
    """A grid module (from a module or a shorthand name) or a checked explicit array."""
    if isinstance(value, AbstractGrid):
        return value
    if isinstance(value, str):
        table = {g.name: g for g in (kinds or AFFINE_GRIDS)}
        check_choice("grid", value, tuple(table))
        return table[value]()
    return check_grid_array(value)


def time_grid(
    kind: Any, num_steps: int, t_start: float, t_end: float, *, rho: float = 7.0,
    dtype: Any = None,
) -> Array:
    """``num_steps + 1`` decreasing times from ``t_start`` to ``t_end``, computed in ``dtype``
    (default: JAX's default float, i.e. float64 when x64 is on).

    - ``uniform``: equal steps.
    - ``quadratic``: PSLD's grid; in reverse time ``tau_i = T (1 - ((N - i)/N)^2)``, big steps near
      the noise, fine steps near the data.
    - ``karras``: ``t_i = (t_start^(1/rho) + i/N (t_end^(1/rho) - t_start^(1/rho)))^rho``
      (Karras et al. 2022, eq. 5), in the process's time variable (for ``EDM`` that is sigma).
    """
    kind = kind.name if isinstance(kind, AbstractGrid) else kind
    check_choice("grid", kind, tuple(TIME_GRIDS))
    if isinstance(num_steps, bool) or int(num_steps) != num_steps or int(num_steps) < 1:
        raise arg_error("num_steps", num_steps, "an integer >= 1")
    if not _traced(t_end, t_start) and not float(t_end) < float(t_start):
        raise ValueError(f"arguments `t_end` and `t_start`: got {t_end} and {t_start}, "
                         "expected t_end < t_start.")
    n = int(num_steps)
    dtype = jnp.result_type(float) if dtype is None else dtype
    i = jnp.arange(n + 1, dtype=dtype)
    t_start = jnp.asarray(t_start, dtype)
    t_end = jnp.asarray(t_end, dtype)
    span = t_start - t_end
    if kind == "uniform":
        tau = span * i / n
    elif kind == "quadratic":
        tau = span * (1.0 - ((n - i) / n) ** 2)
    else:
        if not _traced(t_end) and not float(t_end) > 0:
            raise arg_error("t_end", t_end, "a value > 0 for the karras grid")
        a, b = t_start ** (1.0 / rho), t_end ** (1.0 / rho)
        ts = (a + i / n * (b - a)) ** rho
        return ts.at[0].set(t_start).at[-1].set(t_end)
    ts = t_start - tau
    return ts.at[-1].set(t_end)


def affine_grid(
    process: AbstractAffineGaussianProcess,
    kind: str,
    num_steps: int,
    t_start: Any,
    t_end: Any,
    *,
    rho: float = 7.0,
    dtype: Any = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> Array:
    """``num_steps + 1`` decreasing process times from ``t_start`` to ``t_end``, in ``dtype``.

    ``uniform``/``quadratic``/``karras`` are `sdekit.sampling.time_grid` (spaced in the
    process's own time); ``logsnr`` is uniform in ``logsnr(t)``; ``edm`` is Karras et al.'s
    ``sigma_i = (s_max^(1/rho) + i/N (s_min^(1/rho) - s_max^(1/rho)))^rho`` on
    ``sigma~ = sigma/alpha``, mapped back through `sigma_to_time`. For these two, ``s_max`` is
    ``sigma~(t_start)`` clipped to ``sigma_max`` and ``s_min`` is ``sigma~(t_end)`` clipped to
    ``sigma_min`` (``None``: no clipping); an end is exactly ``t_start`` / ``t_end`` unless it
    was clipped.
    """
    kind = kind.name if isinstance(kind, AbstractGrid) else kind
    check_choice("grid", kind, tuple(AFFINE_GRIDS_BY_NAME))
    static_int("num_steps", num_steps, 1)
    dtype = jnp.result_type(float) if dtype is None else dtype
    if kind in TIME_GRIDS:
        return time_grid(kind, num_steps, t_start, t_end, rho=rho, dtype=dtype)
    n = int(num_steps)
    i = jnp.arange(n + 1, dtype=dtype) / n
    sig, first, last = _sigma_range(process, kind, i, t_start, t_end, rho, dtype,
                                    sigma_min, sigma_max)
    ts = process.t_from_scaled_sigma(sig).astype(dtype)
    return ts.at[0].set(jnp.where(first, t_start, ts[0])).at[-1].set(
        jnp.where(last, t_end, ts[-1]))


def _sigma_range(process, kind, i, t_start, t_end, rho, dtype, sigma_min, sigma_max):
    """Noise levels ``sigma~`` at the fractions ``i`` of the (clipped) range, and whether each end
    is the unclipped ``t_start`` / ``t_end``."""
    ends = jnp.stack([jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype)])
    lam = process.logsnr(ends).astype(dtype)  # logsnr = -2 log sigma~
    lam_hi, lam_lo = lam[0], lam[1]
    first = last = jnp.asarray(True)
    if sigma_max is not None:
        cap = jnp.asarray(-2.0 * math.log(sigma_max), dtype)
        first = lam_hi >= cap
        lam_hi = jnp.maximum(lam_hi, cap)
    if sigma_min is not None:
        floor = jnp.asarray(-2.0 * math.log(sigma_min), dtype)
        last = lam_lo <= floor
        lam_lo = jnp.minimum(lam_lo, floor)
    if kind == "logsnr":
        return jnp.exp(-0.5 * (lam_hi + i * (lam_lo - lam_hi))), first, last
    a, b = jnp.exp(-0.5 * lam_hi / rho), jnp.exp(-0.5 * lam_lo / rho)
    return (a + i * (b - a)) ** rho, first, last



__all__ = [
    "AFFINE_GRIDS", "GRIDS", "AbstractGrid", "EDMGrid", "KarrasGrid", "LogSNRGrid",
    "QuadraticGrid", "UniformGrid", "affine_grid", "as_grid", "time_grid",
]
