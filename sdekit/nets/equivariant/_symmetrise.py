"""Symmetrisation (the Reynolds operator): exact equivariance for any network."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..._errors import arg_error
from ..._model import call_model
from ._groups import Group, get_group


def _act_time(group: Group, g: int, t: Array, x: Array) -> Array:
    """Transform a time array with the images: per-pixel maps rotate, per-example times don't."""
    if t.ndim >= 3 and t.shape[1] == x.shape[1] and t.shape[2] == x.shape[2] and x.shape[1] > 1:
        return group.act(g, t, axes=(1, 2))
    return t


class Symmetrised(eqx.Module):
    """``D_sym(x) = (1/|G|) sum_g g^{-1} . D(g . x)``: the group average of any network.

    Exactly equivariant (``D_sym(h . x) = h . D_sym(x)`` for every ``h``, to round-off) whatever
    ``net`` is, because ``g -> g h`` permutes the group. The ``|G|`` transformed copies are
    batched into one call of ``net`` (``|G|`` times the cost of one evaluation). ``net`` is any
    callable ``(x, t, cond=None, *, key=None)`` on NHWC images whose output is an image of the
    same spatial size (eps, x0, v, score predictions all transform like ``x`` under a pixel
    permutation); ``t`` may be per example or a per-pixel map (transformed with ``x``).
    ``estimate=`` (self-conditioning) is transformed like ``x``. Usable with every sampler:
    it is just a network.
    """

    net: Any
    group: str = eqx.field(static=True)

    def __init__(self, net: Any, group: str | Group):
        if not callable(net):
            raise arg_error("net", type(net).__name__, "a callable network (x, t, cond=None)")
        self.net = net
        self.group = get_group(group).name

    def __call__(
        self,
        x: Array,
        t: ArrayLike,
        cond: ArrayLike | None = None,
        *,
        key: PRNGKeyArray | None = None,
        estimate: Array | None = None,
    ) -> Array:
        if x.ndim != 4 or x.shape[1] != x.shape[2]:
            raise arg_error("x", f"shape {x.shape}", "square NHWC images (N, H, H, C)")
        grp = get_group(self.group)
        n, order = x.shape[0], grp.order
        xs = jnp.concatenate(grp.orbit(x), axis=0)
        t = jnp.asarray(t)
        if t.ndim == 0:
            ts = t
        else:
            tb = jnp.broadcast_to(t, (n,) + t.shape[1:]) if t.shape[0] == 1 else t
            ts = jnp.concatenate([_act_time(grp, g, tb, x) for g in range(order)], axis=0)
        cs = None
        if cond is not None:
            c = jnp.broadcast_to(jnp.asarray(cond), (n,) + jnp.shape(cond)[1:])
            cs = jnp.concatenate([c] * order, axis=0)
        kwargs = {}
        if estimate is not None:
            kwargs["estimate"] = jnp.concatenate(grp.orbit(jnp.asarray(estimate)), axis=0)
        if kwargs:
            out = self.net(xs, ts, **({} if cs is None else {"cond": cs}), key=key, **kwargs)
        else:
            out = call_model(self.net, xs, ts, cs, key)
        if out.ndim != 4 or out.shape[:3] != xs.shape[:3]:
            raise ValueError(
                f"symmetrise: the network returned shape {out.shape}, expected images of spatial "
                f"shape {xs.shape[1:3]} (outputs must transform like the input)."
            )
        outs = jnp.split(out, order, axis=0)
        return sum(grp.act(grp.inv(g), outs[g]) for g in range(order)) / order

    def next_estimate(self, output: Array, x: Array, t: ArrayLike) -> Array:
        """Forwarded to a self-conditioning ``net`` (samplers call it between steps)."""
        return self.net.next_estimate(output, x, t)


def symmetrise(denoiser: Any, group: str | Group) -> Symmetrised:
    """Make any denoiser exactly ``group``-equivariant by averaging over the group (at
    ``|G|`` network evaluations per call): ``(1/|G|) sum_g g^{-1} . D(g . x)``. See
    [`Symmetrised`][sdekit.nets.equivariant.Symmetrised]."""
    return Symmetrised(denoiser, group)


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
        tg = None if tt is None else (_act_time(grp, g, tt, x) if tt.ndim else tt)
        errs.append(jnp.max(jnp.abs(call(grp.act(g, x), tg) - grp.act(g, base))))
    err = jnp.max(jnp.stack(errs))
    return err / jnp.max(jnp.abs(base)) if relative else err


__all__ = ["Symmetrised", "equivariance_error", "symmetrise"]
