"""NCSN++ / DDPM++ UNet (Song et al. 2021, score_sde), NHWC, with sdekit's conditioning."""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._validate import arg_error, check_choice
from ._base import AbstractNet
from ._conditioning import check_labels, pool_map, time_map
from ._layers import (
    AbstractLeanLayer,
    Conv2d,
    Downsample,
    GroupNorm,
    Linear,
    Upsample,
    check_compute_dtype,
    check_key,
    dropout,
    fir_downsample,
    fir_upsample,
    fourier_embedding,
    key_stream,
    naive_downsample,
    naive_upsample,
    normal_init,
    silu,
    sinusoidal_embedding,
)

_SQRT2 = math.sqrt(2.0)


def _combine(x: Array, h: Array, skip_rescale: bool) -> Array:
    """Residual sum in float32 (the skip path never runs in the compute dtype)."""
    s = x.astype(jnp.float32) + h.astype(jnp.float32)
    return s / _SQRT2 if skip_rescale else s


class ResnetBlock(AbstractLeanLayer):
    """score_sde's ``ResnetBlockBigGAN`` (``kind="biggan"``, optional up/down resampling inside
    the block) or ``ResnetBlockDDPMpp`` (``kind="ddpm"``).

    ``GN -> SiLU -> [resample] -> conv3x3 -> + Dense(SiLU(temb)) -> GN -> SiLU -> dropout ->
    conv3x3 (init_scale)``, skip through a 1x1 conv when the shape changes, output
    ``(skip + h) / sqrt(2)`` with ``skip_rescale``. With ``scale_shift_norm`` the embedding gives
    ``(scale, shift)`` and the second norm becomes ``(1 + scale) GN(h) + shift``.
    """

    norm0: GroupNorm
    conv0: Conv2d
    dense: Linear
    norm1: GroupNorm
    conv1: Conv2d
    skip: Conv2d | None
    kind: str = eqx.field(static=True)
    up: bool = eqx.field(static=True)
    down: bool = eqx.field(static=True)
    fir: bool = eqx.field(static=True)
    fir_kernel: tuple[float, ...] = eqx.field(static=True)
    rate: float = eqx.field(static=True)
    skip_rescale: bool = eqx.field(static=True)
    scale_shift_norm: bool = eqx.field(static=True)
    lean: bool = eqx.field(static=True)

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None,
        temb_dim: int,
        *,
        key: PRNGKeyArray,
        kind: str = "biggan",
        up: bool = False,
        down: bool = False,
        dropout: float | int = 0.1,
        fir: bool = False,
        fir_kernel: Sequence[float | int] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float | int = 0.0,
        scale_shift_norm: bool = False,
    ):
        out_ch = in_ch if out_ch is None else out_ch
        k0, k1, k2, k3 = jax.random.split(key, 4)
        self.norm0 = GroupNorm(in_ch)
        self.conv0 = Conv2d(in_ch, out_ch, 3, key=k0)
        self.dense = Linear(temb_dim, out_ch * (2 if scale_shift_norm else 1), key=k1)
        self.norm1 = GroupNorm(out_ch)
        self.conv1 = Conv2d(out_ch, out_ch, 3, key=k2, init_scale=init_scale)
        needs_skip = in_ch != out_ch or (kind == "biggan" and (up or down))
        self.skip = Conv2d(in_ch, out_ch, 1, key=k3) if needs_skip else None
        self.kind = kind
        self.up = up
        self.down = down
        self.fir = fir
        self.fir_kernel = tuple(float(v) for v in fir_kernel)
        self.rate = float(dropout)
        self.skip_rescale = skip_rescale
        self.scale_shift_norm = scale_shift_norm
        self.lean = False

    def _resample(self, x: Array) -> Array:
        if self.up:
            return fir_upsample(x, self.fir_kernel) if self.fir else naive_upsample(x)
        if self.down:
            return fir_downsample(x, self.fir_kernel) if self.fir else naive_downsample(x)
        return x

    def __call__(self, x: Array, temb: Array, key: PRNGKeyArray | None, dtype) -> Array:
        h = self.norm0(x.astype(dtype), silu=True)
        h = self._resample(h)
        x = self._resample(x)
        h = self.conv0(h)
        e = self.dense(silu(temb.astype(dtype)))
        if self.scale_shift_norm:
            scale, shift = jnp.split(e, 2, axis=-1)
            h = silu(self.norm1(h) * (1 + scale) + shift)
        else:
            h = self.norm1(h + e, silu=True)
        h = dropout(h, self.rate, key, lean=self.lean)
        h = self.conv1(h)
        if self.skip is not None:
            x = self.skip(x.astype(jnp.float32))
        return _combine(x, h, self.skip_rescale)


class AttnBlock(eqx.Module):
    """score_sde's ``AttnBlockpp``: GroupNorm, 1x1 q/k/v projections, softmax attention over all
    pixels (``num_heads`` heads; one head reproduces score_sde), a 1x1 output projection with
    ``init_scale``, and a (rescaled) residual sum."""

    norm: GroupNorm
    q: Linear
    k: Linear
    v: Linear
    out: Linear
    num_heads: int = eqx.field(static=True)
    skip_rescale: bool = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        *,
        key: PRNGKeyArray,
        num_heads: int = 1,
        skip_rescale: bool = True,
        init_scale: float | int = 0.0,
    ):
        kq, kk, kv, ko = jax.random.split(key, 4)
        self.norm = GroupNorm(channels)
        self.q = Linear(channels, channels, key=kq, init_scale=0.1)
        self.k = Linear(channels, channels, key=kk, init_scale=0.1)
        self.v = Linear(channels, channels, key=kv, init_scale=0.1)
        self.out = Linear(channels, channels, key=ko, init_scale=init_scale)
        self.num_heads = num_heads
        self.skip_rescale = skip_rescale

    def __call__(self, x: Array, dtype) -> Array:
        n, hh, ww, c = x.shape
        nh = self.num_heads
        d = c // nh
        h = self.norm(x.astype(dtype)).reshape(n, hh * ww, c)
        q = self.q(h).reshape(n, hh * ww, nh, d)
        k = self.k(h).reshape(n, hh * ww, nh, d)
        v = self.v(h).reshape(n, hh * ww, nh, d)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        w = jax.nn.softmax(logits * (d**-0.5), axis=-1).astype(dtype)
        a = jnp.einsum("bhqk,bkhd->bqhd", w, v).reshape(n, hh * ww, c)
        a = self.out(a).reshape(n, hh, ww, c)
        return _combine(x, a, self.skip_rescale)


class _Combine(eqx.Module):
    """score_sde's ``Combine`` for ``progressive_input="input_skip"``: 1x1 conv of the input
    pyramid, then sum with (or concatenation to) the feature map."""

    conv: Conv2d
    method: str = eqx.field(static=True)

    def __call__(self, pyr: Array, h: Array) -> Array:
        p = self.conv(pyr)
        if self.method == "cat":
            return jnp.concatenate([p.astype(h.dtype), h], axis=-1)
        return p.astype(jnp.float32) + h.astype(jnp.float32)


class _PyramidHead(eqx.Module):
    """GroupNorm -> SiLU -> conv3x3 on the up path (progressive output_skip / residual)."""

    norm: GroupNorm
    conv: Conv2d

    def __call__(self, h: Array, dtype) -> Array:
        return self.conv(self.norm(h.astype(dtype), silu=True))


class _Context:
    """Per-call state shared by the levels: the time embedding (pooled once per resolution),
    the dropout keys (handed out in call order) and the compute dtype. Not a pytree."""

    def __init__(self, temb_full: Array, block_keys, dtype):
        self.temb_full = temb_full
        self.cache: dict = {}
        self.keys = block_keys
        self.dtype = dtype

    def res(self, block: ResnetBlock, h: Array) -> Array:
        if block.up:
            size = (2 * h.shape[1], 2 * h.shape[2])
        elif block.down:
            size = (h.shape[1] // 2, h.shape[2] // 2)
        else:
            size = (h.shape[1], h.shape[2])
        if size not in self.cache:
            self.cache[size] = pool_map(self.temb_full, *size)
        key = None if self.keys is None else next(self.keys)
        return block(h, self.cache[size], key, self.dtype)

    def resample(self, layer: ResnetBlock | Downsample | Upsample, h: Array) -> Array:
        """A level's 2x resampling: a residual block (``biggan``) or a resampling layer."""
        if isinstance(layer, ResnetBlock):
            return self.res(layer, h)
        return layer(h.astype(self.dtype)).astype(jnp.float32)


class DownLevel(eqx.Module):
    """One resolution of the UNet's down path: ``num_res_blocks`` residual blocks (each
    followed by attention at attention levels), then, except at the lowest resolution, the 2x
    downsampling (a ``biggan`` residual block or a ``Downsample`` layer) and the input-pyramid
    merge (``input_skip``: a ``_Combine`` 1x1 conv; ``residual``: a ``Downsample`` conv).

    ``__call__`` appends every output to the skip list ``hs`` (block outputs, then the
    downsampled map), exactly the maps the up path concatenates, and returns the new input
    pyramid."""

    blocks: list
    attns: list | None
    down: ResnetBlock | Downsample | None
    pyramid: _Combine | Downsample | None
    fir: bool = eqx.field(static=True)
    fir_kernel: tuple[float, ...] = eqx.field(static=True)
    skip_rescale: bool = eqx.field(static=True)

    def __call__(self, hs: list, input_pyramid: Array | None, ctx: _Context) -> Array | None:
        for i, block in enumerate(self.blocks):
            h = ctx.res(block, hs[-1])
            if self.attns is not None:
                h = self.attns[i](h, ctx.dtype)
            hs.append(h)
        if self.down is None:
            return input_pyramid
        h = ctx.resample(self.down, hs[-1])
        if isinstance(self.pyramid, _Combine):  # progressive_input == "input_skip"
            input_pyramid = (
                fir_downsample(input_pyramid, self.fir_kernel)
                if self.fir
                else naive_downsample(input_pyramid)
            )
            h = self.pyramid(input_pyramid, h).astype(jnp.float32)
        elif self.pyramid is not None:  # progressive_input == "residual"
            p = self.pyramid(input_pyramid.astype(ctx.dtype))
            input_pyramid = _combine(p, h, self.skip_rescale)
            h = input_pyramid
        hs.append(h)
        return input_pyramid


class MiddleLevel(eqx.Module):
    """The bottleneck at the lowest resolution: residual block, attention, residual block."""

    res0: ResnetBlock
    attn: AttnBlock
    res1: ResnetBlock

    def __call__(self, h: Array, ctx: _Context) -> Array:
        h = ctx.res(self.res0, h)
        h = self.attn(h, ctx.dtype)
        return ctx.res(self.res1, h)


class UpLevel(eqx.Module):
    """One resolution of the UNet's up path: ``num_res_blocks + 1`` residual blocks, each on
    the concatenation of the features and one skip map popped from ``hs``; attention at
    attention levels; the output-pyramid step (``output_skip``: a ``_PyramidHead`` whose output
    is added to the upsampled pyramid; ``residual``: the head at the lowest level, an
    ``Upsample`` conv merged into the features above it); then, except at the full
    resolution, the 2x upsampling (``biggan`` residual block or ``Upsample`` layer)."""

    blocks: list
    attn: AttnBlock | None
    pyramid: _PyramidHead | Upsample | None
    up: ResnetBlock | Upsample | None
    lowest: bool = eqx.field(static=True)
    progressive: str = eqx.field(static=True)
    fir: bool = eqx.field(static=True)
    fir_kernel: tuple[float, ...] = eqx.field(static=True)
    skip_rescale: bool = eqx.field(static=True)

    def __call__(
        self, h: Array, hs: list, pyramid: Array | None, ctx: _Context
    ) -> tuple[Array, Array | None]:
        for block in self.blocks:
            h = ctx.res(block, jnp.concatenate([h, hs.pop()], axis=-1))
        if self.attn is not None:
            h = self.attn(h, ctx.dtype)
        if self.pyramid is not None:
            if self.lowest:
                pyramid = self.pyramid(h, ctx.dtype).astype(jnp.float32)
            elif self.progressive == "output_skip":
                up = fir_upsample(pyramid, self.fir_kernel) if self.fir else naive_upsample(pyramid)
                pyramid = up + self.pyramid(h, ctx.dtype).astype(jnp.float32)
            else:
                p = self.pyramid(pyramid.astype(ctx.dtype))
                pyramid = _combine(p, h, self.skip_rescale)
                h = pyramid
        if self.up is not None:
            h = ctx.resample(self.up, h)
        return h, pyramid


_RESBLOCKS = ("biggan", "ddpm")
_PROGRESSIVE = ("none", "output_skip", "residual")
_PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
_COMBINE = ("sum", "cat")
_EMBEDDINGS = ("fourier", "positional")


class UNet(AbstractNet):
    """The NCSN++ / DDPM++ UNet of score_sde (Song et al. 2021) on NHWC images.

    The architecture follows score_sde's PyTorch ``NCSNpp`` module for module (so parameter
    counts match the reference implementations exactly), with three additions: free input and
    output channel counts, class conditioning with a null class, and per-pixel time.

    **Structure.** ``conv_in``, then ``down_levels`` (one [`DownLevel`][sdekit.nets.DownLevel]
    per entry of ``ch_mult``), ``middle`` (a [`MiddleLevel`][sdekit.nets.MiddleLevel]),
    ``up_levels`` (one [`UpLevel`][sdekit.nets.UpLevel] per resolution, lowest first) and
    ``head`` (``None`` with ``progressive="output_skip"``, whose pyramid is the output); the
    forward pass walks the same tree. ``modules`` is a flat read-only view in score_sde's order.

    **Calling convention.** ``net(x, t, cond=None, *, key=None)`` with ``x`` of shape
    ``(N, H, W, in_channels)`` (``H`` and ``W`` divisible by ``2 ** (len(ch_mult) - 1)``),
    returns float32 of shape ``(N, H, W, out_channels)``. Dropout is active only when ``key`` is
    given (training); ``key=None`` is deterministic inference.

    **Time.** ``t`` is a scalar, per example ``(N,)``, or aligned with ``x``'s leading axes (e.g.
    per element ``(N, H, W, C)``). It is averaged over channels to a time map ``(N, 1, 1)`` or
    ``(N, H, W)``; each entry is embedded (``fourier``: Gaussian Fourier features of ``log t``
    with a fixed ``W ~ N(0, fourier_scale^2)``; ``positional``: sinusoidal embedding of
    ``time_scale * t``), passed through ``Dense(4 nf) -> SiLU -> Dense(4 nf)``, and the
    resulting embedding map is average-pooled to each resolution; every residual block adds
    ``Dense(SiLU(pooled embedding))`` to its features (per pixel for a per-pixel time).
    The ``fourier`` embedding takes ``log t``; ``t <= 0`` is clamped to the smallest normal
    float32 (about 1.2e-38) instead of producing NaNs. Networks know
    nothing about SDEs: pass whatever the recipe conditions on (``t``, ``sigma``, ...).

    **Class labels.** With ``num_classes=K`` a table of ``K + 1`` embeddings (``N(0, 1)``
    initialised) is added to the time embedding; index ``K`` is the null class for
    classifier-free guidance, and ``cond=None`` means all-null.

    **Initialisation.** score_sde's variance scaling (``fan_avg``, uniform), zero biases,
    ``init_scale`` (score_sde: 0, i.e. 1e-10) on the last conv of every residual block, the
    attention output projection and the output conv; q/k/v projections with scale 0.1.

    **Parameter counts.** The Fourier matrix ``W`` (``nf`` entries) is an array leaf, counted by
    ``eqx.filter(net, eqx.is_inexact_array)`` (matching score_sde's ``params_total``) but never
    trained: it goes through ``jax.lax.stop_gradient``, so its gradient is exactly 0 (exclude
    it from weight decay). ``trainable = total - nf``.

    **Mixed precision.** ``compute_dtype="bfloat16"`` runs convolutions, dense layers and
    attention matmuls in bfloat16 with float32 parameters; normalisation statistics, softmax,
    the time embedding, every residual/skip sum and the returned output are float32.
    """

    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    nf: int = eqx.field(static=True)
    ch_mult: tuple[int, ...] = eqx.field(static=True)
    num_res_blocks: int = eqx.field(static=True)
    attn_resolutions: tuple[int, ...] = eqx.field(static=True)
    image_size: int = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    resblock_type: str = eqx.field(static=True)
    fir: bool = eqx.field(static=True)
    fir_kernel: tuple[float, ...] = eqx.field(static=True)
    skip_rescale: bool = eqx.field(static=True)
    progressive: str = eqx.field(static=True)
    progressive_input: str = eqx.field(static=True)
    progressive_combine: str = eqx.field(static=True)
    embedding_type: str = eqx.field(static=True)
    fourier_scale: float = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)
    init_scale: float = eqx.field(static=True)
    resamp_with_conv: bool = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    scale_shift_norm: bool = eqx.field(static=True)
    center_input: bool = eqx.field(static=True)
    compute_dtype: str = eqx.field(static=True)
    attn_levels: tuple[int, ...] = eqx.field(static=True)

    fourier_w: Array | None
    temb0: Linear
    temb1: Linear
    label_emb: Array | None
    conv_in: Conv2d
    down_levels: list
    middle: MiddleLevel
    up_levels: list
    head: _PyramidHead | None

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        *,
        key: PRNGKeyArray,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        image_size: int = 32,
        dropout: float | int = 0.1,
        resblock_type: str = "biggan",
        fir: bool = True,
        fir_kernel: Sequence[float | int] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        progressive: str = "none",
        progressive_input: str = "residual",
        progressive_combine: str = "sum",
        embedding_type: str = "fourier",
        fourier_scale: float | int = 16.0,
        time_scale: float | int = 1.0,
        init_scale: float | int = 0.0,
        resamp_with_conv: bool = True,
        num_classes: int | None = None,
        num_heads: int = 1,
        scale_shift_norm: bool = False,
        center_input: bool = False,
        compute_dtype: str = "float32",
    ):
        """**Arguments:** (defaults are score_sde's NCSN++ settings)

        - `in_channels`, `out_channels`: channels of ``x`` and of the output (``out_channels``
          defaults to ``in_channels``).
        - `key`: PRNG key for the initialisation (and the fixed Fourier matrix).
        - `nf`: base width; level ``i`` has ``nf * ch_mult[i]`` channels.
        - `ch_mult`: width multipliers, one level per entry (2x downsampling between levels).
        - `num_res_blocks`: residual blocks per level on the way down (``+1`` on the way up).
        - `attn_resolutions`: feature-map sizes (for an ``image_size`` input) with attention.
        - `image_size`: the nominal input size; fixes which levels get attention. Other sizes
          divisible by ``2 ** (len(ch_mult) - 1)`` are accepted and use the same levels.
        - `dropout`: dropout rate inside residual blocks (active only when a key is passed).
        - `resblock_type`: ``"biggan"`` (resampling inside residual blocks) or ``"ddpm"``
          (separate ``Upsample``/``Downsample`` layers).
        - `fir`, `fir_kernel`: FIR resampling with the separable kernel (default [1, 3, 3, 1]);
          otherwise nearest-neighbour upsampling and average pooling.
        - `skip_rescale`: divide residual sums by sqrt(2).
        - `progressive`: output pyramid, ``"none"``, ``"output_skip"`` or ``"residual"``.
        - `progressive_input`: input pyramid, ``"none"``, ``"input_skip"`` or ``"residual"``.
        - `progressive_combine`: ``"sum"`` or ``"cat"`` (for ``input_skip``).
        - `embedding_type`: ``"fourier"`` (of ``log t``) or ``"positional"`` (of
          ``time_scale * t``).
        - `fourier_scale`: standard deviation of the fixed Fourier matrix (16).
        - `time_scale`: multiplier of ``t`` before the positional embedding (1; 1000 for VDPM).
        - `init_scale`: scale of the zero-ish initialised output layers (0 means 1e-10).
        - `resamp_with_conv`: 3x3 convolutions in the ``ddpm``-type resampling layers.
        - `num_classes`: number of classes (``None``: unconditional); index ``num_classes`` is
          the null class.
        - `num_heads`: attention heads (score_sde: 1).
        - `scale_shift_norm`: the time embedding scales and shifts the second GroupNorm
          (VDPM/ADM style) instead of being added before it.
        - `center_input`: map ``x`` to ``2x - 1`` first (score_sde's ``data.centered=False``).
        - `compute_dtype`: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (see above).
        """
        out_channels = in_channels if out_channels is None else out_channels
        ch_mult = tuple(int(m) for m in ch_mult)
        attn_resolutions = tuple(int(r) for r in attn_resolutions)
        for name, val in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("nf", nf),
            ("image_size", image_size),
            ("num_heads", num_heads),
        ):
            if int(val) < 1:
                raise arg_error(name, val, "a positive integer")
        if len(ch_mult) == 0 or min(ch_mult) < 1:
            raise arg_error("ch_mult", ch_mult, "a non-empty sequence of positive integers")
        if num_res_blocks < 1:
            raise arg_error("num_res_blocks", num_res_blocks, "an integer >= 1")
        if not 0.0 <= dropout < 1.0:
            raise arg_error("dropout", dropout, "a rate in [0, 1)")
        check_choice("resblock_type", resblock_type, _RESBLOCKS)
        check_choice("progressive", progressive, _PROGRESSIVE)
        check_choice("progressive_input", progressive_input, _PROGRESSIVE_INPUT)
        check_choice("progressive_combine", progressive_combine, _COMBINE)
        check_choice("embedding_type", embedding_type, _EMBEDDINGS)
        check_compute_dtype(compute_dtype)
        if num_classes is not None and num_classes < 1:
            raise arg_error("num_classes", num_classes, "None or a positive integer")
        if len(fir_kernel) < 2:
            raise arg_error("fir_kernel", fir_kernel, "a 1-D kernel with at least 2 taps")
        num_res = len(ch_mult)
        factor = 2 ** (num_res - 1)
        if image_size % factor != 0:
            raise arg_error(
                "image_size",
                image_size,
                f"a multiple of 2**(len(ch_mult) - 1) = {factor} (ch_mult={ch_mult})",
            )
        all_res = [image_size // 2**i for i in range(num_res)]
        for r in attn_resolutions:
            if r not in all_res:
                raise arg_error(
                    "attn_resolutions",
                    attn_resolutions,
                    f"resolutions reachable from image_size={image_size} with "
                    f"ch_mult={ch_mult}, i.e. a subset of {all_res}",
                )
        attn_levels = tuple(i for i, r in enumerate(all_res) if r in attn_resolutions)
        for i in attn_levels:
            if (nf * ch_mult[i]) % num_heads != 0:
                raise arg_error(
                    "num_heads",
                    num_heads,
                    f"a divisor of the {nf * ch_mult[i]} channels at attention level {i}",
                )

        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.nf = int(nf)
        self.ch_mult = ch_mult
        self.num_res_blocks = int(num_res_blocks)
        self.attn_resolutions = attn_resolutions
        self.image_size = int(image_size)
        self.dropout = float(dropout)
        self.resblock_type = resblock_type
        self.fir = bool(fir)
        self.fir_kernel = tuple(float(v) for v in fir_kernel)
        self.skip_rescale = bool(skip_rescale)
        self.progressive = progressive
        self.progressive_input = progressive_input
        self.progressive_combine = progressive_combine
        self.embedding_type = embedding_type
        self.fourier_scale = float(fourier_scale)
        self.time_scale = float(time_scale)
        self.init_scale = float(init_scale)
        self.resamp_with_conv = bool(resamp_with_conv)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.num_heads = int(num_heads)
        self.scale_shift_norm = bool(scale_shift_norm)
        self.center_input = bool(center_input)
        self.compute_dtype = compute_dtype
        self.attn_levels = attn_levels

        keys = key_stream(key)
        temb_dim = 4 * nf
        if embedding_type == "fourier":
            self.fourier_w = normal_init(next(keys), (nf,), fourier_scale)
            embed_dim = 2 * nf
        else:
            self.fourier_w = None
            embed_dim = nf
        self.temb0 = Linear(embed_dim, temb_dim, key=next(keys))
        self.temb1 = Linear(temb_dim, temb_dim, key=next(keys))
        if num_classes is not None:
            self.label_emb = normal_init(next(keys), (num_classes + 1, temb_dim))
        else:
            self.label_emb = None

        def resblock(in_ch, out_ch=None, up=False, down=False):
            return ResnetBlock(
                in_ch,
                out_ch,
                temb_dim,
                key=next(keys),
                kind=resblock_type,
                up=up,
                down=down,
                dropout=dropout,
                fir=fir,
                fir_kernel=fir_kernel,
                skip_rescale=skip_rescale,
                init_scale=init_scale,
                scale_shift_norm=scale_shift_norm,
            )

        def attn(ch):
            return AttnBlock(
                ch,
                key=next(keys),
                num_heads=num_heads,
                skip_rescale=skip_rescale,
                init_scale=init_scale,
            )

        def head(ch, out, scale):
            return _PyramidHead(GroupNorm(ch), Conv2d(ch, out, 3, key=next(keys), init_scale=scale))

        lvl_static = dict(fir=self.fir, fir_kernel=self.fir_kernel, skip_rescale=skip_rescale)
        # Built in score_sde's module order, which fixes the order of the initialisation keys.
        self.conv_in = Conv2d(in_channels, nf, 3, key=next(keys))
        input_pyramid_ch = in_channels
        hs_c = [nf]
        in_ch = nf
        down_levels = []
        for i_level in range(num_res):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                out_ch = nf * ch_mult[i_level]
                blocks.append(resblock(in_ch, out_ch))
                in_ch = out_ch
                if i_level in attn_levels:
                    attns.append(attn(in_ch))
                hs_c.append(in_ch)
            down, pyramid = None, None
            if i_level != num_res - 1:
                if resblock_type == "ddpm":
                    down = Downsample(
                        in_ch,
                        with_conv=resamp_with_conv,
                        fir=fir,
                        fir_kernel=fir_kernel,
                        key=next(keys),
                    )
                else:
                    down = resblock(in_ch, down=True)
                if progressive_input == "input_skip":
                    pyramid = _Combine(
                        Conv2d(input_pyramid_ch, in_ch, 1, key=next(keys)), progressive_combine
                    )
                    if progressive_combine == "cat":
                        in_ch *= 2
                elif progressive_input == "residual":
                    pyramid = Downsample(
                        input_pyramid_ch,
                        in_ch,
                        with_conv=True,
                        fir=fir,
                        fir_kernel=fir_kernel,
                        key=next(keys),
                    )
                    input_pyramid_ch = in_ch
                hs_c.append(in_ch)
            down_levels.append(
                DownLevel(blocks, attns if attns else None, down, pyramid, **lvl_static)
            )
        self.down_levels = down_levels

        in_ch = hs_c[-1]
        res0 = resblock(in_ch)
        mid_attn = attn(in_ch)
        self.middle = MiddleLevel(res0, mid_attn, resblock(in_ch))

        up_levels = []
        pyramid_ch = 0
        for i_level in reversed(range(num_res)):
            blocks = []
            for _ in range(num_res_blocks + 1):
                out_ch = nf * ch_mult[i_level]
                blocks.append(resblock(in_ch + hs_c.pop(), out_ch))
                in_ch = out_ch
            level_attn = attn(in_ch) if i_level in attn_levels else None
            pyramid = None
            lowest = i_level == num_res - 1
            if progressive == "output_skip":
                pyramid = head(in_ch, out_channels, init_scale)
            elif progressive == "residual":
                if lowest:
                    pyramid = head(in_ch, in_ch, 1.0)
                else:
                    pyramid = Upsample(
                        pyramid_ch,
                        in_ch,
                        with_conv=True,
                        fir=fir,
                        fir_kernel=fir_kernel,
                        key=next(keys),
                    )
                pyramid_ch = in_ch
            up = None
            if i_level != 0:
                if resblock_type == "ddpm":
                    up = Upsample(
                        in_ch,
                        with_conv=resamp_with_conv,
                        fir=fir,
                        fir_kernel=fir_kernel,
                        key=next(keys),
                    )
                else:
                    up = resblock(in_ch, up=True)
            up_levels.append(
                UpLevel(
                    blocks,
                    level_attn,
                    pyramid,
                    up,
                    lowest=lowest,
                    progressive=progressive,
                    **lvl_static,
                )
            )
        assert not hs_c
        self.up_levels = up_levels
        self.head = None if progressive == "output_skip" else head(in_ch, out_channels, init_scale)

    # ------------------------------------------------------------------------------------------

    @property
    def modules(self) -> list:
        """Every layer in score_sde's flat ``modules`` order (input conv, down levels, middle,
        up levels, output head): a read-only view of the nested levels, for code written
        against the flat list."""
        mods: list = [self.conv_in]
        for lvl in self.down_levels:
            for i, block in enumerate(lvl.blocks):
                mods.append(block)
                if lvl.attns is not None:
                    mods.append(lvl.attns[i])
            mods += [m for m in (lvl.down, lvl.pyramid) if m is not None]
        mods += [self.middle.res0, self.middle.attn, self.middle.res1]
        for lvl in self.up_levels:
            mods += list(lvl.blocks)
            mods += [m for m in (lvl.attn, lvl.pyramid, lvl.up) if m is not None]
        if self.head is not None:
            mods.append(self.head)
        return mods

    def _embed_time(self, t: ArrayLike, x: Array, labels: Array | None) -> Array:
        tm = time_map(t, x)  # (N, h, w)
        if self.embedding_type == "fourier":
            # t <= 0 would give log t = -inf and NaNs; clamp to the smallest normal float32.
            logt = jnp.log(jnp.maximum(tm, jnp.finfo(jnp.float32).tiny))
            emb = fourier_embedding(logt, jax.lax.stop_gradient(self.fourier_w))
        else:
            emb = sinusoidal_embedding(self.time_scale * tm, self.nf)
        temb = self.temb1(silu(self.temb0(emb)))
        if labels is not None:
            temb = temb + self.label_emb[labels][:, None, None, :]
        return temb

    def __call__(
        self,
        x: Array,
        t: ArrayLike,
        cond: ArrayLike | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> Array:
        """Evaluate the network: ``x`` ``(N, H, W, in_channels)``, ``t`` scalar / ``(N,)`` /
        aligned with ``x``, optional integer labels ``cond`` ``(N,)``, dropout ``key``
        (None = inference). Returns float32 ``(N, H, W, out_channels)``."""
        x = jnp.asarray(x)
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise arg_error(
                "x", f"shape {x.shape}", f"a batch (N, H, W, {self.in_channels}) (NHWC)"
            )
        factor = 2 ** (len(self.ch_mult) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise arg_error("x", f"spatial size {x.shape[1:3]}", f"H and W divisible by {factor}")
        check_key(key)
        labels = check_labels(cond, x.shape[0], self.num_classes)
        x = x.astype(jnp.float32)
        dtype = jnp.dtype(self.compute_dtype)
        if key is None or self.dropout == 0.0:
            block_keys = None
        else:  # one split for all residual blocks (fewer PRNG ops to compile than fold_in)
            n_blocks = sum(isinstance(m, ResnetBlock) for m in self.modules)
            block_keys = iter(jax.random.split(key, n_blocks))
        ctx = _Context(self._embed_time(t, x, labels), block_keys, dtype)

        if self.center_input:
            x = 2.0 * x - 1.0
        input_pyramid = x if self.progressive_input != "none" else None
        hs = [self.conv_in(x.astype(dtype)).astype(jnp.float32)]
        for level in self.down_levels:
            input_pyramid = level(hs, input_pyramid, ctx)
        h = self.middle(hs[-1], ctx)
        pyramid = None
        for level in self.up_levels:
            h, pyramid = level(h, hs, pyramid, ctx)
        assert not hs
        out = pyramid if self.head is None else self.head(h, dtype)
        return out.astype(jnp.float32)
