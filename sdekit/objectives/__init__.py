"""Training objectives, called as ``loss(model, key, x0, cond=None) -> scalar``."""

from ._dsm import DSM as DSM
from ._dsm import WEIGHTINGS as WEIGHTINGS

# structure-preserving diffusion (issue 12)
from ._eqv_reg import EqvReg as EqvReg  # noqa: E402
from ._eqv_reg import ema_target as ema_target  # noqa: E402
from ._eqv_reg import raw_output as raw_output  # noqa: E402
from ._hsm import HSM as HSM
from ._hsm import AugmentedDSM as AugmentedDSM
from ._hsm import hsm_loss as hsm_loss
from ._interpolant import COMBOSTOC_MODES as COMBOSTOC_MODES
from ._interpolant import INTERPOLANT_PREDICTIONS as INTERPOLANT_PREDICTIONS
from ._interpolant import INTERPOLANT_WEIGHTINGS as INTERPOLANT_WEIGHTINGS
from ._interpolant import SINGULAR_EPS as SINGULAR_EPS
from ._interpolant import ComboStoc as ComboStoc
from ._interpolant import InterpolantLoss as InterpolantLoss
from ._interpolant import combostoc_times as combostoc_times
from ._interpolant import compensate as compensate
from ._interpolant import drift_var as drift_var
from ._interpolant import mode_shape as mode_shape
from ._interpolant import sit_eps as sit_eps
from ._interpolant import sit_interval as sit_interval
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
