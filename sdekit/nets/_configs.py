"""Named network configurations from the reference implementations."""

from __future__ import annotations

import inspect
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._validate import arg_error
from ._dit import DiT
from ._unet import UNet
from .equivariant._configs import ARCH as _EQUIVARIANT_ARCH
from .equivariant._configs import EQUIVARIANT_CONFIGS
from .equivariant._unet import EquivariantUNet

#: The architectures a configuration's ``arch`` names.
_ARCHS = {"unet": UNet, "dit": DiT, _EQUIVARIANT_ARCH: EquivariantUNet}


NET_CONFIGS: dict[str, dict[str, Any]] = {
    # PSLD CIFAR-10 SOTA (Pandey & Mandt 2023, the released config): 97,627,910 parameters
    # (97,627,782 trainable).
    "psld_cifar10": dict(
        arch="unet",
        in_channels=6,
        out_channels=6,
        nf=128,
        ch_mult=(2, 2, 2),
        num_res_blocks=8,
        attn_resolutions=(16,),
        image_size=32,
        dropout=0.15,
        resblock_type="biggan",
        fir=True,
        fir_kernel=(1, 3, 3, 1),
        skip_rescale=True,
        progressive="none",
        progressive_input="residual",
        progressive_combine="sum",
        embedding_type="fourier",
        fourier_scale=16.0,
        init_scale=0.0,
        resamp_with_conv=True,
    ),
    # PSLD CelebA-64 SOTA (the released config): 62,769,286 parameters (62,769,158 trainable).
    "psld_celeba64": dict(
        arch="unet",
        in_channels=6,
        out_channels=6,
        nf=128,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks=4,
        attn_resolutions=(16,),
        image_size=64,
        dropout=0.1,
        resblock_type="biggan",
        fir=True,
        fir_kernel=(1, 3, 3, 1),
        skip_rescale=True,
        progressive="none",
        progressive_input="residual",
        progressive_combine="sum",
        embedding_type="fourier",
        fourier_scale=16.0,
        init_scale=0.0,
        resamp_with_conv=True,
    ),
    # Reflected diffusion, CIFAR-10 generation (Lou & Ermon 2023, released config): DDPM++ "deep",
    # 107,587,075 parameters (128 frozen Fourier weights). The network maps x in [0, 1] to
    # 2x - 1 internally; condition it on sigma(t) (and divide by sigma outside).
    "reflected_ddpmpp_cifar10": dict(
        arch="unet",
        in_channels=3,
        out_channels=3,
        nf=128,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks=8,
        attn_resolutions=(16,),
        image_size=32,
        dropout=0.1,
        resblock_type="biggan",
        fir=False,
        skip_rescale=True,
        progressive="none",
        progressive_input="residual",
        progressive_combine="sum",
        embedding_type="fourier",
        fourier_scale=16.0,
        init_scale=0.0,
        resamp_with_conv=True,
        center_input=True,
    ),
    # VDPM CIFAR-10 class-conditional (v-diffusion-torch configs): hid 256, mult [1,1,1],
    # 3 blocks, attention at 16 and 8, dropout 0.2, one head; sinusoidal embedding of
    # 1000 t, scale-shift GroupNorm, class embedding added to the time embedding;
    # resampling inside residual blocks, zero-initialised output convs. The reference's
    # null label 0 corresponds to sdekit's null index num_classes = 10.
    "vdpm_cifar10": dict(
        arch="unet",
        in_channels=3,
        out_channels=3,
        nf=256,
        ch_mult=(1, 1, 1),
        num_res_blocks=3,
        attn_resolutions=(16, 8),
        image_size=32,
        dropout=0.2,
        resblock_type="biggan",
        fir=False,
        skip_rescale=False,
        progressive="none",
        progressive_input="none",
        embedding_type="positional",
        time_scale=1000.0,
        init_scale=0.0,
        resamp_with_conv=True,
        num_classes=10,
        num_heads=1,
        scale_shift_norm=True,
    ),
    # A small MNIST net (28x28 or 32x32, one channel). Positional embedding of 1000 t, so
    # t = 0 is allowed.
    "mnist_small": dict(
        arch="unet",
        in_channels=1,
        out_channels=1,
        nf=32,
        ch_mult=(1, 2, 2),
        num_res_blocks=2,
        attn_resolutions=(16,),
        image_size=32,
        dropout=0.1,
        resblock_type="biggan",
        fir=False,
        skip_rescale=True,
        progressive="none",
        progressive_input="none",
        embedding_type="positional",
        time_scale=1000.0,
        init_scale=0.0,
        resamp_with_conv=True,
    ),
    # A very small, fast net for tests and CPU smoke runs (8x8 .. 32x32 images).
    "tiny": dict(
        arch="unet",
        in_channels=3,
        out_channels=None,
        nf=16,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_at_lowest=True,
        image_size=16,
        dropout=0.1,
        resblock_type="biggan",
        fir=False,
        skip_rescale=True,
        progressive="none",
        progressive_input="none",
        embedding_type="positional",
        time_scale=1000.0,
        init_scale=0.0,
        resamp_with_conv=True,
    ),
    # A very small DiT for tests and CPU smoke runs.
    "dit_tiny": dict(
        arch="dit",
        in_channels=3,
        out_channels=None,
        patch_size=2,
        width=64,
        depth=2,
        num_heads=4,
        mlp_ratio=2.0,
    ),
    **EQUIVARIANT_CONFIGS,
}
"""Named configurations: ``name -> {"arch": "unet" | "dit", **constructor arguments}``.

Read by [`named_net`][sdekit.nets.named_net], which copies the entry, so adding an entry
registers a new name. ``attn_at_lowest=True`` (``tiny``) puts attention at the lowest
resolution of whatever ``image_size`` is used, unless ``attn_resolutions`` is overridden."""


def net_kwargs(name: str, **overrides: Any) -> tuple[type, dict]:
    """The class and constructor keyword arguments of a named configuration (with overrides)."""
    if name not in NET_CONFIGS:
        raise arg_error("name", name, "one of " + ", ".join(repr(k) for k in NET_CONFIGS))
    cfg = dict(NET_CONFIGS[name])
    arch = cfg.pop("arch", "unet")
    if arch not in _ARCHS:
        raise arg_error(f'NET_CONFIGS["{name}"]["arch"]', arch,
                        "one of " + ", ".join(repr(a) for a in _ARCHS))
    cls = _ARCHS[arch]
    attn_lowest = cfg.pop("attn_at_lowest", False)
    cfg.update(overrides)
    if attn_lowest and "attn_resolutions" not in overrides:
        levels = len(cfg["ch_mult"])
        cfg["attn_resolutions"] = (int(cfg["image_size"]) // 2 ** (levels - 1),)
    if "out_channels" in cfg and cfg["out_channels"] is None:
        cfg["out_channels"] = cfg["in_channels"]
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in overrides if k not in params or k in ("self", "key")]
    if unknown:
        raise arg_error(
            "overrides",
            unknown,
            f"keyword arguments of {cls.__name__}: "
            + ", ".join(k for k in params if k not in ("self", "key")),
        )
    return cls, cfg


def named_net(name: str, *, key: PRNGKeyArray, **overrides: Any) -> eqx.Module:
    """Build a network from [`NET_CONFIGS`][sdekit.nets.NET_CONFIGS] by name.

    **Arguments:**

    - `name`: ``"psld_cifar10"``, ``"psld_celeba64"``, ``"reflected_ddpmpp_cifar10"``,
      ``"vdpm_cifar10"``, ``"mnist_small"``, ``"tiny"`` or ``"dit_tiny"``.
    - `key`: PRNG key for the initialisation.
    - `**overrides`: constructor arguments replacing the named values (e.g.
      ``in_channels=1, image_size=8, compute_dtype="bfloat16"``).

    To count the parameters of a large configuration without allocating it, use
    ``count_parameters(eqx.filter_eval_shape(lambda k: named_net(name, key=k), key))``.
    """
    cls, cfg = net_kwargs(name, **overrides)
    return cls(key=key, **cfg)


def count_parameters(net: Any, *, trainable_only: bool = False) -> int:
    """Number of floating-point parameters (array leaves) of ``net``; works on real modules
    and on ``eqx.filter_eval_shape`` outputs. With ``trainable_only`` the frozen Fourier
    matrix of a ``fourier`` UNet is not counted."""

    def is_float(x):
        return isinstance(x, (jax.Array, jax.ShapeDtypeStruct, np.ndarray)) and jnp.issubdtype(
            x.dtype, jnp.inexact)

    total = sum(int(x.size) for x in jax.tree.leaves(net) if is_float(x))
    if trainable_only:
        frozen = [
            m.fourier_w
            for m in jax.tree.leaves(net, is_leaf=lambda m: isinstance(m, UNet))
            if isinstance(m, UNet) and m.fourier_w is not None
        ]
        total -= sum(int(w.size) for w in frozen)
    return total
