"""Time discretisations for fixed-step samplers, from ``t_start`` (noise) down to ``t_end``."""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp

from .._custom_types import Array
from .._errors import arg_error, check_choice


def _traced(*values: Any) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in values)


GRIDS = ("uniform", "quadratic", "karras")
Grid = Literal["uniform", "quadratic", "karras"]


def time_grid(
    kind: str, num_steps: int, t_start: float, t_end: float, *, rho: float = 7.0,
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
    check_choice("grid", kind, GRIDS)
    if int(num_steps) < 1:
        raise arg_error("num_steps", num_steps, "an integer >= 1")
    if isinstance(num_steps, bool) or int(num_steps) != num_steps:
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
