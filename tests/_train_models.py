"""Tiny model and objective shared by the training tests and the training worker script."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr


class TinyMLP(eqx.Module):
    """``model(x, t, cond=None, *, key=None)`` for (N, d) points: an MLP on ``[x, t]``."""

    mlp: eqx.nn.MLP

    def __init__(self, dim: int = 2, width: int = 16, *, key):
        self.mlp = eqx.nn.MLP(dim + 1, dim, width, 2, activation=jax.nn.silu, key=key)

    def __call__(self, x, t, cond=None, *, key=None):
        t = jnp.broadcast_to(jnp.reshape(t, (-1, 1)), (x.shape[0], 1))
        return jax.vmap(self.mlp)(jnp.concatenate([x, t], axis=-1))


class LinearDSM(eqx.Module):
    """DSM-like loss with fixed linear noising: x_t = (1 - t) x0 + t eps, MSE of model(x_t, t)
    vs eps."""

    def __call__(self, model, key, x0, cond=None):
        kt, ke = jr.split(key)
        t = jr.uniform(kt, (x0.shape[0],))
        eps = jr.normal(ke, x0.shape)
        tb = t.reshape((-1,) + (1,) * (x0.ndim - 1))
        xt = (1 - tb) * x0 + tb * eps
        return jnp.mean((model(xt, t) - eps) ** 2)
