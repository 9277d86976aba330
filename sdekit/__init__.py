"""sdekit: continuous-time diffusion generative models in JAX.

Processes are re-exported here; the subpackages are ``sdekit.processes``,
``sdekit.parameterisation``, ``sdekit.objectives``, ``sdekit.sampling``, ``sdekit.nets``,
``sdekit.train``, ``sdekit.data`` and ``sdekit.metrics``.
"""

# First, before anything could initialise a JAX backend: may append the XLA:CPU convolution
# flag to XLA_FLAGS (see sdekit.perf; opt out with SDEKIT_XLA_CPU_FLAGS=0).
from . import perf as perf

# isort: split
from importlib.metadata import PackageNotFoundError, version

from . import (
    data as data,
)
from . import (
    io as io,
)
from . import (
    metrics as metrics,
)
from . import (
    nets as nets,
)
from . import (
    objectives as objectives,
)
from . import (
    parameterisation as parameterisation,
)
from . import (
    processes as processes,
)
from . import (
    sampling as sampling,
)
from . import (
    train as train,
)
from .processes import (
    CLD as CLD,
)
from .processes import (
    EDM as EDM,
)
from .processes import (
    PSLD as PSLD,
)
from .processes import (
    VE as VE,
)
from .processes import (
    VP as VP,
)
from .processes import (
    AbstractAffineGaussianProcess as AbstractAffineGaussianProcess,
)
from .processes import (
    AbstractClosedFormTransitionProcess as AbstractClosedFormTransitionProcess,
)
from .processes import (
    AbstractGaussianProcess as AbstractGaussianProcess,
)
from .processes import (
    AbstractLinearSDE as AbstractLinearSDE,
)
from .processes import (
    AbstractProcess as AbstractProcess,
)
from .processes import (
    Interpolant as Interpolant,
)
from .processes import (
    LinearSDE as LinearSDE,
)
from .processes import (
    LogSNR as LogSNR,
)
from .processes import (
    ReflectedVE as ReflectedVE,
)
from .processes import (
    SubVP as SubVP,
)
from .sampling import log_likelihood as log_likelihood
from .sampling import sample as sample

try:
    __version__ = version("sdekit")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"
