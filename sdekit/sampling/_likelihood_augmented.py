"""Likelihood bound for augmented processes (CLD, PSLD and other linear augmented SDEs).

The probability-flow ODE of an augmented process is a flow on the joint state ``z = [x, m]``, so
it gives the joint density ``p(x0, m0)`` (via `log_likelihood`'s machinery on the state), not
``p(x0)``. With the auxiliary variables drawn from their initial distribution
``m0 ~ q(m0 | x0)`` (the process's ``initial_covariance`` around ``state_from(x0)``, that
is ``[x0, 0]``), Jensen's inequality gives the bound of Dockhorn et al. (CLD, 2022, Appendix):

``log p(x0) >= E_{m0 ~ q}[log p(x0, m0) - log q(m0 | x0)]``,

and ``K`` importance samples tighten it (Burda et al.'s bound, still a lower bound, increasing in
``K`` and tending to ``log p(x0)``):

``log p(x0) >= E[log (1/K) sum_k p(x0, m0_k) / q(m0_k | x0)]``.

The bound is exact when ``q`` is the model's own conditional ``p(m0 | x0)`` (as it is for the
true score, since the forward process starts from ``p_data(x0) q(m0 | x0)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Data, Key
from .._validate import static_int
from ..processes import AbstractLinearSDE, AbstractProcess
from ._base import PredictionFn
from ._likelihood import (
    LikelihoodOptions,
    _solve,
    bits_per_dim,
    check_batch,
    likelihood_interval,
)


class AugmentedLikelihoodResult(eqx.Module):
    """What `augmented_log_likelihood` returns.

    **Fields:** ``log_prob_bound`` (nats per example ``(N,)``: the importance-weighted lower
    bound on ``log p(x0)``), ``elbo`` (the plain bound, the mean over samples of
    ``log p(x0, m0) - log q(m0)``; equals ``log_prob_bound`` for one sample), ``joint_log_prob``
    (``(K, N)``: ``log p(x0, m0_k)``), ``aux_log_prob`` (``(K, N)``: ``log q(m0_k | x0)``),
    ``bits_per_dim`` (the bound in bits per data dimension, an upper bound), ``nfe``
    (vector-field evaluations of all ``K`` solves together).
    """

    log_prob_bound: Array
    elbo: Array
    joint_log_prob: Array
    aux_log_prob: Array
    bits_per_dim: Array
    nfe: Array


def _aux_distribution(process: Any) -> tuple[np.ndarray, np.ndarray]:
    """Square root and the positive-eigenvalue basis of the per-element initial covariance."""
    cov = np.asarray(process.initial_covariance(), np.float64)
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    pos = w > 1e-12 * max(1.0, float(np.max(np.abs(w))))
    if not np.any(pos):
        raise TypeError(
            f"{type(process).__name__} has a deterministic initial state (initial_covariance is "
            "zero): use log_likelihood, the bound is only for processes with random auxiliaries."
        )
    return w[pos], v[:, pos]


def _components(z: Data, k: int) -> Data:
    """``(..., k*C)`` state -> ``(..., C, k)`` per-element component vectors."""
    c = z.shape[-1] // k
    return jnp.moveaxis(z.reshape(z.shape[:-1] + (k, c)), -2, -1)


def augmented_log_likelihood(
    key: Key,
    process: AbstractProcess,
    model: Callable,
    x: Data,
    *,
    num_samples: int = 1,
    prediction: Any = "eps",
    cond: Any = None,
    t_start: float | None = None,
    t_end: float | None = None,
    num_bits: int | None = None,
    options: LikelihoodOptions | None = None,
    **option_kwargs: Any,
) -> AugmentedLikelihoodResult:
    """Lower bound on ``log p(x0)`` for an augmented process, with ``m0`` integrated out.

    Draws ``num_samples`` auxiliary initial states ``m0 ~ q(m0 | x0)`` per example, computes the
    joint ``log p(x0, m0)`` with the probability-flow ODE on the augmented state (as
    `log_likelihood`), and returns the importance-weighted bound
    ``logmeanexp_k [log p(x0, m0_k) - log q(m0_k | x0)]`` (see the module docstring).

    **Arguments:** as `log_likelihood`, plus ``num_samples`` (importance samples ``K``; more
    tighten the bound) and ``num_bits`` (for ``bits_per_dim``: ``None`` for the density's own
    units, 8 for dequantised 8-bit images, see `bits_per_dim`).

    **Returns:** an `AugmentedLikelihoodResult` (nats per example, and the bound in bits/dim).
    """
    opts = LikelihoodOptions.resolve(options, option_kwargs)
    static_int("num_samples", num_samples, 1)
    x = check_batch(x)
    state_shape = tuple(process.state_shape(x.shape))
    if state_shape == tuple(x.shape) or not isinstance(process, AbstractLinearSDE):
        raise TypeError(
            f"augmented_log_likelihood needs an augmented process (state [x, m]); got "
            f"{type(process).__name__}, whose state is the data: use log_likelihood."
        )
    t_start, t_end = likelihood_interval(process, t_start, t_end)
    w, basis = _aux_distribution(process)
    k = int(process.k)
    fn = PredictionFn(process, model, prediction, cond)
    joints, auxs, nfe = [], [], 0
    for key_k in jr.split(key, int(num_samples)):
        k_aux, k_div = jr.split(key_k)
        # z0 = state_from(x) + B diag(sqrt(w)) e, e ~ N(0, I) in the r = len(w) random directions
        e = jr.normal(k_aux, x.shape + (len(w),), x.dtype)
        offset = jnp.einsum("kr,...r->...k", jnp.asarray(basis * np.sqrt(w), x.dtype), e)
        z0 = process.state_from(x) + jnp.moveaxis(offset, -1, -2).reshape(state_shape)
        # log q: Gaussian in the random directions (the x direction is fixed at the data)
        proj = jnp.einsum("kr,...k->...r", jnp.asarray(basis, x.dtype),
                          _components(z0 - process.state_from(x), k))
        logq = -0.5 * (proj**2 / jnp.asarray(w, x.dtype) + jnp.log(2 * math.pi * jnp.asarray(
            w, x.dtype)))
        auxs.append(jnp.sum(logq.reshape(x.shape[0], -1), axis=-1))
        res = _solve(k_div, fn, z0, opts.divergence, opts.probe, int(opts.n_probes),
                     float(opts.rtol), float(opts.atol), opts.ode_solver, t_start, t_end,
                     int(opts.max_steps))
        joints.append(res.log_prob)
        nfe = nfe + res.nfe
    joint = jnp.stack(joints)
    aux = jnp.stack(auxs)
    ratio = joint - aux
    bound = jax.nn.logsumexp(ratio, axis=0) - math.log(int(num_samples))
    dims = math.prod(x.shape[1:])
    return AugmentedLikelihoodResult(
        log_prob_bound=bound, elbo=jnp.mean(ratio, axis=0), joint_log_prob=joint,
        aux_log_prob=aux, bits_per_dim=bits_per_dim(bound, dims, num_bits=num_bits),
        nfe=jnp.asarray(nfe),
    )


__all__ = ["AugmentedLikelihoodResult", "augmented_log_likelihood"]
