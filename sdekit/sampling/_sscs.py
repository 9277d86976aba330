"""Symmetric splitting for linear augmented SDEs (SSCS; Dockhorn et al. 2022, PSLD's ``sscs_sde``).

For a linear SDE ``dz = beta F z dt + sqrt(beta) G dW`` with stationary covariance
``Sigma_inf``, the reverse-time drift ``-beta F z + beta G G^T s`` splits into

- ``A(z) = beta F_A z`` with ``F_A = -F - G G^T Sigma_inf^{-1}``: together with the full noise
  ``sqrt(beta) G dW`` this is a linear SDE whose kernel is known in closed form
  (for PSLD, ``F_A = P F P`` with ``P = diag(1, -1)``: the forward kernel with the sign of ``m``
  flipped);
- ``S(z) = beta G G^T (s(z, t) + Sigma_inf^{-1} z)``: the score part, which vanishes when ``s`` is
  the stationary score.

One step from ``t`` to ``t - h``: an exact ``A``-flow over the first half interval, one Euler step
``z += h S(z, t)`` (one network call), an exact ``A``-flow over the second half interval with
fresh noise. The half intervals are measured in integrated time:
``b_1 = B(t) - B(t - h/2)`` and ``b_2 = B(t - h/2) - B(t - h)``. (The reference code uses
``b_1`` for both halves, which differs only for a time-varying ``beta``; this implementation uses
the correct ``b_2``.) **NFE** = ``num_steps``; with ``sample(..., t_end=1e-3, denoise="euler")``
and ``num_steps = n - 1`` it is PSLD's ``n``-step sampler (``n`` NFE).
"""

from __future__ import annotations

from typing import ClassVar

import jax.random as jr

from .._custom_types import Array, Data, Key
from ..processes import AbstractLinearSDE
from ._base import PredictionFn
from ._loop import AbstractFixedStepSampler


class SSCS(AbstractFixedStepSampler):
    """Symmetric splitting sampler for `sdekit.processes.AbstractLinearSDE` processes
    (PSLD, CLD, ``LinearSDE``) on a fixed ``uniform``, ``quadratic`` or ``karras`` grid or an
    explicit array of ``num_steps + 1`` times."""

    num_steps: int | None = None
    grid: str | Array = "uniform"
    ode: ClassVar[bool] = False
    order: ClassVar[float] = 1.0
    requires: ClassVar[type] = AbstractLinearSDE
    default_steps: ClassVar[int] = 1000

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        return self.split_step(key, fn, z, t, t - t_next), memory

    def split_step(self, key: Key, fn: PredictionFn, z: Data, t, h) -> Data:
        """One SSCS step from forward time ``t`` to ``t - h`` (scalars)."""
        p = fn.process
        k1, k2 = jr.split(key)
        B = p.integrated_beta
        b1 = B(t) - B(t - 0.5 * h)
        b2 = B(t - 0.5 * h) - B(t - h)
        z = p.split_flow_sample(k1, z, b1)
        s = fn.score(z, t)
        z = z + h * p.split_score_drift(t, z, s)
        z = p.split_flow_sample(k2, z, b2)
        return p.reflect(z)


__all__ = ["SSCS"]
