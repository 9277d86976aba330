"""The equivariance error of any function of images."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..._model import call_model
from ._groups import Group, act_time, get_group


def equivariance_error(
    fn: Any, x: Array, group: str | Group, *, t: ArrayLike | None = None, cond: Any = None,
    relative: bool = True,
) -> Array:
    """``max_g |fn(g . x) - g . fn(x)|`` (divided by ``max |fn(x)|`` when ``relative``), where
    ``fn`` is called as ``fn(x)`` when ``t`` is None and as ``fn(x, t, cond)`` otherwise
    (``t`` per example, or a per-pixel map transformed with ``x``)."""
    grp = get_group(group)

    def call(xx, tt):
        return fn(xx) if t is None else call_model(fn, xx, tt, cond)

    tt = None if t is None else jnp.asarray(t)
    base = call(x, tt)
    errs = []
    for g in range(grp.order):
        tg = None if tt is None else (act_time(grp, g, tt, x) if tt.ndim else tt)
        errs.append(jnp.max(jnp.abs(call(grp.act(g, x), tg) - grp.act(g, base))))
    err = jnp.max(jnp.stack(errs))
    return err / jnp.max(jnp.abs(base)) if relative else err


__all__ = ["equivariance_error"]
