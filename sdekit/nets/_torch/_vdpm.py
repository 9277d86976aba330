"""VDPM's UNet (``tqch/v-diffusion-torch``, ``v_diffusion/models/unet.py``) on sdekit's UNet.

The original is a DDPM/ADM-style UNet: sinusoidal embedding of ``1000 t`` (``t`` in [0, 1]),
scale-shift GroupNorm(32) residual blocks whose up/down-sampling is inside the block (average
pooling / nearest neighbour) with an identity skip, attention after *every* block of an
attention level (the resampling blocks included), and a one-hot ``Linear`` class embedding whose
label 0 is the null class. sdekit's [`UNet`][sdekit.nets.UNet] computes the same function with
``scale_shift_norm``, ``num_groups=32``, ``attn_every_up_block``, ``attn_after_resample``,
``resample_skip=False``, ``skip_rescale=False`` and ``label_embedding="linear"``.

Labels: the original's label ``y`` in ``1..K`` is sdekit's ``y - 1`` and its null label 0 is
sdekit's null class ``K`` (``cond=None``): ``sdekit_label = (y - 1) % (K + 1)``.

Names (original -> sdekit): ``time_embed.0/.2`` -> ``temb0/temb1``; ``class_embed.1`` (weight
``(E, K)``, bias) -> ``label_emb`` (rows ``0..K-1`` the weight's columns, row ``K`` the bias);
``in_conv`` -> ``conv_in``; ``downsamples.level_i.j`` -> ``down_levels[i]`` (blocks, then the
downsampling block), where an attention level's entries are ``Sequential(block, attention)``
(``.0``, ``.1``); ``middle.0/1/2``; ``upsamples.level_i.j`` -> ``up_levels[L - 1 - i]``;
``out_conv.0/.2`` -> ``head``. In a block: ``norm1, conv1, fc, norm2, conv2, skip`` ->
``norm0, conv0, dense, norm1, conv1, skip``, where ``fc`` gives ``(shift, scale)`` and sdekit's
``dense`` ``(scale, shift)`` (the halves are swapped). In an attention block: ``norm``,
``proj_in`` (``q, k, v`` stacked on the output axis) -> ``q``, ``k``, ``v``, ``proj_out`` ->
``out``.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..._validate import arg_error
from .._unet import AttnBlock, ResnetBlock, UNet
from ._arch import AbstractRuleArch, TorchRule, conv_to_hwio, conv_to_oihw
from ._ncsnpp import _attr, _conv, _linear, _norm, _path
from ._presets import DEFAULTS, PRESETS


def _block(prefix: str, get, b: ResnetBlock) -> list[TorchRule]:
    rules = _norm(f"{prefix}.norm1", _attr(get, "norm0"), b.norm0.weight.shape[0])
    rules += _conv(f"{prefix}.conv1", _attr(get, "conv0"), b.conv0)
    e, two_c = b.dense.weight.shape
    c = two_c // 2

    def w_in(w):  # (2C, E) rows (shift, scale) -> (E, 2C) columns (scale, shift)
        return (np.ascontiguousarray(np.concatenate([w[c:], w[:c]], axis=0).T),)

    def w_out(w):
        wt = w.T
        return (np.ascontiguousarray(np.concatenate([wt[c:], wt[:c]], axis=0)),)

    def b_swap(v):
        return (np.ascontiguousarray(np.concatenate([v[c:], v[:c]])),)

    rules.append(TorchRule((f"{prefix}.fc.weight",), ((two_c, e),),
                           lambda n: (get(n).dense.weight,), w_in, w_out))
    rules.append(TorchRule((f"{prefix}.fc.bias",), ((two_c,),),
                           lambda n: (get(n).dense.bias,), b_swap, b_swap))
    rules += _norm(f"{prefix}.norm2", _attr(get, "norm1"), b.norm1.weight.shape[0])
    rules += _conv(f"{prefix}.conv2", _attr(get, "conv1"), b.conv1)
    if b.skip is not None:
        rules += _conv(f"{prefix}.skip", _attr(get, "skip"), b.skip)
    return rules


def _attn(prefix: str, get, a: AttnBlock) -> list[TorchRule]:
    c = a.q.weight.shape[0]
    rules = _norm(f"{prefix}.norm", _attr(get, "norm"), c)

    def w_in(w):  # (3C, C, 1, 1) -> three (C, C) (in, out) matrices
        m = w.reshape(3, c, c)
        return tuple(np.ascontiguousarray(m[i].T) for i in range(3))

    def w_out(q, k, v):
        return (np.ascontiguousarray(np.stack([q.T, k.T, v.T]).reshape(3 * c, c, 1, 1)),)

    def b_in(b):
        return tuple(np.ascontiguousarray(b[i * c:(i + 1) * c]) for i in range(3))

    def b_out(q, k, v):
        return (np.ascontiguousarray(np.concatenate([q, k, v])),)

    rules.append(TorchRule((f"{prefix}.proj_in.weight",), ((3 * c, c, 1, 1),),
                           lambda n: (get(n).q.weight, get(n).k.weight, get(n).v.weight),
                           w_in, w_out))
    rules.append(TorchRule((f"{prefix}.proj_in.bias",), ((3 * c,),),
                           lambda n: (get(n).q.bias, get(n).k.bias, get(n).v.bias), b_in, b_out))
    rules.append(TorchRule((f"{prefix}.proj_out.weight",), ((c, c, 1, 1),),
                           lambda n: (get(n).out.weight,),
                           lambda w: (np.ascontiguousarray(w.reshape(c, c).T),),
                           lambda w: (np.ascontiguousarray(w.T.reshape(c, c, 1, 1)),)))
    rules.append(TorchRule.one(f"{prefix}.proj_out.bias", (c,), lambda n: get(n).out.bias))
    return rules


def _entry(prefix: str, get_block, block, get_attn, attn) -> list[TorchRule]:
    if attn is None:
        return _block(prefix, get_block, block)
    return _block(f"{prefix}.0", get_block, block) + _attn(f"{prefix}.1", get_attn, attn)


def vdpm_rules(net: UNet) -> list[TorchRule]:
    """The rules mapping VDPM's ``UNet`` state dict onto a (shape-only) sdekit ``UNet``."""
    rules = _linear("time_embed.0", lambda n: n.temb0, net.temb0)
    rules += _linear("time_embed.2", lambda n: n.temb1, net.temb1)
    if net.num_classes is not None:
        ncls, e = net.num_classes, net.label_emb.shape[1]

        def lab_in(w, b):
            return (np.ascontiguousarray(np.concatenate([w.T, b[None]], axis=0)),)

        def lab_out(t):
            return np.ascontiguousarray(t[:ncls].T), np.ascontiguousarray(t[ncls])

        rules.append(TorchRule(("class_embed.1.weight", "class_embed.1.bias"),
                               ((e, ncls), (e,)),
                               lambda n: (n.label_emb,), lab_in, lab_out))
    rules += _conv("in_conv", lambda n: n.conv_in, net.conv_in)
    levels = len(net.down_levels)
    for i, lvl in enumerate(net.down_levels):
        j = 0
        for j, blk in enumerate(lvl.blocks):
            att = None if lvl.attns is None else lvl.attns[j]
            rules += _entry(f"downsamples.level_{i}.{j}", _path("down_levels", i, "blocks", j),
                            blk, _path("down_levels", i, "attns", j), att)
        if lvl.down is not None:
            rules += _entry(f"downsamples.level_{i}.{j + 1}", _path("down_levels", i, "down"),
                            lvl.down, _path("down_levels", i, "down_attn"), lvl.down_attn)
    rules += _block("middle.0", _path("middle", "res0"), net.middle.res0)
    rules += _attn("middle.1", _path("middle", "attn"), net.middle.attn)
    rules += _block("middle.2", _path("middle", "res1"), net.middle.res1)
    for i in range(levels):  # the original's ModuleDict is in level order 0, 1, ...
        k = levels - 1 - i
        lvl = net.up_levels[k]
        j = 0
        for j, blk in enumerate(lvl.blocks):
            att = None if lvl.block_attns is None else lvl.block_attns[j]
            rules += _entry(f"upsamples.level_{i}.{j}", _path("up_levels", k, "blocks", j), blk,
                            _path("up_levels", k, "block_attns", j), att)
        if lvl.up is not None:
            rules += _entry(f"upsamples.level_{i}.{j + 1}", _path("up_levels", k, "up"), lvl.up,
                            _path("up_levels", k, "up_attn"), lvl.up_attn)
    rules += _norm("out_conv.0", lambda n: n.head.norm, net.head.norm.weight.shape[0])
    rules += _conv("out_conv.2", lambda n: n.head.conv, net.head.conv)
    return rules


@functools.lru_cache(maxsize=8)
def _shape_unet(items: tuple) -> UNet:
    return eqx.filter_eval_shape(lambda k: UNet(key=k, **dict(items)), jax.random.key(0))


class VDPMUNet(AbstractRuleArch):
    """VDPM's UNet (``tqch/v-diffusion-torch``). Configuration keys are the original's
    ``model`` block (``configs/*.json``) plus ``image_size`` (a nominal input size that places
    the attention levels; any size divisible by ``2 ** (levels - 1)`` runs). Unsupported:
    ``multitags`` (CelebA's attribute vectors), ``resample_with_res=False`` (strided
    convolutions) and ``use_xformers=True`` (other layer names).

    Training checkpoints: ``{'model', 'ema': {'shadow': state dict, ...}, 'optimizer', ...}``.
    The network takes ``t`` in [0, 1] (the log-SNR schedule's time), NOT the log-SNR; its
    output is eps, x0, v or both according to the run's ``model_out_type``.
    """

    name = "vdpm_unet"
    net_name = "vdpm_cifar10"
    defaults = DEFAULTS["vdpm_unet"]
    presets = PRESETS["vdpm_unet"]

    def check_config(self, config: dict[str, Any]) -> None:
        levels = len(config["ch_multipliers"])
        apply = config["apply_attn"]
        if not isinstance(apply, bool) and len(apply) != levels:
            raise arg_error("apply_attn", apply, f"a bool or {levels} bools (one per level)")
        emb = config["embedding_dim"]
        if emb is not None and int(emb) != 4 * int(config["hid_channels"]):
            raise arg_error("embedding_dim", emb,
                            f"None or 4 * hid_channels = {4 * config['hid_channels']} (sdekit's "
                            "UNet has a 4x time embedding)")
        for key, ok in (("multitags", False), ("resample_with_res", True),
                        ("use_xformers", False)):
            if bool(config[key]) != ok:
                raise arg_error(key, config[key], f"{ok} (the only value sdekit maps)")
        if config["head_dim"] is not None and config["num_heads"] is not None:
            raise arg_error("head_dim", config["head_dim"],
                            "None when num_heads is given (the original asserts one of them)")

    def unet_kwargs(self, config: dict[str, Any]) -> dict[str, Any]:
        levels = len(config["ch_multipliers"])
        apply = config["apply_attn"]
        if isinstance(apply, bool):
            apply = [apply] * levels
        size = int(config["image_size"])
        heads = config["num_heads"]
        head_dim = config["head_dim"]
        if head_dim is None and heads is None:
            heads = 1
        return dict(
            in_channels=int(config["in_channels"]),
            out_channels=int(config["out_channels"]),
            nf=int(config["hid_channels"]),
            ch_mult=tuple(int(m) for m in config["ch_multipliers"]),
            num_res_blocks=int(config["num_res_blocks"]),
            attn_resolutions=tuple(size // 2**i for i in range(levels) if apply[i]),
            image_size=size,
            dropout=float(config["drop_rate"]),
            resblock_type="biggan",
            fir=False,
            skip_rescale=False,
            progressive="none",
            progressive_input="none",
            embedding_type="positional",
            time_scale=1000.0,
            init_scale=0.0,
            resamp_with_conv=True,
            num_classes=int(config["num_classes"]) or None,
            num_heads=int(heads) if heads is not None else 1,
            head_dim=None if head_dim is None else int(head_dim),
            scale_shift_norm=True,
            center_input=False,
            num_groups=32,
            norm_eps=1e-6,
            attn_every_up_block=True,
            attn_after_resample=True,
            resample_skip=False,
            label_embedding="linear",
        )

    def build(self, config: dict[str, Any], key: Any) -> eqx.Module:
        return UNet(key=key, **self.unet_kwargs(config))

    def net_spec(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kw = self.unet_kwargs(config)
        for k in ("ch_mult", "attn_resolutions"):
            kw[k] = list(kw[k])
        return self.net_name, kw

    def rules(self, config: dict[str, Any]) -> list[TorchRule]:
        return vdpm_rules(_shape_unet(tuple(sorted(self.unet_kwargs(config).items()))))

    def config_of(self, net: eqx.Module) -> dict[str, Any]:
        if not isinstance(net, UNet) or not (net.attn_every_up_block and net.attn_after_resample
                                             and net.label_embedding == "linear"):
            raise arg_error("net", type(net).__name__,
                            "a UNet built by the 'vdpm_unet' arch (VDPM layout)")
        levels = len(net.ch_mult)
        res = [net.image_size // 2**i for i in range(levels)]
        cfg = dict(self.defaults)
        cfg.update(
            in_channels=net.in_channels, out_channels=net.out_channels, hid_channels=net.nf,
            ch_multipliers=tuple(net.ch_mult), num_res_blocks=net.num_res_blocks,
            apply_attn=tuple(r in net.attn_resolutions for r in res), drop_rate=net.dropout,
            num_heads=None if net.head_dim is not None else net.num_heads,
            head_dim=net.head_dim, num_classes=net.num_classes or 0, image_size=net.image_size,
            embedding_dim=None,
        )
        return cfg


# conv helpers re-exported for archs written on the same pattern
__all__ = ["VDPMUNet", "conv_to_hwio", "conv_to_oihw", "vdpm_rules"]
