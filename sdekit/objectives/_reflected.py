"""Constrained denoising score matching (Lou & Ermon 2023, reflected.md section 5) and the
sigma-conditioned, sigma-scaled score network of the reference code.

DSM carries over to a bounded domain unchanged, only the target becomes the score of the
(non-Gaussian) transition kernel: for each example ``t ~ U[t0, t1]``, ``x_t = perturb(x_0, t,
eps)`` and the per-example loss is ``lambda(t) R[(s_theta(x_t, t) - grad log p(x_t | x_0))^2]``
with ``lambda = sigma(t)^2`` (default) or ``g(t)^2`` (``weighting="likelihood"``) and
``R`` = half the sum over dimensions (default) or the mean. With `SigmaScaledScore`
(``s = F / sigma``) the default loss is ``1/2 |F - sigma * target|^2``; far from the walls
``sigma * target = -eps``, the epsilon-prediction loss up to sign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key, Time
from .._errors import arg_error, broadcast_time, check_choice, check_output_shape
from .._model import call_model
from ..processes import AbstractClosedFormTransitionProcess
from ._time import AbstractTimeSampler, UniformTime

CONSTRAINED_WEIGHTINGS: tuple[str, ...] = ("sigma2", "likelihood")
REDUCTIONS: tuple[str, ...] = ("half_sum", "mean")
NOISE_INPUTS: tuple[str, ...] = ("sigma", "t")


class SigmaScaledScore(eqx.Module):
    """A score model from a network conditioned on the noise scale (the reference's networks).

    Called with sdekit's convention ``model(x, t, cond=None, *, key=None)`` (``t`` the process
    time), it evaluates ``F = net(x, sigma(t), cond)`` (``noise_input="sigma"``, as the
    reference: its DDPM++ embeds ``log sigma`` with Fourier features; ``"t"`` passes ``t``) and
    returns the score ``F / sigma(t)`` (``scale_by_sigma=True``) or ``F``. Use it with
    ``prediction="score"`` in `sdekit.sampling.sample`.
    """

    net: Callable
    process: AbstractClosedFormTransitionProcess
    scale_by_sigma: bool = True
    noise_input: str = "sigma"

    def __check_init__(self):
        if not isinstance(self.process, AbstractClosedFormTransitionProcess):
            raise arg_error("process", type(self.process).__name__,
                            "an AbstractClosedFormTransitionProcess (e.g. ReflectedVE)")
        check_choice("noise_input", self.noise_input, NOISE_INPUTS)

    def __call__(self, x: Data, t: Time, cond: Any = None, *, key: Key | None = None) -> Data:
        t = jnp.asarray(t, dtype=x.dtype)
        sigma = self.process.noise_scale(t).astype(x.dtype)
        noise = sigma if self.noise_input == "sigma" else t
        out = call_model(self.net, x, noise, cond, key)
        if not self.scale_by_sigma:
            return out
        return out / broadcast_time(sigma, out)


class ConstrainedDSM(eqx.Module):
    """Denoising score matching with the exact score of a closed-form non-Gaussian transition
    (reflected diffusion's "constrained DSM").

    **Arguments:** ``process`` (an `AbstractClosedFormTransitionProcess`, e.g. `ReflectedVE`);
    ``weighting``: ``"sigma2"`` (``lambda = sigma(t)^2``, the reference's default) or
    ``"likelihood"`` (``g(t)^2``; for `ReflectedVE` this is ``2 log(sigma_max/sigma_min)`` times
    ``sigma2``) or a callable ``lambda(t)``; ``reduce``: ``"half_sum"`` (``1/2`` sum over
    dimensions, the reference's default) or ``"mean"``; ``time_sampler`` (default
    ``U[t0, t1]``).

    Called as ``loss(model, key, x0, cond=None) -> scalar``; the model returns a score, e.g.
    `SigmaScaledScore` around a network. The target is constant (no gradient flows into it).
    """

    process: AbstractClosedFormTransitionProcess
    weighting: Any = "sigma2"
    reduce: str = "half_sum"
    time_sampler: AbstractTimeSampler | None = None

    def __check_init__(self):
        if not isinstance(self.process, AbstractClosedFormTransitionProcess):
            raise arg_error("process", type(self.process).__name__,
                            "an AbstractClosedFormTransitionProcess (e.g. ReflectedVE)")
        if not callable(self.weighting):
            check_choice("weighting", self.weighting, CONSTRAINED_WEIGHTINGS)
        check_choice("reduce", self.reduce, REDUCTIONS)

    @property
    def _times(self) -> AbstractTimeSampler:
        if self.time_sampler is not None:
            return self.time_sampler
        return UniformTime(float(self.process.t0), float(self.process.t1))

    def weight(self, t: Time, x: Data) -> Array:
        """``lambda(t)`` broadcast against ``x``."""
        tb = broadcast_time(t, x)
        if callable(self.weighting):
            return jnp.asarray(self.weighting(tb))
        if self.weighting == "sigma2":
            return self.process.noise_scale(tb) ** 2
        return self.process.diffusion(tb, x) ** 2

    def per_example(self, model: Callable, x0: Data, t: Time, eps: Data, cond: Any = None,
                    key: Key | None = None) -> Array:
        """Per-example losses ``(N,)`` for given times and noise (deterministic)."""
        p = self.process
        x_t = p.perturb(x0, t, eps)
        target = jax.lax.stop_gradient(p.conditional_score(x_t, x0, t))
        out = call_model(model, x_t, t, cond, key)
        check_output_shape("model", out, p.prediction_shape(x_t.shape))
        err = self.weight(t, x_t) * (out - target) ** 2
        err = err.reshape(err.shape[0], -1)
        return 0.5 * jnp.sum(err, axis=-1) if self.reduce == "half_sum" else jnp.mean(err, axis=-1)

    def __call__(self, model: Callable, key: Key, x0: Data, cond: Any = None) -> Array:
        k_t, k_eps, k_drop = jr.split(key, 3)
        t = self._times(k_t, x0.shape).astype(x0.dtype)
        eps = jr.normal(k_eps, self.process.state_shape(x0.shape), x0.dtype)
        return jnp.mean(self.per_example(model, x0, t, eps, cond, k_drop))


__all__ = ["CONSTRAINED_WEIGHTINGS", "ConstrainedDSM", "REDUCTIONS", "SigmaScaledScore"]
