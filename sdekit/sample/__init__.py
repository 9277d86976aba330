"""Samplers: reverse SDE and probability-flow ODE (fixed-step and adaptive) behind ``sample``."""

from ._api import METHODS as METHODS, resolve_method as resolve_method, sample as sample
from ._base import (
    AbstractSampler as AbstractSampler,
    PredictionFn as PredictionFn,
    SampleResult as SampleResult,
)
from ._grids import time_grid as time_grid
from ._solvers import (
    ODE as ODE,
    AdaptiveODE as AdaptiveODE,
    AdaptiveSDE as AdaptiveSDE,
    EulerMaruyama as EulerMaruyama,
)
from ._sscs import SSCS as SSCS
from ._affine import AFFINE_GRIDS as AFFINE_GRIDS, sigma_to_time as sigma_to_time
from ._ancestral import (
    Ancestral as Ancestral,
    ancestral_step as ancestral_step,
    posterior_coefficients as posterior_coefficients,
)
from ._ddim import DDIM as DDIM, ddim_coefficients as ddim_coefficients, ddim_step as ddim_step
from ._dpm_solver import DPMSolverPP as DPMSolverPP
from ._edm import EDMSampler as EDMSampler
from ._guidance import ClassifierFreeGuidance as ClassifierFreeGuidance, drop_labels as drop_labels
from ._likelihood import (
    LikelihoodResult as LikelihoodResult,
    bits_per_dim as bits_per_dim,
    dequantize as dequantize,
    log_likelihood as log_likelihood,
)
from ._pc import PC as PC
