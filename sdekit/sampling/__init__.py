"""Samplers: one entry point, [`sample`][sdekit.sampling.sample], and the methods it runs
(fixed-step samplers on one shared loop, adaptive diffrax solvers), sampling-time conditions,
and the probability-flow likelihood."""

from ._affine import AbstractAffineSampler, DynamicThreshold, sigma_to_time
from ._ancestral import Ancestral, ancestral_step
from ._api import METHODS, resolve_method, sample
from ._async import AsyncGeneration, AsyncSchedule
from ._base import AbstractSampler, PredictionFn, SampleResult, SolveStats
from ._brownian import GridBrownianPath
from ._conditions import AbstractCondition
from ._ddim import DDIM, ddim_coefficients, ddim_step
from ._dpm_solver import DPMSolverPP
from ._edm import EDMSampler
from ._grids import (
    AbstractGrid,
    EDMGrid,
    KarrasGrid,
    LogSNRGrid,
    QuadraticGrid,
    UniformGrid,
    affine_grid,
    time_grid,
)
from ._interpolant import (
    DIFFUSION_FORMS,
    LAST_STEPS,
    InterpolantSDE,
    SiTGrid,
    diffusion_coefficient,
    velocity_and_score,
)
from ._likelihood import (
    LikelihoodOptions,
    LikelihoodResult,
    bits_per_dim,
    dequantize,
    log_likelihood,
)
from ._likelihood_augmented import AugmentedLikelihoodResult, augmented_log_likelihood
from ._loop import AbstractFixedStepSampler, Reflecting
from ._pc import PC
from ._reflected import ReflectedODE, ReflectedPC, mollifier
from ._solvers import ODE, AdaptiveODE, AdaptiveSDE, EulerMaruyama
from ._sscs import SSCS

__all__ = [
    "DIFFUSION_FORMS", "LAST_STEPS", "METHODS", "ODE", "PC", "SSCS", "AbstractAffineSampler",
    "AbstractCondition", "AbstractFixedStepSampler", "AbstractGrid", "AbstractSampler",
    "AdaptiveODE", "AdaptiveSDE", "Ancestral", "AsyncGeneration", "AsyncSchedule",
    "AugmentedLikelihoodResult", "DDIM", "DPMSolverPP", "DynamicThreshold", "EDMGrid",
    "EDMSampler", "EulerMaruyama", "GridBrownianPath", "InterpolantSDE", "KarrasGrid",
    "LikelihoodOptions", "LikelihoodResult", "LogSNRGrid", "PredictionFn", "QuadraticGrid",
    "Reflecting", "ReflectedODE", "ReflectedPC", "SampleResult", "SiTGrid", "SolveStats",
    "UniformGrid", "affine_grid", "ancestral_step", "augmented_log_likelihood",
    "bits_per_dim", "ddim_coefficients", "ddim_step", "dequantize", "diffusion_coefficient",
    "log_likelihood", "mollifier", "resolve_method", "sample", "sigma_to_time", "time_grid",
    "velocity_and_score",
]
