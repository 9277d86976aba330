"""sdekit: continuous-time diffusion generative models in JAX.

The forward processes and the two entry points `sample` and `log_likelihood` are re-exported
here; the subpackages are `sdekit.processes`, `sdekit.parameterisation`, `sdekit.wrappers`,
`sdekit.objectives`, `sdekit.sampling`, `sdekit.nets`, `sdekit.train`, `sdekit.data`,
`sdekit.metrics`, `sdekit.io` and `sdekit.perf`. Importing sdekit changes nothing in the process
(no environment variable, no file, no JAX setting); `sdekit.perf.configure()` applies the
performance settings explicitly.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from . import (
    data,
    io,
    metrics,
    nets,
    objectives,
    parameterisation,
    perf,
    processes,
    sampling,
    train,
    wrappers,
)
from .processes import (
    CLD,
    EDM,
    PSLD,
    VE,
    VP,
    AbstractAffineGaussianProcess,
    AbstractClosedFormTransitionProcess,
    AbstractGaussianProcess,
    AbstractLinearSDE,
    AbstractProcess,
    Interpolant,
    LinearSDE,
    LogSNR,
    ReflectedVE,
    SubVP,
)
from .sampling import log_likelihood, sample

try:
    __version__ = _version("sdekit")
except _PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = [
    "CLD",
    "EDM",
    "PSLD",
    "VE",
    "VP",
    "AbstractAffineGaussianProcess",
    "AbstractClosedFormTransitionProcess",
    "AbstractGaussianProcess",
    "AbstractLinearSDE",
    "AbstractProcess",
    "Interpolant",
    "LinearSDE",
    "LogSNR",
    "ReflectedVE",
    "SubVP",
    "data",
    "io",
    "log_likelihood",
    "metrics",
    "nets",
    "objectives",
    "parameterisation",
    "perf",
    "processes",
    "sample",
    "sampling",
    "train",
    "wrappers",
]
