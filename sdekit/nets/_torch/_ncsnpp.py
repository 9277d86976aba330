"""score_sde's NCSN++ / DDPM++ (``NCSNpp``) as shipped by PSLD and by Reflected Diffusion.

The original keeps every layer in one flat ``torch.nn.ModuleList`` called ``all_modules``;
sdekit's [`UNet`][sdekit.nets.UNet] nests the same layers in levels and lists them in the
original's order in ``UNet.modules``. The state-dict names are therefore
``all_modules.<index>.<layer parameter>`` with the index running over, in order: the Gaussian
Fourier projection (``W``, frozen; ``fourier`` embedding only), the two time-embedding
``Linear`` layers, then ``UNet.modules`` where each output/pyramid head (GroupNorm + conv) takes
two indices. Layer parameters (original -> sdekit):

- ``ResnetBlockBigGANpp`` / ``ResnetBlockDDPMpp``: ``GroupNorm_0`` -> ``norm0``, ``Conv_0`` ->
  ``conv0``, ``Dense_0`` -> ``dense``, ``GroupNorm_1`` -> ``norm1``, ``Conv_1`` -> ``conv1``,
  ``Conv_2`` (BigGAN skip) or ``NIN_0`` (DDPM skip) -> ``skip``;
- ``AttnBlockpp``: ``GroupNorm_0`` -> ``norm``, ``NIN_0..3`` (``W`` is ``(in, out)``, ``b``)
  -> ``q``, ``k``, ``v``, ``out``;
- ``Upsample`` / ``Downsample``: ``Conv_0`` (nearest / stride 2) or ``Conv2d_0`` (FIR) ->
  ``conv``; ``Combine``: ``Conv_0`` (1 x 1) -> ``conv``.

Convolution kernels are OIHW in the original and HWIO in sdekit; ``nn.Linear`` weights are
``(out, in)`` and sdekit's ``(in, out)``; ``NIN`` weights are ``(in, out)`` on both sides.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..._validate import arg_error
from .._layers import Conv2d, Downsample, Linear, Upsample
from .._unet import AttnBlock, ResnetBlock, UNet, _Combine, _PyramidHead
from ._arch import AbstractRuleArch, TorchRule
from ._presets import DEFAULTS, PRESETS

_UNET_KEYS = (
    "in_channels", "out_channels", "nf", "ch_mult", "num_res_blocks", "attn_resolutions",
    "image_size", "dropout", "resblock_type", "fir", "fir_kernel", "skip_rescale",
    "progressive", "progressive_input", "progressive_combine", "embedding_type",
    "fourier_scale", "init_scale", "resamp_with_conv",
)


# the UNet options that reproduce score_sde's layout exactly (checked by config_of)
_SCORE_SDE_LAYOUT = dict(num_groups=None, norm_eps=1e-6, head_dim=None, attn_every_up_block=False,
                         attn_after_resample=False, resample_skip=True, label_embedding="table")


def _path(*keys: Any):
    def get(n):
        for k in keys:
            n = n[k] if isinstance(k, int) else getattr(n, k)
        return n

    return get


def _norm(prefix: str, get, c: int) -> list[TorchRule]:
    return [
        TorchRule.one(f"{prefix}.weight", (c,), lambda n: get(n).weight),
        TorchRule.one(f"{prefix}.bias", (c,), lambda n: get(n).bias),
    ]


def _conv(prefix: str, get, conv: Conv2d) -> list[TorchRule]:
    kh, kw, ci, co = conv.weight.shape
    rules = [TorchRule.one(f"{prefix}.weight", (co, ci, kh, kw), lambda n: get(n).weight, "conv")]
    if conv.bias is not None:
        rules.append(TorchRule.one(f"{prefix}.bias", (co,), lambda n: get(n).bias))
    return rules


def _linear(prefix: str, get, lin: Linear) -> list[TorchRule]:
    ci, co = lin.weight.shape
    return [
        TorchRule.one(f"{prefix}.weight", (co, ci), lambda n: get(n).weight, "linear"),
        TorchRule.one(f"{prefix}.bias", (co,), lambda n: get(n).bias),
    ]


def _nin(prefix: str, get, lin: Linear) -> list[TorchRule]:
    ci, co = lin.weight.shape
    return [
        TorchRule.one(f"{prefix}.W", (ci, co), lambda n: get(n).weight),
        TorchRule.one(f"{prefix}.b", (co,), lambda n: get(n).bias),
    ]


def _nin_conv(prefix: str, get, conv: Conv2d) -> list[TorchRule]:
    """A DDPM block's ``NIN_0`` skip (``W`` ``(in, out)``) <-> sdekit's 1 x 1 conv."""
    _, _, ci, co = conv.weight.shape
    return [
        TorchRule(
            (f"{prefix}.W",), ((ci, co),), lambda n: (get(n).weight,),
            lambda w: (np.ascontiguousarray(w.reshape(1, 1, ci, co)),),
            lambda w: (np.ascontiguousarray(w.reshape(ci, co)),),
        ),
        TorchRule.one(f"{prefix}.b", (co,), lambda n: get(n).bias),
    ]


def _resblock(prefix: str, get, b: ResnetBlock) -> list[TorchRule]:
    rules = _norm(f"{prefix}.GroupNorm_0", lambda n: get(n).norm0, b.norm0.weight.shape[0])
    rules += _conv(f"{prefix}.Conv_0", lambda n: get(n).conv0, b.conv0)
    rules += _linear(f"{prefix}.Dense_0", lambda n: get(n).dense, b.dense)
    rules += _norm(f"{prefix}.GroupNorm_1", lambda n: get(n).norm1, b.norm1.weight.shape[0])
    rules += _conv(f"{prefix}.Conv_1", lambda n: get(n).conv1, b.conv1)
    if b.skip is not None:
        if b.kind == "biggan":
            rules += _conv(f"{prefix}.Conv_2", lambda n: get(n).skip, b.skip)
        else:
            rules += _nin_conv(f"{prefix}.NIN_0", lambda n: get(n).skip, b.skip)
    return rules


def _attn(prefix: str, get, a: AttnBlock) -> list[TorchRule]:
    rules = _norm(f"{prefix}.GroupNorm_0", lambda n: get(n).norm, a.norm.weight.shape[0])
    for i, name in enumerate(("q", "k", "v", "out")):
        rules += _nin(f"{prefix}.NIN_{i}", _attr(get, name), getattr(a, name))
    return rules


def _attr(get, name: str):
    return lambda n: getattr(get(n), name)


def _resample(prefix: str, get, layer: Upsample | Downsample) -> list[TorchRule]:
    if layer.conv is None:
        return []
    sub = "Conv2d_0" if layer.fir else "Conv_0"
    return _conv(f"{prefix}.{sub}", lambda n: get(n).conv, layer.conv)


def unet_rules(net: UNet, prefix: str = "all_modules") -> list[TorchRule]:
    """The rules mapping score_sde's ``NCSNpp`` state dict onto a (shape-only) sdekit
    [`UNet`][sdekit.nets.UNet] built with the same configuration."""
    items: list[tuple[Any, Any]] = []
    items.append((_path("conv_in"), net.conv_in))
    for i, lvl in enumerate(net.down_levels):
        for j, block in enumerate(lvl.blocks):
            items.append((_path("down_levels", i, "blocks", j), block))
            if lvl.attns is not None:
                items.append((_path("down_levels", i, "attns", j), lvl.attns[j]))
        for name in ("down", "pyramid"):
            if getattr(lvl, name) is not None:
                items.append((_path("down_levels", i, name), getattr(lvl, name)))
    for name in ("res0", "attn", "res1"):
        items.append((_path("middle", name), getattr(net.middle, name)))
    for i, lvl in enumerate(net.up_levels):
        for j, block in enumerate(lvl.blocks):
            items.append((_path("up_levels", i, "blocks", j), block))
        for name in ("attn", "pyramid", "up"):
            if getattr(lvl, name) is not None:
                items.append((_path("up_levels", i, name), getattr(lvl, name)))
    if net.head is not None:
        items.append((_path("head"), net.head))

    rules: list[TorchRule] = []
    idx = 0
    if net.embedding_type == "fourier":
        rules.append(TorchRule.one(f"{prefix}.0.W", net.fourier_w.shape,
                                   lambda n: n.fourier_w, kind="frozen"))
        idx = 1
    rules += _linear(f"{prefix}.{idx}", lambda n: n.temb0, net.temb0)
    rules += _linear(f"{prefix}.{idx + 1}", lambda n: n.temb1, net.temb1)
    idx += 2
    for get, m in items:
        p = f"{prefix}.{idx}"
        if isinstance(m, ResnetBlock):
            rules += _resblock(p, get, m)
        elif isinstance(m, AttnBlock):
            rules += _attn(p, get, m)
        elif isinstance(m, Conv2d):
            rules += _conv(p, get, m)
        elif isinstance(m, (Upsample, Downsample)):
            rules += _resample(p, get, m)
        elif isinstance(m, _Combine):
            rules += _conv(f"{p}.Conv_0", _attr(get, "conv"), m.conv)
        elif isinstance(m, _PyramidHead):  # two original modules: GroupNorm, conv3x3
            rules += _norm(p, _attr(get, "norm"), m.norm.weight.shape[0])
            idx += 1
            rules += _conv(f"{prefix}.{idx}", _attr(get, "conv"), m.conv)
        else:  # pragma: no cover - every UNet layer type is listed above
            raise TypeError(f"no NCSN++ mapping for {type(m).__name__}")
        idx += 1
    return rules


@functools.lru_cache(maxsize=16)
def _shape_unet(items: tuple) -> UNet:
    """A shape-only UNet (no allocation), cached by its keyword arguments."""
    return eqx.filter_eval_shape(lambda k: UNet(key=k, **dict(items)), jax.random.key(0))


def _unet_config_of(net: Any) -> dict[str, Any]:
    if not isinstance(net, UNet):
        raise arg_error("net", type(net).__name__, "an sdekit UNet")
    cfg = {k: getattr(net, k) for k in _UNET_KEYS}
    for k in ("ch_mult", "attn_resolutions", "fir_kernel"):
        cfg[k] = tuple(cfg[k])
    return cfg


class _NCSNppArch(AbstractRuleArch):
    """Shared part of the PSLD and Reflected Diffusion NCSN++ archs."""

    net_name = "psld_cifar10"
    fixed: dict[str, Any] = {}
    fir_available = True  # whether the original's upfirdn2d exists

    def check_config(self, config: dict[str, Any]) -> None:
        """Refuse configurations the original code cannot run: its ``Upsample`` layer works only
        as FIR without a convolution (the nearest-neighbour branch passes ``'nearest'`` as
        ``F.interpolate``'s scale factor and the fused FIR convolution slices with a negative
        step: both raise in PyTorch), so no trained checkpoint of those exists."""
        fir = bool(config["fir"])
        if fir and not self.fir_available:
            raise arg_error("fir", True, f"False (arch {self.name!r}: the original has no "
                            "upfirdn2d, FIR resampling raises a NameError there)")
        why = "the original's Upsample layer raises in PyTorch for this configuration"
        if config["resblock_type"] == "ddpm" and not (fir and not config["resamp_with_conv"]):
            raise arg_error("resblock_type", "ddpm",
                            f"'biggan', or 'ddpm' with fir=True and resamp_with_conv=False ({why})")
        if config["progressive"] == "residual" or (config["progressive"] == "output_skip"
                                                   and not fir):
            raise arg_error("progressive", config["progressive"],
                            f"'none', or 'output_skip' with fir=True ({why})")

    def unet_kwargs(self, config: dict[str, Any]) -> dict[str, Any]:
        kw = {k: config[k] for k in _UNET_KEYS}
        for k in ("ch_mult", "attn_resolutions", "fir_kernel"):
            kw[k] = tuple(kw[k])
        kw.update(self.fixed)
        return kw

    def build(self, config: dict[str, Any], key: Any) -> eqx.Module:
        return UNet(key=key, **self.unet_kwargs(config))

    def net_spec(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kw = self.unet_kwargs(config)
        for k in ("ch_mult", "attn_resolutions", "fir_kernel"):
            kw[k] = list(kw[k])
        return self.net_name, kw

    def _shape_net(self, config: dict[str, Any]) -> UNet:
        return _shape_unet(tuple(sorted(self.unet_kwargs(config).items())))

    def config_of(self, net: eqx.Module) -> dict[str, Any]:
        cfg = dict(self.defaults)
        cfg.update(_unet_config_of(net))
        for k, v in self.fixed.items():
            if getattr(net, k) != v:
                raise arg_error("net", f"a UNet with {k}={getattr(net, k)!r}",
                                f"{k}={v!r} (arch {self.name!r})")
        if net.num_classes is not None:
            raise arg_error("net", f"a UNet with num_classes={net.num_classes}",
                            f"an unconditional UNet (arch {self.name!r})")
        return cfg


class PSLDNCSNpp(_NCSNppArch):
    """PSLD's NCSN++ (``mandt-lab/PSLD``, ``main/models/score_fn/song_sde/ncsnpp.py``).

    The network takes the augmented state ``[x, m]`` (``in_channels = 2 C``) and the forward
    time ``t`` (no scaling; ``positional`` embeds ``t`` itself, ``fourier`` embeds ``log t``)
    and predicts epsilon (``out_channels = 2 C``, or ``C`` in the ``score_m``/``score_x``
    modes). Configuration keys are sdekit's ``UNet`` arguments, named as in the original's
    ``score_fn`` config (``in_ch`` -> ``in_channels``, ``out_ch`` -> ``out_channels``).
    Training checkpoints are Lightning ``.ckpt`` files whose ``state_dict`` keeps the raw
    network under ``score_fn.`` and the EMA network under ``ema_score_fn.``.
    """

    name = "psld_ncsnpp"
    net_name = "psld_cifar10"
    checkpoint_prefixes = ("score_fn.", "ema_score_fn.")
    fixed = dict(time_scale=1.0, center_input=False, num_classes=None, num_heads=1,
                 scale_shift_norm=False, **_SCORE_SDE_LAYOUT)
    defaults = DEFAULTS["psld_ncsnpp"]
    presets = PRESETS["psld_ncsnpp"]

    def rules(self, config: dict[str, Any]) -> list[TorchRule]:
        return unet_rules(self._shape_net(config))


def reflected_sigmas(sigma_min: float, sigma_max: float, num_scales: int) -> np.ndarray:
    """The ``sigmas`` buffer of Reflected Diffusion's ``NCSNpp``: ``num_scales`` geometric steps
    from ``sigma_max`` down to ``sigma_min`` (float32)."""
    return np.asarray(
        np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), int(num_scales))), np.float32
    )


class ReflectedNCSNpp(_NCSNppArch):
    """Reflected Diffusion's DDPM++ (``louaaron/Reflected-Diffusion``, ``models/ncsnpp.py``,
    ``configs/model/ddpmpp.yaml``).

    The original maps ``x`` in ``[0, 1]`` to ``2 x - 1`` (sdekit: ``center_input=True``),
    embeds ``log sigma`` with Gaussian Fourier features and divides its output by ``sigma``
    (``scale_by_sigma``). The sdekit network computes the output *before* that division:
    wrap it in ``sdekit.wrappers.SigmaScaledScore(net, process)`` to get the original's score.
    The state dict also holds the ``sigmas`` buffer (``num_scales`` geometric noise levels from
    ``sigma_max`` to ``sigma_min``); it is checked against ``sigma_min``, ``sigma_max`` and
    ``num_scales`` and written back from them. Training checkpoints are score_sde-style
    ``{'model', 'ema': {'shadow_params'}, 'optimizer', 'step'}`` files.
    """

    name = "reflected_ncsnpp"
    net_name = "reflected_ddpmpp_cifar10"
    fixed = dict(time_scale=1.0, center_input=True, num_classes=None, num_heads=1,
                 scale_shift_norm=False, **_SCORE_SDE_LAYOUT)
    defaults = DEFAULTS["reflected_ncsnpp"]
    presets = PRESETS["reflected_ncsnpp"]

    fir_available = False

    def check_config(self, config: dict[str, Any]) -> None:
        super().check_config(config)
        if not (0 < float(config["sigma_min"]) < float(config["sigma_max"])):
            raise arg_error("sigma_min", config["sigma_min"],
                            f"0 < sigma_min < sigma_max = {config['sigma_max']}")
        if int(config["num_scales"]) < 2:
            raise arg_error("num_scales", config["num_scales"], "an integer >= 2")
        if config["in_channels"] != config["out_channels"]:
            raise arg_error("out_channels", config["out_channels"],
                            f"in_channels = {config['in_channels']} (the original's output "
                            "has the data's channels)")

    def rules(self, config: dict[str, Any]) -> list[TorchRule]:
        smin, smax = float(config["sigma_min"]), float(config["sigma_max"])
        n = int(config["num_scales"])
        want = reflected_sigmas(smin, smax, n)

        def check(s: np.ndarray) -> tuple:
            if not np.allclose(np.asarray(s, np.float64), want, rtol=1e-5, atol=0.0):
                raise ValueError(
                    "argument `source`: the 'sigmas' buffer holds "
                    f"{float(s[0]):.6g} ... {float(s[-1]):.6g}, which is not the schedule of "
                    f"sigma_max={smax}, sigma_min={smin}, num_scales={n} ({want[0]:.6g} ... "
                    f"{want[-1]:.6g}); pass the run's sigma_min, sigma_max and num_scales"
                )
            return ()

        buf = TorchRule(("sigmas",), ((n,),), lambda net: (), check, lambda: (want,),
                        ("buffer",))
        return [buf] + unet_rules(self._shape_net(config))


__all__ = ["PSLDNCSNpp", "ReflectedNCSNpp", "reflected_sigmas", "unet_rules"]
