"""Samplers: reverse SDE and probability-flow ODE (fixed-step and adaptive) behind ``sample``."""

from ._affine import AFFINE_GRIDS as AFFINE_GRIDS
from ._affine import AbstractAffineSampler as AbstractAffineSampler
from ._affine import DynamicThreshold as DynamicThreshold
from ._affine import sigma_to_time as sigma_to_time
from ._ancestral import (
    Ancestral as Ancestral,
)
from ._ancestral import (
    ancestral_step as ancestral_step,
)
from ._ancestral import (
    posterior_coefficients as posterior_coefficients,
)
from ._api import METHODS as METHODS
from ._api import resolve_method as resolve_method
from ._api import sample as sample
from ._async import AsyncSchedule as AsyncSchedule
from ._async import sample_async as sample_async
from ._base import (
    AbstractSampler as AbstractSampler,
)
from ._base import (
    PredictionFn as PredictionFn,
)
from ._base import (
    SampleResult as SampleResult,
)
from ._base import SolveStats as SolveStats
from ._brownian import GridBrownianPath as GridBrownianPath
from ._ddim import DDIM as DDIM
from ._ddim import ddim_coefficients as ddim_coefficients
from ._ddim import ddim_step as ddim_step
from ._dpm_solver import DPMSolverPP as DPMSolverPP
from ._edm import EDMSampler as EDMSampler
from ._grids import time_grid as time_grid
from ._guidance import ClassifierFreeGuidance as ClassifierFreeGuidance
from ._guidance import drop_labels as drop_labels
from ._interpolant import DIFFUSION_FORMS as DIFFUSION_FORMS
from ._interpolant import LAST_STEPS as LAST_STEPS
from ._interpolant import InterpolantSDE as InterpolantSDE
from ._interpolant import diffusion_coefficient as diffusion_coefficient
from ._interpolant import velocity_and_score as velocity_and_score
from ._likelihood import (
    LikelihoodResult as LikelihoodResult,
)
from ._likelihood import (
    bits_per_dim as bits_per_dim,
)
from ._likelihood import (
    dequantize as dequantize,
)
from ._likelihood import (
    log_likelihood as log_likelihood,
)
from ._likelihood_augmented import (
    AugmentedLikelihoodResult as AugmentedLikelihoodResult,
)
from ._likelihood_augmented import (
    augmented_log_likelihood as augmented_log_likelihood,
)
from ._loop import AbstractFixedStepSampler as AbstractFixedStepSampler
from ._loop import Reflecting as Reflecting
from ._pc import PC as PC
from ._reflected import ReflectedODE as ReflectedODE
from ._reflected import ReflectedPC as ReflectedPC
from ._reflected import mollifier as mollifier
from ._solvers import (
    ODE as ODE,
)
from ._solvers import (
    AdaptiveODE as AdaptiveODE,
)
from ._solvers import (
    AdaptiveSDE as AdaptiveSDE,
)
from ._solvers import (
    EulerMaruyama as EulerMaruyama,
)
from ._sscs import SSCS as SSCS
