"""Construction-time checks of numeric parameters that may be Python numbers or JAX arrays.

Processes and objectives are pytrees: their numeric fields may be traced (inside ``jit``,
``vmap`` or ``grad``). These helpers check concrete values (elementwise for arrays) and skip
traced ones, so a traced parameter never raises an unclear ``ConcretizationTypeError``. Every
error names the argument, what was given and what was expected.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ._errors import arg_error


def is_traced(value: Any) -> bool:
    """Whether any leaf of ``value`` is a JAX tracer (its value is unknown at construction)."""
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(value))


def concrete(value: Any) -> np.ndarray | None:
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
    if isinstance(value, bool):
        raise arg_error(name, value, "a real number, not a bool")
    if is_traced(value):
        return
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise arg_error(name, value, "a real number") from None
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    want = "a finite value" + (" " + " and ".join(parts) if parts else "")
    ok = np.all(np.isfinite(v))
    if ok and lo is not None:
        ok = np.all(v > lo) if lo_open else np.all(v >= lo)
    if ok and hi is not None:
        ok = np.all(v < hi) if hi_open else np.all(v <= hi)
    if not ok:
        raise arg_error(name, _show(v), want)


def check_order(name_lo: str, lo: Any, name_hi: str, hi: Any, *, strict: bool = True) -> None:
    """Check ``lo < hi`` (or ``<=``) elementwise for concrete values."""
    a, b = concrete(lo), concrete(hi)
    if a is None or b is None:
        return
    ok = np.all(a < b) if strict else np.all(a <= b)
    if not ok:
        op = "<" if strict else "<="
        raise ValueError(
            f"arguments `{name_lo}` and `{name_hi}`: got {name_lo}={_show(a)!r} and "
            f"{name_hi}={_show(b)!r}, expected {name_lo} {op} {name_hi}."
        )


def static_float(name: str, value: Any) -> float:
    """A static (hashable, concrete) float for fields such as the time domain ``t0``, ``t1``.

    Raises a ``ValueError`` naming the argument for traced, non-scalar or non-real values."""
    if isinstance(value, bool):
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


__all__ = ["check_order", "check_real", "concrete", "is_traced", "static_float"]
