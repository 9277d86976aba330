"""Variance-preserving diffusion parameterised by its log-SNR (VDPM; Kingma et al., Salimans & Ho).

The log-SNR ``lambda`` gives ``alpha^2 = sigmoid(lambda)``, ``sigma^2 = sigmoid(-lambda)`` and
four schedules ``lambda(t)`` (the ``LogSNR*Schedule`` modules in ``_schedules.py``).
Non-legacy schedules are truncated to ``[logsnr_min, logsnr_max]`` by an affine re-mapping of
``t``, so ``lambda(0) = logsnr_max`` and ``lambda(1) = logsnr_min`` exactly. The formulas are
written without cancellation, so float32 is accurate; under ``jax.enable_x64`` and float64 times
they agree with the reference to ~1e-12.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx

from .._validate import check_choice, check_order, check_real, static_float
from ._affine import AbstractAffineGaussianProcess
from ._schedules import (
    LOGSNR_SCHEDULES,
    AbstractLogSNRSchedule,
    LogSNRLegacySchedule,
    _TruncatedLogSNR,
    log1mexp,
)

SCHEDULES = tuple(LOGSNR_SCHEDULES)


class LogSNR(AbstractAffineGaussianProcess):
    """VP diffusion with a log-SNR schedule: ``linear``, ``sigmoid``, ``cosine`` or ``legacy``.

    - ``linear``: ``alpha^2`` linear in ``u``; ``lambda = logit(u)``.
    - ``sigmoid``: ``lambda(t) = logsnr_max - t (logsnr_max - logsnr_min)``.
    - ``cosine``: ``alpha = cos(pi u / 2)``; ``lambda = -2 log tan(pi u / 2)``.
    - ``legacy``: continuous DDPM linear-beta (1e-4 .. 0.02 over 1000 steps); ignores the range.

    ``u(t) = u_from + (u_to - u_from) t`` with ``u_from = g^{-1}(logsnr_max)``,
    ``u_to = g^{-1}(logsnr_min)``. ``schedule`` may also be an
    [`AbstractLogSNRSchedule`][sdekit.processes.AbstractLogSNRSchedule] instance; the
    ``schedule`` attribute is always the schedule module.
    """

    schedule: AbstractLogSNRSchedule
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(
        self,
        schedule: str | AbstractLogSNRSchedule = "cosine",
        logsnr_min: Any = -20.0,
        logsnr_max: Any = 20.0,
        t0: Any = 0.0,
        t1: Any = 1.0,
    ):
        check_real("logsnr_min", logsnr_min)
        check_real("logsnr_max", logsnr_max)
        check_order("logsnr_min", logsnr_min, "logsnr_max", logsnr_max)
        if isinstance(schedule, AbstractLogSNRSchedule):
            self.schedule = schedule
        else:
            check_choice("schedule", schedule, SCHEDULES)
            cls = LOGSNR_SCHEDULES[schedule]
            self.schedule = cls() if cls is LogSNRLegacySchedule else cls(logsnr_min, logsnr_max)
        self.t0 = static_float("t0", t0)
        self.t1 = static_float("t1", t1)

    @property
    def logsnr_min(self) -> Any:
        """``lambda(1)`` (the truncation's lower end)."""
        if isinstance(self.schedule, _TruncatedLogSNR):
            return self.schedule.logsnr_min
        return self.logsnr(1.0)

    @property
    def logsnr_max(self) -> Any:
        """``lambda(0)`` (the truncation's upper end)."""
        if isinstance(self.schedule, _TruncatedLogSNR):
            return self.schedule.logsnr_max
        return self.logsnr(0.0)


__all__ = ["SCHEDULES", "LogSNR", "log1mexp"]
