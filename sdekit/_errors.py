"""Argument checking that names the argument, what was given and what was expected."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np


def arg_error(name: str, given: Any, expected: str) -> ValueError:
    return ValueError(f"argument `{name}`: got {given!r}, expected {expected}.")


def check_positive(name: str, value: Any) -> None:
    if not float(value) > 0:
        raise arg_error(name, value, "a value > 0")


def check_less(name_lo: str, lo: Any, name_hi: str, hi: Any) -> None:
    if not float(lo) < float(hi):
        raise ValueError(
            f"arguments `{name_lo}` and `{name_hi}`: got {name_lo}={lo!r} and {name_hi}={hi!r}, "
            f"expected {name_lo} < {name_hi}."
        )


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise arg_error(name, value, "one of " + ", ".join(repr(c) for c in choices))


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
    shape = tuple(np.shape(out))
    if shape != tuple(expected):
        raise ValueError(
            f"`{name}` returned an array of shape {shape}, expected shape {tuple(expected)}."
        )
