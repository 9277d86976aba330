"""Stable Diffusion's autoencoder in diffusers' ``AutoencoderKL`` layout as sdekit's
[`AutoencoderKL`][sdekit.nets.AutoencoderKL]: arch ``"sd_vae"``.

The released weights SiT and ComboStoc decode with (``stabilityai/sd-vae-ft-ema`` and
``stabilityai/sd-vae-ft-mse``, files ``diffusion_pytorch_model.safetensors`` or ``.bin``) share
one configuration, the presets ``"sd-vae-ft-ema"`` and ``"sd-vae-ft-mse"``. Files written
before diffusers 0.14 name the middle blocks' attention ``query``, ``key``, ``value`` and
``proj_attn`` (sometimes as ``1 x 1`` convolution kernels); they are read as ``to_q``,
``to_k``, ``to_v`` and ``to_out.0``, which is also what `to_torch_state_dict` writes (current
diffusers reads both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import numpy as np

from ..._validate import arg_error
from .._vae import AutoencoderKL
from ._arch import AbstractRuleArch, TorchRule
from ._source import default_checkpoint_weights

_LEGACY = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}

_RELEASED = dict(in_channels=3, out_channels=3, latent_channels=4,
                 block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                 norm_num_groups=32, scaling_factor=0.18215, use_quant_conv=True,
                 use_post_quant_conv=True, mid_block_add_attention=True)


def rename_legacy_attention(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict with pre-0.14 diffusers attention names (``...attentions.0.query.weight``,
    ``key``, ``value``, ``proj_attn``) renamed to the current ones (``to_q``, ``to_k``, ``to_v``,
    ``to_out.0``), and ``1 x 1`` convolution kernels of these layers reshaped to matrices."""
    out: dict[str, Any] = {}
    for name, v in state.items():
        parts = name.split(".")
        if "attentions" in parts and len(parts) >= 2 and parts[-2] in _LEGACY:
            parts[-2] = _LEGACY[parts[-2]]
            shape = tuple(np.shape(v))
            if parts[-1] == "weight" and len(shape) == 4 and shape[2:] == (1, 1):
                v = np.asarray(v).reshape(shape[:2])
            name = ".".join(parts)
        if name in out:
            raise arg_error("source", f"a state dict with both {name!r} and its legacy name",
                            "one name per tensor")
        out[name] = v
    return out


def _conv(name: str, cin: int, cout: int, k: int, leaf) -> list[TorchRule]:
    return [TorchRule.one(f"{name}.weight", (cout, cin, k, k), lambda n: leaf(n).weight, "conv"),
            TorchRule.one(f"{name}.bias", (cout,), lambda n: leaf(n).bias)]


def _norm(name: str, c: int, leaf) -> list[TorchRule]:
    return [TorchRule.one(f"{name}.weight", (c,), lambda n: leaf(n).weight),
            TorchRule.one(f"{name}.bias", (c,), lambda n: leaf(n).bias)]


def _lin(name: str, c: int, leaf) -> list[TorchRule]:
    return [TorchRule.one(f"{name}.weight", (c, c), lambda n: leaf(n).weight, "linear"),
            TorchRule.one(f"{name}.bias", (c,), lambda n: leaf(n).bias)]


def _resnet(pre: str, cin: int, cout: int, leaf) -> list[TorchRule]:
    r = _norm(f"{pre}.norm1", cin, lambda n: leaf(n).norm1)
    r += _conv(f"{pre}.conv1", cin, cout, 3, lambda n: leaf(n).conv1)
    r += _norm(f"{pre}.norm2", cout, lambda n: leaf(n).norm2)
    r += _conv(f"{pre}.conv2", cout, cout, 3, lambda n: leaf(n).conv2)
    if cin != cout:
        r += _conv(f"{pre}.conv_shortcut", cin, cout, 1, lambda n: leaf(n).conv_shortcut)
    return r


def _mid(pre: str, c: int, attention: bool, leaf) -> list[TorchRule]:
    r: list[TorchRule] = []
    if attention:
        a = lambda n: leaf(n).attention  # noqa: E731
        r += _norm(f"{pre}.attentions.0.group_norm", c, lambda n: a(n).group_norm)
        r += _lin(f"{pre}.attentions.0.to_q", c, lambda n: a(n).to_q)
        r += _lin(f"{pre}.attentions.0.to_k", c, lambda n: a(n).to_k)
        r += _lin(f"{pre}.attentions.0.to_v", c, lambda n: a(n).to_v)
        r += _lin(f"{pre}.attentions.0.to_out.0", c, lambda n: a(n).to_out)
    for j in range(2):
        r += _resnet(f"{pre}.resnets.{j}", c, c, lambda n, j=j: leaf(n).resnets[j])
    return r


class SDVAEArch(AbstractRuleArch):
    """Arch ``"sd_vae"``: diffusers' ``AutoencoderKL`` (see the module docstring).

    Configuration keys (diffusers' config names): ``in_channels``, ``out_channels``,
    ``latent_channels``, ``block_out_channels``, ``layers_per_block``, ``norm_num_groups``,
    ``scaling_factor``, ``use_quant_conv``, ``use_post_quant_conv``,
    ``mid_block_add_attention``; every block is ``DownEncoderBlock2D`` / ``UpDecoderBlock2D``
    with SiLU. Presets ``sd-vae-ft-ema`` and ``sd-vae-ft-mse`` (the same configuration), and
    ``smoke`` (fixture-sized, not released).
    """

    name = "sd_vae"
    description = "Stable Diffusion VAE (diffusers AutoencoderKL)"
    defaults = dict(_RELEASED)
    presets = {"sd-vae-ft-ema": {}, "sd-vae-ft-mse": {},
               # fixture-sized (tests and --smoke runs; not released): 16 x 16 -> 4 x 4 x 4
               "smoke": dict(block_out_channels=(8, 16, 16), layers_per_block=1,
                             norm_num_groups=4)}

    def check_config(self, config: dict[str, Any]) -> None:
        chans = config["block_out_channels"]
        if (not isinstance(chans, list | tuple) or not chans
                or any(isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 1
                       for c in chans)):
            raise arg_error("block_out_channels", chans,
                            "a non-empty list of positive channel counts")
        config["block_out_channels"] = tuple(int(c) for c in chans)
        for k in ("in_channels", "out_channels", "latent_channels", "layers_per_block",
                  "norm_num_groups"):
            v = config[k]
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise arg_error(k, v, "a positive integer")
        for k in ("use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"):
            if not isinstance(config[k], bool):
                raise arg_error(k, config[k], "True or False")

    def vae_kwargs(self, config: dict[str, Any]) -> dict[str, Any]:
        """The [`AutoencoderKL`][sdekit.nets.AutoencoderKL] keyword arguments of ``config``."""
        kw = dict(config)
        kw["block_out_channels"] = tuple(int(c) for c in config["block_out_channels"])
        kw["scaling_factor"] = float(config["scaling_factor"])
        return kw

    def build(self, config: dict[str, Any], key: Any) -> eqx.Module:
        return AutoencoderKL(key=key, **self.vae_kwargs(config))

    def net_spec(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kw = self.vae_kwargs(config)
        kw["block_out_channels"] = list(kw["block_out_channels"])
        return "sd_vae", kw

    def config_of(self, net: eqx.Module) -> dict[str, Any]:
        if not isinstance(net, AutoencoderKL):
            raise arg_error("net", type(net).__name__, "an AutoencoderKL (arch 'sd_vae')")
        return dict(in_channels=net.in_channels, out_channels=net.out_channels,
                    latent_channels=net.latent_channels,
                    block_out_channels=tuple(net.block_out_channels),
                    layers_per_block=net.layers_per_block, norm_num_groups=net.norm_num_groups,
                    scaling_factor=net.scaling_factor,
                    use_quant_conv=net.quant_conv is not None,
                    use_post_quant_conv=net.post_quant_conv is not None,
                    mid_block_add_attention=net.encoder.mid_block.attention is not None)

    def checkpoint_weights(self, obj: Any, *, ema: bool | None,
                           config: dict[str, Any]) -> tuple[dict[str, np.ndarray], str]:
        state, what = default_checkpoint_weights(self, obj, ema=ema, config=config)
        renamed = rename_legacy_attention(state)
        if list(renamed) != list(state):
            what += " (pre-0.14 diffusers attention names)"
        return renamed, what

    def rules(self, config: dict[str, Any]) -> list[TorchRule]:
        chans = [int(c) for c in config["block_out_channels"]]
        layers, lat = int(config["layers_per_block"]), int(config["latent_channels"])
        att = bool(config["mid_block_add_attention"])
        last = len(chans) - 1
        enc = lambda n: n.encoder  # noqa: E731
        dec = lambda n: n.decoder  # noqa: E731
        r = _conv("encoder.conv_in", config["in_channels"], chans[0], 3,
                  lambda n: enc(n).conv_in)
        for i, c in enumerate(chans):
            blk = lambda n, i=i: enc(n).down_blocks[i]  # noqa: E731
            for j in range(layers):
                cin = chans[max(i - 1, 0)] if j == 0 else c
                r += _resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin, c,
                             lambda n, blk=blk, j=j: blk(n).resnets[j])
            if i < last:
                r += _conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", c, c, 3,
                           lambda n, blk=blk: blk(n).downsample)
        r += _mid("encoder.mid_block", chans[-1], att, lambda n: enc(n).mid_block)
        r += _norm("encoder.conv_norm_out", chans[-1], lambda n: enc(n).conv_norm_out)
        r += _conv("encoder.conv_out", chans[-1], 2 * lat, 3, lambda n: enc(n).conv_out)
        rev = chans[::-1]
        r += _conv("decoder.conv_in", lat, rev[0], 3, lambda n: dec(n).conv_in)
        for i, c in enumerate(rev):
            blk = lambda n, i=i: dec(n).up_blocks[i]  # noqa: E731
            for j in range(layers + 1):
                cin = rev[max(i - 1, 0)] if j == 0 else c
                r += _resnet(f"decoder.up_blocks.{i}.resnets.{j}", cin, c,
                             lambda n, blk=blk, j=j: blk(n).resnets[j])
            if i < last:
                r += _conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c, 3,
                           lambda n, blk=blk: blk(n).upsample)
        r += _mid("decoder.mid_block", rev[0], att, lambda n: dec(n).mid_block)
        r += _norm("decoder.conv_norm_out", chans[0], lambda n: dec(n).conv_norm_out)
        r += _conv("decoder.conv_out", chans[0], config["out_channels"], 3,
                   lambda n: dec(n).conv_out)
        if config["use_quant_conv"]:
            r += _conv("quant_conv", 2 * lat, 2 * lat, 1, lambda n: n.quant_conv)
        if config["use_post_quant_conv"]:
            r += _conv("post_quant_conv", lat, lat, 1, lambda n: n.post_quant_conv)
        return r


__all__ = ["SDVAEArch", "rename_legacy_attention"]
