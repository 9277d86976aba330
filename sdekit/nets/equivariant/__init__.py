"""Group-equivariant networks for structure-preserving diffusion (C2, C4, D2, D4, flips).

Three ways to an equivariant denoiser (see the docs' page on structure-preserving diffusion): an
equivariant architecture ([`EquivariantUNet`][sdekit.nets.equivariant.EquivariantUNet], with
regular-field group convolutions or the paper's invariant kernels, or
[`SteerableConv`][sdekit.nets.equivariant.SteerableConv] with a stored steerable basis),
[`symmetrise`][sdekit.wrappers.symmetrise] (any network, exact, ``|G|`` evaluations),
or the approximate ``eqv_reg`` training loss ([`EqvReg`][sdekit.objectives.EqvReg]).
"""

from ._configs import EQUIVARIANT_CONFIGS as EQUIVARIANT_CONFIGS
from ._groups import GROUPS as GROUPS
from ._groups import Group as Group
from ._groups import get_group as get_group
from ._layers import REPS as REPS
from ._layers import FieldNorm as FieldNorm
from ._layers import FiLM as FiLM
from ._layers import GroupAttention as GroupAttention
from ._layers import GroupConv as GroupConv
from ._layers import avg_pool2 as avg_pool2
from ._layers import group_pool as group_pool
from ._layers import nearest_up2 as nearest_up2
from ._layers import rep_size as rep_size
from ._steerable import SHIPPED_BASES as SHIPPED_BASES
from ._steerable import SteerableConv as SteerableConv
from ._steerable import act_filter as act_filter
from ._steerable import basis_key as basis_key
from ._steerable import load_bases as load_bases
from ._steerable import reynolds_basis as reynolds_basis
from ._symmetrise import equivariance_error as equivariance_error
from ._unet import KINDS as KINDS
from ._unet import EquivariantUNet as EquivariantUNet

__all__ = [
    "EQUIVARIANT_CONFIGS",
    "EquivariantUNet",
    "FiLM",
    "FieldNorm",
    "GROUPS",
    "Group",
    "GroupAttention",
    "GroupConv",
    "KINDS",
    "REPS",
    "SHIPPED_BASES",
    "SteerableConv",
    "act_filter",
    "avg_pool2",
    "basis_key",
    "equivariance_error",
    "get_group",
    "group_pool",
    "load_bases",
    "nearest_up2",
    "rep_size",
    "reynolds_basis",
]
