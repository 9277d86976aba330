r"""Loss weightings $\lambda(t)$: one vocabulary for every objective.

A weighting is a module called as ``weighting(process, t, x) -> lambda`` with ``t`` already
aligned with ``x`` (see `sdekit._validate.broadcast_time`); the objective multiplies its
per-element squared error by it. Weightings that need the log-SNR, ``alpha`` or ``sigma``
declare the process family they need (``requires``) and an objective refuses a mismatch when
it is built.

| module | $\lambda(t)$ | shorthand |
| --- | --- | --- |
| [`Constant`][sdekit.objectives.Constant] | $1$ | ``"constant"``, ``None`` |
| [`SNR`][sdekit.objectives.SNR] | $e^{\lambda_{\mathrm{SNR}}(t)} = \alpha^2/\sigma^2$ | ``"snr"`` |
| [`TruncatedSNR`][sdekit.objectives.TruncatedSNR] | $\max(1, \mathrm{SNR})$ | ``"truncated_snr"`` |
| [`SNRPlusOne`][sdekit.objectives.SNRPlusOne] | $1 + \mathrm{SNR}$ | ``"snr_plus_one"`` |
| `MinSNR` | $\min(\mathrm{SNR}, \gamma)$ (Hang et al. 2023) | ``"min_snr"`` |
| [`Likelihood`][sdekit.objectives.Likelihood] | $g(t)^2$ (Song et al. 2021) | ``"likelihood"`` |
| `Karras` | $(s^2 + \sigma_d^2)/(s\,\sigma_d)^2$, $s = \sigma/\alpha$ (EDM) | ``"karras"`` |
| `NoiseVariance` | $\sigma(t)^2$ (reflected diffusion) | ``"sigma2"`` |
| `SiTVelocity` | $(g^2 / 2\sigma)^2$ (SiT's ``velocity``) | ``"velocity"`` (SiT) |
| `SiTLikelihood` | $g^2 / 2\sigma^2$ (SiT's ``likelihood``) | ``"likelihood"`` (SiT) |
| [`FunctionWeighting`][sdekit.objectives.FunctionWeighting] | any ``fn(t)`` | a callable |

The shorthand strings are per objective (each objective's own vocabulary of the original
code, e.g. SiT's ``"likelihood"`` is `SiTLikelihood`); the modules are the same everywhere.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array, Data
from .._validate import arg_error, check_real
from ..parameterisation import edm_weight
from ..processes import (
    AbstractAffineGaussianProcess,
    AbstractClosedFormTransitionProcess,
    AbstractProcess,
)


class AbstractWeighting(eqx.Module):
    """A loss weighting ``lambda(t)``: ``weighting(process, t, x)`` with ``t`` aligned with
    ``x``; ``requires`` is the process family it needs (a type or a tuple of types)."""

    requires: ClassVar[type | tuple[type, ...]] = AbstractProcess
    #: The shorthand names that resolve to this weighting (it compares equal to them).
    names: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def __call__(self, process: AbstractProcess, t: Array, x: Data) -> Array:
        """``lambda(t)``, broadcastable against ``x``."""

    def check_process(self, process: AbstractProcess) -> None:
        """Raise a clear error unless ``process`` has what this weighting needs."""
        if not isinstance(process, self.requires):
            kinds = self.requires if isinstance(self.requires, tuple) else (self.requires,)
            raise arg_error("weighting", self, "a weighting the process supports ("
                            f"{type(self).__name__} needs "
                            + " or ".join(k.__name__ for k in kinds)
                            + f"; got {type(process).__name__}): e.g. Constant() or Likelihood()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: Any) -> bool:
        """Equal to the same weighting (same parameters) and to its shorthand names."""
        if isinstance(other, str):
            return other in self.names
        return type(other) is type(self) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))


class Constant(AbstractWeighting):
    """``lambda = 1``."""

    names: ClassVar[tuple[str, ...]] = ("constant",)

    def __call__(self, process, t, x):
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))


class _AffineWeighting(AbstractWeighting):
    requires: ClassVar[type] = AbstractAffineGaussianProcess

    def _snr(self, process, t):
        return jnp.exp(process.logsnr(t))


class SNR(_AffineWeighting):
    """``lambda = alpha^2 / sigma^2 = exp(logsnr)``."""

    names: ClassVar[tuple[str, ...]] = ("snr",)

    def __call__(self, process, t, x):
        return self._snr(process, t)


class TruncatedSNR(_AffineWeighting):
    """``lambda = max(1, SNR)``."""

    names: ClassVar[tuple[str, ...]] = ("truncated_snr",)

    def __call__(self, process, t, x):
        return jnp.maximum(self._snr(process, t), 1.0)


class SNRPlusOne(_AffineWeighting):
    """``lambda = 1 + SNR``."""

    names: ClassVar[tuple[str, ...]] = ("snr_plus_one",)

    def __call__(self, process, t, x):
        return 1.0 + self._snr(process, t)


class MinSNR(_AffineWeighting):
    """``lambda = min(SNR, gamma)`` (Hang et al. 2023, "Efficient Diffusion Training via
    Min-SNR Weighting Strategy")."""

    gamma: float = 5.0
    names: ClassVar[tuple[str, ...]] = ("min_snr",)

    def __check_init__(self):
        check_real("min_snr_gamma", self.gamma, lo=0.0, lo_open=True)

    def __call__(self, process, t, x):
        return jnp.minimum(self._snr(process, t), self.gamma)

    def __repr__(self) -> str:
        return f"MinSNR(gamma={self.gamma})"


class Karras(_AffineWeighting):
    """EDM's ``(s^2 + sigma_data^2) / (s sigma_data)^2`` with ``s = sigma / alpha`` (Karras et
    al. 2022); use it on the data prediction (``target="x0"``)."""

    sigma_data: float = 0.5
    names: ClassVar[tuple[str, ...]] = ("karras",)

    def __check_init__(self):
        check_real("sigma_data", self.sigma_data, lo=0.0, lo_open=True)

    def __call__(self, process, t, x):
        return edm_weight(process.sigma(t) / process.alpha(t), self.sigma_data)

    def __repr__(self) -> str:
        return f"Karras(sigma_data={self.sigma_data})"


class Likelihood(AbstractWeighting):
    """``lambda = g(t)^2``: with a score target, the likelihood weighting of Song et al. (2021,
    "Maximum Likelihood Training of Score-Based Diffusion Models")."""

    names: ClassVar[tuple[str, ...]] = ("likelihood",)

    def __call__(self, process, t, x):
        return process.diffusion(t, x) ** 2


class NoiseVariance(AbstractWeighting):
    """``lambda = sigma(t)^2``, the variance of the transition's noise (``noise_scale``): the
    score-matching weight of reflected diffusion and of score_sde."""

    requires: ClassVar[tuple[type, ...]] = (AbstractAffineGaussianProcess,
                                            AbstractClosedFormTransitionProcess)
    names: ClassVar[tuple[str, ...]] = ("sigma2",)

    def __call__(self, process, t, x):
        return process.noise_scale(t) ** 2


class SiTVelocity(_AffineWeighting):
    """SiT's ``velocity`` weighting ``(drift_var / sigma)^2``, ``drift_var = g^2 / 2``."""

    names: ClassVar[tuple[str, ...]] = ("velocity",)

    def __call__(self, process, t, x):
        return (process.drift_var(t) / process.sigma(t)) ** 2


class SiTLikelihood(_AffineWeighting):
    """SiT's ``likelihood`` weighting ``drift_var / sigma^2``, ``drift_var = g^2 / 2``."""

    names: ClassVar[tuple[str, ...]] = ("likelihood",)

    def __call__(self, process, t, x):
        return process.drift_var(t) / process.sigma(t) ** 2


class FunctionWeighting(AbstractWeighting):
    """``lambda = fn(t)`` for any callable of the (aligned) time."""

    fn: Callable = eqx.field(static=True)

    def __call__(self, process, t, x):
        return jnp.asarray(self.fn(t))

    def __repr__(self) -> str:
        return f"FunctionWeighting({self.fn!r})"


def weighting(value: Any, shorthands: Mapping[Any, Callable[[], AbstractWeighting]], *,
              name: str = "weighting") -> AbstractWeighting:
    """The weighting module of ``value``: a module, a callable ``fn(t)``, or a shorthand of
    ``shorthands`` (an objective's own names)."""
    if isinstance(value, AbstractWeighting):
        return value
    if isinstance(value, (str, type(None))):
        if value in shorthands:
            return shorthands[value]()
        raise arg_error(name, value, "one of " + ", ".join(repr(k) for k in shorthands)
                        + ", an AbstractWeighting or a callable lambda(t)")
    if callable(value):
        return FunctionWeighting(value)
    raise arg_error(name, value, "one of " + ", ".join(repr(k) for k in shorthands)
                    + ", an AbstractWeighting or a callable lambda(t)")


__all__ = [
    "SNR",
    "AbstractWeighting",
    "Constant",
    "FunctionWeighting",
    "Karras",
    "Likelihood",
    "MinSNR",
    "NoiseVariance",
    "SNRPlusOne",
    "SiTLikelihood",
    "SiTVelocity",
    "TruncatedSNR",
    "weighting",
]
