"""Exactly equivariant layers for the finite groups of the pixel grid, in pure JAX/equinox.

Feature maps are NHWC arrays of *fields*. A field is either ``"trivial"`` (one channel: a scalar
image, transformed by the pixel permutation ``T_g``) or ``"regular"`` (``|G|`` channels, one per
group element, transformed by ``(g . f)[h] = T_g(f[g^{-1} h])``; channel ``c * |G| + h``). See
[`Group`][sdekit.nets.equivariant.Group].

Filters are built from free weights by rotating/flipping them and permuting the group axis
(GrouPy-style, Cohen & Welling 2016, "Group Equivariant Convolutional Networks"), so every
layer is equivariant by
construction, to round-off: a permutation of the free weights, never an approximation.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..._validate import arg_error
from ._groups import get_group

REPS: tuple[str, ...] = ("trivial", "regular")
_DN = ("NHWC", "HWIO", "NHWC")


def _rng(key: PRNGKeyArray) -> np.random.Generator:
    data = np.asarray(jax.random.key_data(key)).astype(np.uint64).ravel()
    return np.random.default_rng([int(v) for v in data])


def _uniform(key: PRNGKeyArray, shape: tuple[int, ...], limit: float) -> Array:
    """``U(-limit, limit)`` float32 weights (numpy for concrete keys: no compile per shape)."""
    if isinstance(key, jax.core.Tracer):
        return jax.random.uniform(key, shape, jnp.float32, -limit, limit)
    u = _rng(key).random(shape, dtype=np.float32)
    return jnp.asarray((2.0 * u - 1.0) * np.float32(limit))


def _check_rep(name: str, rep: str) -> None:
    if rep not in REPS:
        raise arg_error(name, rep, "'trivial' or 'regular'")


def _check_fields(name: str, n: Any) -> None:
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise arg_error(name, n, "a positive integer number of fields")


def rep_size(group: str, rep: str) -> int:
    """Channels per field: 1 for ``"trivial"``, ``|G|`` for ``"regular"``."""
    _check_rep("rep", rep)
    return 1 if rep == "trivial" else get_group(group).order


def _compute_dtype(x: Array) -> Any:
    return jnp.promote_types(x.dtype, jnp.float32)


def _tie(x: Array, r: int) -> Array:
    """Repeat a per-field vector ``(..., C)`` over the group axis to ``(..., C * r)``."""
    return jnp.repeat(x, r, axis=-1) if r > 1 else x


class GroupConv(eqx.Module):
    """Convolution between field types (stride 1, centred odd kernel, zero "same" padding).

    | ``in_rep`` -> ``out_rep`` | free weight | filter |
    | --- | --- | --- |
    | trivial -> regular (lifting) | ``W[o, i]`` | ``F[(o, g), i] = T_g W[o, i]`` |
    | regular -> regular (group conv) | ``W[o, i, h]`` | ``F[(o,g), (i,h)] = T_g W[o, i, g^-1 h]`` |
    | regular -> trivial (conv + group pooling) | ``W[o, i, h]`` | mean over ``g`` of the above |
    | trivial -> trivial (invariant kernel) | ``W[o, i]`` | ``F[o, i] = mean_g T_g W[o, i]`` |

    The last row is the paper's cheap "weight-tied" layer (its ``_K`` / ``_S`` variants): a
    scalar-field convolution with a ``G``-invariant kernel. The bias is one number per output
    field (tied across the group axis). Equivariant for every ``g``:
    ``conv(g . x) = g . conv(x)``; exact on square inputs.

    Called on ``(N, H, W, in_fields * |in_rep|)``; returns ``(N, H, W, out_fields * |out_rep|)``.
    """

    weight: Array
    bias: Array | None
    group: str = eqx.field(static=True)
    in_rep: str = eqx.field(static=True)
    out_rep: str = eqx.field(static=True)
    in_fields: int = eqx.field(static=True)
    out_fields: int = eqx.field(static=True)
    kernel_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        *,
        group: str,
        in_rep: str = "regular",
        out_rep: str = "regular",
        kernel_size: int = 3,
        use_bias: bool = True,
        init_scale: float = 1.0,
        key: PRNGKeyArray,
    ):
        _check_fields("in_fields", in_fields)
        _check_fields("out_fields", out_fields)
        _check_rep("in_rep", in_rep)
        _check_rep("out_rep", out_rep)
        if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
            raise arg_error("kernel_size", kernel_size, "an odd positive integer (centred kernel)")
        n = get_group(group).order
        k = kernel_size
        shape = (k, k, in_fields) + ((n,) if in_rep == "regular" else ()) + (out_fields,)
        fan_in = k * k * in_fields * (n if in_rep == "regular" else 1)
        self.weight = _uniform(key, shape, float(init_scale) * math.sqrt(3.0 / fan_in))
        self.bias = jnp.zeros((out_fields,), jnp.float32) if use_bias else None
        self.group, self.in_rep, self.out_rep = str(get_group(group).name), in_rep, out_rep
        self.in_fields, self.out_fields, self.kernel_size = int(in_fields), int(out_fields), k

    def filter(self, dtype: Any = jnp.float32) -> Array:
        """The expanded HWIO filter ``(k, k, in_fields * |in_rep|, out_fields * |out_rep|)``,
        built in ``dtype`` (so that an invariant kernel is invariant to that precision)."""
        g_ = get_group(self.group)
        w, k = self.weight.astype(dtype), self.kernel_size
        mats = []
        for g in range(g_.order):
            wg = w
            if self.in_rep == "regular":
                wg = w[:, :, :, g_.table[g_.inverse[g]], :]  # W[o, i, g^{-1} h]
            mats.append(g_.act_kernel(g, wg).reshape(k, k, -1, self.out_fields))
        if self.out_rep == "regular":
            f = jnp.stack(mats, axis=-1)  # (k, k, I, O, G): channel o * |G| + g
            return f.reshape(k, k, f.shape[2], -1)
        return sum(mats[1:], mats[0]) / g_.order

    def __call__(self, x: Array) -> Array:
        want = self.in_fields * rep_size(self.group, self.in_rep)
        if x.ndim != 4 or x.shape[-1] != want:
            raise arg_error("x", f"shape {x.shape}", f"(N, H, W, {want}) for {self!r:.60}")
        dt = _compute_dtype(x)
        p = self.kernel_size // 2
        y = jax.lax.conv_general_dilated(
            x.astype(dt), self.filter(dt), (1, 1), [(p, p), (p, p)], dimension_numbers=_DN
        )
        if self.bias is not None:
            y = y + _tie(self.bias.astype(dt), rep_size(self.group, self.out_rep))
        return y


def group_pool(x: Array, group: str) -> Array:
    """Mean over the group axis of regular fields: ``(N, H, W, C * |G|)`` -> ``(N, H, W, C)``
    scalar fields (an invariant of the group axis, so ``pool(g . f) = T_g pool(f)``)."""
    n = get_group(group).order
    if x.shape[-1] % n:
        raise arg_error("x", f"{x.shape[-1]} channels", f"a multiple of |G| = {n}")
    return x.reshape(*x.shape[:-1], x.shape[-1] // n, n).mean(axis=-1)


class FieldNorm(eqx.Module):
    """GroupNorm whose groups are made of *whole* fields; statistics over ``H, W``, the fields
    of the group and their group axis; one affine scale and shift per field, tied across the
    group axis. Computed in at least float32."""

    weight: Array
    bias: Array
    fields: int = eqx.field(static=True)
    rep: int = eqx.field(static=True)
    num_groups: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, fields: int, rep: int, num_groups: int = 32, eps: float = 1e-6):
        _check_fields("fields", fields)
        _check_fields("rep", rep)
        ng = math.gcd(int(fields), int(num_groups))
        self.weight = jnp.ones((fields,), jnp.float32)
        self.bias = jnp.zeros((fields,), jnp.float32)
        self.fields, self.rep, self.num_groups, self.eps = int(fields), int(rep), ng, float(eps)

    def __call__(self, x: Array, scale: Array | None = None, shift: Array | None = None) -> Array:
        """Normalise; optional FiLM ``scale``/``shift`` per field, shaped ``(N, h, w, fields)``
        with ``h, w`` 1 or the spatial size: ``y * (1 + scale) + shift``."""
        dt = _compute_dtype(x)
        n, h, w, c = x.shape
        if c != self.fields * self.rep:
            raise arg_error("x", f"{c} channels", f"{self.fields * self.rep}")
        xr = x.astype(dt).reshape(n, h, w, self.num_groups, -1)
        mean = jnp.mean(xr, axis=(1, 2, 4), keepdims=True)
        var = jnp.mean(jnp.square(xr - mean), axis=(1, 2, 4), keepdims=True)
        y = ((xr - mean) * jax.lax.rsqrt(var + self.eps)).reshape(n, h, w, c)
        y = y * _tie(self.weight.astype(dt), self.rep) + _tie(self.bias.astype(dt), self.rep)
        if scale is not None:
            y = y * (1 + _tie(scale.astype(dt), self.rep))
        if shift is not None:
            y = y + _tie(shift.astype(dt), self.rep)
        return y


class FiLM(eqx.Module):
    """Per-field scale and shift from an embedding map ``(N, h, w, E)`` (``h = w = 1`` for a
    per-example time, ``(H, W)`` for a per-pixel one): a linear map to ``2 * fields`` numbers,
    so the same numbers modulate every group channel of a field (invariant conditioning)."""

    weight: Array
    bias: Array
    fields: int = eqx.field(static=True)

    def __init__(self, emb_dim: int, fields: int, *, key: PRNGKeyArray):
        _check_fields("fields", fields)
        self.weight = _uniform(key, (emb_dim, 2 * fields), math.sqrt(3.0 / emb_dim))
        self.bias = jnp.zeros((2 * fields,), jnp.float32)
        self.fields = int(fields)

    def __call__(self, emb: Array) -> tuple[Array, Array]:
        y = jax.nn.silu(emb) @ self.weight.astype(emb.dtype) + self.bias.astype(emb.dtype)
        return y[..., : self.fields], y[..., self.fields :]


class GroupAttention(eqx.Module):
    """Self-attention over pixels with ``1 x 1`` group convolutions for ``q, k, v`` and the
    output, no positional encoding; heads are made of whole fields. Attention logits sum over
    the group axis, so they are invariant to its permutation; pixels are permuted with the
    image, so the block is equivariant. Residual: ``x + proj(attn(norm(x)))``."""

    norm: FieldNorm
    qkv: GroupConv
    proj: GroupConv
    num_heads: int = eqx.field(static=True)
    rep: int = eqx.field(static=True)

    def __init__(
        self,
        fields: int,
        *,
        group: str,
        rep: str = "regular",
        num_heads: int = 1,
        num_groups: int = 32,
        key: PRNGKeyArray,
    ):
        if not (isinstance(num_heads, int) and num_heads >= 1 and fields % num_heads == 0):
            raise arg_error("num_heads", num_heads, f"a positive divisor of fields={fields}")
        k1, k2 = jax.random.split(key)
        r = rep_size(group, rep)
        self.norm = FieldNorm(fields, r, num_groups)
        kw = dict(group=group, in_rep=rep, out_rep=rep, kernel_size=1)
        self.qkv = GroupConv(fields, 3 * fields, key=k1, **kw)
        self.proj = GroupConv(fields, fields, key=k2, **kw)
        self.num_heads, self.rep = int(num_heads), r

    def __call__(self, x: Array) -> Array:
        n, h, w, c = x.shape
        nh, r = self.num_heads, self.rep
        qkv = self.qkv(self.norm(x)).reshape(n, h * w, 3, nh, c // (nh * r), r)
        q, k, v = (qkv[:, :, i].reshape(n, h * w, nh, -1) for i in range(3))
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(q.shape[-1])
        a = jax.nn.softmax(logits, axis=-1)
        o = jnp.einsum("nhqk,nkhd->nqhd", a, v)  # d = (fields per head, group): field-major
        o = o.reshape(n, h * w, nh, c // (nh * r), r).reshape(n, h, w, c)
        return x.astype(o.dtype) + self.proj(o)


def avg_pool2(x: Array) -> Array:
    """2 x 2 average pooling (exactly equivariant on even sizes)."""
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        raise arg_error("x", f"spatial size {(h, w)}", "even sizes (2x2 pooling)")
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def nearest_up2(x: Array) -> Array:
    """Nearest-neighbour 2x upsampling (exactly equivariant)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


__all__ = [
    "REPS",
    "FieldNorm",
    "FiLM",
    "GroupAttention",
    "GroupConv",
    "avg_pool2",
    "group_pool",
    "nearest_up2",
    "rep_size",
]
