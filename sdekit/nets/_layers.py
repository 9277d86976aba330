"""Small NHWC building blocks shared by the networks.

Every layer stores its weights as explicit arrays so that the initialisation can follow
score_sde exactly: DDPM's variance scaling (``fan_avg``, uniform) with zero biases, where an
``init_scale`` of 0 becomes 1e-10 (a numerically zero but non-degenerate initialisation).

Layers compute in the dtype of their input: weights are cast to ``x.dtype`` at call time. This is
how mixed precision works: parameters stay float32 and the caller decides which activations are
cast to the compute dtype.
"""

import copy
import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._validate import arg_error

_DN = ("NHWC", "HWIO", "NHWC")
COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")


def key_stream(key: PRNGKeyArray):
    """An endless iterator of independent keys ``fold_in(key, 1), fold_in(key, 2), ...``."""
    i = 0
    while True:
        i += 1
        yield jax.random.fold_in(key, i)


def _is_concrete(key) -> bool:
    return not isinstance(key, jax.core.Tracer)


def _rng(key: PRNGKeyArray) -> np.random.Generator:
    data = np.asarray(jax.random.key_data(key)).astype(np.uint64).ravel()
    return np.random.default_rng([int(v) for v in data])


def uniform_init(key: PRNGKeyArray, shape: Sequence[int], limit: float) -> Array:
    """``U(-limit, limit)`` samples in float32.

    With a concrete key the draw is made by NumPy seeded from the key (network construction
    then needs no compilation per weight shape); under tracing (``jit``, ``eval_shape``) it
    uses ``jax.random``. Both give the same distribution, not the same numbers.
    """
    shape = tuple(int(s) for s in shape)
    if _is_concrete(key):
        u = _rng(key).random(shape, dtype=np.float32)
        return jnp.asarray((2.0 * u - 1.0) * np.float32(limit))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


def normal_init(key: PRNGKeyArray, shape: Sequence[int], std: float | int = 1.0) -> Array:
    """``N(0, std^2)`` samples in float32 (NumPy for concrete keys, as in ``uniform_init``)."""
    shape = tuple(int(s) for s in shape)
    if _is_concrete(key):
        return jnp.asarray(np.float32(std) * _rng(key).standard_normal(shape, dtype=np.float32))
    return std * jax.random.normal(key, shape, jnp.float32)


def variance_scaling(
    key: PRNGKeyArray, shape: Sequence[int], fan_in: int, fan_out: int, scale: float | int = 1.0
) -> Array:
    """score_sde's ``default_init``: variance scaling, ``fan_avg`` mode, uniform distribution.

    A ``scale`` of exactly 0 is replaced by 1e-10, as in score_sde.
    """
    scale = 1e-10 if scale == 0 else float(scale)
    variance = scale / ((fan_in + fan_out) / 2.0)
    return uniform_init(key, shape, math.sqrt(3.0 * variance))


def xavier_uniform(key: PRNGKeyArray, fan_in: int, fan_out: int, shape: Sequence[int]) -> Array:
    return uniform_init(key, shape, math.sqrt(6.0 / (fan_in + fan_out)))


def silu(x: Array) -> Array:
    return jax.nn.silu(x)


class Linear(eqx.Module):
    """Dense layer acting on the last axis: ``x @ weight + bias`` with ``weight`` of shape
    ``(in, out)``."""

    weight: Array
    bias: Array | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        key: PRNGKeyArray,
        use_bias: bool = True,
        init: str = "default",
        init_scale: float | int = 1.0,
    ):
        shape = (in_features, out_features)
        if init == "default":
            self.weight = variance_scaling(key, shape, in_features, out_features, init_scale)
        elif init == "xavier":
            self.weight = xavier_uniform(key, in_features, out_features, shape)
        elif init == "normal002":
            self.weight = normal_init(key, shape, 0.02)
        elif init == "zeros":
            self.weight = jnp.zeros(shape, jnp.float32)
        else:
            raise arg_error("init", init, "one of 'default', 'xavier', 'normal002', 'zeros'")
        self.bias = jnp.zeros((out_features,), jnp.float32) if use_bias else None

    def __call__(self, x: Array) -> Array:
        y = x @ self.weight.astype(x.dtype)
        if self.bias is not None:
            y = y + self.bias.astype(x.dtype)
        return y


class Conv2d(eqx.Module):
    """2-D convolution on NHWC inputs with an HWIO kernel (score_sde initialisation).

    ``padding`` is a pair of ``(low, high)`` pads per spatial axis; the default keeps the size
    for odd kernels at stride 1.
    """

    weight: Array
    bias: Array | None
    stride: int = eqx.field(static=True)
    padding: tuple[tuple[int, int], tuple[int, int]] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        key: PRNGKeyArray,
        stride: int = 1,
        padding: tuple[tuple[int, int], tuple[int, int]] | None = None,
        use_bias: bool = True,
        init_scale: float | int = 1.0,
    ):
        k = kernel_size
        rf = k * k
        self.weight = variance_scaling(
            key, (k, k, in_channels, out_channels), in_channels * rf, out_channels * rf, init_scale
        )
        self.bias = jnp.zeros((out_channels,), jnp.float32) if use_bias else None
        self.stride = stride
        if padding is None:
            p = (k - 1) // 2
            padding = ((p, k - 1 - p), (p, k - 1 - p))
        self.padding = padding

    def __call__(self, x: Array, *, lhs_dilation: int = 1, padding=None) -> Array:
        y = jax.lax.conv_general_dilated(
            x,
            self.weight.astype(x.dtype),
            (self.stride, self.stride),
            self.padding if padding is None else padding,
            lhs_dilation=(lhs_dilation, lhs_dilation),
            dimension_numbers=_DN,
        )
        if self.bias is not None:
            y = y + self.bias.astype(x.dtype)
        return y


class AbstractLeanLayer(eqx.Module):
    """A layer with a memory-lean gradient rule, switched by its static field ``lean``.

    Plain autodiff of a GroupNorm followed by SiLU keeps three activation-sized arrays per
    layer for the backward pass (the centred input, the normalised pre-activation and the
    SiLU output); dropout keeps its random bits (4 bytes per element). With ``lean=True``
    GroupNorm(+SiLU) keeps only its input and per-group mean and inverse standard deviation
    (a few floats per sample) and recomputes the rest in the backward pass, fused into the
    two passes its gradient needs anyway; dropout keeps only its keys and draws the same mask
    again. The gradients are the same to float32 round-off (dropout's: exactly). Measured on
    the PSLD CIFAR-10 network (97.6 M parameters), batch 8, forward+backward on CPU: XLA's
    temporary memory 2.95 -> 1.36 GiB, and 7-13 % faster (fewer passes over memory).

    Both are ``jax.custom_vjp`` rules, so forward-mode autodiff (``jax.jvp``,
    ``jax.linearize``, ``jax.jacfwd``) cannot pass through a lean layer. Networks are built
    with ``lean=False``; [`with_lean_gradients`][sdekit.nets.with_lean_gradients] returns a copy
    with every lean layer switched, which [`fit`][sdekit.train.fit] and
    [`make_train_step`][sdekit.train.make_train_step] differentiate (``lean_gradients=True``).
    """

    lean: eqx.AbstractVar[bool]


def with_lean_gradients(model: Any, enabled: bool = True) -> Any:
    """A copy of ``model`` whose lean layers (GroupNorm(+SiLU) and dropout; see
    [`AbstractLeanLayer`][sdekit.nets.AbstractLeanLayer]) use (``enabled=True``) or do not use
    the memory-lean gradient rules. Same parameters and forward pass; works inside ``jit``.

    Example:
        ```python
        import jax, jax.numpy as jnp
        from sdekit.nets import UNet, with_lean_gradients

        net = UNet(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                   image_size=8, in_channels=1, key=jax.random.key(0))
        x, t = jnp.ones((2, 8, 8, 1)), jnp.full((2,), 0.5)
        grads = jax.grad(lambda n: jnp.mean(with_lean_gradients(n)(x, t) ** 2))(net)
        ```
    """
    if not isinstance(enabled, bool):
        raise arg_error("enabled", enabled, "True or False")
    return _switch_lean(model, enabled)


def _switch_lean(node: Any, enabled: bool) -> Any:
    if isinstance(node, eqx.Module):
        new = copy.copy(node)
        for f in dataclasses.fields(node):
            value = node.__dict__.get(f.name, _MISSING)
            if value is not _MISSING:
                object.__setattr__(new, f.name, _switch_lean(value, enabled))
        if isinstance(new, AbstractLeanLayer):
            object.__setattr__(new, "lean", enabled)
        return new
    if isinstance(node, (list, tuple)) and type(node) in (list, tuple):
        return type(node)(_switch_lean(v, enabled) for v in node)
    if isinstance(node, dict) and type(node) is dict:
        return {k: _switch_lean(v, enabled) for k, v in node.items()}
    return node


_MISSING = object()


def _grouped(x: Array, groups: int) -> tuple[int, ...]:
    """(N, everything between the batch and channel axes, groups, channels per group); an
    unbatched vector of channels is one sample."""
    return (x.shape[0] if x.ndim > 1 else 1, -1, groups, x.shape[-1] // groups)


def _group_norm(x: Array, weight: Array, bias: Array, groups: int, eps: float):
    """``(GroupNorm(x), per-group mean, per-group 1/std)``, statistics in float32."""
    xr = x.astype(jnp.float32).reshape(_grouped(x, groups))
    mean = jnp.mean(xr, axis=(1, 3), keepdims=True)
    rstd = jax.lax.rsqrt(jnp.mean(jnp.square(xr - mean), axis=(1, 3), keepdims=True) + eps)
    y = (((xr - mean) * rstd).reshape(x.shape) * weight + bias).astype(x.dtype)
    return y, mean, rstd


def _tied_zero(g: Array) -> Array:
    """A float32 zero per sample computed from the cotangent ``g`` (one element each).

    Added to what a backward rule recomputes, it makes the recomputation wait for ``g``:
    otherwise XLA schedules it next to the forward pass (its inputs are ready there) and keeps
    it alive until the backward pass reaches the layer, which gives back the memory saved. Per
    sample, so a batch-sharded array needs no communication.
    """
    return jnp.zeros((), jnp.float32) * g.reshape(g.shape[0], -1)[:, 0].astype(jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _group_norm_lean(x, weight, bias, groups, eps, act):
    return _group_norm_lean_fwd(x, weight, bias, groups, eps, act)[0]


def _group_norm_lean_fwd(x, weight, bias, groups, eps, act):
    y, mean, rstd = _group_norm(x, weight, bias, groups, eps)
    return (silu(y) if act else y), (x, mean, rstd, weight, bias)


def _group_norm_lean_bwd(groups, eps, act, res, g):
    del eps
    x, mean, rstd, weight, bias = res
    n, c = x.shape[0], x.shape[-1]
    mean = mean + _tied_zero(g).reshape(n, 1, 1, 1)
    xhat = ((x.astype(jnp.float32).reshape(_grouped(x, groups)) - mean) * rstd).reshape(x.shape)
    dy = g.astype(jnp.float32)
    if act:
        y = xhat * weight + bias
        s = jax.nn.sigmoid(y)
        dy = dy * (s * (1.0 + y * (1.0 - s)))
    between = tuple(range(1, x.ndim - 1))
    sum_dy = jnp.sum(dy, axis=between)  # (N, C)
    sum_dy_xhat = jnp.sum(dy * xhat, axis=between)  # (N, C)
    count = x.size // (n * groups)
    per_group = (n, groups, c // groups)
    m1 = jnp.sum((sum_dy * weight).reshape(per_group), axis=-1) / count  # (N, G)
    m2 = jnp.sum((sum_dy_xhat * weight).reshape(per_group), axis=-1) / count
    dxhat = (dy * weight).reshape(_grouped(x, groups))
    xhat = xhat.reshape(_grouped(x, groups))
    gx = rstd * (dxhat - m1[:, None, :, None] - xhat * m2[:, None, :, None])
    return (
        gx.reshape(x.shape).astype(x.dtype),
        jnp.sum(sum_dy_xhat, axis=0).astype(weight.dtype),
        jnp.sum(sum_dy, axis=0).astype(bias.dtype),
    )


_group_norm_lean.defvjp(_group_norm_lean_fwd, _group_norm_lean_bwd)


class GroupNorm(AbstractLeanLayer):
    """Group normalisation over (H, W, channels-in-group) with an affine transform.

    Statistics are computed in float32 whatever the input dtype; the output has the input dtype.
    ``num_groups`` defaults to score_sde's ``min(C // 4, 32)``. ``norm(x, silu=True)`` is
    ``silu(norm(x))``; with ``lean=True`` both are differentiated with a memory-lean custom
    gradient ([`AbstractLeanLayer`][sdekit.nets.AbstractLeanLayer]).
    """

    weight: Array
    bias: Array
    num_groups: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    lean: bool = eqx.field(static=True)

    def __init__(self, channels: int, num_groups: int | None = None, eps: float = 1e-6, *,
                 lean: bool = False):
        if num_groups is None:
            num_groups = min(channels // 4, 32)
        if num_groups < 1 or channels % num_groups != 0:
            raise ValueError(
                f"GroupNorm: got {channels} channels, expected a channel count >= 4 that is "
                f"divisible by the number of groups min(C // 4, 32) = {num_groups}; choose `nf` "
                "and `ch_mult` so that every feature map has such a channel count."
            )
        self.weight = jnp.ones((channels,), jnp.float32)
        self.bias = jnp.zeros((channels,), jnp.float32)
        self.num_groups = num_groups
        self.eps = eps
        self.lean = lean

    def __call__(self, x: Array, *, silu: bool = False) -> Array:
        if self.lean and x.ndim > 1:
            return _group_norm_lean(x, self.weight, self.bias, self.num_groups, self.eps, silu)
        y = _group_norm(x, self.weight, self.bias, self.num_groups, self.eps)[0]
        return jax.nn.silu(y) if silu else y


class LayerNorm(eqx.Module):
    """Layer normalisation over the last axis without affine parameters (DiT's adaLN)."""

    eps: float | int = eqx.field(static=True, default=1e-6)

    def __call__(self, x: Array) -> Array:
        dtype = x.dtype
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        return ((x32 - mean) * jax.lax.rsqrt(var + self.eps)).astype(dtype)


def dropout(x: Array, rate: float | int, key: PRNGKeyArray | None, *,
            lean: bool = False) -> Array:
    """Inverted dropout; the identity when ``key`` is None (inference) or ``rate`` is 0.

    Each sample (leading axis) draws its mask from its own key, ``split(key, N)``. The mask is
    drawn from 16 random bits per element (two elements per 32-bit draw, which halves the cost
    of JAX's counter-based generator, the larger part of dropout's time on CPU): the drop
    probability is ``round(rate * 2**16) / 2**16``, within ``2**-17`` of ``rate``, and kept
    elements are scaled by the inverse of the exact keep probability, so the output's
    expectation is ``x``. Rates whose 16-bit rounding is off by more than 0.1 % of the rate
    (``rate < 0.0077``), and odd trailing axes, use 32 bits per element instead.

    With ``lean=True`` the backward pass draws the same masks again from the keys instead of
    keeping them (XLA would otherwise keep the random bits, 4 bytes per element, until the
    backward pass reaches the layer).
    """
    if key is None or rate == 0.0:
        return x
    if x.ndim == 0:
        raise arg_error("x", "a scalar", "an array with a leading batch axis")
    keep_fn, scale = _dropout_mask_fn(x.shape[1:], float(rate))
    keys = jax.random.split(key, x.shape[0])
    if lean:
        return _dropout_lean(x, keys, keep_fn, scale)
    return _apply_mask(x, jax.vmap(keep_fn)(keys), scale)


def _apply_mask(x: Array, keep: Array, scale: float) -> Array:
    return jnp.where(keep, x * jnp.asarray(scale, x.dtype), jnp.zeros((), x.dtype))


@functools.lru_cache(maxsize=None)
def _dropout_mask_fn(shape: tuple[int, ...], rate: float):
    """(key -> boolean keep mask of one sample's ``shape``, the kept elements' scale)."""
    thr16 = round(rate * 2**16)
    if (
        abs(thr16 - rate * 2**16) <= 1e-3 * rate * 2**16
        and 0 < thr16 < 2**16
        and shape
        and shape[-1] % 2 == 0
    ):

        def keep16(key):
            bits = jax.random.bits(key, (*shape[:-1], shape[-1] // 2), jnp.uint32)
            u = jnp.stack([bits & 0xFFFF, bits >> 16], axis=-1).reshape(shape)
            return u >= jnp.uint32(thr16)

        return keep16, 1.0 / (1.0 - thr16 / 2**16)
    thr32 = min(round(rate * 2**32), 2**32 - 1)

    def keep32(key):
        return jax.random.bits(key, shape, jnp.uint32) >= jnp.uint32(thr32)

    return keep32, 1.0 / (1.0 - thr32 / 2**32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _dropout_lean(x, keys, keep_fn, scale):
    return _apply_mask(x, jax.vmap(keep_fn)(keys), scale)


def _dropout_lean_fwd(x, keys, keep_fn, scale):
    return _dropout_lean(x, keys, keep_fn, scale), keys


def _dropout_lean_bwd(keep_fn, scale, keys, g):
    # Each sample's key is XORed with a zero tied to its cotangent: otherwise XLA merges this
    # draw with the forward's and keeps the bits alive in between.
    n = g.shape[0]
    zero = _tied_zero(g).astype(jnp.uint32)
    typed = jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    data = jax.random.key_data(keys) if typed else keys  # raw uint32 keys (PRNGKey)
    data = data ^ zero.reshape((n,) + (1,) * (data.ndim - 1))
    keys = jax.random.wrap_key_data(data, impl=jax.random.key_impl(keys)) if typed else data
    return _apply_mask(g, jax.vmap(keep_fn)(keys), scale), None


_dropout_lean.defvjp(_dropout_lean_fwd, _dropout_lean_bwd)


# ----------------------------------------------------------------------------------------------
# FIR resampling (upfirdn2d with a separable kernel, default [1, 3, 3, 1]).


def fir_kernel_2d(kernel: Sequence[float | int]) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64)
    k2 = np.outer(k, k)
    return (k2 / k2.sum()).astype(np.float32)


def _fir_axis(x: Array, taps: np.ndarray, axis: int, up: int, down: int, pad: tuple[int, int]):
    """``upfirdn`` along one axis: zero-stuff by ``up``, pad, convolve with ``taps``, keep every
    ``down``-th sample, written as shifted slices and adds (no convolution op).

    Only the non-zero samples of the zero-stuffed signal are touched (polyphase form), so the
    cost is ``len(taps) / up`` multiply-adds per output sample; the gradient is the same kind
    of slices, pads and adds, which XLA runs at memory speed on every backend.
    """
    n = x.shape[axis]
    kf = [float(v) for v in taps[::-1]]  # upfirdn convolves: correlate with the flipped taps
    kk = len(kf)
    p0, p1 = pad
    out_len = (n * up + p0 + p1 - kk) // down + 1
    if up == 1:
        lo, hi = max(p0, 0), max(p1, 0)
        widths = [(0, 0)] * x.ndim
        widths[axis] = (lo, hi)
        xp = jnp.pad(x, widths)
        off = lo - p0
        y = None
        for j, c in enumerate(kf):
            if c == 0.0:
                continue
            s = off + j
            term = jax.lax.slice_in_dim(xp, s, s + down * (out_len - 1) + 1, down, axis) * c
            y = term if y is None else y + term
        return y
    if down != 1 or out_len % up != 0:
        raise ValueError(f"_fir_axis: up={up} with down={down}, length {out_len} unsupported")
    # Output o = up * m + r takes tap j from x[m + (r + j - p0) / up] when that is an integer.
    m_len = out_len // up
    shifts = [(r + j - p0) // up for r in range(up) for j in range(kk) if (r + j - p0) % up == 0]
    lo, hi = max(0, -min(shifts)), max(0, max(shifts) + m_len - n)
    widths = [(0, 0)] * x.ndim
    widths[axis] = (lo, hi)
    xp = jnp.pad(x, widths)
    phases = []
    for r in range(up):
        y = None
        for j, c in enumerate(kf):
            if (r + j - p0) % up or c == 0.0:
                continue
            s = lo + (r + j - p0) // up
            term = jax.lax.slice_in_dim(xp, s, s + m_len, 1, axis) * c
            y = term if y is None else y + term
        if y is None:  # a phase with no taps (only possible for kernels with zero taps)
            y = jnp.zeros_like(jax.lax.slice_in_dim(xp, 0, m_len, 1, axis))
        phases.append(y)
    y = jnp.stack(phases, axis=axis + 1)
    return y.reshape(*x.shape[:axis], out_len, *x.shape[axis + 1 :])


def upfirdn2d(
    x: Array,
    kernel: Sequence[float | int],
    *,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> Array:
    """score_sde's ``upfirdn2d`` on NHWC ``x`` with the separable kernel ``k k^T / sum(k k^T)``
    (times ``gain``): zero-stuff by ``up``, pad by ``pad`` on both spatial axes, convolve, and
    keep every ``down``-th pixel.

    Each spatial axis is filtered with the normalised 1-D kernel as shifted slices and adds,
    which is exact (same sums as the 2-D depthwise convolution, up to float32 round-off) and
    much faster on CPU than a depthwise ``conv_general_dilated``, forward and backward.
    """
    k = np.asarray(kernel, dtype=np.float64)
    k = k / k.sum() * math.sqrt(gain)
    y = _fir_axis(x, k, 1, up, down, pad)
    return _fir_axis(y, k, 2, up, down, pad)


def fir_upsample(x: Array, kernel: Sequence[float | int]) -> Array:
    """2x FIR upsampling (score_sde's ``upsample_2d``): zero-stuff, then filter with 4 k k^T."""
    p = len(kernel) - 2
    return upfirdn2d(x, kernel, up=2, pad=((p + 1) // 2 + 1, p // 2), gain=4.0)


def fir_downsample(x: Array, kernel: Sequence[float | int]) -> Array:
    """2x FIR downsampling (score_sde's ``downsample_2d``): filter with k k^T, keep every 2nd."""
    p = len(kernel) - 2
    return upfirdn2d(x, kernel, down=2, pad=((p + 1) // 2, p // 2))


def naive_upsample(x: Array) -> Array:
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def naive_downsample(x: Array) -> Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class Upsample(eqx.Module):
    """2x upsampling (score_sde ``layerspp.Upsample``): nearest (+3x3 conv) or FIR
    (+ a 3x3 transposed convolution fused with the FIR filter)."""

    conv: Conv2d | None
    fir: bool = eqx.field(static=True)
    fir_kernel: tuple[float, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        with_conv: bool,
        fir: bool,
        fir_kernel: Sequence[float | int] = (1, 3, 3, 1),
        key: PRNGKeyArray,
    ):
        out_channels = in_channels if out_channels is None else out_channels
        self.fir = fir
        self.fir_kernel = tuple(float(v) for v in fir_kernel)
        self.conv = Conv2d(in_channels, out_channels, 3, key=key) if with_conv else None

    def __call__(self, x: Array) -> Array:
        if not self.fir:
            h = naive_upsample(x)
            return h if self.conv is None else self.conv(h)
        if self.conv is None:
            return fir_upsample(x, self.fir_kernel)
        # upsample_conv_2d: stride-2 transposed 3x3 conv, then the FIR filter with pads (1, 1).
        h = self.conv(x, lhs_dilation=2, padding=((2, 2), (2, 2)))
        p = len(self.fir_kernel) - 2 - 2
        return upfirdn2d(h, self.fir_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)


class Downsample(eqx.Module):
    """2x downsampling (score_sde ``layerspp.Downsample``): average pooling / padded stride-2
    3x3 conv, or FIR filter (+ stride-2 3x3 conv)."""

    conv: Conv2d | None
    fir: bool = eqx.field(static=True)
    fir_kernel: tuple[float, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        with_conv: bool,
        fir: bool,
        fir_kernel: Sequence[float | int] = (1, 3, 3, 1),
        key: PRNGKeyArray,
    ):
        out_channels = in_channels if out_channels is None else out_channels
        self.fir = fir
        self.fir_kernel = tuple(float(v) for v in fir_kernel)
        if with_conv:
            self.conv = Conv2d(
                in_channels, out_channels, 3, key=key, stride=2, padding=((0, 0), (0, 0))
            )
        else:
            self.conv = None

    def __call__(self, x: Array) -> Array:
        if not self.fir:
            if self.conv is None:
                return naive_downsample(x)
            return self.conv(x, padding=((0, 1), (0, 1)))
        if self.conv is None:
            return fir_downsample(x, self.fir_kernel)
        # conv_downsample_2d: FIR filter with pads (2, 2), then a stride-2 3x3 conv.
        p = len(self.fir_kernel) - 2 + 2
        return self.conv(upfirdn2d(x, self.fir_kernel, pad=((p + 1) // 2, p // 2)))


# ----------------------------------------------------------------------------------------------
# Time embeddings.


def sinusoidal_embedding(t: Array, dim: int, max_positions: float = 10000.0) -> Array:
    """DDPM's sinusoidal embedding along a new last axis: ``[sin(t f_k), cos(t f_k)]`` with
    ``f_k = exp(-k log(max_positions) / (dim/2 - 1))`` (zero-padded when ``dim`` is odd)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_positions) / (half - 1) * jnp.arange(half, dtype=jnp.float32))
    arg = t.astype(jnp.float32)[..., None] * freqs
    emb = jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)
    if dim % 2 == 1:
        emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
    return emb


def fourier_embedding(x: Array, w: Array) -> Array:
    """Gaussian Fourier features ``[sin(2 pi x w), cos(2 pi x w)]`` along a new last axis."""
    arg = x.astype(jnp.float32)[..., None] * w * (2.0 * math.pi)
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


def check_compute_dtype(compute_dtype: str) -> None:
    if compute_dtype not in COMPUTE_DTYPES:
        raise arg_error("compute_dtype", compute_dtype, "one of " + ", ".join(COMPUTE_DTYPES))


def check_key(key) -> None:
    """Raise a clear error for a key that is not a PRNG key (e.g. an int seed)."""
    if key is not None and not isinstance(key, jax.Array):
        raise arg_error("key", key, "None or a PRNG key from jax.random.key / jax.random.PRNGKey")
