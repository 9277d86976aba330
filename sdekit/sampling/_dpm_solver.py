"""DPM-Solver++(2M) (Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast Solver for Guided
Sampling of Diffusion Probabilistic Models", Algorithm 2) for any affine Gaussian process.

A multistep second-order solver of the probability-flow ODE in ``lambda = log(alpha / sigma)``
(half the log-SNR) with data predictions ``x0``. With ``h_i = lambda_i - lambda_{i-1}`` and
``r_i = h_{i-1} / h_i``:

``x_i = (sigma_i / sigma_{i-1}) x_{i-1} - alpha_i expm1(-h_i) D_i``,
``D_i = (1 + 1/(2 r_i)) x0_{i-1} - 1/(2 r_i) x0_{i-2}`` (``D_1 = x0_0``: the first step is
first order, i.e. DDIM).
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from .._custom_types import ArrayLike, Data, Key
from ._affine import AbstractAffineSampler, DynamicThreshold, _clip_or_none, check_sigma_range
from ._base import PredictionFn
from ._grids import AbstractGrid


class DPMSolverPP(AbstractAffineSampler):
    """DPM-Solver++(2M): multistep, second order, one model call per step, any affine process.

    ``grid``: ``logsnr`` (uniform in log-SNR, the paper's choice for small images), ``edm``,
    ``uniform``, ``quadratic``, ``karras`` or an explicit array of ``num_steps + 1`` times. The
    ``logsnr`` and ``edm`` grids span the noise levels ``sigma/alpha`` from
    ``min(sigma~(t1), sigma_max)`` to ``max(sigma~(t_end), sigma_min)`` (EDM's 80 and 0.002 by
    default, clipped to the process's range). The data predictions can be clipped
    (``clip_x0``: a value or a `DynamicThreshold`). It stops at the grid's last time and
    ``sample`` applies the final denoising. **NFE** = ``num_steps``.
    """

    num_steps: int | None = None
    grid: str | AbstractGrid | ArrayLike = "logsnr"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    clip_x0: float | DynamicThreshold | None = None
    ode: ClassVar[bool] = True
    order: ClassVar[float] = 2.0
    default_steps: ClassVar[int] = 20

    def __check_init__(self):
        check_sigma_range(self.sigma_min, self.sigma_max)

    def sigma_limits(self):
        return _clip_or_none(self.sigma_min, True), _clip_or_none(self.sigma_max, False)

    def init(self, fn: PredictionFn, z: Data, t):
        """``(x0_prev, h_prev, started)``: the previous data prediction and log-SNR step."""
        return jnp.zeros_like(z), jnp.ones((), z.dtype), jnp.asarray(False)

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        p = fn.process
        x0_prev, h_prev, started = memory
        x0 = self.x0(fn, z, t)
        h = (0.5 * (p.logsnr(t_next) - p.logsnr(t))).astype(z.dtype)
        c = 0.5 * h / h_prev  # 1 / (2 r)
        d = jnp.where(started, (1.0 + c) * x0 - c * x0_prev, x0)  # first step: DDIM
        ratio = jnp.exp(jnp.log(p.sigma(t_next)) - jnp.log(p.sigma(t)))
        z = ratio * z - p.alpha(t_next) * jnp.expm1(-h) * d
        return z, (x0, h, jnp.asarray(True))


__all__ = ["DPMSolverPP"]
