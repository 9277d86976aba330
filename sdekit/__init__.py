"""sdekit: continuous-time diffusion generative models in JAX."""

from importlib.metadata import PackageNotFoundError, version

from . import processes as processes
from .processes import (
    EDM as EDM,
    VE as VE,
    VP as VP,
    AbstractAffineGaussianProcess as AbstractAffineGaussianProcess,
    AbstractGaussianProcess as AbstractGaussianProcess,
    AbstractProcess as AbstractProcess,
    LogSNR as LogSNR,
    SubVP as SubVP,
)

try:
    __version__ = version("sdekit")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"
