"""ComboStoc's per-element time embedding for the DiT (Xu et al. 2024, ``models.py``)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._validate import broadcast_time
from ._layers import Linear, silu


def _frequencies(t: Array, dim: int, max_period: float = 10000.0) -> Array:
    half = dim // 2
    freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    arg = t.astype(jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)


class ElementTimeEmbedding(eqx.Module):
    """Per-token conditioning from a time per element (ComboStoc's time embedder, NHWC).

    ``t`` (scalar, per example, per channel, per position or per element) is broadcast to
    ``x``'s shape ``(N, H, W, C)``; each entry gets the frequency embedding of
    ``time_scale * t`` (``freq_dim`` features), a shared ``Linear(freq_dim, hidden) -> SiLU ->
    Linear(hidden, hidden)`` maps it to ``hidden`` features, the ``C * hidden`` features of a
    pixel (channel-major) are patchified like the image, and a linear map (ComboStoc's
    PatchEmbed convolution) gives one ``width``-vector per token: ``(N, T, width)``. Unlike the
    default time map, per-channel times stay distinguishable.
    """

    mlp0: Linear
    mlp1: Linear
    patch: Linear
    patch_size: int = eqx.field(static=True)
    freq_dim: int = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)

    def __init__(self, in_channels: int, width: int, patch_size: int, *, key: PRNGKeyArray,
                 freq_dim: int = 256, hidden: int = 4, time_scale: float | int = 1.0):
        """**Arguments:** `in_channels`, `width` (token width), `patch_size`, `key`,
        `freq_dim`, `hidden` (features per element, 4 in ComboStoc), `time_scale`."""
        k0, k1, k2 = jax.random.split(key, 3)
        self.mlp0 = Linear(freq_dim, hidden, key=k0, init="normal002")
        self.mlp1 = Linear(hidden, hidden, key=k1, init="normal002")
        self.patch = Linear(patch_size * patch_size * in_channels * hidden, width, key=k2,
                            init="xavier")
        self.patch_size = int(patch_size)
        self.freq_dim = int(freq_dim)
        self.time_scale = float(time_scale)

    def __call__(self, t: ArrayLike, x: Array) -> Array:
        """``(N, T, width)`` token conditioning for images ``x`` ``(N, H, W, C)``."""
        n, hh, ww, c = x.shape
        p = self.patch_size
        tb = jnp.broadcast_to(broadcast_time(jnp.asarray(t, jnp.float32), x), x.shape)
        e = self.mlp1(silu(self.mlp0(_frequencies(self.time_scale * tb, self.freq_dim))))
        k = e.shape[-1]
        e = e.reshape(n, hh // p, p, ww // p, p, c * k).transpose(0, 1, 3, 2, 4, 5)
        return self.patch(e.reshape(n, (hh // p) * (ww // p), p * p * c * k))
