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

import jax
import jax.numpy as jnp

from .._custom_types import Data, Key
from .._errors import check_choice
from ..processes import AbstractProcess
from ._affine import AFFINE_GRIDS, affine_grid, check_steps, require_affine
from ._base import AbstractSampler, PredictionFn


class DPMSolverPP(AbstractSampler):
    """DPM-Solver++(2M): multistep, second order, one model call per step, any affine process.

    ``grid``: ``logsnr`` (uniform in log-SNR, the paper's choice for small images), ``edm``,
    ``uniform``, ``quadratic`` or ``karras``. It stops at ``t_end`` and ``sample`` applies the
    final denoising. **NFE** = ``num_steps``.
    """

    num_steps: int = 20
    grid: str = "logsnr"
    ode: ClassVar[bool] = True

    def __check_init__(self):
        check_steps(self.num_steps)
        check_choice("grid", self.grid, AFFINE_GRIDS)

    def check_process(self, process: AbstractProcess) -> None:
        require_affine(self, process)

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        require_affine(self, p)
        n = int(self.num_steps)
        ts = affine_grid(p, self.grid, n, float(p.t1), float(t_end), dtype=z1.dtype)
        lam = 0.5 * p.logsnr(ts)
        log_sig = jnp.log(p.sigma(ts))
        alpha = p.alpha(ts)

        def first(x, i):
            x0 = fn.x0(x, ts[i])
            h = lam[i + 1] - lam[i]
            x = jnp.exp(log_sig[i + 1] - log_sig[i]) * x - alpha[i + 1] * jnp.expm1(-h) * x0
            return x, x0, h

        def body(carry, i):
            x, x0_prev, h_prev = carry
            x0 = fn.x0(x, ts[i])
            h = lam[i + 1] - lam[i]
            c = 0.5 * h / h_prev  # 1 / (2 r)
            d = (1.0 + c) * x0 - c * x0_prev
            x = jnp.exp(log_sig[i + 1] - log_sig[i]) * x - alpha[i + 1] * jnp.expm1(-h) * d
            return (x, x0, h), (x if save_trajectory else None)

        x1, x0, h = first(z1, 0)
        (x, _, _), traj = jax.lax.scan(body, (x1, x0, h), jnp.arange(1, n))
        stats = dict(nfe=jnp.asarray(n), num_steps=jnp.asarray(n), num_rejected=jnp.asarray(0))
        if save_trajectory:
            stats.update(ts=ts[1:], trajectory=jnp.concatenate([x1[None], traj], axis=0))
        return x, stats


__all__ = ["DPMSolverPP"]
