"""Networks: the NCSN++/DDPM++ UNet, DiT, C4/D4-equivariant UNets, and named configurations.

Every network follows sdekit's calling convention ``net(x, t, cond=None, *, key=None)`` with
batched NHWC ``x`` (see [`UNet`][sdekit.nets.UNet]); networks know nothing about SDEs. Model
wrappers (preconditioning, guidance, self-conditioning, symmetrisation) are in
[`sdekit.wrappers`](wrappers.md).
"""

from . import equivariant
from ._base import AbstractNet
from ._configs import NET_CONFIGS, count_parameters, named_net, net_kwargs
from ._dit import DiT
from ._layers import AbstractLeanLayer, with_lean_gradients
from ._sit_time import ElementTimeEmbedding
from ._torch import (
    TORCH_ARCHS,
    AbstractRuleArch,
    AbstractTorchArch,
    TensorSpec,
    TorchRule,
    from_torch,
    register_torch_arch,
    to_torch_state_dict,
)
from ._unet import DownLevel, MiddleLevel, UNet, UpLevel
from ._vae import AutoencoderKL, LatentPosteriorSample, encode_images
from .equivariant import EquivariantUNet

__all__ = [
    "NET_CONFIGS",
    "TORCH_ARCHS",
    "AbstractLeanLayer",
    "AbstractNet",
    "AbstractRuleArch",
    "AbstractTorchArch",
    "AutoencoderKL",
    "DiT",
    "DownLevel",
    "ElementTimeEmbedding",
    "EquivariantUNet",
    "LatentPosteriorSample",
    "MiddleLevel",
    "TensorSpec",
    "TorchRule",
    "UNet",
    "UpLevel",
    "count_parameters",
    "encode_images",
    "equivariant",
    "from_torch",
    "named_net",
    "net_kwargs",
    "register_torch_arch",
    "to_torch_state_dict",
    "with_lean_gradients",
]
