"""Training objectives, called as ``loss(model, key, x0, cond=None) -> scalar``."""

from ._dsm import DSM as DSM
from ._dsm import WEIGHTINGS as WEIGHTINGS
from ._hsm import HSM as HSM
from ._hsm import AugmentedDSM as AugmentedDSM
from ._hsm import hsm_loss as hsm_loss
from ._reflected import ConstrainedDSM as ConstrainedDSM
from ._reflected import SigmaScaledScore as SigmaScaledScore
from ._time import (
    AbstractTimeSampler as AbstractTimeSampler,
)
from ._time import (
    LogNormalTime as LogNormalTime,
)
from ._time import (
    StratifiedTime as StratifiedTime,
)
from ._time import (
    UniformTime as UniformTime,
)

# structure-preserving diffusion (issue 12)
from ._eqv_reg import EqvReg as EqvReg  # noqa: E402
from ._eqv_reg import ema_target as ema_target  # noqa: E402
from ._eqv_reg import raw_output as raw_output  # noqa: E402
