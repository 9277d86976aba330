"""Argument validation, in one place: every error names the argument, what was given and what
was expected.

Two kinds of values are checked:

- **numeric parameters** of processes, objectives and schedules (Python numbers or JAX arrays,
  possibly traced inside ``jit``/``vmap``/``grad``): `check_real`, `check_order` check
  concrete values elementwise and skip traced ones, so a traced parameter never raises an
  unclear ``ConcretizationTypeError``;
- **static settings** of samplers and loops (step counts, tolerances, names), which shape the
  compiled program and must be concrete Python values: `static`, `static_int`, `static_real`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def arg_error(name: str, given: Any, expected: str) -> ValueError:
    """``ValueError("argument `name`: got <given>, expected <expected>.")``."""
    return ValueError(f"argument `{name}`: got {given!r}, expected {expected}.")


def is_traced(value: Any) -> bool:
    """Whether any leaf of ``value`` is a JAX tracer (its value is unknown at construction)."""
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(value))


def concrete_array(value: Any) -> np.ndarray | None:
    """``value`` as a float64 numpy array, or ``None`` when it is traced."""
    if is_traced(value):
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise arg_error("value", value, "a real number") from None


def _show(value: Any) -> Any:
    a = np.asarray(value)
    return a.item() if a.ndim == 0 else a.tolist()


def _bounds(lo, lo_open, hi, hi_open) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return " and ".join(parts)


def _in_bounds(v: np.ndarray, lo, lo_open, hi, hi_open) -> bool:
    ok = bool(np.all(np.isfinite(v)))
    if ok and lo is not None:
        ok = bool(np.all(v > lo) if lo_open else np.all(v >= lo))
    if ok and hi is not None:
        ok = bool(np.all(v < hi) if hi_open else np.all(v <= hi))
    return ok


def check_real(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    lo_open: bool = False,
    hi: float | None = None,
    hi_open: bool = False,
) -> None:
    """Check that ``value`` (a number or an array, checked elementwise) is real, finite and in
    the given range; traced values are not checked."""
    if isinstance(value, (bool, np.bool_)):
        raise arg_error(name, value, "a real number, not a bool")
    if isinstance(value, str):
        raise arg_error(name, value, "a real number, not a string")
    if is_traced(value):
        return
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise arg_error(name, value, "a real number") from None
    bounds = _bounds(lo, lo_open, hi, hi_open)
    if not _in_bounds(v, lo, lo_open, hi, hi_open):
        raise arg_error(name, _show(v), "a finite value" + (" " + bounds if bounds else ""))


def check_order(name_lo: str, lo: Any, name_hi: str, hi: Any, *, strict: bool = True) -> None:
    """Check ``lo < hi`` (or ``<=``) elementwise for concrete values."""
    a, b = concrete_array(lo), concrete_array(hi)
    if a is None or b is None:
        return
    ok = np.all(a < b) if strict else np.all(a <= b)
    if not ok:
        op = "<" if strict else "<="
        raise ValueError(
            f"arguments `{name_lo}` and `{name_hi}`: got {name_lo}={_show(a)!r} and "
            f"{name_hi}={_show(b)!r}, expected {name_lo} {op} {name_hi}."
        )


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    """``value`` is one of ``choices`` (names of a configuration option)."""
    if not isinstance(value, str) or value not in choices:
        raise arg_error(name, value, "one of " + ", ".join(repr(c) for c in choices))


def static(name: str, value: Any) -> Any:
    """``value`` unchanged, or a clear error if it is a traced JAX value (settings that shape
    the compiled program must be concrete)."""
    if is_traced(value):
        raise arg_error(name, f"a traced value {value}", "a concrete Python number (this "
                        "setting is static; build the object outside jax.jit / vmap / grad)")
    return value


def static_int(name: str, value: Any, minimum: int, *, allow_none: bool = False) -> int | None:
    """An integer ``>= minimum`` (not a bool, float, string or traced value), or ``None`` when
    allowed."""
    if value is None and allow_none:
        return None
    static(name, value)
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or int(value) < minimum:
        raise arg_error(name, value, f"an integer >= {minimum}" + (" or None" if allow_none
                                                                   else ""))
    return int(value)


def static_real(name: str, value: Any, expected: str,
                ok: Callable[[float], bool] = lambda v: True) -> float:
    """A concrete, finite real scalar satisfying ``ok`` (a predicate), else an error saying
    ``expected``."""
    static(name, value)
    if isinstance(value, (bool, np.bool_, str)) or np.ndim(value) != 0:
        raise arg_error(name, value, expected)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise arg_error(name, value, expected) from None
    if not np.isfinite(v) or not ok(v):
        raise arg_error(name, value, expected)
    return v


def static_float(name: str, value: Any) -> float:
    """A static (hashable, concrete) float for fields such as the time domain ``t0``, ``t1``."""
    if isinstance(value, (bool, np.bool_)):
        raise arg_error(name, value, "a real number, not a bool")
    if is_traced(value):
        raise ValueError(
            f"argument `{name}`: got a traced value, expected a concrete number (the time domain "
            "is static: pass a Python float, not a value computed inside jit/vmap/grad)."
        )
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise arg_error(name, value, "a real number") from None
    if a.ndim != 0:
        raise arg_error(name, a.tolist(), "a scalar")
    return float(a)


def broadcast_time(t: Any, x: jnp.ndarray, *, name: str = "t") -> jnp.ndarray:
    """Align a time array with the *leading* axes of ``x`` and broadcast it to ``x.ndim``.

    ``t`` may be a scalar, per example (shape ``(N,)``), per channel (``(N, 1, 1, C)``) or per
    element (shaped like ``x``). Its shape must be a prefix of ``x.shape`` (size-1 axes allowed);
    trailing singleton axes are appended so that plain numpy broadcasting applies.
    """
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    if t.ndim == 0:
        return t
    xs = tuple(x.shape)
    ts = tuple(t.shape)
    ok = len(ts) <= len(xs) and all(a == b or a == 1 for a, b in zip(ts, xs, strict=False))
    if not ok:
        raise ValueError(
            f"argument `{name}`: got shape {ts}, expected a scalar or a shape aligned with the "
            f"leading axes of x (x has shape {xs}), e.g. {xs[:1]} per example or {xs} per element."
        )
    return t.reshape(ts + (1,) * (len(xs) - len(ts)))


def check_output_shape(name: str, out: Any, expected: tuple[int, ...]) -> None:
    """A callable's output has the expected shape."""
    shape = tuple(np.shape(out))
    if shape != tuple(expected):
        raise ValueError(
            f"`{name}` returned an array of shape {shape}, expected shape {tuple(expected)}."
        )


def check_grid_array(grid: Any) -> np.ndarray:
    """A concrete, finite, strictly decreasing 1-D array of at least two times."""
    static("grid", grid)
    g = np.asarray(grid)
    if g.ndim != 1 or g.shape[0] < 2 or not np.issubdtype(g.dtype, np.floating) \
            or not np.all(np.isfinite(g)) or not np.all(np.diff(g) < 0):
        raise arg_error("grid", grid if g.size <= 8 else f"an array of shape {g.shape}",
                        "a grid name or a 1-D float array of >= 2 strictly decreasing finite "
                        "times (num_steps + 1 of them)")
    return g
