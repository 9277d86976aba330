"""The reflected (Neumann) heat kernel on [0, 1]: fold map, score and log-density.

The law of ``F(y + sigma z)``, ``z ~ N(0, 1)``, with the fold ``F(u) = 1 - |1 - (u mod 2)|``, has
the density (Lou & Ermon 2023, "Reflected Diffusion Models", section 3)

``K(x | y) = sum_k phi_sigma(x - y - 2k) + phi_sigma(x + y - 2k)``  (method of images)
``         = 1 + 2 sum_n exp(-n^2 pi^2 sigma^2 / 2) cos(n pi x) cos(n pi y)``  (cosine series).

Both are the same function. The image sum is evaluated with max-shifted (log-sum-exp) weights,
so the nearest image always has weight 1 and the score never underflows to 0 in the far tail;
the cosine series is used only for ``sigma > 0.5``, where ``K >= 0.43`` and the sum cannot cancel.
The displacements to the nearest images are formed as ``x - y``, ``x + y`` and
``(x - 1) + (y - 1)``, so their only error is one float rounding. The score is exactly 0 at
``x in {0, 1}`` (the Neumann condition).

``reference_compatible=True`` evaluates the score as the reference code does (cosine series when
``sigma > sqrt(0.02)``, raw exponentials, ``+1e-12`` in the denominators), for bit-level
comparisons with the original implementation; it is inaccurate in the far tail (it returns 0)
and cancels catastrophically in float32 just above its switch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._custom_types import Array, ArrayLike

#: sigma above which the cosine series is used (sdekit's stable switch).
SIGMA_SWITCH: float = 0.5
#: the reference's switch, ``t_heat = sigma^2 / 2 > 0.01``.
REFERENCE_SIGMA_SWITCH: float = math.sqrt(0.02)

# Image pairs k = -K..K for the stable sum (sigma <= 0.5: an omitted image is >= 7 away, relative
# weight <= exp(-98)); cosine terms n = 1..N for sigma > 0.5 (first omitted term exp(-169 pi^2/8)).
_K_IMAGES = 3
_N_TERMS = 12
# The reference's truncations.
_REF_K = 10
_REF_N = 20


def fold(u: ArrayLike) -> Array:
    """The reflection map of [0, 1]: ``F(u) = 1 - |1 - (u mod 2)|`` (floor-mod into [0, 2)).

    2-periodic, even about 0 and 1, the identity on [0, 1]; the result is always in [0, 1]
    (also in float32 where ``u mod 2`` rounds up to 2).
    """
    u = jnp.asarray(u)
    r = jnp.mod(u, 2.0)
    general = jnp.clip(1.0 - jnp.abs(1.0 - r), 0.0, 1.0)
    # One reflection (the common case in samplers) without the rounding of ``u mod 2``.
    once = jnp.where(u < 0, -u, jnp.where(u > 1, 2.0 - u, u))
    return jnp.where((u >= -1) & (u <= 2), once, general)


def _displacements(x, y, k_max):
    """``x - c`` for every image centre ``c in {y + 2k, -y + 2k}``, stacked on a new axis 0."""
    us = []
    for k in range(-k_max, k_max + 1):
        us.append((x - y) - 2.0 * k)
        if k == 1:  # x - (2 - y) without rounding 2 - y: exact near x = y = 1
            us.append((x - 1.0) + (y - 1.0))
        else:
            us.append((x + y) - 2.0 * k)
    return jnp.stack(us)


def _images_terms(x, y, sigma):
    u = _displacements(x, y, _K_IMAGES)
    logw = -0.5 * (u / sigma) ** 2
    m = jax.lax.stop_gradient(jnp.max(logw, axis=0))
    w = jnp.exp(logw - m)
    return u, w, m


def _images_score(x, y, sigma):
    u, w, _ = _images_terms(x, y, sigma)
    return -jnp.sum(w * u, axis=0) / (jnp.sum(w, axis=0) * sigma**2)


def _images_log_density(x, y, sigma):
    _, w, m = _images_terms(x, y, sigma)
    return m + jnp.log(jnp.sum(w, axis=0)) - jnp.log(sigma) - 0.5 * math.log(2.0 * math.pi)


def _cosine_sums(x, y, sigma, n_terms):
    n = jnp.arange(1, n_terms + 1, dtype=x.dtype).reshape((-1,) + (1,) * x.ndim)
    decay = jnp.exp(-0.5 * (n * math.pi * sigma) ** 2)
    cy = jnp.cos(n * math.pi * y)
    k_minus_1 = 2.0 * jnp.sum(decay * jnp.cos(n * math.pi * x) * cy, axis=0)
    dk = -2.0 * math.pi * jnp.sum(n * decay * jnp.sin(n * math.pi * x) * cy, axis=0)
    return k_minus_1, dk


def _broadcast(x, y, sigma):
    x = jnp.asarray(x)
    dtype = jnp.result_type(x, y, sigma, float)
    x, y, sigma = (jnp.asarray(a, dtype) for a in (x, y, sigma))
    shape = jnp.broadcast_shapes(x.shape, y.shape, sigma.shape)
    return tuple(jnp.broadcast_to(a, shape) for a in (x, y, sigma))


def heat_kernel_score(
    x: ArrayLike,
    y: ArrayLike,
    sigma: ArrayLike,
    *,
    reference_compatible: bool = False,
) -> Array:
    """``d/dx log K_sigma(x | y)`` on [0, 1], elementwise (arguments broadcast).

    ``x`` is the noisy point, ``y`` the centre (data), ``sigma`` the Gaussian std before folding
    (``sigma^2 / 2`` is the reference's heat time). Finite everywhere, exactly 0 at ``x = 0``
    and ``x = 1``; float32 errors are those of rounding ``x - y`` (about ``6e-8 / sigma`` in
    ``sigma * score`` units). See the module docstring for ``reference_compatible``.
    """
    x, y, sigma = _broadcast(x, y, sigma)
    if reference_compatible:
        return _reference_score(x, y, sigma)
    return _stable_score(x, y, sigma)


@jax.jit
def _stable_score(x, y, sigma):
    lo = jnp.minimum(sigma, SIGMA_SWITCH)  # each branch only sees the sigmas it is accurate for
    hi = jnp.maximum(sigma, SIGMA_SWITCH)
    s_img = _images_score(x, y, lo)
    km1, dk = _cosine_sums(x, y, hi, _N_TERMS)
    s_cos = dk / (1.0 + km1)
    s = jnp.where(sigma <= SIGMA_SWITCH, s_img, s_cos)
    return jnp.where((x == 0) | (x == 1), jnp.zeros_like(s), s)


def heat_kernel_log_density(x: ArrayLike, y: ArrayLike, sigma: ArrayLike) -> Array:
    """``log K_sigma(x | y)`` on [0, 1], elementwise (the density of ``F(y + sigma z)``)."""
    return _stable_log_density(*_broadcast(x, y, sigma))


@jax.jit
def _stable_log_density(x, y, sigma):
    lo = jnp.minimum(sigma, SIGMA_SWITCH)
    hi = jnp.maximum(sigma, SIGMA_SWITCH)
    l_img = _images_log_density(x, y, lo)
    km1, _ = _cosine_sums(x, y, hi, _N_TERMS)
    return jnp.where(sigma <= SIGMA_SWITCH, l_img, jnp.log1p(km1))


@jax.jit
def _reference_score(x, y, sigma):
    """The reference's ``score_hk`` (efs=20, refls=10, min_cutoff=1e-2), formula for formula."""
    tau = 0.5 * sigma**2
    eig = tau > 0.01
    tau_e = jnp.where(eig, tau, 1.0)
    n = jnp.arange(1, _REF_N + 1, dtype=x.dtype).reshape((-1,) + (1,) * x.ndim)
    e = jnp.exp(-(n**2) * math.pi**2 * tau_e)
    num = -2.0 * math.pi * jnp.sum(n * e * jnp.sin(n * math.pi * x) * jnp.cos(n * math.pi * y),
                                   axis=0)
    den = 1.0 + 2.0 * jnp.sum(e * jnp.cos(n * math.pi * x) * jnp.cos(n * math.pi * y), axis=0)
    s_eig = num / (den + 1e-12)
    tau_i = jnp.where(eig, 1.0, tau)
    k = jnp.arange(-_REF_K, _REF_K + 1, dtype=x.dtype).reshape((-1,) + (1,) * x.ndim)
    u = jnp.concatenate([x - (y + 2.0 * k), x - (-y + 2.0 * k)], axis=0)
    w = jnp.exp(-(u**2) / (4.0 * tau_i))
    s_img = jnp.sum(-u / (2.0 * tau_i) * w, axis=0) / (jnp.sum(w, axis=0) + 1e-12)
    return jnp.where(eig, s_eig, s_img)


__all__ = [
    "REFERENCE_SIGMA_SWITCH",
    "SIGMA_SWITCH",
    "fold",
    "heat_kernel_log_density",
    "heat_kernel_score",
]
