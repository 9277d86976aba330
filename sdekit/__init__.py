"""sdekit: continuous-time diffusion generative models in JAX.

Processes are re-exported here; the subpackages are ``sdekit.processes``,
``sdekit.parameterisation``, ``sdekit.objectives``, ``sdekit.sample``, ``sdekit.nets``,
``sdekit.train`` and ``sdekit.data``.
"""

from importlib.metadata import PackageNotFoundError, version

from . import (
    data as data,
    nets as nets,
    objectives as objectives,
    parameterisation as parameterisation,
    processes as processes,
    sample as sample,
    train as train,
)
from .processes import (
    CLD as CLD,
    EDM as EDM,
    PSLD as PSLD,
    VE as VE,
    VP as VP,
    AbstractAffineGaussianProcess as AbstractAffineGaussianProcess,
    AbstractGaussianProcess as AbstractGaussianProcess,
    AbstractLinearSDE as AbstractLinearSDE,
    AbstractProcess as AbstractProcess,
    LinearSDE as LinearSDE,
    LogSNR as LogSNR,
    SubVP as SubVP,
)

try:
    __version__ = version("sdekit")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"
