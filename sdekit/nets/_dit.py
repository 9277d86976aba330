"""Diffusion Transformer (Peebles & Xie 2023) with adaLN-zero and per-token time."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._validate import arg_error
from ._base import AbstractNet
from ._conditioning import check_labels, pool_map, time_map
from ._layers import (
    AbstractLeanLayer,
    LayerNorm,
    Linear,
    check_compute_dtype,
    check_key,
    dropout,
    normal_init,
    silu,
)
from ._sit_time import ElementTimeEmbedding


def _timestep_embedding(t: Array, dim: int, max_period: float = 10000.0) -> Array:
    """DiT's frequency embedding ``[cos(t f_k), sin(t f_k)]``, ``f_k = max_period^(-k/half)``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    arg = t.astype(jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = pos.reshape(-1)[:, None] * omega[None]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed_2d(dim: int, gh: int, gw: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position embedding, shape ``(gh * gw, dim)`` (row-major tokens):
    the first half of the channels encodes the column, the second half the row (as in DiT)."""
    gy, gx = np.meshgrid(
        np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64), indexing="ij"
    )
    emb = np.concatenate([_sincos_1d(dim // 2, gx), _sincos_1d(dim // 2, gy)], axis=1)
    return emb.astype(np.float32)


def _modulate(x: Array, shift: Array, scale: Array) -> Array:
    return x * (1 + scale) + shift


class DiTBlock(AbstractLeanLayer):
    """Transformer block with adaLN-zero: ``x + gate * Attn(modulate(LN(x)))`` and
    ``x + gate * MLP(modulate(LN(x)))``; shift/scale/gate come from ``Linear(SiLU(c))``
    initialised to zero (so the block starts as the identity)."""

    qkv: Linear
    proj: Linear
    fc1: Linear
    fc2: Linear
    ada: Linear
    norm: LayerNorm
    num_heads: int = eqx.field(static=True)
    rate: float = eqx.field(static=True)
    lean: bool = eqx.field(static=True)

    def __init__(
        self, width: int, num_heads: int, mlp_ratio: float | int, dropout: float | int, *, key
    ):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        hidden = int(width * mlp_ratio)
        self.qkv = Linear(width, 3 * width, key=k1, init="xavier")
        self.proj = Linear(width, width, key=k2, init="xavier")
        self.fc1 = Linear(width, hidden, key=k3, init="xavier")
        self.fc2 = Linear(hidden, width, key=k4, init="xavier")
        self.ada = Linear(width, 6 * width, key=k1, init="zeros")
        self.norm = LayerNorm(1e-6)
        self.num_heads = num_heads
        self.rate = float(dropout)
        self.lean = False

    def __call__(self, x: Array, c: Array, key: PRNGKeyArray | None, dtype) -> Array:
        n, t, d = x.shape
        nh = self.num_heads
        mod = self.ada(silu(c).astype(dtype)).astype(jnp.float32)
        sh1, sc1, g1, sh2, sc2, g2 = jnp.split(mod, 6, axis=-1)
        h = _modulate(self.norm(x), sh1, sc1).astype(dtype)
        qkv = self.qkv(h).reshape(n, t, 3, nh, d // nh)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        w = jax.nn.softmax(logits * (d // nh) ** -0.5, axis=-1).astype(dtype)
        a = jnp.einsum("bhqk,bkhd->bqhd", w, v).reshape(n, t, d)
        x = x + g1 * self.proj(a).astype(jnp.float32)
        h = _modulate(self.norm(x), sh2, sc2).astype(dtype)
        h = jax.nn.gelu(self.fc1(h), approximate=True)
        if key is not None:
            h = dropout(h, self.rate, key, lean=self.lean)
        return x + g2 * self.fc2(h).astype(jnp.float32)


class DiT(AbstractNet):
    """Diffusion Transformer on NHWC images with adaLN-zero conditioning.

    ``net(x, t, cond=None, *, key=None)``: ``x`` ``(N, H, W, in_channels)`` with ``H`` and
    ``W`` divisible by ``patch_size``; returns float32 ``(N, H, W, out_channels)``.

    - Patches of ``patch_size x patch_size`` are embedded linearly, plus a fixed 2-D sine-cosine
      position embedding (computed for the actual grid, so other image sizes work).
    - **Time per token.** ``t`` (scalar, ``(N,)`` or aligned with ``x``) is averaged over
      channels to a time map and average-pooled over each patch, giving one time per token;
      ``DiT``'s frequency embedding of ``time_scale * t`` then ``Linear -> SiLU -> Linear``
      gives a per-token conditioning vector ``c`` that drives every block's adaLN modulation
      (so ComboStoc-style per-patch times condition each token on its own time).
    - **Class labels.** A ``(num_classes + 1, width)`` table; index ``num_classes`` is the null
      class (classifier-free guidance), and ``cond=None`` means all-null.
    - adaLN-zero: modulation layers and the output projection start at zero, so the network
      outputs exactly 0 at initialisation.
    - ``dropout`` (in the MLPs) is active only when ``key`` is given.
    - ``compute_dtype="bfloat16"``: matmuls in bfloat16 with float32 parameters; the residual
      stream, LayerNorm statistics, softmax and output stay float32.
    """

    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    patch_size: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)
    freq_dim: int = eqx.field(static=True)
    compute_dtype: str = eqx.field(static=True)

    patch: Linear
    t_mlp0: Linear
    t_mlp1: Linear
    label_emb: Array | None
    blocks: list
    element_time: ElementTimeEmbedding | None
    final_ada: Linear
    final: Linear
    norm: LayerNorm

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        *,
        key: PRNGKeyArray,
        patch_size: int = 2,
        width: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float | int = 4.0,
        dropout: float | int = 0.0,
        num_classes: int | None = None,
        time_scale: float | int = 1000.0,
        freq_dim: int = 256,
        compute_dtype: str = "float32",
        element_time: bool = False,
    ):
        """**Arguments:** `in_channels`/`out_channels` (``out`` defaults to ``in``), `key`,
        `patch_size`, `width` (hidden size, a multiple of 4 and of `num_heads`), `depth`
        (number of blocks), `num_heads`, `mlp_ratio`, `dropout` (MLP dropout), `num_classes`
        (``None``: unconditional; index ``num_classes`` is the null class), `time_scale`
        (``t`` is multiplied by it before the frequency embedding; DiT's timesteps are 0..999),
        `freq_dim` (frequency embedding size, 256), `compute_dtype`, `element_time`
        (ComboStoc's per-element time embedding,
        [`ElementTimeEmbedding`][sdekit.nets.ElementTimeEmbedding], instead of the averaged
        time map: per-channel times stay distinguishable)."""
        out_channels = in_channels if out_channels is None else out_channels
        for name, val in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("patch_size", patch_size),
            ("width", width),
            ("depth", depth),
            ("num_heads", num_heads),
        ):
            if int(val) < 1:
                raise arg_error(name, val, "a positive integer")
        if width % num_heads != 0:
            raise arg_error("num_heads", num_heads, f"a divisor of width={width}")
        if width % 4 != 0:
            raise arg_error("width", width, "a multiple of 4 (2-D sine-cosine positions)")
        if freq_dim < 4 or freq_dim % 2:
            raise arg_error("freq_dim", freq_dim, "an even integer >= 4")
        if not 0.0 <= dropout < 1.0:
            raise arg_error("dropout", dropout, "a rate in [0, 1)")
        if num_classes is not None and num_classes < 1:
            raise arg_error("num_classes", num_classes, "None or a positive integer")
        check_compute_dtype(compute_dtype)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.patch_size = int(patch_size)
        self.width = int(width)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.time_scale = float(time_scale)
        self.freq_dim = int(freq_dim)
        self.compute_dtype = compute_dtype

        keys = jax.random.split(key, depth + 5)
        p = patch_size
        self.patch = Linear(p * p * in_channels, width, key=keys[0], init="xavier")
        self.t_mlp0 = Linear(freq_dim, width, key=keys[1], init="normal002")
        self.t_mlp1 = Linear(width, width, key=keys[2], init="normal002")
        if num_classes is not None:
            self.label_emb = normal_init(keys[3], (num_classes + 1, width), 0.02)
        else:
            self.label_emb = None
        self.blocks = [
            DiTBlock(width, num_heads, mlp_ratio, dropout, key=keys[5 + i]) for i in range(depth)
        ]
        self.final_ada = Linear(width, 2 * width, key=keys[4], init="zeros")
        self.final = Linear(width, p * p * out_channels, key=keys[4], init="zeros")
        self.norm = LayerNorm(1e-6)
        self.element_time = ElementTimeEmbedding(
            in_channels, width, patch_size, key=jax.random.fold_in(keys[1], 1),
            freq_dim=freq_dim, time_scale=time_scale) if element_time else None

    def __call__(
        self,
        x: Array,
        t: ArrayLike,
        cond: ArrayLike | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> Array:
        """Evaluate the network (see the class docstring); returns float32."""
        x = jnp.asarray(x)
        p = self.patch_size
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise arg_error(
                "x", f"shape {x.shape}", f"a batch (N, H, W, {self.in_channels}) (NHWC)"
            )
        n, hh, ww, c = x.shape
        if hh % p or ww % p:
            raise arg_error("x", f"spatial size {(hh, ww)}", f"H and W divisible by patch_size={p}")
        check_key(key)
        labels = check_labels(cond, n, self.num_classes)
        x = x.astype(jnp.float32)
        dtype = jnp.dtype(self.compute_dtype)
        gh, gw = hh // p, ww // p
        ntok = gh * gw
        # Patchify: (N, gh, p, gw, p, C) -> (N, T, p*p*C).
        tok = x.reshape(n, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, ntok, p * p * c)
        h = self.patch(tok.astype(dtype)).astype(jnp.float32)
        h = h + jnp.asarray(sincos_pos_embed_2d(self.width, gh, gw))

        if self.element_time is not None:
            cvec = self.element_time(t, x)  # (N, T, width)
        else:
            tm = time_map(t, x)  # (N, 1, 1) or (N, H, W)
            tm = pool_map(tm[..., None], gh, gw)[..., 0] if tm.shape[1] > 1 else tm
            tt = tm.reshape(n, -1)  # (N, 1) or (N, T)
            emb = _timestep_embedding(self.time_scale * tt, self.freq_dim)
            cvec = self.t_mlp1(silu(self.t_mlp0(emb)))
        if labels is not None:
            cvec = cvec + self.label_emb[labels][:, None, :]

        bkeys = [None] * self.depth if key is None else list(jax.random.split(key, self.depth))
        for block, bkey in zip(self.blocks, bkeys, strict=True):
            h = block(h, cvec, bkey, dtype)

        shift, scale = jnp.split(
            self.final_ada(silu(cvec).astype(dtype)).astype(jnp.float32), 2, axis=-1
        )
        h = _modulate(self.norm(h), shift, scale).astype(dtype)
        out = self.final(h).astype(jnp.float32)  # (N, T, p*p*out)
        oc = self.out_channels
        out = out.reshape(n, gh, gw, p, p, oc).transpose(0, 1, 3, 2, 4, 5)
        return out.reshape(n, hh, ww, oc)
