"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, Appendix D.2; the
instantaneous change of variables of Chen et al. 2018, FFJORD's Hutchinson estimator of
Grathwohl et al. 2019).

Along the forward probability-flow ODE ``dx/dt = v(x, t) = f(t, x) - g(t)^2 s(x, t) / 2``,
``d log p_t(x_t) / dt = -div v(x_t, t)``, so

``log p_{t0}(x) = log p_prior(x_{t1}) + int_{t0}^{t1} div v(x_t, t) dt``.

The augmented state ``(x, delta)`` is integrated from ``t0`` (data) to ``t1`` with an adaptive
diffrax solver. The divergence is exact (``d`` forward-mode JVPs with the basis vectors, for
small ``d``) or Hutchinson's unbiased ``E[z^T (dv/dx) z]`` with Rademacher or Gaussian probes,
drawn once per example and held fixed along the path. The result is the density the flow
defines with ``process.prior_log_prob`` at ``t1``, which equals the model's ``p_{t0}`` up to
the mismatch between ``p_{t1}`` and the prior.

Bits per dimension for 8-bit images: data ``u in {0..255}`` are dequantised to
``x = 2 (u + U) / 256 - 1``, ``U ~ U[0, 1)^D`` (`dequantize`). The density of
``y = u + U`` is ``p_x(x) (2/256)^D``, so ``log P(u) >= E[log p_x(x)] - D log 128`` and
``bpd = -(log p_x(x) - D log 128) / (D log 2) = -log p_x / (D log 2) + 7``
(`bits_per_dim` with ``num_bits=8``); on ``[0, 1]`` (``interval=(0, 1)``, reflected diffusion)
the offset is 8 bits.

Bounded processes (``process.bounded``, e.g. `ReflectedVE`): the velocity is evaluated at
``process.reflect(x)`` and the latent is reflected before the prior term (both the identity
inside the domain, where the exact flow stays), so ``prior_log_prob`` is finite.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key
from .._validate import arg_error, check_choice, static_int, static_real
from ..processes import AbstractProcess
from ._base import PredictionFn
from ._solvers import _ODE_SOLVERS, _nfe, _solver

DIVERGENCES: tuple[str, ...] = ("exact", "hutchinson")
PROBES: tuple[str, ...] = ("rademacher", "gaussian")


class LikelihoodResult(eqx.Module):
    """What `log_likelihood` returns.

    **Fields:** ``log_prob`` (nats per example, ``(N,)``), ``prior_log_prob`` (the prior term),
    ``delta`` (the integrated divergence), ``latent`` (``x`` at ``t1``), ``nfe`` (vector-field
    evaluations, each one model call plus its divergence JVPs), ``num_steps``, ``num_rejected``.
    """

    log_prob: Array
    prior_log_prob: Array
    delta: Array
    latent: Data
    nfe: Array
    num_steps: Array
    num_rejected: Array


def _sum_event(x):
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)



class LikelihoodOptions(eqx.Module):
    """How the probability-flow ODE of a likelihood is solved; shared by `log_likelihood` and
    `augmented_log_likelihood` (which also take every field as a keyword argument).

    **Fields:** ``divergence`` (``exact``: ``d`` forward-mode JVPs, or ``hutchinson``),
    ``probe`` (``rademacher`` or ``gaussian``, Hutchinson's probes), ``n_probes`` (per
    example, averaged), ``rtol``/``atol`` (the PID controller's tolerances), ``solver``
    (``tsit5``, ``dopri5``, ``dopri8``, ``bosh3``, ``heun`` or a diffrax solver), ``max_steps``.
    """

    divergence: str = "exact"
    probe: str = "rademacher"
    n_probes: int = 1
    rtol: float = 1e-5
    atol: float = 1e-5
    solver: Any = "tsit5"
    max_steps: int = 4096

    def __check_init__(self):
        check_choice("divergence", self.divergence, DIVERGENCES)
        check_choice("probe", self.probe, PROBES)
        static_int("n_probes", self.n_probes, 1)
        static_int("max_steps", self.max_steps, 1)
        static_real("rtol", self.rtol, "a finite value > 0", lambda v: v > 0)
        static_real("atol", self.atol, "a finite value > 0", lambda v: v > 0)
        _solver(self.solver, _ODE_SOLVERS, "solver")

    @classmethod
    def resolve(cls, options: LikelihoodOptions | None, overrides: dict) -> LikelihoodOptions:
        """``options`` (default: the defaults) with the keyword ``overrides`` applied."""
        if options is not None and not isinstance(options, LikelihoodOptions):
            raise arg_error("options", type(options).__name__, "None or a LikelihoodOptions")
        base = options if options is not None else cls()
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise arg_error(unknown[0], overrides[unknown[0]], "a field of LikelihoodOptions ("
                            + ", ".join(f.name for f in dataclasses.fields(cls)) + ")")
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**fields, **overrides})

    @property
    def ode_solver(self):
        """The diffrax solver object."""
        return _solver(self.solver, _ODE_SOLVERS, "solver")


def check_batch(x: Any) -> Array:
    """``x`` as an array with a leading batch axis."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise arg_error("x", x.shape, "a batch of data with a leading batch axis, e.g. (N, d)")
    return x


def likelihood_interval(process: AbstractProcess, t_start: Any, t_end: Any) -> tuple[float, float]:
    """``(t_start, t_end)``, defaulting to the process's ``(t0, t1)``, with ``t_start < t_end``."""
    t_start = float(process.t0 if t_start is None else t_start)
    t_end = float(process.t1 if t_end is None else t_end)
    if not t_start < t_end:
        raise ValueError(
            f"arguments `t_start` and `t_end`: got {t_start} and {t_end}, expected t_start < t_end."
        )
    return t_start, t_end


def log_likelihood(
    key: Key,
    process: AbstractProcess,
    model: Callable,
    x: Data,
    *,
    prediction: Any = "eps",
    cond: Any = None,
    t_start: float | None = None,
    t_end: float | None = None,
    options: LikelihoodOptions | None = None,
    **option_kwargs: Any,
) -> LikelihoodResult:
    """Log-density of data ``x`` (batch first) under the probability-flow ODE of ``model``.

    **Arguments:** ``key`` (for Hutchinson probes); ``process``; ``model`` and ``prediction`` (as
    in `sdekit.sampling`); ``cond``; ``t_start`` (default ``process.t0``) and ``t_end``
    (default ``process.t1``); ``options`` (a
    [`LikelihoodOptions`][sdekit.sampling.LikelihoodOptions]: divergence, probes, tolerances,
    solver), whose fields may also be given as keywords
    (``divergence="hutchinson"``, ``rtol=1e-4``, ...).

    **Returns:** a `LikelihoodResult`; ``log_prob`` is in nats per example.
    """
    opts = LikelihoodOptions.resolve(options, option_kwargs)
    x = check_batch(x)
    if tuple(process.state_shape(x.shape)) != tuple(x.shape):
        raise TypeError(
            f"log_likelihood needs a process whose state is the data; got {type(process).__name__} "
            f"with state shape {tuple(process.state_shape(x.shape))} for data {tuple(x.shape)}."
        )
    # Bounded processes (ReflectedVE) are supported: p_t satisfies the Neumann condition, so the
    # exact probability-flow velocity is tangent to the walls and the flow stays inside, where
    # the reflection map is the identity and the change of variables holds (Lou & Ermon 2023,
    # sections 4 and 8); evaluating at reflect(x) only guards against round-off at the walls.
    t_start, t_end = likelihood_interval(process, t_start, t_end)
    fn = PredictionFn(process, model, prediction, cond)
    return _solve(key, fn, x, opts.divergence, opts.probe, int(opts.n_probes), float(opts.rtol),
                  float(opts.atol), opts.ode_solver, t_start, t_end, int(opts.max_steps))


@eqx.filter_jit
def _solve(key, fn, x, divergence, probe, n_probes, rtol, atol, solver, t_start, t_end,
           max_steps):
    p = fn.process
    if divergence == "exact":
        d = math.prod(x.shape[1:])
        tangents = jnp.eye(d, dtype=x.dtype).reshape((d, 1) + x.shape[1:])
        tangents = jnp.broadcast_to(tangents, (d,) + x.shape)
        scale = 1.0
    else:
        shape = (n_probes,) + x.shape
        if probe == "rademacher":
            tangents = jr.rademacher(key, shape, dtype=x.dtype)
        else:
            tangents = jr.normal(key, shape, dtype=x.dtype)
        scale = 1.0 / n_probes

    def field(t, y, args):
        z, _ = y
        # bounded processes: evaluate at the reflected state (identity inside the domain)
        v, jvps = jax.vmap(lambda e: jax.jvp(lambda u: fn.velocity(p.reflect(u), t), (z,), (e,)),
                           out_axes=(None, 0))(tangents)
        div = scale * jnp.sum(jax.vmap(_sum_event)(jvps * tangents), axis=0)
        return v, div

    y0 = (x, jnp.zeros(x.shape[:1], x.dtype))
    sol = dfx.diffeqsolve(
        dfx.ODETerm(field), solver, t_start, t_end, dt0=(t_end - t_start) / 64, y0=y0,
        stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol), max_steps=max_steps,
        adjoint=dfx.ForwardMode(), saveat=dfx.SaveAt(t1=True),
    )
    z1, delta = p.reflect(sol.ys[0][-1]), sol.ys[1][-1]
    prior = p.prior_log_prob(z1)
    n = sol.stats["num_steps"]
    return LikelihoodResult(
        log_prob=prior + delta, prior_log_prob=prior, delta=delta, latent=z1,
        nfe=jnp.asarray(_nfe(solver, n)), num_steps=n,
        num_rejected=sol.stats["num_rejected_steps"],
    )


def _check_interval(interval: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise arg_error("interval", interval, "a pair (low, high) with low < high") from None
    if not lo < hi:
        raise arg_error("interval", interval, "a pair (low, high) with low < high")
    return lo, hi


def dequantize(key: Key, u: Any, *, num_bits: int = 8,
               interval: tuple[float, float] = (-1.0, 1.0)) -> Data:
    """Uniform dequantisation of integer data ``u in {0, ..., 2^num_bits - 1}`` to ``interval``
    (default ``[-1, 1]``; reflected diffusion uses ``(0, 1)``):
    ``x = low + (high - low) (u + U) / 2^num_bits`` with ``U ~ U[0, 1)`` per element
    (float32)."""
    if isinstance(num_bits, bool) or int(num_bits) != num_bits or int(num_bits) < 1:
        raise arg_error("num_bits", num_bits, "an integer >= 1")
    lo, hi = _check_interval(interval)
    u = jnp.asarray(u)
    noise = jr.uniform(key, u.shape, jnp.float32)
    return lo + (hi - lo) * (u.astype(jnp.float32) + noise) / 2.0 ** int(num_bits)


def bits_per_dim(log_prob: Any, dims: int, *, num_bits: int | None = None,
                 interval: tuple[float, float] = (-1.0, 1.0)) -> Array:
    """Bits per dimension from a log-density in nats over ``dims`` dimensions.

    ``num_bits=None``: ``-log_prob / (dims log 2)`` (the density's own units). ``num_bits=b``:
    ``log_prob`` is the density of `dequantize`-d data in ``interval`` (default ``[-1, 1]``);
    the Jacobian of ``x = low + (high - low) y / 2^b`` adds ``dims log(2^b / (high - low))``
    nats, i.e. ``b - log2(high - low)`` bits per dimension (7 for 8-bit images in ``[-1, 1]``,
    8 in ``[0, 1]``), giving the bound on the discrete data's bits per dimension.
    """
    if int(dims) < 1:
        raise arg_error("dims", dims, "an integer >= 1")
    lo, hi = _check_interval(interval)
    nats = -jnp.asarray(log_prob)
    if num_bits is not None:
        if int(num_bits) < 1:
            raise arg_error("num_bits", num_bits, "None or an integer >= 1")
        nats = nats + int(dims) * (int(num_bits) * math.log(2.0) - math.log(hi - lo))
    return nats / (int(dims) * math.log(2.0))


__all__ = [
    "DIVERGENCES",
    "PROBES",
    "LikelihoodOptions",
    "LikelihoodResult",
    "bits_per_dim",
    "dequantize",
    "log_likelihood",
]
