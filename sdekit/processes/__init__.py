"""Forward processes: drift, diffusion, reflection, prior and closed-form marginals."""

from ._base import (
    AbstractAffineGaussianProcess as AbstractAffineGaussianProcess,
    AbstractGaussianProcess as AbstractGaussianProcess,
    AbstractProcess as AbstractProcess,
)
from ._gaussian import EDM as EDM, VE as VE, VP as VP, SubVP as SubVP
from ._logsnr import LogSNR as LogSNR
from ._linear_sde import (
    CLD as CLD,
    PSLD as PSLD,
    AbstractLinearSDE as AbstractLinearSDE,
    AbstractPhaseSpaceSDE as AbstractPhaseSpaceSDE,
    LinearSDE as LinearSDE,
    check_stationary as check_stationary,
    from_recipe as from_recipe,
    recipe_matrices as recipe_matrices,
    stationary_covariance as stationary_covariance,
)
