"""Denoising score matching for any Gaussian process, any target and any weighting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_real
from .._custom_types import Array, Data, Float, Key, Time, TimeT
from .._errors import arg_error, broadcast_time, check_choice, check_output_shape
from .._model import call_model
from ..parameterisation import PREDICTIONS, convert, edm_weight
from ..processes import AbstractAffineGaussianProcess, AbstractGaussianProcess
from ._time import AbstractTimeSampler, UniformTime

WEIGHTINGS = ("constant", "snr", "truncated_snr", "snr_plus_one", "min_snr", "likelihood", "karras")


class DSM(eqx.Module):
    """Denoising score matching: ``E_{t, x0, eps}[ lambda(t) mean |target_hat - target|^2 ]``.

    The network output (of kind ``prediction``) is converted exactly to the ``target`` space
    (``eps``, ``x0``, ``v``, ``score`` or ``velocity``; default: the prediction's own space) and
    compared with the true target at ``x_t = mean(x0, t) + C_t eps``; ``weighting`` is
    ``lambda(t)``:

    | weighting | lambda(t) |
    | --- | --- |
    | ``constant`` | 1 |
    | ``snr`` | ``exp(logsnr)`` |
    | ``truncated_snr`` | ``max(1, snr)`` |
    | ``snr_plus_one`` | ``1 + snr`` |
    | ``min_snr`` | ``min(snr, min_snr_gamma)`` (Hang et al. 2023) |
    | ``likelihood`` | ``g(t)^2`` (with ``target="score"``: the ELBO weighting of Song et al. 2021) |
    | ``karras`` | ``(s^2 + sd^2) / (s sd)^2``, ``s = sigma/alpha`` (EDM; use with ``target="x0"``) |
    | a callable | ``weighting(t)`` |

    Because ``eps_hat - eps = -(alpha/sigma)(x0_hat - x0)`` and ``v_hat - v = -(x0_hat - x0)/sigma``
    for VP processes, VDPM's four losses are ``(target, weighting)`` = ``("x0", "constant")``,
    ``("eps", "constant")`` (= snr in x0 space), ``("x0", "truncated_snr")`` and
    ``("v", "constant")`` (= 1 + snr in x0 space).

    Called as ``loss(model, key, x0, cond=None) -> scalar`` (jit-able); the model is called as
    ``model(x_t, t, cond, key=dropout_key)`` with ``t`` of shape ``(N,)`` or, for a per-element
    time sampler, shaped like ``x0``.
    """

    process: AbstractGaussianProcess
    prediction: str = "eps"
    target: str | None = None
    weighting: Any = "constant"
    time_sampler: AbstractTimeSampler | None = None
    sigma_data: float = 0.5
    min_snr_gamma: float = 5.0

    def __check_init__(self):
        if not isinstance(self.process, AbstractGaussianProcess):
            raise arg_error("process", type(self.process).__name__, "an AbstractGaussianProcess")
        check_choice("prediction", self.prediction, PREDICTIONS)
        check_real("sigma_data", self.sigma_data, lo=0.0, lo_open=True)
        check_real("min_snr_gamma", self.min_snr_gamma, lo=0.0, lo_open=True)
        if self.target is not None:
            check_choice("target", self.target, PREDICTIONS)
        if not callable(self.weighting):
            check_choice("weighting", self.weighting, WEIGHTINGS)
            needs_affine = self.weighting in (
                "snr", "truncated_snr", "snr_plus_one", "min_snr", "karras"
            )
            if needs_affine and not isinstance(self.process, AbstractAffineGaussianProcess):
                raise arg_error("weighting", self.weighting,
                                "'constant', 'likelihood' or a callable for a non-affine process")

    @property
    def _target(self) -> str:
        return self.prediction if self.target is None else self.target

    @property
    def _times(self) -> AbstractTimeSampler:
        if self.time_sampler is not None:
            return self.time_sampler
        return UniformTime(float(self.process.t0), float(self.process.t1))

    def weight(self, t: Time, x: Data) -> Array:
        """``lambda(t)`` broadcast against ``x``."""
        tb = broadcast_time(t, x)
        w = self.weighting
        p = self.process
        if callable(w):
            return jnp.asarray(w(tb))
        if w == "constant":
            return jnp.ones_like(tb)
        if w == "likelihood":
            return p.diffusion(tb, x) ** 2
        if w == "karras":
            return edm_weight(p.sigma(tb) / p.alpha(tb), self.sigma_data)
        snr = jnp.exp(p.logsnr(tb))
        if w == "snr":
            return snr
        if w == "truncated_snr":
            return jnp.maximum(snr, 1.0)
        if w == "snr_plus_one":
            return 1.0 + snr
        return jnp.minimum(snr, self.min_snr_gamma)

    def true_target(self, x0: Data, x_t: Data, t: Time, eps: Data) -> Data:
        """The regression target at ``x_t`` built from ``x0`` with noise ``eps``."""
        target = self._target
        if target == "x0":
            return x0  # x_t = mean(x0, t) + C_t eps, so the data prediction target is x0 itself
        return convert(self.process, eps, x_t, t, source="eps", target=target)

    def per_example(self, model: Callable, x0: Float[Array, "batch *dims"], t: TimeT,
                    eps: Float[Array, "batch *sdims"], cond: Any = None,
                    key: Key | None = None) -> Float[Array, " batch"]:
        """Per-example losses for given times and noise (deterministic; for tests/analysis)."""
        p = self.process
        x_t = p.perturb(x0, t, eps)
        out = call_model(model, x_t, t, cond, key)
        check_output_shape("model", out, p.prediction_shape(x_t.shape))
        pred = convert(p, out, x_t, t, source=self.prediction, target=self._target)
        err = (pred - self.true_target(x0, x_t, t, eps)) ** 2 * self.weight(t, x_t)
        return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)

    def __call__(
        self, model: Callable, key: Key, x0: Float[Array, "batch *dims"], cond: Any = None
    ) -> Float[Array, ""]:
        k_t, k_eps, k_drop = jr.split(key, 3)
        t = self._times(k_t, x0.shape)
        eps = jr.normal(k_eps, self.process.state_shape(x0.shape), x0.dtype)
        return jnp.mean(self.per_example(model, x0, t, eps, cond, k_drop))
