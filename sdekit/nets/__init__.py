"""Networks: the NCSN++/DDPM++ UNet, DiT, self-conditioning, and named configurations.

Every network follows sdekit's calling convention ``net(x, t, cond=None, *, key=None)`` with
batched NHWC ``x`` (see [`UNet`][sdekit.nets.UNet]); networks know nothing about SDEs.
"""

# structure-preserving diffusion (issue 12): equivariant networks; importing the subpackage
# registers its named configurations in NET_CONFIGS.
from . import equivariant as equivariant  # noqa: E402
from ._configs import NET_CONFIGS as NET_CONFIGS
from ._configs import count_parameters as count_parameters
from ._configs import named_net as named_net
from ._configs import net_kwargs as net_kwargs
from ._dit import DiT as DiT
from ._layers import lean_gradients as lean_gradients
from ._sit_time import ElementTimeEmbedding as ElementTimeEmbedding
from ._torch import TORCH_ARCHS as TORCH_ARCHS
from ._torch import AbstractRuleArch as AbstractRuleArch
from ._torch import AbstractTorchArch as AbstractTorchArch
from ._torch import TensorSpec as TensorSpec
from ._torch import TorchRule as TorchRule
from ._torch import from_torch as from_torch
from ._torch import register_torch_arch as register_torch_arch
from ._torch import to_torch_state_dict as to_torch_state_dict
from ._unet import DownLevel as DownLevel
from ._unet import MiddleLevel as MiddleLevel
from ._unet import UNet as UNet
from ._unet import UpLevel as UpLevel
from ._wrappers import SelfConditioning as SelfConditioning
from ._wrappers import self_conditioning_forward as self_conditioning_forward
from .equivariant import EquivariantUNet as EquivariantUNet  # noqa: E402
from .equivariant import symmetrise as symmetrise  # noqa: E402
