"""How time and class labels enter the networks.

**Time.** ``t`` may be a scalar, per example ``(N,)``, or any array whose shape is aligned with
the leading axes of ``x`` (size-1 axes allowed), e.g. per channel ``(N, 1, 1, C)`` or per
element ``(N, H, W, C)``. It is reduced to a *time map* of shape ``(N, h, w)`` by averaging over
the channel axis, where ``(h, w)`` is ``(1, 1)`` when ``t`` does not vary over pixels and
``(H, W)`` otherwise. Each entry of the map is embedded separately (so a per-pixel time gives a
per-pixel embedding), and the embedding map is average-pooled to each resolution it is used at.

**Class labels.** Integer labels in ``[0, num_classes]``. The extra index ``num_classes`` is the
*null* (unconditional) class used for classifier-free guidance: train with labels dropped to
``num_classes`` with some probability, and sample the unconditional branch with
``cond = full(N, num_classes)``. ``cond=None`` on a class-conditional network means "all null".
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .._validate import arg_error, broadcast_time


def time_map(t: ArrayLike, x: Array) -> Array:
    """Reduce ``t`` to an ``(N, h, w)`` float32 time map (see the module docstring)."""
    n, h, w, _ = x.shape
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.float32)
    t = broadcast_time(t, x, name="t").astype(jnp.float32)
    if t.ndim == 0:
        return jnp.broadcast_to(t, (n, 1, 1))
    tm = jnp.mean(t, axis=-1)  # average over channels: (N|1, H|1, W|1)
    if tm.shape[1] == 1 and tm.shape[2] == 1:
        return jnp.broadcast_to(tm, (n, 1, 1))
    return jnp.broadcast_to(tm, (n, h, w))


def pool_map(emb: Array, h: int, w: int) -> Array:
    """Average-pool an ``(N, h0, w0, E)`` embedding map to ``(N, h, w, E)`` (no-op for 1x1)."""
    n, h0, w0, e = emb.shape
    if h0 == 1 and w0 == 1:
        return emb
    if (h0, w0) == (h, w):
        return emb
    fh, fw = h0 // h, w0 // w
    return emb.reshape(n, h, fh, w, fw, e).mean(axis=(2, 4))


def check_labels(cond, n: int, num_classes: int | None) -> Array | None:
    """Validate class labels; returns int32 labels of shape ``(N,)`` (null class for None)."""
    if num_classes is None:
        if cond is not None:
            raise arg_error(
                "cond", "class labels", "None: this network was built with num_classes=None"
            )
        return None
    if cond is None:
        return jnp.full((n,), num_classes, jnp.int32)
    cond = jnp.asarray(cond)
    if not jnp.issubdtype(cond.dtype, jnp.integer):
        raise arg_error("cond", f"an array of dtype {cond.dtype}", "integer class labels")
    if cond.ndim == 0:
        cond = jnp.broadcast_to(cond, (n,))
    if cond.shape != (n,):
        raise arg_error("cond", f"shape {cond.shape}", f"integer labels of shape ({n},)")
    return cond.astype(jnp.int32)
