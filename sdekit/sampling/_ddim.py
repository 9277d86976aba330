"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12) for any affine
Gaussian process, written in log-SNR as in VDPM (``spec/vdpm.md`` section 6).

One step from ``t`` to ``s < t`` with the data prediction ``x0`` and ``eps`` re-derived from it:

``x_s = alpha_s x0 + sqrt(sigma_s^2 - var) eps + sqrt(var) z``,
``var = eta^2 (1 - r) sigma_s^2``, ``r = exp(logsnr_t - logsnr_s)``,

i.e. ``x_s = c_xt x_t + c_x0 x0 + sqrt(var) z`` with ``c_xt = sigma_s sqrt(1 - eta^2 (1 - r)) /
sigma_t`` and ``c_x0 = alpha_s (1 - sqrt(r (1 - eta^2 (1 - r))))``. The general ``alpha``/``sigma``
form makes it valid for VP, sub-VP, VE, EDM and every log-SNR schedule. ``eta = 0`` is the
deterministic DDIM (a first-order solver of the probability-flow ODE in log-SNR); ``eta = 1`` is
ancestral sampling with the true posterior variance (``fixed_small``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key
from .._errors import arg_error, check_choice
from ..processes import AbstractAffineGaussianProcess, AbstractProcess
from ..processes._logsnr import log1mexp
from ._affine import AFFINE_GRIDS, affine_grid, check_clip, check_steps, clip, require_affine
from ._base import AbstractSampler, PredictionFn


def _logs(process: AbstractAffineGaussianProcess, t: Any, s: Any, dtype: Any):
    t = jnp.asarray(t, dtype=dtype)
    s = jnp.asarray(s, dtype=dtype)
    log_r = process.logsnr(t) - process.logsnr(s)
    return dict(
        log_r=log_r,
        log_1mr=log1mexp(jnp.minimum(log_r, -1e-30)),
        log_a_t=jnp.log(process.alpha(t)),
        log_a_s=jnp.log(process.alpha(s)),
        log_sig_t=jnp.log(process.sigma(t)),
        log_sig_s=jnp.log(process.sigma(s)),
    )


def _check_eta(eta: Any) -> None:
    if not 0.0 <= float(eta) <= 1.0:
        raise arg_error("eta", eta, "a value in [0, 1]")


def ddim_coefficients(
    process: AbstractAffineGaussianProcess, t: Any, s: Any, eta: float = 0.0, *, dtype: Any = None
) -> tuple[Array, Array, Array]:
    """``(c_xt, c_x0, std)`` of the DDIM step from ``t`` to ``s < t``: ``x_s = c_xt x_t + c_x0 x0
    + std z``."""
    require_affine(ddim_step, process)
    dt = jnp.result_type(t, s, float) if dtype is None else dtype
    q = _logs(process, t, s, dt)
    one_m_r = jnp.exp(q["log_1mr"])
    keep = jnp.log1p(-(eta**2) * one_m_r)  # log(1 - eta^2 (1 - r))
    c_xt = jnp.exp(q["log_sig_s"] - q["log_sig_t"] + 0.5 * keep)
    c_x0 = jnp.exp(q["log_a_s"]) * -jnp.expm1(0.5 * (q["log_r"] + keep))
    std = eta * jnp.exp(0.5 * q["log_1mr"] + q["log_sig_s"])
    return c_xt, c_x0, std


def ddim_step(
    process: AbstractAffineGaussianProcess,
    x_t: Data,
    x0_hat: Data,
    t: Any,
    s: Any,
    eta: float = 0.0,
    noise: Data | None = None,
) -> Data:
    """One DDIM step from ``x_t`` at time ``t`` to time ``s < t`` given a data prediction.

    Pure: no clipping, no model call; ``noise`` (``z ~ N(0, I)``, shaped like ``x_t``) is only
    used when ``eta > 0`` (``None`` means the mean only).
    """
    _check_eta(eta)
    c_xt, c_x0, std = ddim_coefficients(process, t, s, eta, dtype=x_t.dtype)
    out = c_xt * x_t + c_x0 * x0_hat
    if noise is not None and float(eta) > 0:
        out = out + std * noise
    return out


class DDIM(AbstractSampler):
    """Denoising Diffusion Implicit Models (Song et al. 2021) on a fixed grid, any affine process.

    Each step predicts ``x0`` (optionally clipped to ``[-clip_x0, clip_x0]``) and applies
    `ddim_step`. With ``final_x0=True`` (VDPM's and DDIM's rule) the last step returns the
    (clipped) ``x0`` prediction itself, so ``sample`` adds no denoising step; otherwise it steps to
    ``t_end``. ``grid``: ``uniform``, ``quadratic``, ``karras`` (in process time), ``logsnr``
    or ``edm`` (Karras spacing of ``sigma/alpha``; use it or ``karras`` for the EDM process).
    **NFE** = ``num_steps``.
    """

    num_steps: int = 100
    eta: float = 0.0
    grid: str = "uniform"
    clip_x0: float | None = None
    final_x0: bool = True
    ode: ClassVar[bool] = True

    def __check_init__(self):
        check_steps(self.num_steps)
        _check_eta(self.eta)
        check_choice("grid", self.grid, AFFINE_GRIDS)
        check_clip(self.clip_x0)

    @property
    def returns_x0(self) -> bool:
        """Whether `solve` already returns a data prediction (no final denoising)."""
        return bool(self.final_x0)

    def check_process(self, process: AbstractProcess) -> None:
        require_affine(self, process)

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        return _fixed_step(self, key, fn, z1, t_end, save_trajectory,
                           lambda p, x, x0, t, s, z: ddim_step(p, x, x0, t, s, self.eta, z))


def _fixed_step(sampler, key, fn, z1, t_end, save_trajectory, step):
    """Shared loop of DDIM and ancestral sampling: ``x0`` prediction, clip, step."""
    p = fn.process
    require_affine(sampler, p)
    n = int(sampler.num_steps)
    ts = affine_grid(p, sampler.grid, n, float(p.t1), float(t_end), dtype=z1.dtype)
    keys = jr.split(key, n)
    n_scan = n - 1 if sampler.final_x0 else n

    def body(z, inp):
        t, s, k = inp
        x0 = clip(fn.x0(z, t), sampler.clip_x0)
        z = step(p, z, x0, t, s, jr.normal(k, z.shape, z.dtype))
        return z, (z if save_trajectory else None)

    z, traj = jax.lax.scan(body, z1, (ts[:n_scan], ts[1:n_scan + 1], keys[:n_scan]))
    if sampler.final_x0:
        z = clip(fn.x0(z, ts[n - 1]), sampler.clip_x0)
        if save_trajectory:
            traj = jnp.concatenate([traj, z[None]], axis=0)
    stats = dict(nfe=jnp.asarray(n), num_steps=jnp.asarray(n), num_rejected=jnp.asarray(0))
    if save_trajectory:
        stats.update(ts=ts[1:], trajectory=traj)
    return z, stats


__all__ = ["DDIM", "ddim_coefficients", "ddim_step"]
