"""Training objectives, called as ``loss(model, key, x0, cond=None) -> scalar``."""

from ._dsm import DSM as DSM, WEIGHTINGS as WEIGHTINGS
from ._time import (
    AbstractTimeSampler as AbstractTimeSampler,
    LogNormalTime as LogNormalTime,
    StratifiedTime as StratifiedTime,
    UniformTime as UniformTime,
)
from ._hsm import AugmentedDSM as AugmentedDSM, HSM as HSM, hsm_loss as hsm_loss
