r"""Constrained denoising score matching (Lou & Ermon 2023, "Reflected Diffusion Models",
section 3).

DSM carries over to a bounded domain unchanged, only the target becomes the score of the
(non-Gaussian) transition kernel: for each example $t \sim U[t_0, t_1]$,
$x_t = \mathrm{perturb}(x_0, t, \varepsilon)$ and

$$\ell = \lambda(t)\, R\big[(s_\theta(x_t, t) - \nabla_{x_t} \log p(x_t \mid x_0))^2\big]$$

with $\lambda = \sigma(t)^2$ (default) or $g(t)^2$ (``weighting="likelihood"``) and $R$ = half
the sum over dimensions (default) or the mean. With
[`SigmaScaledScore`][sdekit.wrappers.SigmaScaledScore] ($s = F / \sigma$) the default loss is
$\tfrac12 \|F - \sigma \nabla \log p\|^2$; far from the walls $\sigma \nabla\log p = -\varepsilon$,
the epsilon-prediction loss up to sign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Data, Key, Time
from .._model import call_model
from .._validate import arg_error, check_choice, check_output_shape
from ..processes import AbstractClosedFormTransitionProcess
from ._base import AbstractObjective
from ._time import AbstractTimeSampler
from ._weighting import AbstractWeighting, Likelihood, NoiseVariance, weighting

#: ConstrainedDSM's weighting shorthands.
CONSTRAINED_WEIGHTINGS: tuple[str, ...] = ("sigma2", "likelihood")
REDUCTIONS: tuple[str, ...] = ("half_sum", "mean")


class ConstrainedDSM(AbstractObjective):
    """Denoising score matching with the exact score of a closed-form non-Gaussian transition
    (reflected diffusion's "constrained DSM"; see the module docstring).

    **Arguments:**

    - `process`: an `AbstractClosedFormTransitionProcess`, e.g. `ReflectedVE`.
    - `weighting`: ``"sigma2"`` ([`NoiseVariance`][sdekit.objectives.NoiseVariance],
      ``lambda = sigma(t)^2``, the reference's default), ``"likelihood"``
      ([`Likelihood`][sdekit.objectives.Likelihood], ``g(t)^2``; for `ReflectedVE`
      ``2 log(sigma_max/sigma_min)`` times ``sigma2``), any weighting module or a callable
      ``lambda(t)``.
    - `reduce`: ``"half_sum"`` (``1/2`` sum over dimensions, the reference's default) or
      ``"mean"``.
    - `time_sampler`: default ``U[t0, t1]``.

    The model returns a score (e.g. `SigmaScaledScore` around a network). The target is
    constant (no gradient flows into it).
    """

    process: AbstractClosedFormTransitionProcess
    weighting: AbstractWeighting = eqx.field(default="sigma2", converter=lambda w: weighting(
        w, {"sigma2": NoiseVariance, "likelihood": Likelihood}))
    reduce: str = "half_sum"
    time_sampler: AbstractTimeSampler | None = None

    def __check_init__(self):
        if not isinstance(self.process, AbstractClosedFormTransitionProcess):
            raise arg_error("process", type(self.process).__name__,
                            "an AbstractClosedFormTransitionProcess (e.g. ReflectedVE)")
        self.weighting.check_process(self.process)
        check_choice("reduce", self.reduce, REDUCTIONS)

    def per_example(self, model: Callable, x0: Data, t: Time, eps: Data, cond: Any = None,
                    key: Key | None = None, *, aux: Any = None) -> Array:
        """Per-example losses ``(N,)`` for given times and noise (deterministic)."""
        p = self.process
        x_t = p.perturb(x0, t, eps)
        target = jax.lax.stop_gradient(p.conditional_score(x_t, x0, t))
        out = call_model(model, x_t, t, cond, key)
        check_output_shape("model", out, p.prediction_shape(x_t.shape))
        err = self.weight(t, x_t) * (out - target) ** 2
        err = err.reshape(err.shape[0], -1)
        return 0.5 * jnp.sum(err, axis=-1) if self.reduce == "half_sum" else jnp.mean(err, axis=-1)


__all__ = ["CONSTRAINED_WEIGHTINGS", "ConstrainedDSM", "REDUCTIONS"]
