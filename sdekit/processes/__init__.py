"""Forward processes: drift, diffusion, reflection, prior and closed-form marginals."""

from ._affine import (
    AbstractAffineGaussianProcess as AbstractAffineGaussianProcess,
)
from ._affine import AffineProcess as AffineProcess
from ._base import (
    AbstractGaussianProcess as AbstractGaussianProcess,
)
from ._base import (
    AbstractProcess as AbstractProcess,
)
from ._gaussian import EDM as EDM
from ._gaussian import VE as VE
from ._gaussian import VP as VP
from ._gaussian import SubVP as SubVP
from ._heat_kernel import fold as fold
from ._heat_kernel import heat_kernel_log_density as heat_kernel_log_density
from ._heat_kernel import heat_kernel_score as heat_kernel_score
from ._interpolant import PATHS as PATHS
from ._interpolant import GVPSchedule as GVPSchedule
from ._interpolant import Interpolant as Interpolant
from ._interpolant import LinearInterpolantSchedule as LinearInterpolantSchedule
from ._interpolant import sit_time as sit_time
from ._linalg import stationary_covariance as stationary_covariance
from ._linear_sde import AbstractLinearSDE as AbstractLinearSDE
from ._linear_sde import LinearSDE as LinearSDE
from ._logsnr import LogSNR as LogSNR
from ._phase_space import CLD as CLD
from ._phase_space import PSLD as PSLD
from ._phase_space import AbstractPhaseSpaceSDE as AbstractPhaseSpaceSDE
from ._recipe import check_stationary as check_stationary
from ._recipe import from_recipe as from_recipe
from ._recipe import recipe_matrices as recipe_matrices
from ._reflected import (
    AbstractClosedFormTransitionProcess as AbstractClosedFormTransitionProcess,
)
from ._reflected import ReflectedMixture as ReflectedMixture
from ._reflected import ReflectedVE as ReflectedVE
from ._schedules import AbstractLogSNRSchedule as AbstractLogSNRSchedule
from ._schedules import AbstractSchedule as AbstractSchedule
from ._schedules import AbstractVPSchedule as AbstractVPSchedule
from ._schedules import CosineSchedule as CosineSchedule
from ._schedules import EDMSchedule as EDMSchedule
from ._schedules import GeometricSchedule as GeometricSchedule
from ._schedules import LinearBetaSchedule as LinearBetaSchedule
from ._schedules import LogSNRCosineSchedule as LogSNRCosineSchedule
from ._schedules import LogSNRLegacySchedule as LogSNRLegacySchedule
from ._schedules import LogSNRLinearSchedule as LogSNRLinearSchedule
from ._schedules import LogSNRSigmoidSchedule as LogSNRSigmoidSchedule
from ._schedules import SubVPSchedule as SubVPSchedule
from ._schedules import linear_beta as linear_beta
from ._schedules import linear_beta_integral as linear_beta_integral
from ._schedules import linear_beta_integral_inverse as linear_beta_integral_inverse
