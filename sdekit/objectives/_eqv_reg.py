"""The equivariance regulariser ``eqv_reg`` of structure-preserving diffusion (Lu, Szabados & Yu
2024; spec ``structure_preserving.md`` section 5), composable with any base objective."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Data, Key
from .._errors import arg_error, broadcast_time
from .._model import call_model
from ..nets.equivariant._groups import get_group
from ..parameterisation import Precond
from ..processes import AbstractGaussianProcess
from ._time import UniformTime


def _perm_tables(group: str, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel gathers ``act[g]`` and ``inv_act[g]`` with ``(T_g x).flat = x.flat[act[g]]``."""
    grp = get_group(group)
    idx = np.arange(h * w).reshape(h, w)
    fwd = np.stack([grp.act(g, idx, axes=(0, 1)).ravel() for g in range(grp.order)])
    inv = np.stack([fwd[grp.inverse[g]] for g in range(grp.order)])
    return fwd, inv


def _gather(x: Array, perm: Array) -> Array:
    n, h, w, c = x.shape
    return x.reshape(n, h * w, c)[:, perm, :].reshape(n, h, w, c)


def raw_output(model: Any, x_t: Data, t: Any, cond: Any = None, key: Any = None) -> Data:
    """The raw network output the regulariser compares: for a
    [`Precond`][sdekit.parameterisation.Precond] model, ``F(c_in x_t / alpha, c_noise)`` (before
    the ``c_skip`` / ``c_out`` combination, as in the paper); otherwise ``model(x_t, t)``."""
    if isinstance(model, Precond):
        tb = broadcast_time(t, x_t)
        _, _, c_in, _ = model.coefficients(tb)
        _, _, _, c_noise = model.coefficients(jnp.asarray(t))
        x_hat = x_t / model.process.alpha(tb)
        return call_model(model.net, (c_in * x_hat).astype(x_t.dtype), c_noise, cond, key)
    return call_model(model, x_t, t, cond, key)


class EqvReg(eqx.Module):
    """``loss = objective(model) + weight * E[ mean |F(x_t) - g^{-1} F_tgt(g x_t)|^2 ]``.

    One group element ``g`` is drawn per mini-batch (uniformly among the non-identity elements,
    or all of them with ``include_identity``), ``x_t`` is drawn from the process at a time from
    the objective's time sampler, ``F`` is the raw network output
    ([`raw_output`][sdekit.objectives.raw_output]: inside EDM preconditioning when the model is a
    `Precond`), and ``F_tgt`` is the *target network*: an exponential moving average of the model
    (rate 0.95 in the paper; update it after every step with
    [`ema_target`][sdekit.objectives.ema_target]), without gradient. The regulariser has no time
    weighting. ``objective`` is any loss ``(model, key, x0, cond) -> scalar`` with a ``process``
    (e.g. `DSM` with ``weighting="karras"`` and a `LogNormalTime` sampler on the `EDM` process).

    Called as ``loss(model, key, x0, cond=None, *, target=None)``; ``target=None`` uses the
    model itself (with ``stop_gradient``), i.e. a target rate of 0 — this is what `fit` does,
    since its objectives take no extra state. The regulariser makes a plain network
    *approximately* equivariant; for exactness use an equivariant architecture or
    [`symmetrise`][sdekit.nets.equivariant.symmetrise].

    Differences from the original code: the identity is excluded for every group (the original
    excludes it for C4 but may draw it for D4, where it contributes zero); with
    self-conditioning the regulariser runs the network with a zero estimate on both sides.
    """

    objective: Any
    group: str = eqx.field(static=True)
    weight: float = 1.0
    include_identity: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not callable(self.objective):
            raise arg_error("objective", type(self.objective).__name__, "a loss callable")
        if not isinstance(getattr(self.objective, "process", None), AbstractGaussianProcess):
            raise arg_error("objective", type(self.objective).__name__,
                            "an objective with a `process` attribute (e.g. DSM)")
        get_group(self.group)
        if float(self.weight) < 0:
            raise arg_error("weight", self.weight, "a value >= 0")

    def _time_sampler(self):
        ts = getattr(self.objective, "time_sampler", None)
        if ts is not None:
            return ts
        p = self.objective.process
        return UniformTime(float(p.t0), float(p.t1))

    def regulariser(self, model: Any, key: Key, x0: Data, cond: Any = None, *,
                    target: Any = None) -> Array:
        """The regulariser term alone (one ``g``, one draw of ``t`` and ``x_t``)."""
        if x0.ndim != 4 or x0.shape[1] != x0.shape[2]:
            raise arg_error("x0", f"shape {x0.shape}", "square NHWC images (N, H, H, C)")
        grp = get_group(self.group)
        if grp.order == 1:
            return jnp.zeros((), x0.dtype)
        k_t, k_x, k_g = jr.split(key, 3)
        p = self.objective.process
        t = self._time_sampler()(k_t, x0.shape)
        x_t = p.sample_marginal(k_x, x0, t)
        lo = 0 if self.include_identity else 1
        g = jr.randint(k_g, (), lo, grp.order)
        fwd, inv = _perm_tables(self.group, x0.shape[1], x0.shape[2])
        fwd, inv = jnp.asarray(fwd)[g], jnp.asarray(inv)[g]
        tgt = jax.lax.stop_gradient(model if target is None else target)
        t_g = _gather(t, fwd) if jnp.ndim(t) == 4 and t.shape[1:3] == x_t.shape[1:3] else t
        out = raw_output(model, x_t, t, cond)
        back = _gather(raw_output(tgt, _gather(x_t, fwd), t_g, cond), inv)
        return jnp.mean(jnp.square(out - jax.lax.stop_gradient(back)))

    def __call__(self, model: Any, key: Key, x0: Data, cond: Any = None, *,
                 target: Any = None) -> Array:
        k_base, k_reg = jr.split(key)
        base = self.objective(model, k_base, x0, cond)
        return base + self.weight * self.regulariser(model, k_reg, x0, cond, target=target)


def ema_target(target: Any, model: Any, rate: float = 0.95) -> Any:
    """The target network's update ``target <- rate * target + (1 - rate) * model`` (array
    leaves; the rest is taken from ``model``)."""
    if not 0.0 <= float(rate) <= 1.0:
        raise arg_error("rate", rate, "a value in [0, 1]")
    t_arr, _ = eqx.partition(target, eqx.is_inexact_array)
    m_arr, static = eqx.partition(model, eqx.is_inexact_array)
    new = jax.tree.map(lambda a, b: rate * a + (1.0 - rate) * b, t_arr, m_arr)
    return eqx.combine(new, static)


__all__ = ["EqvReg", "ema_target", "raw_output"]
