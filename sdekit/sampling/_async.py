"""Asynchronous generation: every element on its own schedule of one shared clock.

ComboStoc (Xu et al. 2024) trains networks on per-element times; at sampling time each element
``i`` can then follow its own schedule ``tau_i(c)`` of a shared clock ``c`` running from 1 to 0
(sdekit time: 0 is data). The paper describes the idea and gives no code; this is sdekit's
design, validated on Gaussian data with the exact model (``tests/test_sit.py``):

``tau_i(c) = t_start_i * clip(c / (1 - delay_i), 0, 1)``

- ``t_start_i = t1`` (the default): element ``i`` is generated from the prior;
- ``t_start_i = 0`` (``keep``): element ``i`` is held at the given value (inpainting, partial
  preservation): it never moves, bit for bit;
- ``0 < t_start_i < t1``: graded adherence: element ``i`` starts at
  ``alpha(t_start_i) x_i + sigma(t_start_i) z_i`` from the given value, so a larger
  ``t_start_i`` keeps less of it (SDEdit per element);
- ``delay_i in [0, 1)``: element ``i`` waits at ``t_start_i`` until the clock reaches
  ``1 - delay_i``, so other groups form first.

Along the clock the joint state follows ``dx_i/dc = v_i(x, tau(c)) tau_i'(c)`` (the ODE) with
the network evaluated at the **whole time map** ``tau(c)`` (the shape of ``x``), or the
reverse SDE with per-element diffusion ``w(tau_i)``. Since the elements held fixed never move
and the flow transports the per-element-time marginals exactly, the free elements end
distributed as the data's conditional law given the fixed ones (for an exact model).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Time
from .._validate import arg_error, broadcast_time, is_traced
from ..processes import AbstractAffineGaussianProcess
from ._base import SampleResult
from ._conditions import AbstractCondition
from ._interpolant import InterpolantSDE, diffusion_coefficient, velocity_and_score
from ._solvers import ODE, EulerMaruyama


class AsyncSchedule(eqx.Module):
    """Per-element schedules ``tau_i(c) = t_start_i * clip(c / (1 - delay_i), 0, 1)`` of a
    clock ``c`` from 1 (start) to 0 (data); ``t_start`` and ``delay`` are scalars or arrays
    aligned with the leading axes of the data (per example, channel, position or element)."""

    t_start: Any
    delay: Any = 0.0

    def __check_init__(self):
        if is_traced((self.t_start, self.delay)):
            return
        d = jnp.asarray(self.delay)
        if not bool(jnp.all((d >= 0) & (d < 1))):
            raise arg_error("delay", "values outside [0, 1)", "delays in [0, 1)")
        if not bool(jnp.all(jnp.asarray(self.t_start) >= 0)):
            raise arg_error("t_start", "negative values", "start times >= 0")

    def __call__(self, c: Time, x: Data) -> Array:
        """The time map ``tau(c)`` with the shape of ``x``."""
        ts = jnp.broadcast_to(broadcast_time(jnp.asarray(self.t_start, x.dtype), x,
                                             name="t_start"), x.shape)
        d = jnp.broadcast_to(broadcast_time(jnp.asarray(self.delay, x.dtype), x, name="delay"),
                             x.shape)
        return ts * jnp.clip(jnp.asarray(c, x.dtype) / (1.0 - d), 0.0, 1.0)


class AsyncGeneration(AbstractCondition):
    """Asynchronous generation as a condition of [`sample`][sdekit.sampling.sample]
    (inpainting, graded adherence, delayed groups; see the module docstring for the schedules).

    **Arguments:**

    - `x_given`: the data to condition on, the shape of the samples (its values on generated
      elements are ignored).
    - `keep`: optional boolean mask (aligned with ``x_given``'s leading axes): elements held
      fixed (``t_start = 0``).
    - `t_start`: start time per element (default ``process.t1``: generate from the prior).
    - `delay`: clock delay per element in ``[0, 1)``.

    The method sets the clock's integrator: `ODE` (``solver`` ``heun`` or ``euler``;
    ``num_steps`` clock steps), `InterpolantSDE` (Euler–Maruyama with ``w = diffusion(tau_i)``
    per element, SiT's ``diffusion`` and ``norm``; the last clock step adds no noise, like
    SiT's ``Mean`` last step) or `EulerMaruyama` (the same with ``w = g^2 / 2``, the reverse
    SDE). **NFE** = ``num_steps`` (Euler) or ``2 num_steps`` (Heun). The model is called as
    ``model(x, t[, cond])`` with ``t`` of ``x``'s shape (any affine Gaussian process:
    `Interpolant`, `VP`, `LogSNR`, ...).
    """

    x_given: Data
    keep: Any = None
    t_start: Any = None
    delay: Any = 0.0

    def __check_init__(self):
        x = jnp.asarray(self.x_given)
        if x.ndim < 2:
            raise arg_error("x_given", f"shape {x.shape}", "a batch with a leading axis")

    def check(self, sampler, process, shape):
        if not isinstance(process, AbstractAffineGaussianProcess):
            raise arg_error("process", type(process).__name__,
                            "an AbstractAffineGaussianProcess for AsyncGeneration")
        if not isinstance(sampler, (ODE, InterpolantSDE, EulerMaruyama)):
            raise arg_error("method", type(sampler).__name__,
                            "ODE, InterpolantSDE or EulerMaruyama with AsyncGeneration (its "
                            "clock integrates every element on its own schedule)")
        if tuple(jnp.shape(self.x_given)) != tuple(shape):
            raise arg_error("shape", tuple(shape), f"the shape of x_given, "
                            f"{tuple(jnp.shape(self.x_given))}")
        self.schedule(process)  # checks the start times, the mask and the delays

    def schedule(self, process: AbstractAffineGaussianProcess) -> AsyncSchedule:
        """The per-element schedule (start times and delays as arrays of the data's shape)."""
        x_given = jnp.asarray(self.x_given)
        t1 = float(process.t1)
        ts = jnp.full(x_given.shape, t1, x_given.dtype) if self.t_start is None else \
            jnp.broadcast_to(broadcast_time(jnp.asarray(self.t_start, x_given.dtype), x_given,
                                            name="t_start"), x_given.shape)
        if self.keep is not None:
            km = jnp.broadcast_to(broadcast_time(jnp.asarray(self.keep).astype(x_given.dtype),
                                                 x_given, name="keep"), x_given.shape)
            ts = jnp.where(km > 0, 0.0, ts)
        if not is_traced(ts) and not bool(jnp.all((ts >= 0) & (ts <= t1))):
            raise arg_error("t_start", "values outside [0, process.t1]", f"times in [0, {t1}]")
        d = jnp.broadcast_to(broadcast_time(jnp.asarray(self.delay, x_given.dtype), x_given,
                                            name="delay"), x_given.shape)
        return AsyncSchedule(ts, d)

    def run(self, key, fn, sampler, shape, *, t_start, t_end, denoise, save_trajectory,
            x_start):
        if isinstance(sampler, ODE):
            method, solver, diffusion, norm = "ode", sampler.solver, "sigma", 1.0
        elif isinstance(sampler, InterpolantSDE):
            method, solver, diffusion, norm = "sde", "euler", sampler.diffusion, sampler.norm
        else:
            method, solver, diffusion, norm = "sde", "euler", "SBDM", 1.0
        x_given = jnp.asarray(self.x_given)
        return _run_async(key, fn, self.schedule(fn.process), x_given, int(sampler.num_steps),
                          method, solver, diffusion, float(norm))


def _run_async(key, fn, schedule, x_given, n, method, solver, diffusion, norm):
    p = fn.process
    dtype = x_given.dtype
    k0, k_run = jr.split(key)
    z = jr.normal(k0, x_given.shape, dtype)
    ts = schedule(1.0, x_given)
    t1 = float(p.t1)
    a, s = p.alpha(ts), p.sigma(ts)
    prior = p.prior_std().astype(dtype) * z
    x = jnp.where(ts == 0, x_given, jnp.where(ts >= t1, prior, a * x_given + s * z))
    clock = jnp.linspace(1.0, 0.0, n + 1, dtype=dtype)
    heun = method == "ode" and solver == "heun"

    def step(x, inp):
        c, c_next, k, last = inp
        tau, tau_next = schedule(c, x), schedule(c_next, x)
        dt = tau_next - tau  # <= 0
        moving = dt != 0
        v, sc = velocity_and_score(fn, x, tau)
        if method == "ode":
            # held elements keep their value exactly (their velocity may be NaN at tau = 0,
            # e.g. VP's sigma'(0) = inf), also in the state the second stage evaluates
            x_new = jnp.where(moving, x + v * dt, x)
            if heun:
                v2, _ = velocity_and_score(fn, x_new, tau_next)
                x_h = x + 0.5 * (v + v2) * dt
                x_new = jnp.where(tau_next > 0, x_h, x_new)
        else:
            w = diffusion_coefficient(p, tau, diffusion, norm).astype(dtype)
            noise = jnp.sqrt(2.0 * w * jnp.abs(dt)) * jr.normal(k, x.shape, dtype)
            x_new = x + (v - w * sc) * dt + jnp.where(last, 0.0, noise)
        return jnp.where(moving, x_new, x), None

    last = jnp.arange(n) == n - 1
    x, _ = jax.lax.scan(step, x, (clock[:-1], clock[1:], jr.split(k_run, n), last))
    nfe = 2 * n if heun else n
    return SampleResult(samples=x, nfe=jnp.asarray(nfe), num_steps=jnp.asarray(n),
                        num_rejected=jnp.asarray(0), state=x)


__all__ = ["AsyncGeneration", "AsyncSchedule"]
