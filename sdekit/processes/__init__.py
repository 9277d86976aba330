"""Forward processes: drift, diffusion, reflection, prior and closed-form marginals.

What a new process family must and may implement is listed on the docs page "Writing a new
process".
"""

from ._affine import AbstractAffineGaussianProcess, AffineProcess
from ._base import AbstractGaussianProcess, AbstractProcess
from ._gaussian import EDM, VE, VP, SubVP
from ._heat_kernel import fold, heat_kernel_log_density, heat_kernel_score
from ._interpolant import PATHS, GVPSchedule, Interpolant, LinearInterpolantSchedule, sit_time
from ._linalg import stationary_covariance
from ._linear_sde import AbstractLinearSDE, LinearSDE
from ._logsnr import LogSNR
from ._phase_space import CLD, PSLD, AbstractPhaseSpaceSDE
from ._posterior import VARIANCES, log_coefficients, posterior_coefficients
from ._recipe import check_stationary, from_recipe, recipe_matrices
from ._reflected import AbstractClosedFormTransitionProcess, ReflectedMixture, ReflectedVE
from ._schedules import (
    AbstractLogSNRSchedule,
    AbstractSchedule,
    AbstractVPSchedule,
    CosineSchedule,
    EDMSchedule,
    GeometricSchedule,
    LinearBetaSchedule,
    LogSNRCosineSchedule,
    LogSNRLegacySchedule,
    LogSNRLinearSchedule,
    LogSNRSigmoidSchedule,
    SubVPSchedule,
    linear_beta,
    linear_beta_integral,
    linear_beta_integral_inverse,
)

__all__ = [
    "CLD", "EDM", "PATHS", "PSLD", "VARIANCES", "VE", "VP",
    "AbstractAffineGaussianProcess", "AbstractClosedFormTransitionProcess",
    "AbstractGaussianProcess", "AbstractLinearSDE", "AbstractLogSNRSchedule",
    "AbstractPhaseSpaceSDE", "AbstractProcess", "AbstractSchedule", "AbstractVPSchedule",
    "AffineProcess", "CosineSchedule", "EDMSchedule", "GVPSchedule", "GeometricSchedule",
    "Interpolant", "LinearBetaSchedule", "LinearInterpolantSchedule", "LinearSDE", "LogSNR",
    "LogSNRCosineSchedule", "LogSNRLegacySchedule", "LogSNRLinearSchedule",
    "LogSNRSigmoidSchedule", "ReflectedMixture", "ReflectedVE", "SubVP", "SubVPSchedule",
    "check_stationary", "fold", "from_recipe", "heat_kernel_log_density", "heat_kernel_score",
    "linear_beta", "linear_beta_integral", "linear_beta_integral_inverse",
    "log_coefficients", "posterior_coefficients", "recipe_matrices", "sit_time",
    "stationary_covariance",
]
