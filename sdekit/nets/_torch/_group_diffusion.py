"""Group-Diffusion's UNet (``SpencerSzabados/Group-Diffusion``, ``model/unet.py``) on sdekit's
UNet.

The original is the consistency-models (ADM) UNet whose convolutions are built by one factory,
``gconv_nd``: plain ``nn.Conv2d`` (``g_equiv=False``), ``KernelGConv2d`` (``*_K``: ``bias +
sum_g conv(x, g W)``, i.e. the kernel ``sum_g g W``) or an ``nn.Conv2d`` with a torch
parametrisation (``*_S``: ``C4_Symmetric`` / ``D4_Symmetric`` build the kernel from the centre
and one quadrant). Both weight-tied kinds give kernels invariant under the group; sdekit's
[`UNet`][sdekit.nets.UNet] with ``conv_symmetry`` stores such a kernel as one matrix per orbit
of kernel positions (3 for 3x3: corners, edges, centre), and:

- ``C4_K``: orbit matrix = ``(4 / |orbit|) * sum`` of ``W`` over the orbit (the sums of the
  rotated copies); written back as ``W`` holding each orbit's value at the orbit's first
  position (``/ 4`` for the centre), which ``KernelGConv2d`` maps to the same kernel exactly;
- ``C4_S`` / ``D4_S``: orbit matrix = the ``original`` entry the parametrisation reads (centre,
  ``[0, 0]``, ``[0, 1]``); written back with the other entries zero (the parametrisation never
  reads them, so a torch -> sdekit -> torch round trip sets them to 0).

The rest is ADM: ``[cos, sin]`` time embedding of the timestep value as given, scale-shift
GroupNorm(32, eps 1e-5) residual blocks with average-pool / nearest resampling inside the block
(``resblock_updown``), attention after every residual block of an attention level (down and up),
an ``nn.Embedding`` class table without a null class, and self-conditioning by concatenating
``x_cond`` before ``x`` on the channel axis (``in_channels = 6``). The attention computes in
float16 (``QKVAttentionLegacy`` casts ``qkv.half()``); sdekit reproduces that rounding with
``attn_float16=True``.

Not mapped: ``SplitGConv2d`` (GrouPy, no suffix: it sums over the output group axis, and the
README says the paper did not use it), ``D4_K`` (its ``out += out`` doubles the un-flipped sum
and the bias, so the kernel is 3 x the C4 sum: a factor 12 that a float32 round trip cannot
invert exactly), ``H`` / ``V`` (single-flip groups), kernels other than 1x1 and 3x3,
``resblock_updown=False`` (its stride-2 convolution pads differently from sdekit's
``Downsample``), ``num_heads_upsample`` different from ``num_heads``.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..._validate import arg_error
from .._layers import Conv2d, kernel_orbits
from .._unet import AttnBlock, ResnetBlock, UNet
from ._arch import AbstractRuleArch, TorchRule
from ._ncsnpp import _attr, _linear, _norm, _path
from ._presets import DEFAULTS, PRESETS

_KINDS = ("plain", "C4_K", "C4_S", "D4_S")


def conv_kind(config: dict[str, Any]) -> str:
    """``plain``, ``C4_K``, ``C4_S`` or ``D4_S`` from ``g_equiv`` / ``g_output``."""
    if not config["g_equiv"]:
        return "plain"
    out = str(config["g_output"])
    return out if out in _KINDS else out


def _first_positions(k: int, sym: str) -> list[tuple[int, int]]:
    orb = kernel_orbits(k, sym)
    firsts = {}
    for i in range(k):
        for j in range(k):
            firsts.setdefault(int(orb[i, j]), (i, j))
    return [firsts[o] for o in range(len(firsts))]


def _to_orbits(w: np.ndarray, kind: str) -> np.ndarray:
    """A torch kernel ``(O, I, k, k)`` of a weight-tied layer -> ``(orbits, I, O)``."""
    k = w.shape[-1]
    sym = "D4" if kind == "D4_S" else "C4"
    orb = kernel_orbits(k, sym)
    n = int(orb.max()) + 1
    out = np.empty((n, w.shape[1], w.shape[0]), np.float32)
    if kind == "C4_K":
        w64 = w.astype(np.float64)
        for o in range(n):
            mask = orb == o
            out[o] = (4.0 / mask.sum() * w64[..., mask].sum(-1)).astype(np.float32).T
    else:  # _S: the entries the parametrisation reads
        for o, (i, j) in enumerate(_first_positions(k, sym)):
            out[o] = w[:, :, i, j].T
    return out


def _from_orbits(m: np.ndarray, kind: str, k: int) -> np.ndarray:
    """``(orbits, I, O)`` -> the torch kernel ``(O, I, k, k)`` (one nonzero entry per orbit)."""
    sym = "D4" if kind == "D4_S" else "C4"
    orb = kernel_orbits(k, sym)
    w = np.zeros((m.shape[2], m.shape[1], k, k), np.float32)
    for o, (i, j) in enumerate(_first_positions(k, sym)):
        scale = 1.0
        if kind == "C4_K":
            scale = float((orb == o).sum()) / 4.0  # 1/4, 1/2 or 1: exact
        w[:, :, i, j] = m[o].T * np.float32(scale)
    return w


def _names(prefix: str, kind: str) -> tuple[str, str]:
    """(weight name, bias name) of a ``gconv_nd`` layer, in ``state_dict()`` order."""
    if kind == "plain":
        return f"{prefix}.weight", f"{prefix}.bias"
    if kind == "C4_K":
        return f"{prefix}.conv_weight", f"{prefix}.bias"
    return f"{prefix}.parametrizations.weight.original", f"{prefix}.bias"


def _bias_shape(kind: str, o: int) -> tuple[int, ...]:
    return (1, o, 1, 1) if kind == "C4_K" else (o,)


def _gconv(prefix: str, get, conv: Conv2d, kind: str) -> list[TorchRule]:
    """One ``gconv_nd`` convolution <-> an sdekit ``Conv2d``."""
    k = conv.kernel_size
    ci, co = conv.weight.shape[-2:]
    wname, bname = _names(prefix, kind)
    if kind == "plain":
        w_in = (lambda w: (np.ascontiguousarray(w.transpose(2, 3, 1, 0)),))
        w_out = (lambda w: (np.ascontiguousarray(w.transpose(3, 2, 0, 1)),))
    else:
        w_in = (lambda w: (_to_orbits(w, kind),))
        w_out = (lambda w: (_from_orbits(w, kind, k),))
    bshape = _bias_shape(kind, co)
    rules = [TorchRule((wname,), ((co, ci, k, k),), lambda n: (get(n).weight,), w_in, w_out),
             TorchRule((bname,), (bshape,), lambda n: (get(n).bias,),
                       lambda b: (np.ascontiguousarray(b.reshape(co)),),
                       lambda b: (np.ascontiguousarray(b.reshape(bshape)),))]
    if kind == "plain":  # state_dict order: weight, bias for both nn.Conv2d and _K
        return rules
    if kind == "C4_K":
        return rules
    return rules[::-1]  # a parametrised nn.Conv2d lists its bias before `parametrizations`


def _mult(kind: str) -> float:
    """The factor a 1 x 1 weight-tied kernel applies: ``C4_K`` sums 4 rotated copies."""
    return 4.0 if kind == "C4_K" else 1.0


def _attn(prefix: str, get, a: AttnBlock, kind: str) -> list[TorchRule]:
    c = a.q.weight.shape[0]
    rules = _norm(f"{prefix}.norm", _attr(get, "norm"), c)
    m = np.float32(_mult(kind))
    qw, qb = _names(f"{prefix}.qkv", kind)
    pw, pb = _names(f"{prefix}.proj_out", kind)

    def qkv_in(w):
        mm = w.reshape(3, c, c)
        return tuple(np.ascontiguousarray(mm[i].T * m) for i in range(3))

    def qkv_out(q, k, v):
        return (np.ascontiguousarray((np.stack([q.T, k.T, v.T]) / m).reshape(3 * c, c, 1, 1)),)

    bq = _bias_shape(kind, 3 * c)
    bp = _bias_shape(kind, c)
    w_rules = [
        TorchRule((qw,), ((3 * c, c, 1, 1),),
                  lambda n: (get(n).q.weight, get(n).k.weight, get(n).v.weight), qkv_in, qkv_out),
    ]
    b_rules = [
        TorchRule((qb,), (bq,), lambda n: (get(n).q.bias, get(n).k.bias, get(n).v.bias),
                  lambda b: tuple(np.ascontiguousarray(b.reshape(-1)[i * c:(i + 1) * c])
                                  for i in range(3)),
                  lambda q, k, v: (np.concatenate([q, k, v]).reshape(bq),)),
    ]
    pw_rules = [
        TorchRule((pw,), ((c, c, 1, 1),), lambda n: (get(n).out.weight,),
                  lambda w: (np.ascontiguousarray(w.reshape(c, c).T * m),),
                  lambda w: (np.ascontiguousarray((w.T / m).reshape(c, c, 1, 1)),)),
    ]
    pb_rules = [
        TorchRule((pb,), (bp,), lambda n: (get(n).out.bias,),
                  lambda b: (np.ascontiguousarray(b.reshape(c)),),
                  lambda b: (np.ascontiguousarray(b.reshape(bp)),)),
    ]
    if kind in ("C4_S", "D4_S"):
        return rules + b_rules + w_rules + pb_rules + pw_rules
    return rules + w_rules + b_rules + pw_rules + pb_rules


def _block(prefix: str, get, b: ResnetBlock, kind: str) -> list[TorchRule]:
    rules = _norm(f"{prefix}.in_layers.0", _attr(get, "norm0"), b.norm0.weight.shape[0])
    rules += _gconv(f"{prefix}.in_layers.2", _attr(get, "conv0"), b.conv0, kind)
    rules += _linear(f"{prefix}.emb_layers.1", _attr(get, "dense"), b.dense)
    rules += _norm(f"{prefix}.out_layers.0", _attr(get, "norm1"), b.norm1.weight.shape[0])
    rules += _gconv(f"{prefix}.out_layers.3", _attr(get, "conv1"), b.conv1, kind)
    if b.skip is not None:
        rules += _gconv(f"{prefix}.skip_connection", _attr(get, "skip"), b.skip, kind)
    return rules


def group_diffusion_rules(net: UNet, kind: str) -> list[TorchRule]:
    """The rules mapping Group-Diffusion's ``UNetModel`` state dict onto a (shape-only)
    sdekit ``UNet``."""
    rules = _linear("time_embed.0", lambda n: n.temb0, net.temb0)
    rules += _linear("time_embed.2", lambda n: n.temb1, net.temb1)
    if net.num_classes is not None:
        rules.append(TorchRule.one("label_emb.weight", net.label_emb.shape, lambda n: n.label_emb))
    rules += _gconv("input_blocks.0.0", lambda n: n.conv_in, net.conv_in, kind)
    idx = 1
    for i, lvl in enumerate(net.down_levels):
        for j, blk in enumerate(lvl.blocks):
            rules += _block(f"input_blocks.{idx}.0", _path("down_levels", i, "blocks", j), blk,
                            kind)
            if lvl.attns is not None:
                rules += _attn(f"input_blocks.{idx}.1", _path("down_levels", i, "attns", j),
                               lvl.attns[j], kind)
            idx += 1
        if lvl.down is not None:
            rules += _block(f"input_blocks.{idx}.0", _path("down_levels", i, "down"), lvl.down,
                            kind)
            idx += 1
    rules += _block("middle_block.0", _path("middle", "res0"), net.middle.res0, kind)
    rules += _attn("middle_block.1", _path("middle", "attn"), net.middle.attn, kind)
    rules += _block("middle_block.2", _path("middle", "res1"), net.middle.res1, kind)
    idx = 0
    for k, lvl in enumerate(net.up_levels):
        for j, blk in enumerate(lvl.blocks):
            rules += _block(f"output_blocks.{idx}.0", _path("up_levels", k, "blocks", j), blk,
                            kind)
            sub = 1
            if lvl.block_attns is not None:
                rules += _attn(f"output_blocks.{idx}.1", _path("up_levels", k, "block_attns", j),
                               lvl.block_attns[j], kind)
                sub = 2
            if lvl.up is not None and j == len(lvl.blocks) - 1:
                rules += _block(f"output_blocks.{idx}.{sub}", _path("up_levels", k, "up"),
                                lvl.up, kind)
            idx += 1
    rules += _norm("out.0", lambda n: n.head.norm, net.head.norm.weight.shape[0])
    rules += _gconv("out.2", lambda n: n.head.conv, net.head.conv, kind)
    return rules


@functools.lru_cache(maxsize=8)
def _shape_unet(items: tuple) -> UNet:
    return eqx.filter_eval_shape(lambda k: UNet(key=k, **dict(items)), jax.random.key(0))


class GroupDiffusionUNet(AbstractRuleArch):
    """Group-Diffusion's UNet. Configuration keys are the original's ``create_model``
    arguments (its launch flags): ``image_size``, ``num_channels``, ``num_res_blocks``,
    ``channel_mult``, ``g_equiv``, ``g_input``, ``g_output``, ``self_cond``, ``learn_sigma``,
    ``class_cond`` (``num_classes``, 1000 in the original, rows of the class table),
    ``attention_resolutions`` (resolutions, as the ``--attention_resolutions`` flag),
    ``num_heads``, ``num_head_channels``, ``num_heads_upsample``, ``use_scale_shift_norm``,
    ``dropout``, ``resblock_updown``; and sdekit's ``attention_float16`` (default True: round
    the attention to float16 where the original does; False: float32). Checkpoints:
    ``model<step>.pt`` (raw) and ``ema_<rate>_<step>.pt`` (EMA), each a plain state dict.

    The network takes the timestep value the original's diffusion passes (``1000 t`` for its
    ``ddim`` cosine VP model, ``250 log sigma`` for ``pfode``): the time embedding is applied to
    ``t`` as given.
    """

    name = "group_diffusion_unet"
    net_name = "tiny"
    defaults = DEFAULTS["group_diffusion_unet"]
    presets = PRESETS["group_diffusion_unet"]

    def check_config(self, config: dict[str, Any]) -> None:
        kind = conv_kind(config)
        if kind not in _KINDS:
            raise arg_error("g_output", config["g_output"],
                            "'C4_K', 'C4_S' or 'D4_S' with g_equiv=True (the weight-tied layers "
                            "sdekit maps), or g_equiv=False")
        if not config["resblock_updown"]:
            raise arg_error("resblock_updown", False,
                            "True (the stride-2 convolution of resblock_updown=False pads "
                            "differently from sdekit's Downsample)")
        nh, nhu = int(config["num_heads"]), int(config["num_heads_upsample"])
        if config["num_head_channels"] == -1 and nhu not in (-1, nh):
            raise arg_error("num_heads_upsample", nhu, f"-1 or num_heads = {nh}")
        for r in config["attention_resolutions"]:
            if int(r) < 1:
                raise arg_error("attention_resolutions", config["attention_resolutions"],
                                "positive resolutions (the original's image_size // r)")

    def unet_kwargs(self, config: dict[str, Any]) -> dict[str, Any]:
        size = int(config["image_size"])
        mult = tuple(int(m) for m in config["channel_mult"])
        levels = len(mult)
        ds = {size // int(r) for r in config["attention_resolutions"]}
        attn = tuple(size // 2**i for i in range(levels) if 2**i in ds)
        kind = conv_kind(config)
        c = 3
        head_ch = int(config["num_head_channels"])
        return dict(
            in_channels=2 * c if config["self_cond"] else c,
            out_channels=2 * c if config["learn_sigma"] else c,
            nf=int(config["num_channels"]),
            ch_mult=mult,
            num_res_blocks=int(config["num_res_blocks"]),
            attn_resolutions=attn,
            image_size=size,
            dropout=float(config["dropout"]),
            resblock_type="biggan",
            fir=False,
            skip_rescale=False,
            progressive="none",
            progressive_input="none",
            embedding_type="adm",
            time_scale=1.0,
            init_scale=0.0,
            resamp_with_conv=True,
            num_classes=int(config["num_classes"]) if config["class_cond"] else None,
            num_heads=int(config["num_heads"]) if head_ch == -1 else 1,
            head_dim=None if head_ch == -1 else head_ch,
            scale_shift_norm=bool(config["use_scale_shift_norm"]),
            center_input=False,
            num_groups=32,
            norm_eps=1e-5,
            attn_every_up_block=True,
            attn_after_resample=False,
            resample_skip=False,
            label_embedding="table_no_null",
            conv_symmetry=None if kind == "plain" else ("D4" if kind == "D4_S" else "C4"),
            attn_float16=bool(config["attention_float16"]),
        )

    def build(self, config: dict[str, Any], key: Any) -> eqx.Module:
        return UNet(key=key, **self.unet_kwargs(config))

    def net_spec(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kw = self.unet_kwargs(config)
        for k in ("ch_mult", "attn_resolutions"):
            kw[k] = list(kw[k])
        return self.net_name, kw

    def rules(self, config: dict[str, Any]) -> list[TorchRule]:
        net = _shape_unet(tuple(sorted(self.unet_kwargs(config).items())))
        return group_diffusion_rules(net, conv_kind(config))

    def config_of(self, net: eqx.Module) -> dict[str, Any]:
        if not isinstance(net, UNet) or net.embedding_type != "adm" or net.num_groups != 32:
            raise arg_error("net", type(net).__name__,
                            "a UNet built by the 'group_diffusion_unet' arch")
        size = net.image_size
        cfg = dict(self.defaults)
        sym = net.conv_symmetry
        cfg.update(
            image_size=size, num_channels=net.nf, num_res_blocks=net.num_res_blocks,
            channel_mult=tuple(net.ch_mult), g_equiv=sym is not None,
            self_cond=net.in_channels == 6, learn_sigma=net.out_channels == 6,
            class_cond=net.num_classes is not None,
            num_classes=net.num_classes if net.num_classes is not None else
            self.defaults["num_classes"],
            attention_resolutions=tuple(net.attn_resolutions),
            num_heads=net.num_heads if net.head_dim is None else 1,
            num_head_channels=-1 if net.head_dim is None else net.head_dim,
            use_scale_shift_norm=net.scale_shift_norm, dropout=net.dropout,
            attention_float16=net.attn_float16,
        )
        if sym is not None:
            # 3x3 and 1x1 C4- and D4-invariant kernels coincide: C4 nets are written as `_K`
            # unless they were read from `_S` (then `g_output` must be given)
            cfg.update(g_input="Z2_K" if sym == "C4" else "Z2_S",
                       g_output="C4_K" if sym == "C4" else "D4_S")
        return cfg
