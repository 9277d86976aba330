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
