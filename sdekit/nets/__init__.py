"""Networks: the NCSN++/DDPM++ UNet, DiT, self-conditioning, and named configurations.

Every network follows sdekit's calling convention ``net(x, t, cond=None, *, key=None)`` with
batched NHWC ``x`` (see [`UNet`][sdekit.nets.UNet]); networks know nothing about SDEs.
"""

from ._configs import NET_CONFIGS as NET_CONFIGS
from ._configs import count_parameters as count_parameters
from ._configs import named_net as named_net
from ._configs import net_kwargs as net_kwargs
from ._dit import DiT as DiT
from ._sit_time import ElementTimeEmbedding as ElementTimeEmbedding
from ._unet import UNet as UNet
from ._wrappers import SelfConditioning as SelfConditioning
from ._wrappers import self_conditioning_forward as self_conditioning_forward
