r"""Training objectives: every one an [`AbstractObjective`][sdekit.objectives.AbstractObjective]
called as ``loss(model, key, x0, cond=None, *, aux=None) -> scalar``."""

from ._base import AbstractObjective
from ._dsm import DSM, WEIGHTINGS
from ._eqv_reg import EqvReg, ema_target, raw_output
from ._hsm import HSM, AugmentedDSM, hsm_loss
from ._interpolant import (
    COMBOSTOC_MODES,
    INTERPOLANT_PREDICTIONS,
    INTERPOLANT_WEIGHTINGS,
    ComboStoc,
    InterpolantLoss,
    combostoc_times,
    compensate,
    drift_var,
    mode_shape,
    sit_eps,
    sit_interval,
)
from ._labels import LabelDropout, drop_labels
from ._reflected import CONSTRAINED_WEIGHTINGS, REDUCTIONS, ConstrainedDSM
from ._time import AbstractTimeSampler, DiscreteTime, LogNormalTime, StratifiedTime, UniformTime
from ._vlb import (
    VLB,
    approx_std_normal_cdf,
    discretized_gaussian_nll_bpd,
    gaussian_kl_bpd,
    vlb_terms,
)
from ._weighting import (
    SNR,
    AbstractWeighting,
    Constant,
    FunctionWeighting,
    Karras,
    Likelihood,
    MinSNR,
    NoiseVariance,
    SiTLikelihood,
    SiTVelocity,
    SNRPlusOne,
    TruncatedSNR,
)

__all__ = [
    "AbstractObjective", "AbstractTimeSampler", "AbstractWeighting", "AugmentedDSM",
    "COMBOSTOC_MODES", "CONSTRAINED_WEIGHTINGS", "ComboStoc", "Constant", "ConstrainedDSM",
    "DSM", "DiscreteTime", "EqvReg", "FunctionWeighting", "HSM", "INTERPOLANT_PREDICTIONS",
    "INTERPOLANT_WEIGHTINGS", "InterpolantLoss", "Karras", "LabelDropout", "Likelihood",
    "LogNormalTime", "MinSNR", "NoiseVariance", "REDUCTIONS", "SNR", "SNRPlusOne",
    "SiTLikelihood", "SiTVelocity", "StratifiedTime", "TruncatedSNR", "UniformTime", "VLB",
    "WEIGHTINGS", "approx_std_normal_cdf", "combostoc_times", "compensate",
    "discretized_gaussian_nll_bpd", "drift_var", "drop_labels", "ema_target",
    "gaussian_kl_bpd", "hsm_loss", "mode_shape", "raw_output", "sit_eps", "sit_interval",
    "vlb_terms",
]
