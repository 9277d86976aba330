"""Forward processes: drift, diffusion, reflection, prior and closed-form marginals."""

from ._base import (
    AbstractAffineGaussianProcess as AbstractAffineGaussianProcess,
    AbstractGaussianProcess as AbstractGaussianProcess,
    AbstractProcess as AbstractProcess,
)
from ._gaussian import EDM as EDM, VE as VE, VP as VP, SubVP as SubVP
from ._logsnr import LogSNR as LogSNR
