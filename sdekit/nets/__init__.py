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
from ._unet import DownLevel, MiddleLevel, UNet, UpLevel
from .equivariant import EquivariantUNet

__all__ = [
    "NET_CONFIGS",
    "AbstractLeanLayer",
    "AbstractNet",
    "DiT",
    "DownLevel",
    "ElementTimeEmbedding",
    "EquivariantUNet",
    "MiddleLevel",
    "UNet",
    "UpLevel",
    "count_parameters",
    "equivariant",
    "named_net",
    "net_kwargs",
    "with_lean_gradients",
]
