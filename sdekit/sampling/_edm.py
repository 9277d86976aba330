"""EDM samplers (Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models"): Algorithm 1 (deterministic Heun or Euler) and Algorithm 2
(stochastic "churn"), for any affine Gaussian process.

The samplers work on the scaled state ``x~ = x / alpha(t)``, whose noise level is
``sigma~(t) = sigma(t) / alpha(t)``; the probability-flow ODE there is
``dx~/dsigma~ = (x~ - D(x~; sigma~)) / sigma~`` with the denoiser ``D`` = the model's ``x0``
prediction at ``x = alpha(t) x~``. The noise levels follow Karras's rho-grid (eq. 5)
``sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho``, ``i < N``, between
``sigma~(t1)`` and ``sigma~(t_end)``, with ``sigma_N = 0``; each ``sigma_i`` is mapped back to
a process time by `sigma_to_time`.

Churn (Algorithm 2): at ``S_tmin <= sigma_i <= S_tmax`` the state is first lifted to
``sigma^ = (1 + gamma) sigma_i``, ``gamma = min(S_churn / N, sqrt(2) - 1)``, by adding noise of
variance ``(sigma^2 - sigma_i^2) S_noise^2``. For processes without a closed-form inverse of
``sigma~``, a ``sigma^`` above ``sigma~(t1)`` is evaluated at ``t1``: keep ``S_tmax`` below it.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax.numpy as jnp
import jax.random as jr

from .._custom_types import ArrayLike, Data, Key
from .._validate import check_choice, static, static_real
from ._affine import (
    AbstractAffineSampler,
    DynamicThreshold,
    _clip_or_none,
    check_sigma_range,
    scaled_sigma,
    sigma_to_time,
)
from ._base import PredictionFn
from ._grids import AbstractGrid, EDMGrid, _sigma_range


class EDMSampler(AbstractAffineSampler):
    """Karras et al. (2022) Algorithm 1/2: Heun (``solver="heun"``) or Euler on the rho-spaced
    noise levels, with optional churn (``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``).

    The noise levels run from ``min(sigma~(t1), sigma_max)`` to ``max(sigma~(t_end),
    sigma_min)`` (EDM's 80 and 0.002 by default, clipped to the process's range; ``sigma_max=inf``
    and ``sigma_min=0`` give the process's whole range). The last step goes from the last level
    to ``sigma = 0`` with Euler, which returns the denoiser output itself (clipped by
    ``clip_x0``, a value or a `DynamicThreshold`), so ``sample`` adds no denoising step.
    ``grid="edm"`` or an explicit array of ``num_steps + 1`` times whose last entry only labels
    the final denoised state (0 in the named grid). **NFE** = ``2 num_steps - 1`` (Heun) or
    ``num_steps`` (Euler).
    """

    num_steps: int | None = None
    solver: str = "heun"
    rho: float = 7.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    clip_x0: float | DynamicThreshold | None = None
    grid: str | AbstractGrid | ArrayLike = "edm"
    ode: ClassVar[bool] = True
    returns_x0: ClassVar[bool] = True
    grid_kinds: ClassVar[tuple[type, ...]] = (EDMGrid,)
    default_steps: ClassVar[int] = 18
    final_nfe: ClassVar[int] = 1

    def __check_init__(self):
        check_choice("solver", self.solver, ("heun", "euler"))
        static_real("rho", self.rho, "a finite value > 0", lambda v: v > 0)
        static_real("s_churn", self.s_churn, "a finite value >= 0", lambda v: v >= 0)
        static_real("s_noise", self.s_noise, "a finite value >= 0", lambda v: v >= 0)
        static("s_tmin", self.s_tmin)
        static("s_tmax", self.s_tmax)
        if not float(self.s_tmin) <= float(self.s_tmax):
            raise ValueError(
                f"arguments `s_tmin` and `s_tmax`: got {self.s_tmin!r} and {self.s_tmax!r}, "
                "expected s_tmin <= s_tmax."
            )
        check_sigma_range(self.sigma_min, self.sigma_max)

    @property
    def order(self) -> float:  # type: ignore[override]
        return 2.0 if self.solver == "heun" else 1.0

    @property
    def step_nfe(self) -> int:  # type: ignore[override]
        return 2 if self.solver == "heun" else 1

    def sigma_limits(self):
        return _clip_or_none(self.sigma_min, True), _clip_or_none(self.sigma_max, False)

    def named_grid(self, process, t_start, t_end, dtype):
        """``num_steps`` rho-spaced noise levels mapped to process times, then 0."""
        _, ts = self.sigmas(process, t_end, dtype, t_start=t_start)
        return jnp.concatenate([ts, jnp.zeros((1,), dtype)])

    def sigmas(self, process, t_end, dtype=None, *, t_start=None):
        """The ``num_steps`` noise levels ``sigma~_i`` (without the final 0) and their times."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        t_start = process.t1 if t_start is None else t_start
        n = int(self.num_steps)
        i = jnp.arange(n, dtype=dtype) / max(n - 1, 1)
        lo, hi = self.sigma_limits()
        sig, first, last = _sigma_range(process, "edm", i, t_start, t_end, self.rho, dtype, lo, hi)
        ts = sigma_to_time(process, sig).astype(dtype)
        ts = ts.at[0].set(jnp.where(first, t_start, ts[0]))
        if n > 1:
            ts = ts.at[-1].set(jnp.where(last, t_end, ts[-1]))
        return sig, ts

    def _gamma(self) -> float:
        return min(float(self.s_churn) / int(self.num_steps), math.sqrt(2.0) - 1.0)

    def _lift(self, p, x, t, key):
        """Churn: raise ``x~`` at ``sigma~(t)`` to ``sigma^ = (1 + gamma) sigma~`` with noise."""
        s_i = scaled_sigma(p, t).astype(x.dtype)
        gamma = self._gamma()
        if gamma <= 0:
            return x, s_i, t
        on = (s_i >= self.s_tmin) & (s_i <= self.s_tmax)
        g = jnp.where(on, gamma, 0.0).astype(x.dtype)
        s_hat = s_i * (1.0 + g)
        t_hat = jnp.where(on, sigma_to_time(p, s_hat).astype(x.dtype), t)
        std = s_i * jnp.sqrt(g * (2.0 + g))  # sqrt(s_hat^2 - s_i^2), never sqrt(-0.0...)
        x = x + std * self.s_noise * jr.normal(key, x.shape, x.dtype)
        return x, s_hat, t_hat

    def _denoise(self, fn, x, t):  # D(x~; sigma~(t)) from the model's x0 at x = alpha(t) x~
        return self.x0(fn, fn.process.alpha(t) * x, t)

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        p = fn.process
        x, s_hat, t_hat = self._lift(p, z / p.alpha(t), t, key)
        s_next = scaled_sigma(p, t_next).astype(z.dtype)
        d = (x - self._denoise(fn, x, t_hat)) / s_hat
        x_next = x + (s_next - s_hat) * d
        if self.solver == "heun":
            d2 = (x_next - self._denoise(fn, x_next, t_next)) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d + d2)
        return p.alpha(t_next) * x_next, memory

    def final_step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key) -> Data:
        p = fn.process
        x, _, t_hat = self._lift(p, z / p.alpha(t), t, key)
        return self._denoise(fn, x, t_hat)  # Euler step to sigma = 0


__all__ = ["EDMSampler"]
