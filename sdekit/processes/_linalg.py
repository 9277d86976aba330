"""Per-pixel ``k x k`` linear algebra for linear SDEs on augmented states.

A state stacks ``k`` components on the channel axis; matrices of shape ``T + (k, k)`` act per
pixel. Closed forms are used for ``k <= 2`` (PSLD, CLD), batched ``jax.numpy.linalg`` otherwise.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from .._custom_types import Array, ArrayLike, Data, Float
from .._validate import arg_error

#: A per-pixel ``k x k`` matrix: float64 numpy for concrete parameters, a JAX array otherwise.
Matrix: TypeAlias = Float[ArrayLike, "k k"]
#: A vector of ``k`` per-component values.
Vector: TypeAlias = Float[ArrayLike, " k"]


def as_matrix(name: str, value: Any) -> np.ndarray:
    """A concrete square float64 matrix (a scalar is ``1 x 1``); errors name ``name``."""
    if any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(value)):
        raise arg_error(name, "a traced value", "a concrete matrix (it is static)")
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise arg_error(name, np.shape(value), "a square k x k matrix")
    if not np.all(np.isfinite(a)):
        raise arg_error(name, value, "finite entries")
    return a


def to_tuple(a: np.ndarray) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(a))


def as_array(value: Any, dtype) -> Array:
    """A matrix (numpy, nested tuples or a JAX array, possibly traced) as a JAX array of
    ``dtype``; numpy input goes through float64 first."""
    if isinstance(value, jax.Array):
        return value.astype(dtype)
    return jnp.asarray(np.asarray(value, dtype=np.float64), dtype=dtype)


def float_dtype(*xs) -> Any:
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    return dt


def align_time(t: Array, shape: tuple) -> Array:
    """`sdekit._validate.broadcast_time` for a shape: ``t`` a scalar or aligned with the
    leading axes of ``shape``; trailing singleton axes appended."""
    if t.ndim == 0:
        return t
    ts = tuple(t.shape)
    aligned = all(a == b or a == 1 for a, b in zip(ts, shape, strict=False))
    if not (len(ts) <= len(shape) and aligned):
        raise ValueError(
            f"argument `t`: got shape {ts}, expected a scalar or a shape aligned with the leading "
            f"axes of the data (shape {tuple(shape)}), e.g. {tuple(shape[:1])} per example or "
            f"{tuple(shape)} per element."
        )
    return t.reshape(ts + (1,) * (len(shape) - len(ts)))


def apply_per_pixel(mat: Array, z: Data, k: int) -> Data:
    """Apply per-pixel ``k x k`` matrices ``mat`` (shape ``T + (k, k)``, ``T`` broadcastable
    against the data shape) to a state ``z`` with ``k`` components stacked on the last axis."""
    c = z.shape[-1] // k
    if k <= 4:  # elementwise: fuses well and avoids tiny batched matmuls
        parts = [z[..., j * c : (j + 1) * c] for j in range(k)]
        outs = []
        for i in range(k):
            acc = mat[..., i, 0] * parts[0]
            for j in range(1, k):
                acc = acc + mat[..., i, j] * parts[j]
            outs.append(acc)
        return jnp.concatenate(outs, axis=-1) if k > 1 else outs[0]
    lead = z.shape[:-1]
    zk = jnp.swapaxes(z.reshape(lead + (k, c)), -1, -2)  # (*lead, C, k)
    out = jnp.matmul(mat, zk[..., None])[..., 0]
    return jnp.swapaxes(out, -1, -2).reshape(z.shape)


def tile_time(tb: Array, k: int) -> Array:
    """A time aligned with the data (last axis 1 or C) -> aligned with the state (k C)."""
    if tb.ndim == 0 or tb.shape[-1] == 1 or k == 1:
        return tb
    return jnp.concatenate([tb] * k, axis=-1)


def tri_factor(cov: Array, mode: str) -> Array:
    """``cov = C C^T`` with ``C`` lower (Cholesky) or upper triangular, batched over the front
    (closed form for ``k <= 2``)."""
    k = cov.shape[-1]
    if k == 1:
        return jnp.sqrt(cov)
    if k == 2:
        sxx, sxm, smm = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
        zero = jnp.zeros_like(sxx)
        if mode == "lower":
            l11 = jnp.sqrt(sxx)
            l21 = sxm / l11
            l22 = jnp.sqrt(smm - l21**2)
            return jnp.stack([jnp.stack([l11, zero], -1), jnp.stack([l21, l22], -1)], -2)
        u22 = jnp.sqrt(smm)
        u12 = sxm / u22
        u11 = jnp.sqrt(sxx - u12**2)
        return jnp.stack([jnp.stack([u11, u12], -1), jnp.stack([zero, u22], -1)], -2)
    if mode == "lower":
        return jnp.linalg.cholesky(cov)
    rev = cov[..., ::-1, ::-1]
    return jnp.linalg.cholesky(rev)[..., ::-1, ::-1]


def inv_small(a: Array) -> Array:
    """Batched matrix inverse (closed form for ``k <= 2``)."""
    k = a.shape[-1]
    if k == 1:
        return 1.0 / a
    if k == 2:
        p, q, r, s = a[..., 0, 0], a[..., 0, 1], a[..., 1, 0], a[..., 1, 1]
        det = p * s - q * r
        return (
            jnp.stack([jnp.stack([s, -q], -1), jnp.stack([-r, p], -1)], -2) / det[..., None, None]
        )
    return jnp.linalg.inv(a)


def expm_transition(F: Any, b: Array) -> Array:
    """``exp(b F)`` for an array of integrated times ``b`` (shape ``b.shape + (k, k)``)."""
    b = jnp.asarray(b)
    F = as_array(F, b.dtype)
    return jax.scipy.linalg.expm(b[..., None, None] * F)


_MAX_DOUBLINGS = 48


def van_loan_covariance(F: Any, GGt: Any, b: Array) -> Array:
    """``Q(b) = int_0^b exp(rF) GG^T exp(rF^T) dr``.

    Van Loan's block matrix exponential at ``b / 2^s`` (with ``|b F| / 2^s <= 1/2``), then ``s``
    doublings ``Q(2c) = Q(c) + Phi(c) Q(c) Phi(c)^T``: every step adds positive semidefinite
    terms, so there is no cancellation at small ``b`` and no overflow of ``exp(-bF)`` at large
    ``b`` (where plain Van Loan fails)."""
    b = jnp.asarray(b)
    F = np.asarray(F, np.float64)
    k = F.shape[0]
    norm = max(float(np.max(np.sum(np.abs(F), axis=1))), 1e-30)
    s = jnp.clip(jnp.ceil(jnp.log2(jnp.maximum(2.0 * b * norm, 1.0))), 0, _MAX_DOUBLINGS)
    b0 = b / 2.0**s
    big = np.zeros((2 * k, 2 * k))
    big[:k, :k] = -F
    big[:k, k:] = np.asarray(GGt, np.float64)
    big[k:, k:] = F.T
    e = jax.scipy.linalg.expm(b0[..., None, None] * as_array(big, b.dtype))
    e12, e22 = e[..., :k, k:], e[..., k:, k:]
    phi = jnp.swapaxes(e22, -1, -2)
    q = phi @ e12
    q = 0.5 * (q + jnp.swapaxes(q, -1, -2))
    s = s[..., None, None]

    def body(i, carry):
        phi, q = carry
        do = i < s
        q2 = q + phi @ q @ jnp.swapaxes(phi, -1, -2)
        return jnp.where(do, phi @ phi, phi), jnp.where(do, q2, q)

    _, q = jax.lax.fori_loop(0, _MAX_DOUBLINGS, body, (phi, q))
    return 0.5 * (q + jnp.swapaxes(q, -1, -2))


def stationary_covariance(F: Any, G: Any) -> np.ndarray:
    """Solve ``F S + S F^T + G G^T = 0`` (needs all eigenvalues of ``F`` in the left half-plane)."""
    F = as_matrix("F", F)
    G = as_matrix("G", G)
    eig = np.linalg.eigvals(F)
    if not np.all(eig.real < 0):
        raise arg_error(
            "F",
            to_tuple(F),
            "a stable matrix (all eigenvalues with negative real "
            f"part, got {eig}) so that a stationary prior exists",
        )
    S = scipy.linalg.solve_continuous_lyapunov(F, -G @ G.T)
    return 0.5 * (S + S.T)


def array_module(*params: Any) -> Any:
    """``numpy`` when every parameter is concrete (matrices then stay float64 and hashable),
    ``jax.numpy`` when one is a JAX array (traced under ``jit``/``vmap``/``grad``)."""
    return jnp if any(isinstance(p, jax.Array) for p in params) else np


__all__ = [
    "Matrix",
    "Vector",
    "align_time",
    "array_module",
    "apply_per_pixel",
    "as_array",
    "as_matrix",
    "expm_transition",
    "float_dtype",
    "inv_small",
    "stationary_covariance",
    "tile_time",
    "to_tuple",
    "tri_factor",
    "van_loan_covariance",
]
