"""Loading the original PyTorch networks' weights into sdekit networks and writing them back.

See [`from_torch`][sdekit.nets.from_torch], [`to_torch_state_dict`][sdekit.nets.to_torch_state_dict]
and, to add an architecture, [`AbstractTorchArch`][sdekit.nets.AbstractTorchArch].
"""

from ._api import TORCH_ARCHS as TORCH_ARCHS
from ._api import from_torch as from_torch
from ._api import from_torch_both as from_torch_both
from ._api import get_torch_arch as get_torch_arch
from ._api import load_torch_weights as load_torch_weights
from ._api import register_torch_arch as register_torch_arch
from ._api import to_torch_state_dict as to_torch_state_dict
from ._arch import KINDS as KINDS
from ._arch import AbstractRuleArch as AbstractRuleArch
from ._arch import AbstractTorchArch as AbstractTorchArch
from ._arch import TensorSpec as TensorSpec
from ._arch import TorchRule as TorchRule
from ._arch import conv_to_hwio as conv_to_hwio
from ._arch import conv_to_oihw as conv_to_oihw
from ._arch import identity as identity
from ._arch import linear_to_io as linear_to_io
from ._arch import linear_to_oi as linear_to_oi
from ._group_diffusion import GroupDiffusionUNet as GroupDiffusionUNet
from ._ncsnpp import PSLDNCSNpp as PSLDNCSNpp
from ._ncsnpp import ReflectedNCSNpp as ReflectedNCSNpp
from ._sd_vae import SDVAEArch as SDVAEArch
from ._sit import SiTArch as SiTArch
from ._vdpm import VDPMUNet as VDPMUNet

register_torch_arch(PSLDNCSNpp())
register_torch_arch(ReflectedNCSNpp())
register_torch_arch(VDPMUNet())
register_torch_arch(GroupDiffusionUNet())
register_torch_arch(SiTArch())
register_torch_arch(SDVAEArch())
