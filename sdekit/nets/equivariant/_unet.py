"""A C4/D4 (any grid group) equivariant UNet for diffusion denoisers."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..._validate import arg_error
from .._base import AbstractNet
from .._conditioning import check_labels, pool_map, time_map
from .._layers import AbstractLeanLayer, dropout
from ._groups import get_group
from ._layers import (
    FieldNorm,
    FiLM,
    GroupAttention,
    GroupConv,
    _uniform,
    avg_pool2,
    group_pool,
    nearest_up2,
    rep_size,
)

KINDS: tuple[str, ...] = ("regular", "invariant")


def _sinusoidal(t: Array, dim: int) -> Array:
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) / max(half - 1, 1) * jnp.arange(half, dtype=t.dtype))
    arg = t[..., None] * freqs
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


def _tdim(nf: int) -> int:
    return max(32, 2 * (nf // 2))


class _ResBlock(AbstractLeanLayer):
    norm1: FieldNorm
    conv1: GroupConv
    film: FiLM
    norm2: FieldNorm
    conv2: GroupConv
    skip: GroupConv | None
    dropout: float = eqx.field(static=True)
    lean: bool = eqx.field(static=True)

    def __init__(self, cin, cout, emb_dim, group, rep, num_groups, dropout_rate, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        r = rep_size(group, rep)
        kw = dict(group=group, in_rep=rep, out_rep=rep)
        self.norm1 = FieldNorm(cin, r, num_groups)
        self.conv1 = GroupConv(cin, cout, key=k1, **kw)
        self.film = FiLM(emb_dim, cout, key=k2)
        self.norm2 = FieldNorm(cout, r, num_groups)
        self.conv2 = GroupConv(cout, cout, key=k3, **kw)
        self.skip = None if cin == cout else GroupConv(cin, cout, kernel_size=1, key=k4, **kw)
        self.dropout = float(dropout_rate)
        self.lean = False

    def __call__(self, x, emb, key):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        scale, shift = self.film(pool_map(emb, x.shape[1], x.shape[2]))
        h = jax.nn.silu(self.norm2(h, scale, shift))
        h = self.conv2(dropout(h, self.dropout, key, lean=self.lean))
        return (x if self.skip is None else self.skip(x)) + h


class EquivariantUNet(AbstractNet):
    """A UNet that is exactly equivariant under a group of the pixel grid (``C4``, ``D4``, ...).

    ``net(g . x, g . t, cond) == g . net(x, t, cond)`` for every ``g`` in ``group``, where ``g``
    rotates/flips the images (and a per-pixel time map with them), to float round-off.

    Structure (Lu, Szabados & Yu 2024, section 8): a lifting convolution
    (scalar image -> ``nf`` fields), residual blocks (FieldNorm, SiLU, group conv, FiLM of the time
    and class embedding per field, dropout, group conv), attention with ``1 x 1`` group convs
    and no positional encoding, 2 x 2 average pooling down and nearest-neighbour upsampling,
    skip connections by concatenation of fields, and a last group conv pooled over the group
    axis to ``out_channels`` scalar images. Images must be square with a side divisible by
    ``2 ** (len(ch_mult) - 1)``.

    ``kind="regular"`` carries regular fields (``|G|`` channels per field: a group CNN);
    ``kind="invariant"`` carries scalar fields and uses the paper's invariant-kernel
    convolutions (``|G|``-fold fewer channels per field, fewer free kernel entries).

    Time ``t``: a scalar, per example ``(N,)``, or a per-pixel/per-element map aligned with the
    leading axes of ``x`` (averaged over channels; see `sdekit.nets` conditioning). Class labels
    ``cond`` in ``[0, num_classes]`` (``num_classes`` is the null class). For
    self-conditioning, build with ``in_channels = 2 C`` and wrap in
    [`SelfConditioning`][sdekit.wrappers.SelfConditioning] (the estimate is a scalar image, so the
    concatenation keeps equivariance). Dropout is active only when ``key`` is given.
    """

    lift: GroupConv
    time_mlp: tuple[Array, Array, Array, Array]
    class_emb: Array | None
    down: tuple
    mid: tuple
    up: tuple
    out_norm: FieldNorm
    out_conv: GroupConv
    group: str = eqx.field(static=True)
    kind: str = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    nf: int = eqx.field(static=True)
    ch_mult: tuple[int, ...] = eqx.field(static=True)
    num_res_blocks: int = eqx.field(static=True)
    attn_resolutions: tuple[int, ...] = eqx.field(static=True)
    image_size: int = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)
    emb_dim: int = eqx.field(static=True)
    plan_down: tuple = eqx.field(static=True)
    plan_up: tuple = eqx.field(static=True)

    def __init__(
        self,
        *,
        group: str = "C4",
        kind: str = "regular",
        in_channels: int = 1,
        out_channels: int | None = None,
        nf: int = 16,
        ch_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attn_resolutions: tuple[int, ...] = (),
        image_size: int = 16,
        dropout: float = 0.1,
        num_classes: int | None = None,
        num_heads: int = 1,
        num_groups: int = 32,
        time_scale: float = 1000.0,
        emb_dim: int | None = None,
        key: PRNGKeyArray,
    ):
        if kind not in KINDS:
            raise arg_error("kind", kind, "'regular' or 'invariant'")
        gname = get_group(group).name
        checks = (("in_channels", in_channels), ("nf", nf), ("num_res_blocks", num_res_blocks))
        for name, v in checks:
            if not (isinstance(v, int) and v >= 1):
                raise arg_error(name, v, "a positive integer")
        out_channels = in_channels if out_channels is None else out_channels
        ch_mult = tuple(int(m) for m in ch_mult)
        if not ch_mult or min(ch_mult) < 1:
            raise arg_error("ch_mult", ch_mult, "a non-empty tuple of positive integers")
        levels = len(ch_mult)
        if image_size % (2 ** (levels - 1)):
            raise arg_error(
                "image_size", image_size,
                f"a multiple of 2 ** (len(ch_mult) - 1) = {2 ** (levels - 1)} (2x2 pooling must "
                "see even sizes to stay exactly equivariant)",
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise arg_error("dropout", dropout, "a rate in [0, 1)")
        rep = "regular" if kind == "regular" else "trivial"
        emb_dim = 4 * nf if emb_dim is None else int(emb_dim)
        keys = iter(jax.random.split(key, 256))
        rsz = rep_size(gname, rep)
        self.lift = GroupConv(in_channels, nf, group=gname, in_rep="trivial", out_rep=rep,
                              key=next(keys))
        self.time_mlp = (
            _uniform(next(keys), (_tdim(nf), emb_dim), math.sqrt(3.0 / _tdim(nf))),
            jnp.zeros((emb_dim,), jnp.float32),
            _uniform(next(keys), (emb_dim, emb_dim), math.sqrt(3.0 / emb_dim)),
            jnp.zeros((emb_dim,), jnp.float32),
        )
        self.class_emb = (
            None if num_classes is None
            else _uniform(next(keys), (num_classes + 1, emb_dim), math.sqrt(3.0))
        )

        def res(ci, co):
            return _ResBlock(ci, co, emb_dim, gname, rep, num_groups, dropout, next(keys))

        def attn(c):
            return GroupAttention(c, group=gname, rep=rep, num_heads=num_heads,
                                  num_groups=num_groups, key=next(keys))

        down, plan_down, skips = [], [], [nf]
        ch, res_now = nf, image_size
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                blk = res(ch, nf * m)
                ch = nf * m
                a = attn(ch) if res_now in attn_resolutions else None
                down.append((blk, a))
                plan_down.append("res")
                skips.append(ch)
            if i != levels - 1:
                plan_down.append("down")
                skips.append(ch)
                res_now //= 2
        self.mid = (res(ch, ch), attn(ch), res(ch, ch))
        up, plan_up = [], []
        for i, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                blk = res(ch + skips.pop(), nf * m)
                ch = nf * m
                a = attn(ch) if res_now in attn_resolutions else None
                up.append((blk, a))
                plan_up.append("res")
            if i != 0:
                plan_up.append("up")
                res_now *= 2
        self.down, self.up = tuple(down), tuple(up)
        self.plan_down, self.plan_up = tuple(plan_down), tuple(plan_up)
        self.out_norm = FieldNorm(ch, rsz, num_groups)
        self.out_conv = GroupConv(ch, out_channels, group=gname, in_rep=rep, out_rep=rep,
                                  key=next(keys))
        self.group, self.kind = gname, kind
        self.in_channels, self.out_channels, self.nf = int(in_channels), int(out_channels), int(nf)
        self.ch_mult, self.num_res_blocks = ch_mult, int(num_res_blocks)
        self.attn_resolutions = tuple(int(r) for r in attn_resolutions)
        self.image_size, self.num_classes = int(image_size), num_classes
        self.time_scale, self.emb_dim = float(time_scale), emb_dim

    def _embed(self, t, x, cond, dt):
        tm = time_map(t, x).astype(dt) * self.time_scale  # (N, h, w)
        w1, b1, w2, b2 = (a.astype(dt) for a in self.time_mlp)
        e = jax.nn.silu(_sinusoidal(tm, _tdim(self.nf)) @ w1 + b1) @ w2 + b2  # (N, h, w, E)
        labels = check_labels(cond, x.shape[0], self.num_classes)
        if labels is not None:
            e = e + self.class_emb.astype(dt)[labels][:, None, None, :]
        return e

    def __call__(
        self, x: Array, t: ArrayLike, cond: ArrayLike | None = None, *,
        key: PRNGKeyArray | None = None,
    ) -> Array:
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise arg_error("x", f"shape {x.shape}", f"(N, H, W, {self.in_channels}) NHWC images")
        n, h, w, _ = x.shape
        levels = len(self.ch_mult)
        if h != w or h % (2 ** (levels - 1)):
            raise arg_error(
                "x", f"spatial size {(h, w)}",
                f"square images with a side divisible by {2 ** (levels - 1)} (exact equivariance)",
            )
        dt = jnp.promote_types(x.dtype, jnp.float32)
        x = x.astype(dt)
        emb = self._embed(t, x, cond, dt)
        nblocks = len(self.down) + len(self.up) + 2
        keys = [None] * nblocks if key is None else list(jax.random.split(key, nblocks))
        h_ = self.lift(x)
        hs = [h_]
        it = iter(self.down)
        for step in self.plan_down:
            if step == "down":
                h_ = avg_pool2(h_)
            else:
                blk, a = next(it)
                h_ = blk(h_, emb, keys.pop())
                if a is not None:
                    h_ = a(h_)
            hs.append(h_)
        r1, a, r2 = self.mid
        h_ = r2(a(r1(h_, emb, keys.pop())), emb, keys.pop())
        it = iter(self.up)
        for step in self.plan_up:
            if step == "up":
                h_ = nearest_up2(h_)
            else:
                blk, a = next(it)
                h_ = blk(jnp.concatenate([h_, hs.pop()], axis=-1), emb, keys.pop())
                if a is not None:
                    h_ = a(h_)
        h_ = self.out_conv(jax.nn.silu(self.out_norm(h_)))
        if self.kind == "regular":
            h_ = group_pool(h_, self.group)
        return h_


__all__ = ["KINDS", "EquivariantUNet"]
