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
