r"""The equivariance regulariser of structure-preserving diffusion (Lu, Szabados & Yu 2024,
"Structure Preserving Diffusion Models"), composable with any objective:

$$\mathcal L = \mathcal L_{\text{base}} + w\, \mathbb E_{t, x_t}\Big[\overline{\big\|F_\theta(x_t)
- g^{-1} F_{\text{tgt}}(g\, x_t)\big\|^2}\Big],$$

one group element $g$ per mini-batch, $F$ the raw network output and $F_{\text{tgt}}$ an
exponential moving average of the network (the objective's auxiliary state).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Data, Key
from .._model import call_model
from .._validate import arg_error, broadcast_time, check_real
from ..nets.equivariant._groups import get_group
from ..processes import AbstractGaussianProcess
from ..wrappers import Precond
from ._base import AbstractObjective, mean_per_example


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
    [`Precond`][sdekit.wrappers.Precond] model, ``F(c_in x_t / alpha, c_noise)`` (before
    the ``c_skip`` / ``c_out`` combination, as in the paper); otherwise ``model(x_t, t)``."""
    if isinstance(model, Precond):
        tb = broadcast_time(t, x_t)
        _, _, c_in, _ = model.coefficients(tb)
        _, _, _, c_noise = model.coefficients(jnp.asarray(t))
        x_hat = x_t / model.process.alpha(tb)
        return call_model(model.net, (c_in * x_hat).astype(x_t.dtype), c_noise, cond, key)
    return call_model(model, x_t, t, cond, key)


class EqvReg(AbstractObjective):
    """``loss = objective(model) + weight * E[ mean |F(x_t) - g^{-1} F_tgt(g x_t)|^2 ]``.

    One group element ``g`` is drawn per mini-batch (uniformly among the non-identity elements,
    or all of them with ``include_identity``), ``x_t`` is drawn from the process at a time from
    the objective's time sampler, ``F`` is the raw network output
    ([`raw_output`][sdekit.objectives.raw_output]: inside EDM preconditioning when the model is a
    `Precond`), and ``F_tgt`` is the *target network*, the objective's auxiliary state: an
    exponential moving average of the model with rate ``target_rate`` (0.95 in the paper), used
    without gradient. `fit` keeps and checkpoints it; called by hand, pass it as ``aux=`` (a
    model or its array leaves; ``None`` uses the model itself, a target rate of 0). The
    regulariser has no time weighting. ``objective`` is any `AbstractObjective` on a Gaussian
    process (e.g. `DSM` with ``weighting="karras"`` and a `LogNormalTime` sampler on `EDM`).

    The regulariser makes a plain network *approximately* equivariant; for exactness use an
    equivariant architecture or [`symmetrise`][sdekit.wrappers.symmetrise].

    Differences from the original code: the identity is excluded for every group (the original
    excludes it for C4 but may draw it for D4, where it contributes zero); with
    self-conditioning the regulariser runs the network with a zero estimate on both sides.
    """

    objective: AbstractObjective
    group: str = eqx.field(static=True)
    weight: float = 1.0
    include_identity: bool = eqx.field(static=True, default=False)
    target_rate: float = 0.95

    def __check_init__(self):
        if not isinstance(self.objective, AbstractObjective):
            raise arg_error("objective", type(self.objective).__name__,
                            "an AbstractObjective (e.g. DSM)")
        if not isinstance(self.objective.process, AbstractGaussianProcess):
            raise arg_error("objective", type(self.objective).__name__,
                            "an objective on a Gaussian process (e.g. DSM)")
        get_group(self.group)
        check_real("weight", self.weight, lo=0.0)
        check_real("target_rate", self.target_rate, lo=0.0, hi=1.0)

    # the wrapped objective's process, times and weighting
    @property
    def process(self):
        return self.objective.process

    @property
    def time_sampler(self):
        return self.objective.time_sampler

    @property
    def weighting(self):
        return self.objective.weighting

    def default_times(self):
        return self.objective.times

    def init_aux(self, model: Any) -> Any:
        """The target network's arrays, starting as the model's."""
        return eqx.filter(model, eqx.is_inexact_array)

    def update_aux(self, aux: Any, model: Any) -> Any:
        """``target <- target_rate * target + (1 - target_rate) * model``."""
        return eqx.filter(ema_target(aux, model, self.target_rate), eqx.is_inexact_array)

    def draw(self, key, x0):
        k_base, k_reg = jr.split(key)
        t, noise, k_model = self.objective.draw(k_base, x0)
        return t, (*noise, k_reg), k_model

    def per_example(self, model: Any, x0: Data, t: Any, *noise: Any, cond: Any = None,
                    key: Key | None = None, aux: Any = None) -> Array:
        """The base objective's per-example loss plus ``weight`` times the regulariser's; the
        last entry of ``noise`` is the regulariser's key."""
        *base_noise, k_reg = noise
        base = self.objective.per_example(model, x0, t, *base_noise, cond=cond, key=key)
        reg = self._regulariser(model, k_reg, x0, cond, aux)
        return base + self.weight * reg

    def _target(self, model, aux):
        if aux is None:
            return model
        return eqx.combine(aux, eqx.filter(model, eqx.is_inexact_array, inverse=True))

    def _regulariser(self, model, key, x0, cond, aux) -> Array:
        if x0.ndim != 4 or x0.shape[1] != x0.shape[2]:
            raise arg_error("x0", f"shape {x0.shape}", "square NHWC images (N, H, H, C)")
        grp = get_group(self.group)
        if grp.order == 1:
            return jnp.zeros(x0.shape[:1], x0.dtype)
        k_t, k_x, k_g = jr.split(key, 3)
        p = self.objective.process
        t = self.objective.times(k_t, x0.shape)
        x_t = p.sample_marginal(k_x, x0, t)
        lo = 0 if self.include_identity else 1
        g = jr.randint(k_g, (), lo, grp.order)
        fwd, inv = _perm_tables(self.group, x0.shape[1], x0.shape[2])
        fwd, inv = jnp.asarray(fwd)[g], jnp.asarray(inv)[g]
        tgt = jax.lax.stop_gradient(self._target(model, aux))
        t_g = _gather(t, fwd) if jnp.ndim(t) == 4 and t.shape[1:3] == x_t.shape[1:3] else t
        out = raw_output(model, x_t, t, cond)
        back = _gather(raw_output(tgt, _gather(x_t, fwd), t_g, cond), inv)
        return mean_per_example(jnp.square(out - jax.lax.stop_gradient(back)))

    def regulariser(self, model: Any, key: Key, x0: Data, cond: Any = None, *,
                    aux: Any = None) -> Array:
        """The regulariser term alone (one ``g``, one draw of ``t`` and ``x_t``)."""
        return jnp.mean(self._regulariser(model, key, x0, cond, aux))


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
