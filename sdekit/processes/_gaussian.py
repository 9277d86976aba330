"""Named affine processes: VP, sub-VP, VE and EDM (score_sde, Karras et al.), each an affine
process built from its schedule (see ``_schedules.py``)."""

from __future__ import annotations

from typing import Any

import equinox as eqx

from .._custom_types import Array, Time
from .._validate import arg_error, check_choice, check_order, check_real, static_float
from ._affine import AbstractAffineGaussianProcess
from ._schedules import (
    AbstractVPSchedule,
    CosineSchedule,
    EDMSchedule,
    GeometricSchedule,
    LinearBetaSchedule,
    SubVPSchedule,
)

VP_SCHEDULES = ("linear", "cosine")


class VP(AbstractAffineGaussianProcess):
    """Variance-preserving SDE ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dW`` (Song et al., 2021).

    ``schedule="linear"``: ``beta(t) = beta_min + t (beta_max - beta_min)``, so
    ``alpha(t) = exp(-B(t)/2)`` with ``B(t) = int_0^t beta`` (a
    [`LinearBetaSchedule`][sdekit.processes.LinearBetaSchedule]).

    ``schedule="cosine"`` (Nichol & Dhariwal): ``alpha(t) = cos(phi(t)) / cos(phi(0))`` with
    ``phi(t) = pi/2 (t + s)/(1 + s)``, ``s = cosine_s`` (a
    [`CosineSchedule`][sdekit.processes.CosineSchedule]); ``beta(t) = pi/(1+s) tan(phi(t))``
    diverges at ``t = 1``, so its default ``t1`` is 0.999 and ``t1 < 1`` is required.

    In both cases ``sigma(t)^2 = 1 - alpha(t)^2`` and the prior is ``N(0, I)``. ``schedule`` may
    also be an [`AbstractVPSchedule`][sdekit.processes.AbstractVPSchedule] instance; the
    ``schedule`` attribute is always the schedule module.
    """

    schedule: AbstractVPSchedule
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(
        self,
        beta_min: Any = 0.1,
        beta_max: Any = 20.0,
        schedule: str | AbstractVPSchedule = "linear",
        cosine_s: Any = 0.008,
        t0: Any = 1e-5,
        t1: Any = None,
    ):
        check_real("cosine_s", cosine_s, lo=0.0)
        if isinstance(schedule, AbstractVPSchedule):
            self.schedule = schedule
        else:
            check_choice("schedule", schedule, VP_SCHEDULES)
            linear = LinearBetaSchedule(beta_min, beta_max)  # validates beta_min, beta_max
            self.schedule = linear if schedule == "linear" else CosineSchedule(cosine_s)
        if t1 is None:
            t1 = 0.999 if isinstance(self.schedule, CosineSchedule) else 1.0
        self.t0 = static_float("t0", t0)
        self.t1 = static_float("t1", t1)

    @property
    def beta_min(self) -> Any:
        """``beta_min`` of the linear schedule."""
        return _schedule_attr(self, LinearBetaSchedule, "beta_min")

    @property
    def beta_max(self) -> Any:
        """``beta_max`` of the linear schedule."""
        return _schedule_attr(self, LinearBetaSchedule, "beta_max")

    @property
    def cosine_s(self) -> Any:
        """The offset ``s`` of the cosine schedule."""
        return _schedule_attr(self, CosineSchedule, "s")

    def beta(self, t: Time) -> Array:
        """``beta(t)``."""
        return self.schedule.beta(t)

    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = int_0^t beta(s) ds = -2 log alpha(t)``."""
        return self.schedule.integrated_beta(t)


def _schedule_attr(process: Any, kind: type, name: str) -> Any:
    if not isinstance(process.schedule, kind):
        raise AttributeError(
            f"{type(process).__name__} with a {type(process.schedule).__name__} has no `{name}`."
        )
    return getattr(process.schedule, name)


class SubVP(AbstractAffineGaussianProcess):
    """Sub-VP SDE ``dx = -beta/2 x dt + sqrt(beta (1 - exp(-2 B(t)))) dW`` (Song et al., 2021).

    ``alpha = exp(-B/2)``, ``sigma = 1 - exp(-B)``, linear ``beta``; prior ``N(0, I)``
    (a [`SubVPSchedule`][sdekit.processes.SubVPSchedule]).
    """

    schedule: SubVPSchedule
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, beta_min: Any = 0.1, beta_max: Any = 20.0, t0: Any = 1e-5, t1: Any = 1.0):
        self.schedule = SubVPSchedule(beta_min, beta_max)
        self.t0 = static_float("t0", t0)
        self.t1 = static_float("t1", t1)

    @property
    def beta_min(self) -> Any:
        """``beta_min`` of the schedule."""
        return self.schedule.beta_min

    @property
    def beta_max(self) -> Any:
        """``beta_max`` of the schedule."""
        return self.schedule.beta_max

    def beta(self, t: Time) -> Array:
        """``beta(t)``."""
        return self.schedule.beta(t)

    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = int_0^t beta``."""
        return self.schedule.integrated_beta(t)


class VE(AbstractAffineGaussianProcess):
    """Variance-exploding SDE with a geometric sigma (Song et al., 2021).

    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, ``alpha = 1``, ``f = 0``,
    ``g^2 = d sigma^2 / dt = 2 sigma^2 log(sigma_max / sigma_min)`` (a
    [`GeometricSchedule`][sdekit.processes.GeometricSchedule]). As in score_sde, the state at
    ``t = 0`` already carries noise ``sigma_min``; the prior is ``N(0, sigma_max^2 I)``.
    """

    schedule: GeometricSchedule
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(
        self, sigma_min: Any = 0.01, sigma_max: Any = 50.0, t0: Any = 1e-5, t1: Any = 1.0
    ):
        self.schedule = GeometricSchedule(sigma_min, sigma_max)
        self.t0 = static_float("t0", t0)
        self.t1 = static_float("t1", t1)

    @property
    def sigma_min(self) -> Any:
        """``sigma(0)``."""
        return self.schedule.sigma_min

    @property
    def sigma_max(self) -> Any:
        """``sigma(1)``."""
        return self.schedule.sigma_max


class EDM(AbstractAffineGaussianProcess):
    """Karras et al. (2022): ``sigma(t) = t``, ``alpha = 1``, ``dx = sqrt(2t) dW`` (an
    [`EDMSchedule`][sdekit.processes.EDMSchedule]).

    Time is the noise level itself, so ``t0 = sigma_min`` and ``t1 = sigma_max`` by default;
    ``sigma_data`` is used by the preconditioning and the ``karras`` weighting.
    """

    schedule: EDMSchedule
    sigma_min: Any
    sigma_max: Any
    sigma_data: Any
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(
        self,
        sigma_min: Any = 0.002,
        sigma_max: Any = 80.0,
        sigma_data: Any = 0.5,
        t0: Any = None,
        t1: Any = None,
    ):
        self.schedule = EDMSchedule()
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.sigma_data = sigma_data
        self.t0 = _default_time("t0", t0, "sigma_min", sigma_min)
        self.t1 = _default_time("t1", t1, "sigma_max", sigma_max)

    def __check_init__(self):
        check_real("sigma_min", self.sigma_min, lo=0.0, lo_open=True)
        check_real("sigma_max", self.sigma_max, lo=0.0, lo_open=True)
        check_real("sigma_data", self.sigma_data, lo=0.0, lo_open=True)
        check_order("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)


def _default_time(name: str, value: Any, default_name: str, default: Any) -> float:
    if value is not None:
        return static_float(name, value)
    try:
        return static_float(default_name, default)
    except ValueError:
        raise arg_error(
            name, None, f"an explicit value when `{default_name}` is traced or not a scalar"
        ) from None


__all__ = ["EDM", "VE", "VP", "VP_SCHEDULES", "SubVP"]
