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

from .._custom_types import Data, Key
from .._errors import arg_error, check_choice
from ..processes import AbstractAffineGaussianProcess
from ._affine import check_steps
from ._base import AbstractSampler, PredictionFn
from ._grids import GRIDS, time_grid

PREDICTORS: tuple[str, ...] = ("euler_maruyama", "reverse_diffusion")


def _norm(x):
    return jnp.mean(jnp.sqrt(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=-1)))


class PC(AbstractSampler):
    """Predictor–corrector sampler (score_sde): Langevin corrector + reverse-SDE predictor.

    Works for every process with a score (the reflection map is applied after each update).
    **NFE** = ``num_steps * (1 + n_corrector)``.
    """

    num_steps: int = 1000
    snr: float = 0.16
    n_corrector: int = 1
    predictor: str = "euler_maruyama"
    grid: str = "uniform"
    ode: ClassVar[bool] = False

    def __check_init__(self):
        check_steps(self.num_steps)
        if not float(self.snr) > 0:
            raise arg_error("snr", self.snr, "a value > 0")
        if isinstance(self.n_corrector, bool) or int(self.n_corrector) != self.n_corrector or \
                int(self.n_corrector) < 0:
            raise arg_error("n_corrector", self.n_corrector, "an integer >= 0")
        check_choice("predictor", self.predictor, PREDICTORS)
        check_choice("grid", self.grid, GRIDS)

    def solve(self, key: Key, fn: PredictionFn, z1: Data, t_end: float, *,
              save_trajectory: bool = False):
        p = fn.process
        n = int(self.num_steps)
        m = int(self.n_corrector)
        ts = time_grid(self.grid, n, p.t1, t_end).astype(z1.dtype)
        affine = isinstance(p, AbstractAffineGaussianProcess)

        def corrector(z, t, a, k):
            def one(z, kk):
                s = fn.score(z, t)
                noise = jr.normal(kk, z.shape, z.dtype)
                e = 2.0 * a * (self.snr * _norm(noise) / _norm(s)) ** 2
                return p.reflect(z + e * s + jnp.sqrt(2.0 * e) * noise), None

            if m == 0:
                return z
            z, _ = jax.lax.scan(one, z, jr.split(k, m))
            return z

        def predictor(z, t, t_next, k):
            noise = jr.normal(k, z.shape, z.dtype)
            h = t - t_next
            if self.predictor == "reverse_diffusion" and affine:
                a = p.alpha(t) / p.alpha(t_next)
                v = p.sigma(t) ** 2 - (a * p.sigma(t_next)) ** 2
                z = (2.0 - a) * z + v * fn.score(z, t) + jnp.sqrt(v) * noise
            else:
                g = p.diffusion(t, z)
                z = z + h * fn.reverse_drift(z, t) + g * jnp.sqrt(h) * noise
            return p.reflect(z)

        def body(z, inp):
            t, t_next, k = inp
            kc, kp = jr.split(k)
            a = (p.alpha(t) / p.alpha(t_next)) ** 2 if affine else jnp.ones((), z.dtype)
            z = corrector(z, t, a, kc)
            z = predictor(z, t, t_next, kp)
            return z, (z if save_trajectory else None)

        z, traj = jax.lax.scan(body, z1, (ts[:-1], ts[1:], jr.split(key, n)))
        stats = dict(nfe=jnp.asarray(n * (1 + m)), num_steps=jnp.asarray(n),
                     num_rejected=jnp.asarray(0))
        if save_trajectory:
            stats.update(ts=ts[1:], trajectory=traj)
        return z, stats


__all__ = ["PC", "PREDICTORS"]
