"""Stable Diffusion's KL autoencoder (Rombach et al. 2022) on NHWC images, in the layout of
diffusers' ``AutoencoderKL`` (the ``stabilityai/sd-vae-ft-ema`` / ``sd-vae-ft-mse`` weights that
SiT and ComboStoc decode with)."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._validate import arg_error
from ._layers import Conv2d, GroupNorm, Linear

LOGVAR_RANGE: tuple[float, float] = (-30.0, 20.0)
"""The posterior log-variance is clipped to this range (as diffusers'
``DiagonalGaussianDistribution`` does)."""


class VAEResnetBlock(eqx.Module):
    """``x + conv2(silu(norm2(conv1(silu(norm1(x))))))`` with a ``1 x 1`` convolution on the
    skip path when the channel count changes (diffusers' ``ResnetBlock2D`` without time
    embedding)."""

    norm1: GroupNorm
    conv1: Conv2d
    norm2: GroupNorm
    conv2: Conv2d
    conv_shortcut: Conv2d | None

    def __init__(self, cin: int, cout: int, groups: int, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.norm1 = GroupNorm(cin, groups, eps=1e-6)
        self.conv1 = Conv2d(cin, cout, 3, key=k1)
        self.norm2 = GroupNorm(cout, groups, eps=1e-6)
        self.conv2 = Conv2d(cout, cout, 3, key=k2)
        self.conv_shortcut = Conv2d(cin, cout, 1, key=k3) if cin != cout else None

    def __call__(self, x: Array) -> Array:
        h = self.conv1(self.norm1(x, silu=True))
        h = self.conv2(self.norm2(h, silu=True))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class VAEAttention(eqx.Module):
    """Single-head self-attention over all pixels with a group-normalised input and a residual
    connection (the autoencoder's middle block; softmax in float32)."""

    group_norm: GroupNorm
    to_q: Linear
    to_k: Linear
    to_v: Linear
    to_out: Linear

    def __init__(self, channels: int, groups: int, *, key: PRNGKeyArray):
        kq, kk, kv, ko = jax.random.split(key, 4)
        self.group_norm = GroupNorm(channels, groups, eps=1e-6)
        self.to_q = Linear(channels, channels, key=kq, init="xavier")
        self.to_k = Linear(channels, channels, key=kk, init="xavier")
        self.to_v = Linear(channels, channels, key=kv, init="xavier")
        self.to_out = Linear(channels, channels, key=ko, init="xavier")

    def __call__(self, x: Array) -> Array:
        n, hh, ww, c = x.shape
        h = self.group_norm(x).reshape(n, hh * ww, c)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        logits = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=jnp.float32)
        w = jax.nn.softmax(logits * (1.0 / np.sqrt(c)), axis=-1).astype(v.dtype)
        a = jnp.einsum("bqk,bkc->bqc", w, v)
        return x + self.to_out(a).reshape(n, hh, ww, c)


class VAEMidBlock(eqx.Module):
    """ResNet block, attention (optional), ResNet block."""

    resnets: list
    attention: VAEAttention | None

    def __init__(self, channels: int, groups: int, attention: bool, *, key: PRNGKeyArray):
        k0, k1, k2 = jax.random.split(key, 3)
        self.resnets = [VAEResnetBlock(channels, channels, groups, key=k0),
                        VAEResnetBlock(channels, channels, groups, key=k2)]
        self.attention = VAEAttention(channels, groups, key=k1) if attention else None

    def __call__(self, x: Array) -> Array:
        x = self.resnets[0](x)
        if self.attention is not None:
            x = self.attention(x)
        return self.resnets[1](x)


class VAEDownBlock(eqx.Module):
    """``layers`` ResNet blocks, then (except at the last level) a stride-2 ``3 x 3``
    convolution after padding one row and column at the bottom and right."""

    resnets: list
    downsample: Conv2d | None

    def __init__(self, cin: int, cout: int, layers: int, groups: int, down: bool, *,
                 key: PRNGKeyArray):
        keys = jax.random.split(key, layers + 1)
        self.resnets = [VAEResnetBlock(cin if i == 0 else cout, cout, groups, key=keys[i])
                        for i in range(layers)]
        self.downsample = Conv2d(cout, cout, 3, key=keys[-1], stride=2,
                                 padding=((0, 1), (0, 1))) if down else None

    def __call__(self, x: Array) -> Array:
        for r in self.resnets:
            x = r(x)
        return x if self.downsample is None else self.downsample(x)


class VAEUpBlock(eqx.Module):
    """``layers`` ResNet blocks, then (except at the last level) nearest-neighbour ``2x``
    upsampling and a ``3 x 3`` convolution."""

    resnets: list
    upsample: Conv2d | None

    def __init__(self, cin: int, cout: int, layers: int, groups: int, up: bool, *,
                 key: PRNGKeyArray):
        keys = jax.random.split(key, layers + 1)
        self.resnets = [VAEResnetBlock(cin if i == 0 else cout, cout, groups, key=keys[i])
                        for i in range(layers)]
        self.upsample = Conv2d(cout, cout, 3, key=keys[-1]) if up else None

    def __call__(self, x: Array) -> Array:
        for r in self.resnets:
            x = r(x)
        if self.upsample is None:
            return x
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.upsample(x)


class VAEEncoder(eqx.Module):
    """Image ``(N, H, W, in_channels)`` -> ``(N, H / f, W / f, 2 * latent_channels)`` moments,
    ``f = 2 ** (levels - 1)``."""

    conv_in: Conv2d
    down_blocks: list
    mid_block: VAEMidBlock
    conv_norm_out: GroupNorm
    conv_out: Conv2d

    def __init__(self, in_channels: int, latent_channels: int, chans: Sequence[int],
                 layers: int, groups: int, attention: bool, *, key: PRNGKeyArray):
        keys = jax.random.split(key, len(chans) + 3)
        self.conv_in = Conv2d(in_channels, chans[0], 3, key=keys[0])
        self.down_blocks = [
            VAEDownBlock(chans[max(i - 1, 0)], c, layers, groups, i < len(chans) - 1,
                         key=keys[1 + i]) for i, c in enumerate(chans)]
        self.mid_block = VAEMidBlock(chans[-1], groups, attention, key=keys[-2])
        self.conv_norm_out = GroupNorm(chans[-1], groups, eps=1e-6)
        self.conv_out = Conv2d(chans[-1], 2 * latent_channels, 3, key=keys[-1])

    def __call__(self, x: Array) -> Array:
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_norm_out(x, silu=True))


class VAEDecoder(eqx.Module):
    """Latent ``(N, h, w, latent_channels)`` -> image ``(N, f h, f w, out_channels)``."""

    conv_in: Conv2d
    up_blocks: list
    mid_block: VAEMidBlock
    conv_norm_out: GroupNorm
    conv_out: Conv2d

    def __init__(self, latent_channels: int, out_channels: int, chans: Sequence[int],
                 layers: int, groups: int, attention: bool, *, key: PRNGKeyArray):
        keys = jax.random.split(key, len(chans) + 3)
        rev = list(reversed(chans))
        self.conv_in = Conv2d(latent_channels, rev[0], 3, key=keys[0])
        self.mid_block = VAEMidBlock(rev[0], groups, attention, key=keys[-2])
        self.up_blocks = [
            VAEUpBlock(rev[max(i - 1, 0)], c, layers + 1, groups, i < len(rev) - 1,
                       key=keys[1 + i]) for i, c in enumerate(rev)]
        self.conv_norm_out = GroupNorm(chans[0], groups, eps=1e-6)
        self.conv_out = Conv2d(chans[0], out_channels, 3, key=keys[-1])

    def __call__(self, z: Array) -> Array:
        x = self.conv_in(z)
        x = self.mid_block(x)
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(self.conv_norm_out(x, silu=True))


class AutoencoderKL(eqx.Module):
    """Stable Diffusion's KL-regularised autoencoder on NHWC images in ``[-1, 1]``.

    The architecture of diffusers' ``AutoencoderKL`` (its ``DownEncoderBlock2D`` /
    ``UpDecoderBlock2D`` configuration): per level ``layers_per_block`` ResNet blocks (the
    decoder ``layers_per_block + 1``) with GroupNorm(``norm_num_groups``, eps 1e-6) and SiLU,
    stride-2 downsampling / nearest upsampling between levels, a middle block with single-head
    attention, and ``1 x 1`` ``quant_conv`` / ``post_quant_conv`` around the latent. With
    ``L`` levels an image of size ``H x W`` has a latent of size ``H / 2^(L-1) x W / 2^(L-1)``
    (``/8`` for the released four-level configuration,
    ``sdekit.nets.from_torch(path, "sd_vae", preset="sd-vae-ft-ema")``).

    - `encode(x)` gives the posterior's ``(mean, logvar)`` (``logvar`` clipped to
      ``LOGVAR_RANGE``); `sample_posterior(key, mean, logvar)` draws from it.
    - `decode(z)` maps a latent back to an image.
    - `encode_latents(x, key=...)` / `decode_latents(z)` work in the *scaled* latent space that
      latent diffusion models (SiT, ComboStoc) are trained in: ``scaling_factor * z`` (0.18215
      for Stable Diffusion's autoencoder). Without a key, `encode_latents` returns the scaled
      posterior mean.

    **Arguments:** `in_channels`, `out_channels` (3 and 3), `latent_channels` (4),
    `block_out_channels` (channels per level, e.g. ``(128, 256, 512, 512)``),
    `layers_per_block` (2), `norm_num_groups` (32; divides every channel count),
    `scaling_factor` (0.18215), `use_quant_conv`, `use_post_quant_conv`,
    `mid_block_add_attention` (all ``True`` for Stable Diffusion), `key`.
    """

    encoder: VAEEncoder
    decoder: VAEDecoder
    quant_conv: Conv2d | None
    post_quant_conv: Conv2d | None
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    latent_channels: int = eqx.field(static=True)
    block_out_channels: tuple[int, ...] = eqx.field(static=True)
    layers_per_block: int = eqx.field(static=True)
    norm_num_groups: int = eqx.field(static=True)
    scaling_factor: float = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_channels: int = 4,
        block_out_channels: Sequence[int] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        scaling_factor: float | int = 0.18215,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        *,
        key: PRNGKeyArray,
    ):
        chans = tuple(int(c) for c in block_out_channels)
        for name, val in (("in_channels", in_channels), ("out_channels", out_channels),
                          ("latent_channels", latent_channels),
                          ("layers_per_block", layers_per_block),
                          ("norm_num_groups", norm_num_groups)):
            if isinstance(val, bool) or int(val) < 1:
                raise arg_error(name, val, "a positive integer")
        if not chans or any(c < 1 for c in chans):
            raise arg_error("block_out_channels", block_out_channels,
                            "a non-empty sequence of positive channel counts")
        bad = [c for c in chans if c % norm_num_groups]
        if bad:
            raise arg_error("norm_num_groups", norm_num_groups,
                            f"a divisor of every channel count in block_out_channels={chans}")
        if isinstance(scaling_factor, bool) or not float(scaling_factor) > 0:
            raise arg_error("scaling_factor", scaling_factor, "a positive number")
        ke, kd, kq, kp = jax.random.split(key, 4)
        g = int(norm_num_groups)
        self.encoder = VAEEncoder(in_channels, latent_channels, chans, layers_per_block, g,
                                  mid_block_add_attention, key=ke)
        self.decoder = VAEDecoder(latent_channels, out_channels, chans, layers_per_block, g,
                                  mid_block_add_attention, key=kd)
        self.quant_conv = (Conv2d(2 * latent_channels, 2 * latent_channels, 1, key=kq)
                           if use_quant_conv else None)
        self.post_quant_conv = (Conv2d(latent_channels, latent_channels, 1, key=kp)
                                if use_post_quant_conv else None)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.latent_channels = int(latent_channels)
        self.block_out_channels = chans
        self.layers_per_block = int(layers_per_block)
        self.norm_num_groups = g
        self.scaling_factor = float(scaling_factor)

    @property
    def downsampling_factor(self) -> int:
        """The ratio of image to latent size, ``2 ** (levels - 1)``."""
        return 2 ** (len(self.block_out_channels) - 1)

    def _check(self, name: str, x: ArrayLike, channels: int, factor: int) -> Array:
        x = jnp.asarray(x)
        if x.ndim != 4 or x.shape[-1] != channels:
            raise arg_error(name, f"shape {x.shape}", f"a batch (N, H, W, {channels}) (NHWC)")
        if x.shape[1] % factor or x.shape[2] % factor:
            raise arg_error(name, f"spatial size {x.shape[1:3]}",
                            f"H and W divisible by {factor}")
        return x.astype(jnp.float32)

    def encode(self, x: ArrayLike) -> tuple[Array, Array]:
        """The posterior ``(mean, logvar)``, each ``(N, H / f, W / f, latent_channels)``, of
        images ``x`` ``(N, H, W, in_channels)`` in ``[-1, 1]`` (``f`` =
        ``downsampling_factor``)."""
        x = self._check("x", x, self.in_channels, self.downsampling_factor)
        m = self.encoder(x)
        if self.quant_conv is not None:
            m = self.quant_conv(m)
        mean, logvar = jnp.split(m, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)

    def sample_posterior(self, key: PRNGKeyArray, mean: ArrayLike,
                         logvar: ArrayLike) -> Array:
        """A draw ``mean + exp(logvar / 2) * eps`` from the posterior, ``eps ~ N(0, I)``."""
        mean, logvar = jnp.asarray(mean), jnp.asarray(logvar)
        if mean.shape != logvar.shape:
            raise arg_error("logvar", f"shape {logvar.shape}", f"the mean's shape {mean.shape}")
        return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)

    def decode(self, z: ArrayLike) -> Array:
        """Images ``(N, f h, f w, out_channels)`` from latents ``z`` ``(N, h, w,
        latent_channels)`` (unscaled: divide diffusion-space latents by ``scaling_factor``
        first, or use `decode_latents`)."""
        z = self._check("z", z, self.latent_channels, 1)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def encode_latents(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """Scaled latents ``scaling_factor * z`` of images ``x`` in ``[-1, 1]``: ``z`` drawn from
        the posterior with ``key`` (as SiT's training does), its mean without."""
        mean, logvar = self.encode(x)
        z = mean if key is None else self.sample_posterior(key, mean, logvar)
        return self.scaling_factor * z

    def decode_latents(self, z: ArrayLike) -> Array:
        """Images from scaled latents: ``decode(z / scaling_factor)``."""
        return self.decode(jnp.asarray(z) / self.scaling_factor)


@eqx.filter_jit
def _encode_batch(vae: AutoencoderKL, x: Array, key: PRNGKeyArray | None, moments: bool) -> Array:
    mean, logvar = vae.encode(x)
    if moments:
        return jnp.concatenate([mean, logvar], axis=-1)
    z = mean if key is None else vae.sample_posterior(key, mean, logvar)
    return vae.scaling_factor * z


def encode_images(vae: AutoencoderKL, images: ArrayLike, *, key: PRNGKeyArray | None = None,
                  batch_size: int = 16, moments: bool = False) -> np.ndarray:
    """Encode a set of images into a latent diffusion model's latent space, batch by batch.

    SiT and ComboStoc train on ``scaling_factor * z`` with ``z`` drawn from the autoencoder's
    posterior; encoding a data set once lets `sdekit.train.fit` train on the latents like on
    any images (no autoencoder in the training step).

    Args:
        vae: the autoencoder (e.g. ``from_torch(path, "sd_vae", preset="sd-vae-ft-ema")``).
        images: ``(N, H, W, C)`` NHWC images, ``uint8`` (0..255, mapped to ``[-1, 1]``) or
            floating point already in ``[-1, 1]``.
        key: draw one posterior sample per image with this key; ``None`` gives the posterior
            means.
        batch_size: images encoded per call (one compiled function for all full batches).
        moments: return the unscaled posterior ``concat([mean, logvar], -1)`` instead,
            ``(N, h, w, 2 * latent_channels)``, for fresh draws every epoch with
            [`LatentPosteriorSample`][sdekit.nets.LatentPosteriorSample].

    Returns:
        float32 numpy latents ``(N, H / f, W / f, latent_channels)`` (scaled), or the moments.
    """
    if not isinstance(vae, AutoencoderKL):
        raise arg_error("vae", type(vae).__name__, "an sdekit.nets.AutoencoderKL")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise arg_error("batch_size", batch_size, "a positive integer")
    if key is not None and moments:
        raise arg_error("key", "a key", "None when moments=True (the moments are not sampled)")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != vae.in_channels:
        raise arg_error("images", f"shape {images.shape}",
                        f"a batch (N, H, W, {vae.in_channels}) (NHWC)")
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 127.5 - 1.0
    elif not np.issubdtype(images.dtype, np.floating):
        raise arg_error("images", f"dtype {images.dtype}", "uint8 or floating-point images")

    out = []
    for i, start in enumerate(range(0, images.shape[0], batch_size)):
        k = None if key is None else jax.random.fold_in(key, i)
        x = jnp.asarray(images[start:start + batch_size], jnp.float32)
        out.append(np.asarray(_encode_batch(vae, x, k, bool(moments))))
    return np.concatenate(out, axis=0)


class LatentPosteriorSample(eqx.Module):
    """A per-example data transform ``(moments, rng) -> latent`` drawing
    ``scaling_factor * (mean + exp(logvar / 2) * eps)`` from stored posterior moments
    (`encode_images(..., moments=True)`), so that every epoch sees fresh posterior draws as in
    SiT's training. Use it in ``sdekit.data.make_pipeline(moments, transforms=[...],
    value_range=None)``.

    **Arguments:** `scaling_factor` (the autoencoder's, 0.18215 for Stable Diffusion's).
    """

    scaling_factor: float = 0.18215

    def __check_init__(self):
        if isinstance(self.scaling_factor, bool) or not float(self.scaling_factor) > 0:
            raise arg_error("scaling_factor", self.scaling_factor, "a positive number")

    def __call__(self, moments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        moments = np.asarray(moments, np.float32)
        if moments.shape[-1] % 2:
            raise arg_error("moments", f"shape {moments.shape}",
                            "an even number of channels: concat([mean, logvar], -1)")
        mean, logvar = np.split(moments, 2, axis=-1)
        eps = rng.standard_normal(mean.shape).astype(np.float32)
        return (self.scaling_factor * (mean + np.exp(0.5 * logvar) * eps)).astype(np.float32)


__all__ = ["LOGVAR_RANGE", "AutoencoderKL", "LatentPosteriorSample", "VAEAttention",
           "VAEDecoder", "VAEDownBlock", "VAEEncoder", "VAEMidBlock", "VAEResnetBlock",
           "VAEUpBlock", "encode_images"]
