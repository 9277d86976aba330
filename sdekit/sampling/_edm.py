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

import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Data, Key
from .._errors import arg_error, check_choice
from ..processes import AbstractProcess
from ._affine import check_steps, require_affine, scaled_sigma, sigma_to_time
from ._base import AbstractSampler, PredictionFn


class EDMSampler(AbstractSampler):
    """Karras et al. (2022) Algorithm 1/2: Heun (``solver="heun"``) or Euler on the rho-spaced
    noise levels, with optional churn (``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``).

    The last step goes from ``sigma~(t_end)`` to ``sigma = 0`` with Euler, which returns the
    denoiser output itself, so ``sample`` adds no denoising step.
    **NFE** = ``2 num_steps - 1`` (Heun) or ``num_steps`` (Euler).
    """

    num_steps: int = 18
    solver: str = "heun"
    rho: float = 7.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    ode: ClassVar[bool] = True
    returns_x0: ClassVar[bool] = True

    def __check_init__(self):
        check_steps(self.num_steps)
        check_choice("solver", self.solver, ("heun", "euler"))
        if not float(self.rho) > 0:
            raise arg_error("rho", self.rho, "a value > 0")
        if not float(self.s_churn) >= 0:
            raise arg_error("s_churn", self.s_churn, "a value >= 0")
        if not float(self.s_noise) >= 0:
            raise arg_error("s_noise", self.s_noise, "a value >= 0")
        if not float(self.s_tmin) <= float(self.s_tmax):
            raise ValueError(
                f"arguments `s_tmin` and `s_tmax`: got {self.s_tmin!r} and {self.s_tmax!r}, "
                "expected s_tmin <= s_tmax."
            )

    def check_process(self, process: AbstractProcess) -> None:
        require_affine(self, process)

    def sigmas(self, process, t_end: float, dtype=jnp.float32):
        """The ``num_steps`` noise levels ``sigma~_i`` (without the final 0) and their times."""
        n = int(self.num_steps)
        ends = jnp.asarray([process.t1, t_end], dtype=dtype)
        s = scaled_sigma(process, ends)
        if n == 1:
            return s[:1], ends[:1]
        i = jnp.arange(n, dtype=dtype) / (n - 1)
        a, b = s[0] ** (1.0 / self.rho), s[1] ** (1.0 / self.rho)
        sig = ((a + i * (b - a)) ** self.rho).at[0].set(s[0]).at[-1].set(s[1])
        ts = sigma_to_time(process, sig).astype(dtype).at[0].set(ends[0]).at[-1].set(ends[1])
        return sig, ts

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        require_affine(self, p)
        n = int(self.num_steps)
        heun = self.solver == "heun"
        sig, ts = self.sigmas(p, float(t_end), z1.dtype)
        gamma_max = min(float(self.s_churn) / n, math.sqrt(2.0) - 1.0)
        churn = gamma_max > 0

        def denoise(x, t):  # D(x~; sigma~(t)) from the model's x0 at x = alpha(t) x~
            return fn.x0(p.alpha(t) * x, t)

        def lift(x, s_i, t_i, k):
            if not churn:
                return x, s_i, t_i
            on = (s_i >= self.s_tmin) & (s_i <= self.s_tmax)
            s_hat = s_i * (1.0 + jnp.where(on, gamma_max, 0.0))
            t_hat = jnp.where(on, sigma_to_time(p, s_hat).astype(x.dtype), t_i)
            x = x + jnp.sqrt(s_hat**2 - s_i**2) * self.s_noise * jr.normal(k, x.shape, x.dtype)
            return x, s_hat, t_hat

        def body(x, inp):
            s_i, s_next, t_i, t_next, k = inp
            x, s_hat, t_hat = lift(x, s_i, t_i, k)
            d = (x - denoise(x, t_hat)) / s_hat
            x_next = x + (s_next - s_hat) * d
            if heun:
                d2 = (x_next - denoise(x_next, t_next)) / s_next
                x_next = x + (s_next - s_hat) * 0.5 * (d + d2)
            return x_next, (p.alpha(t_next) * x_next if save_trajectory else None)

        keys = jr.split(key, n)
        x = z1 / p.alpha(ts[0])
        x, traj = jax.lax.scan(body, x, (sig[:-1], sig[1:], ts[:-1], ts[1:], keys[:-1]))
        x, s_hat, t_hat = lift(x, sig[-1], ts[-1], keys[-1])
        x = denoise(x, t_hat)  # Euler step to sigma = 0
        nfe = 2 * n - 1 if heun else n
        stats = dict(nfe=jnp.asarray(nfe), num_steps=jnp.asarray(n), num_rejected=jnp.asarray(0))
        if save_trajectory:
            stats.update(ts=jnp.concatenate([ts[1:], jnp.zeros((1,), ts.dtype)]),
                         trajectory=jnp.concatenate([traj, x[None]], axis=0))
        return x, stats


__all__ = ["EDMSampler"]
