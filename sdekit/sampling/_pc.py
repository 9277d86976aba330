"""Predictor–corrector sampling (Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021,
"Score-Based Generative Modeling through Stochastic Differential Equations", Algorithms 2–3).

At each grid time ``t`` the corrector runs ``n_corrector`` Langevin MCMC steps at fixed ``t``,
``x <- x + e s(x, t) + sqrt(2 e) z`` with the step size set by the signal-to-noise ratio
``e = 2 a (snr ||z|| / ||s||)^2`` (``a = alpha(t)^2 / alpha(t - h)^2`` for affine processes, as
score_sde's ``alphas``, else 1), then the predictor takes one reverse-SDE step to the next time:

- ``euler_maruyama``: ``x <- x + h (-f + g^2 s) + g sqrt(h) z`` (any process);
- ``reverse_diffusion``: score_sde's ``ReverseDiffusionPredictor`` on the discretised forward
  chain ``x_t = a x_s + sqrt(v) z``: ``x <- (2 - a) x + v s + sqrt(v) z`` (affine processes;
  Euler–Maruyama for others).

As in score_sde, ``||z||`` and ``||s||`` are per-example norms averaged over the batch (per-example
ratios are heavy-tailed in low dimension and make the step size erratic), so the step size is
shared by the batch.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import ArrayLike, Data, Key
from .._validate import check_choice, static_int, static_real
from ..processes import AbstractAffineGaussianProcess
from ._base import PredictionFn
from ._grids import AbstractGrid
from ._loop import AbstractFixedStepSampler

PREDICTORS: tuple[str, ...] = ("euler_maruyama", "reverse_diffusion")


def _norm(x):
    return jnp.mean(jnp.sqrt(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=-1)))


class PC(AbstractFixedStepSampler):
    """Predictor–corrector sampler (score_sde): Langevin corrector + reverse-SDE predictor.

    Works for every process with a score (the reflection map is applied after each corrector
    update and after each step). ``grid``: ``uniform``, ``quadratic``, ``karras`` or an explicit
    array of ``num_steps + 1`` times. **NFE** = ``num_steps * (1 + n_corrector)``.
    """

    num_steps: int | None = None
    snr: float = 0.16
    n_corrector: int = 1
    predictor: str = "euler_maruyama"
    grid: str | AbstractGrid | ArrayLike = "uniform"
    ode: ClassVar[bool] = False
    order: ClassVar[float] = 1.0
    default_steps: ClassVar[int] = 1000

    def __check_init__(self):
        static_real("snr", self.snr, "a finite value > 0", lambda v: v > 0)
        static_int("n_corrector", self.n_corrector, 0)
        check_choice("predictor", self.predictor, PREDICTORS)

    @property
    def step_nfe(self) -> int:  # type: ignore[override]
        return 1 + int(self.n_corrector)

    def step(self, fn: PredictionFn, t, t_next, z: Data, memory, key: Key):
        p = fn.process
        affine = isinstance(p, AbstractAffineGaussianProcess)
        kc, kp = jr.split(key)
        a = (p.alpha(t) / p.alpha(t_next)) ** 2 if affine else jnp.ones((), z.dtype)

        def corrector(z, kk):  # one Langevin step at fixed t
            s = fn.score(z, t)
            noise = jr.normal(kk, z.shape, z.dtype)
            ns = _norm(s)
            # a zero score (e.g. the exact score of a uniform law) gives no Langevin step size:
            # skip the corrector there instead of forming inf * 0
            step = 2.0 * a * (self.snr * _norm(noise) / jnp.where(ns > 0, ns, 1.0)) ** 2
            e = jnp.where(ns > 0, step, 0.0)
            return p.reflect(z + e * s + jnp.sqrt(2.0 * e) * noise), None

        if int(self.n_corrector) > 0:
            z, _ = jax.lax.scan(corrector, z, jr.split(kc, int(self.n_corrector)))
        noise = jr.normal(kp, z.shape, z.dtype)
        if self.predictor == "reverse_diffusion" and affine:
            r = p.alpha(t) / p.alpha(t_next)
            v = p.sigma(t) ** 2 - (r * p.sigma(t_next)) ** 2
            z = (2.0 - r) * z + v * fn.score(z, t) + jnp.sqrt(v) * noise
        else:
            h = t - t_next
            z = z + h * fn.reverse_drift(z, t) + p.diffusion(t, z) * jnp.sqrt(h) * noise
        return z, memory


__all__ = ["PC", "PREDICTORS"]
