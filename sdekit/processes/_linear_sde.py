"""Linear SDEs on augmented states: ``dz = beta(t) F z dt + sqrt(beta(t)) G dW``.

The state stacks ``k`` components on the channel axis, ``z = concat([x, m_1, ..., m_{k-1}], -1)``
(``x`` first; each component has the data's ``C`` channels), and the ``k x k`` matrices ``F``
and ``G`` act per pixel (identically and independently across pixels). With the integrated
schedule ``B(t) = int_0^t beta`` the perturbation kernel is Gaussian in closed form:

- mean ``Phi(t) z_0`` with ``Phi(t) = exp(B(t) F)``;
- covariance ``Sigma_t = Phi Sigma_0 Phi^T + Q(B(t)) + numerical_eps I`` with
  ``Q(b) = int_0^b exp(rF) G G^T exp(rF^T) dr`` (Van Loan's block matrix exponential; this
  form has no cancellation at small ``t``, unlike ``Sigma_inf + Phi (Sigma_0 - Sigma_inf) Phi^T``);
- ``Sigma_t = C_t C_t^T`` with ``C_t`` the lower (Cholesky) or upper triangular factor, so that
  ``z_t = Phi z_0 + C_t eps`` and the conditional score is ``-C_t^{-T} eps``.

The prior is the stationary law ``N(0, Sigma_inf)``, ``F Sigma_inf + Sigma_inf F^T + G G^T = 0``.

[`LinearSDE`][] is the general process; [`from_recipe`][] builds one from the "complete recipe"
``(D, Q, stationary precision)`` (Ma, Chen & Fox 2015; Pandey & Mandt 2023) and
[`check_stationary`][] verifies a claimed stationary law. [`PSLD`][] and [`CLD`][] are the
critically damped phase-space processes with closed-form, float32-stable kernels.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import scipy.linalg

from .._custom_types import Array, Data, Key, Shape, Time
from .._errors import arg_error, check_choice, check_less
from ._base import AbstractGaussianProcess
from ._schedules import linear_beta, linear_beta_integral

DECOMP_MODES = ("lower", "upper")
PSLD_MODES = ("score_xm", "score_m", "score_x")


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
def _as_matrix(name: str, value: Any) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise arg_error(name, np.shape(value), "a square k x k matrix")
    if not np.all(np.isfinite(a)):
        raise arg_error(name, value, "finite entries")
    return a


def _to_tuple(a: np.ndarray) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(a))


def _mat(value: Any, dtype) -> Array:
    return jnp.asarray(np.asarray(value, dtype=np.float64), dtype=dtype)


def _float_dtype(*xs) -> Any:
    dt = jnp.result_type(*[x.dtype if hasattr(x, "dtype") else x for x in xs])
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    return dt


def _align_time(t: Array, shape: tuple) -> Array:
    """`sdekit._errors.broadcast_time` for a shape: ``t`` a scalar or aligned with the
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


def _apply(mat: Array, z: Data, k: int) -> Data:
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


def _tile_time(tb: Array, k: int) -> Array:
    """A time aligned with the data (last axis 1 or C) -> aligned with the state (k C)."""
    if tb.ndim == 0 or tb.shape[-1] == 1 or k == 1:
        return tb
    return jnp.concatenate([tb] * k, axis=-1)


def _tri_factor(cov: Array, mode: str) -> Array:
    """``cov = C C^T`` with ``C`` lower (Cholesky) or upper triangular, batched over the front
    (closed form for ``k <= 2``, spec psld.md §4.5)."""
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


def _inv(a: Array) -> Array:
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
    F = _mat(F, b.dtype)
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
    e = jax.scipy.linalg.expm(b0[..., None, None] * _mat(big, b.dtype))
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
    F = _as_matrix("F", F)
    G = _as_matrix("G", G)
    eig = np.linalg.eigvals(F)
    if not np.all(eig.real < 0):
        raise arg_error(
            "F",
            _to_tuple(F),
            "a stable matrix (all eigenvalues with negative real "
            f"part, got {eig}) so that a stationary prior exists",
        )
    S = scipy.linalg.solve_continuous_lyapunov(F, -G @ G.T)
    return 0.5 * (S + S.T)


# ------------------------------------------------------------------------------------------------
# the abstract linear SDE
# ------------------------------------------------------------------------------------------------
class AbstractLinearSDE(AbstractGaussianProcess):
    """``dz = beta(t) F z dt + sqrt(beta(t)) G dW`` on ``k`` stacked components (see module doc).

    ``beta(t) = beta_min + t (beta_max - beta_min)``. Subclasses give the matrices
    (`drift_matrix`, `diffusion_matrix`, `initial_covariance`,
    `stationary_cov`) and the kernel pieces ``Phi(b)`` and ``Q(b)`` as functions of the
    integrated time ``b``. Networks predict ``eps`` for the components in :attr:`predicted`
    (all of them by default; PSLD's ``score_m`` / ``score_x`` modes predict one), and the
    score of the other components is taken as 0.
    """

    beta_min: eqx.AbstractVar[float]
    beta_max: eqx.AbstractVar[float]
    numerical_eps: eqx.AbstractVar[float]
    decomp_mode: eqx.AbstractVar[str]
    t0: eqx.AbstractVar[float]
    t1: eqx.AbstractVar[float]

    # --- what subclasses supply ------------------------------------------------------------
    @abc.abstractmethod
    def drift_matrix(self) -> np.ndarray:
        """``F`` (``k x k``, float64 numpy)."""

    @abc.abstractmethod
    def diffusion_matrix(self) -> np.ndarray:
        """``G`` (``k x k``, float64 numpy)."""

    @abc.abstractmethod
    def initial_covariance(self) -> np.ndarray:
        """``Sigma_0`` of ``z_0`` around ``[x_0, 0, ...]`` (HSM: the auxiliary variance)."""

    @abc.abstractmethod
    def stationary_cov(self) -> np.ndarray:
        """``Sigma_inf``, the per-pixel covariance of the stationary prior."""

    @abc.abstractmethod
    def predicted(self) -> tuple[int, ...]:
        """The components whose ``eps`` the network predicts."""

    @abc.abstractmethod
    def transition(self, b: Array) -> Array:
        """``Phi(b) = exp(b F)`` for integrated times ``b`` (shape ``b.shape + (k, k)``)."""

    @abc.abstractmethod
    def noise_covariance(self, b: Array) -> Array:
        """``Q(b) = int_0^b exp(rF) G G^T exp(rF^T) dr`` (shape ``b.shape + (k, k)``)."""

    @abc.abstractmethod
    def split_flow(self, b: Array) -> tuple[Array, Array]:
        """Mean matrix and covariance of the exactly solvable part of the reverse SDE used by
        SSCS, ``dz = F_A z db + G dW`` with ``F_A = -F - G G^T Sigma_inf^{-1}``, over ``b``."""

    # --- schedule ----------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.drift_matrix().shape[0])

    def beta(self, t: Time) -> Array:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return linear_beta(self.beta_min, self.beta_max, t)

    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = int_0^t beta``."""
        return linear_beta_integral(self.beta_min, self.beta_max, t)

    # --- shapes ------------------------------------------------------------------------------
    def state_shape(self, data_shape: Shape) -> Shape:
        s = tuple(data_shape)
        return s[:-1] + (self.k * s[-1],)

    def prediction_shape(self, state_shape: Shape) -> Shape:
        s = tuple(state_shape)
        return s[:-1] + (len(self.predicted()) * (s[-1] // self.k),)

    def data_part(self, z: Data) -> Data:
        return z[..., : z.shape[-1] // self.k]

    def initial_state(self, x0: Data, aux: Data | None = None) -> Data:
        """``z_0 = [x_0, aux]`` (zeros for the auxiliary components unless given)."""
        if aux is None:
            aux = jnp.zeros(x0.shape[:-1] + ((self.k - 1) * x0.shape[-1],), x0.dtype)
        return jnp.concatenate([x0, aux], axis=-1)

    # --- time handling -----------------------------------------------------------------------
    def _tb(self, t: Time, z: Data, *, state: bool = True) -> Array:
        """``t`` aligned with the *data* shape (last axis 1 or C; or a scalar)."""
        k = self.k
        t = jnp.asarray(t)
        t = t.astype(_float_dtype(t, z))
        if state:
            dshape = z.shape[:-1] + (z.shape[-1] // k,)
            if k > 1 and t.ndim == z.ndim and t.shape[-1] == z.shape[-1] and z.shape[-1] > 1:
                t = t[..., : dshape[-1]]  # a state-shaped time: the x part's time is used
        else:
            dshape = z.shape
        return _align_time(t, dshape)

    # --- SDE ---------------------------------------------------------------------------------
    def _diag_g(self) -> np.ndarray:
        G = self.diffusion_matrix()
        if not np.allclose(G, np.diag(np.diag(G))):
            raise ValueError(
                "argument `G`: got a non-diagonal matrix, expected a diagonal one for "
                "`diffusion` and the samplers (sdekit's samplers use diagonal noise). "
                "Kernels, losses and the prior work for any G; for sampling choose a diagonal G "
                "(possible whenever G G^T is diagonal)."
            )
        return np.diag(G)

    def drift(self, t: Time, x: Data) -> Data:
        tb = self._tb(t, x)
        F = _mat(self.drift_matrix(), x.dtype)
        return _tile_time(self.beta(tb), self.k).astype(x.dtype) * _apply(F, x, self.k)

    def diffusion(self, t: Time, x: Data) -> Array:
        tb = self._tb(t, x)
        c = x.shape[-1] // self.k
        g = jnp.asarray(np.repeat(self._diag_g(), c), x.dtype)
        out = jnp.sqrt(_tile_time(self.beta(tb), self.k)).astype(x.dtype) * g
        return jnp.broadcast_to(out, x.shape)

    # --- kernel ------------------------------------------------------------------------------
    def transition_matrix(self, t: Time) -> Array:
        """``Phi(t) = exp(B(t) F)``: shape ``t.shape + (k, k)``."""
        t = jnp.asarray(t)
        return self.transition(self.integrated_beta(t.astype(_float_dtype(t))))

    def kernel_covariance(self, t: Time, initial_covariance: Any = None) -> Array:
        """Per-pixel covariance of ``p(z_t | z_0)``: ``Phi S0 Phi^T + Q + numerical_eps I``.

        ``initial_covariance`` (``k x k``) defaults to the process's ``Sigma_0`` (HSM); pass
        zeros for the kernel given the full ``z_0`` (DSM)."""
        t = jnp.asarray(t)
        t = t.astype(_float_dtype(t))
        b = self.integrated_beta(t)
        s0 = self.initial_covariance() if initial_covariance is None else initial_covariance
        s0 = np.asarray(s0, np.float64)
        cov = self.noise_covariance(b)
        if np.any(s0 != 0):
            phi = self.transition(b)
            cov = cov + phi @ _mat(s0, b.dtype) @ jnp.swapaxes(phi, -1, -2)
        return cov + self.numerical_eps * jnp.eye(self.k, dtype=b.dtype)

    def kernel_factor(self, t: Time, initial_covariance: Any = None) -> Array:
        """Triangular factor ``C_t`` (``decomp_mode``) of `kernel_covariance`."""
        return _tri_factor(self.kernel_covariance(t, initial_covariance), self.decomp_mode)

    def marginal(self, x0: Data, t: Time) -> tuple[Data, Array]:
        """Mean state ``Phi(t) [x_0, 0]`` and per-pixel covariance (shape ``T + (k, k)``, ``T``
        the time's shape aligned with the data) of ``p(z_t | x_0)`` for *data* ``x0`` with the
        process's initial covariance."""
        tb = self._tb(t, x0, state=False)
        z0 = self.initial_state(x0)
        return _apply(self.transition_matrix(tb), z0, self.k), self.kernel_covariance(tb)

    def perturb(self, x0: Data, t: Time, eps: Data) -> Data:
        """``z_t = Phi(t) [x_0, 0] + C_t eps`` (HSM kernel); ``eps`` has the state's shape."""
        if x0.shape[-1] == eps.shape[-1] and self.k > 1:
            z0 = x0
            tb = self._tb(t, z0)
        else:
            z0 = self.initial_state(x0)
            tb = self._tb(t, x0, state=False)
        return self.perturb_state(z0, tb, eps)

    def perturb_state(self, z0: Data, t: Time, eps: Data, initial_covariance: Any = None) -> Data:
        """``z_t = Phi(t) z_0 + C_t eps`` for a full initial state ``z_0``."""
        tb = self._tb(t, z0)
        phi = self.transition_matrix(tb)
        c = self.kernel_factor(tb, initial_covariance)
        return _apply(phi.astype(z0.dtype), z0, self.k) + _apply(c.astype(z0.dtype), eps, self.k)

    def conditional_score(self, x_t: Data, x0: Data, t: Time) -> Data:
        """``-Sigma_t^{-1} (z_t - Phi [x_0, 0])`` (HSM kernel)."""
        z0 = x0 if x0.shape == x_t.shape and self.k > 1 else self.initial_state(x0)
        tb = self._tb(t, x_t)
        mean = _apply(self.transition_matrix(tb), z0, self.k)
        prec = _inv(self.kernel_covariance(tb))
        return -_apply(prec.astype(x_t.dtype), x_t - mean, self.k)

    # --- parameterisation ------------------------------------------------------------------
    def _factor_at(self, x_t: Data, t: Time) -> Array:
        return self.kernel_factor(self._tb(t, x_t)).astype(x_t.dtype)

    def _full_eps(self, eps: Data, x_t: Data) -> Data:
        """Expand a partial ``eps`` (predicted components only) to the state with zeros."""
        if eps.shape == x_t.shape:
            return eps
        k, c = self.k, x_t.shape[-1] // self.k
        parts = [jnp.zeros(x_t.shape[:-1] + (c,), eps.dtype)] * k
        for j, i in enumerate(self.predicted()):
            parts[i] = eps[..., j * c : (j + 1) * c]
        return jnp.concatenate(parts, axis=-1)

    def _select(self, z: Data) -> Data:
        k, c = self.k, z.shape[-1] // self.k
        pred = self.predicted()
        if len(pred) == k:
            return z
        return jnp.concatenate([z[..., i * c : (i + 1) * c] for i in pred], axis=-1)

    def _mask(self, z: Data) -> Data:
        """Zero the components that are not predicted (their score is taken as 0)."""
        k, c = self.k, z.shape[-1] // self.k
        if len(self.predicted()) == k:
            return z
        m = np.repeat(np.array([1.0 if i in self.predicted() else 0.0 for i in range(k)]), c)
        return z * jnp.asarray(m, z.dtype)

    def eps_to_score(self, eps: Data, x_t: Data, t: Time) -> Data:
        """``-C_t^{-T} eps`` (HSM factor). A partial ``eps`` (``score_m``/``score_x``) gives the
        score of the predicted components and 0 for the others."""
        c = self._factor_at(x_t, t)
        cinvt = jnp.swapaxes(_inv(c), -1, -2)
        return self._mask(-_apply(cinvt, self._full_eps(eps, x_t), self.k))

    def score_to_eps(self, score: Data, x_t: Data, t: Time) -> Data:
        """``-C_t^T s`` (restricted to the predicted components)."""
        c = self._factor_at(x_t, t)
        return self._select(-_apply(jnp.swapaxes(c, -1, -2), score, self.k))

    def eps_to_x0(self, eps: Data, x_t: Data, t: Time) -> Data:
        """``Phi_t^{-1} (z_t - C_t eps)``: the full initial state ``[x_0, m_0]`` (PSLD's helper;
        missing components of a partial ``eps`` are taken as 0)."""
        tb = self._tb(t, x_t)
        c = self.kernel_factor(tb).astype(x_t.dtype)
        phi_inv = _inv(self.transition_matrix(tb)).astype(x_t.dtype)
        return _apply(phi_inv, x_t - _apply(c, self._full_eps(eps, x_t), self.k), self.k)

    def x0_to_eps(self, x0: Data, x_t: Data, t: Time) -> Data:
        """``C_t^{-1} (z_t - Phi_t z_0)``; ``x0`` is data (auxiliary part 0) or a full state."""
        z0 = x0 if x0.shape == x_t.shape else self.initial_state(x0)
        tb = self._tb(t, x_t)
        c = self.kernel_factor(tb).astype(x_t.dtype)
        phi = self.transition_matrix(tb).astype(x_t.dtype)
        return self._select(_apply(_inv(c), x_t - _apply(phi, z0, self.k), self.k))

    # --- prior -------------------------------------------------------------------------------
    def prior_sample(self, key: Key, shape: Shape) -> Data:
        """``z ~ N(0, Sigma_inf)`` per pixel; ``shape`` is the *data* shape."""
        sshape = self.state_shape(shape)
        chol = np.linalg.cholesky(self.stationary_cov())
        eps = jr.normal(key, sshape)
        return _apply(_mat(chol, eps.dtype), eps, self.k)

    def prior_log_prob(self, z: Data) -> Array:
        S = self.stationary_cov()
        prec = _mat(np.linalg.inv(S), z.dtype)
        quad = z * _apply(prec, z, self.k)
        c = z.shape[-1] // self.k
        _, logdet = np.linalg.slogdet(S)
        per_pixel = 0.5 * (logdet + self.k * math.log(2 * math.pi))
        n_pix = int(np.prod(z.shape[1:-1], dtype=np.int64)) * c
        return -0.5 * jnp.sum(quad.reshape(z.shape[0], -1), axis=-1) - n_pix * per_pixel

    # --- checks ------------------------------------------------------------------------------
    def _check_common(self):
        check_choice("decomp_mode", self.decomp_mode, DECOMP_MODES)
        check_less("t0", self.t0, "t1", self.t1)
        if not float(self.beta_min) >= 0:
            raise arg_error("beta_min", self.beta_min, "a value >= 0")
        if not float(self.beta_max) > 0:
            raise arg_error("beta_max", self.beta_max, "a value > 0")
        if not float(self.numerical_eps) >= 0:
            raise arg_error("numerical_eps", self.numerical_eps, "a value >= 0")


# ------------------------------------------------------------------------------------------------
# the general process
# ------------------------------------------------------------------------------------------------
class LinearSDE(AbstractLinearSDE):
    """A general linear SDE ``dz = beta(t) F z dt + sqrt(beta(t)) G dW`` on ``k`` stacked
    components (``k = F.shape[0]``), with kernels by matrix exponentials.

    **Arguments:**

    - `F`, `G`: ``k x k`` matrices (per pixel). ``F`` must be stable (eigenvalues with negative
      real part) for the stationary prior.
    - `beta_min`, `beta_max`: linear schedule ``beta(t) = beta_min + t (beta_max - beta_min)``.
    - `initial_covariance`: ``Sigma_0`` of ``z_0`` around ``[x_0, 0, ...]`` (default 0; HSM uses
      the auxiliary variance, e.g. ``diag(0, kappa M)``).
    - `numerical_eps`: added to the diagonal of every kernel covariance.
    - `decomp_mode`: ``lower`` (Cholesky) or ``upper`` factor of the covariance.
    - `predicted`: the components whose ``eps`` the network outputs (default all). With the
      lower factor it must be a trailing range, with the upper factor a leading range.

    ``LinearSDE(F=[[-0.5]], G=[[1.0]], beta_min=0.1, beta_max=20)`` is the VP-SDE.
    """

    F: tuple = eqx.field(
        static=True, converter=lambda a: _to_tuple(_as_matrix("F", a)), kw_only=True
    )
    G: tuple = eqx.field(
        static=True, converter=lambda a: _to_tuple(_as_matrix("G", a)), kw_only=True
    )
    beta_min: float = 1.0
    beta_max: float = 1.0
    initial_cov: tuple | None = eqx.field(
        static=True,
        default=None,
        converter=lambda a: None if a is None else _to_tuple(_as_matrix("initial_cov", a)),
    )
    numerical_eps: float = 0.0
    decomp_mode: str = "lower"
    predicted_components: tuple | None = eqx.field(
        static=True,
        default=None,
        converter=lambda a: None if a is None else tuple(int(i) for i in np.ravel(a)),
    )
    t0: float = 1e-5
    t1: float = 1.0

    def __check_init__(self):
        self._check_common()
        F, G = np.array(self.F), np.array(self.G)
        if F.shape != G.shape:
            raise ValueError(
                f"arguments `F` and `G`: got shapes {F.shape} and {G.shape}, "
                "expected the same k x k shape."
            )
        if self.initial_cov is not None:
            S0 = np.array(self.initial_cov)
            if S0.shape != F.shape:
                raise arg_error("initial_cov", S0.shape, f"a {F.shape} matrix")
            if not np.allclose(S0, S0.T) or np.min(np.linalg.eigvalsh(S0)) < -1e-12:
                raise arg_error("initial_cov", self.initial_cov, "a symmetric PSD matrix")
        stationary_covariance(F, G)  # raises if F is not stable
        _check_predicted(self.predicted(), F.shape[0], self.decomp_mode)

    def drift_matrix(self) -> np.ndarray:
        return np.array(self.F)

    def diffusion_matrix(self) -> np.ndarray:
        return np.array(self.G)

    def initial_covariance(self) -> np.ndarray:
        k = len(self.F)
        return np.zeros((k, k)) if self.initial_cov is None else np.array(self.initial_cov)

    def stationary_cov(self) -> np.ndarray:
        return stationary_covariance(self.F, self.G)

    def predicted(self) -> tuple[int, ...]:
        if self.predicted_components is None:
            return tuple(range(len(self.F)))
        return tuple(int(i) for i in self.predicted_components)

    def transition(self, b: Array) -> Array:
        return expm_transition(self.F, b)

    def noise_covariance(self, b: Array) -> Array:
        G = np.array(self.G)
        return van_loan_covariance(self.F, G @ G.T, b)

    def split_flow(self, b: Array) -> tuple[Array, Array]:
        F, G = np.array(self.F), np.array(self.G)
        GGt = G @ G.T
        FA = -F - GGt @ np.linalg.inv(self.stationary_cov())
        return expm_transition(FA, b), van_loan_covariance(FA, GGt, b)


def _check_predicted(pred: tuple[int, ...], k: int, decomp_mode: str) -> None:
    if len(pred) == 0 or sorted(set(pred)) != list(pred) or pred[0] < 0 or pred[-1] >= k:
        raise arg_error("predicted_components", pred, f"increasing component indices in [0, {k})")
    if len(pred) == k:
        return
    if decomp_mode == "lower" and pred != tuple(range(k - len(pred), k)):
        raise arg_error(
            "predicted_components", pred, "a trailing range of components with decomp_mode='lower'"
        )
    if decomp_mode == "upper" and pred != tuple(range(len(pred))):
        raise arg_error(
            "predicted_components", pred, "a leading range of components with decomp_mode='upper'"
        )


# ------------------------------------------------------------------------------------------------
# the complete recipe
# ------------------------------------------------------------------------------------------------
def _check_psd(name: str, a: np.ndarray, tol: float = 1e-10) -> None:
    if not np.allclose(a, a.T, atol=tol, rtol=0):
        raise arg_error(
            name, _to_tuple(a), "a symmetric positive semidefinite matrix (it is not symmetric)"
        )
    w = np.linalg.eigvalsh(0.5 * (a + a.T))
    if np.min(w) < -tol * max(1.0, float(np.max(np.abs(w)))):
        raise arg_error(
            name,
            _to_tuple(a),
            f"a positive semidefinite matrix (smallest eigenvalue {np.min(w):.3g} < 0)",
        )


def _check_skew(name: str, a: np.ndarray, tol: float = 1e-10) -> None:
    if not np.allclose(a, -a.T, atol=tol, rtol=0):
        raise arg_error(name, _to_tuple(a), "a skew-symmetric matrix (Q = -Q^T)")


def recipe_matrices(D: Any, Q: Any, precision: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(F, G)`` of the complete recipe with constant ``D`` (PSD), ``Q`` (skew) and
    ``H(z) = z^T A z / 2`` (``A = precision``, symmetric positive definite): the SDE
    ``dz = -(D + Q) A z dt + sqrt(2 D) dW`` has stationary law ``N(0, A^{-1})``. ``G`` is the
    symmetric square root of ``2 D`` (diagonal when ``D`` is)."""
    D = _as_matrix("D", D)
    Q = _as_matrix("Q", Q)
    A = _as_matrix("precision", precision)
    if not (D.shape == Q.shape == A.shape):
        raise ValueError(
            f"arguments `D`, `Q` and `precision`: got shapes {D.shape}, {Q.shape} and "
            f"{A.shape}, expected the same k x k shape."
        )
    _check_psd("D", D)
    _check_skew("Q", Q)
    _check_psd("precision", A)
    if np.min(np.linalg.eigvalsh(0.5 * (A + A.T))) <= 0:
        raise arg_error("precision", _to_tuple(A), "a positive definite matrix")
    F = -(D + Q) @ A
    w, v = np.linalg.eigh(0.5 * (D + D.T))
    G = (v * np.sqrt(2.0 * np.clip(w, 0.0, None))) @ v.T
    if np.allclose(D, np.diag(np.diag(D))):
        G = np.diag(np.sqrt(2.0 * np.clip(np.diag(D), 0.0, None)))
    return F, G


def from_recipe(
    D: Any, Q: Any, precision: Any, *, beta_min: float = 1.0, beta_max: float = 1.0, **kwargs: Any
) -> LinearSDE:
    """Build a `LinearSDE` from the complete recipe (Ma, Chen & Fox 2015):
    ``dz = beta(t) [-(D + Q) grad H(z)] dt + sqrt(2 beta(t) D) dW`` with ``H(z) = z^T A z / 2``
    (``A = precision``), ``D`` positive semidefinite and ``Q`` skew-symmetric. Its stationary
    law (and prior) is ``N(0, A^{-1})`` (checked). Other keyword arguments go to
    `LinearSDE` (``initial_cov``, ``numerical_eps``, ``decomp_mode``, ...).

    Raises ``ValueError`` naming ``D`` / ``Q`` / ``precision`` when ``D`` is not PSD, ``Q`` is not
    skew-symmetric or ``A`` is not positive definite, and naming ``D`` when the process does not
    converge (``D`` too degenerate for the coupling ``Q`` to spread the noise).
    """
    F, G = recipe_matrices(D, Q, precision)
    if not np.all(np.linalg.eigvals(F).real < 0):
        raise arg_error(
            "D",
            _to_tuple(np.asarray(D, float)),
            "noise that reaches every component "
            "through Q (the drift -(D+Q)A is not stable, so N(0, A^-1) is not the "
            "unique stationary law)",
        )
    sde = LinearSDE(F=F, G=G, beta_min=beta_min, beta_max=beta_max, **kwargs)
    check_stationary(sde, np.linalg.inv(_as_matrix("precision", precision)))
    return sde


def check_stationary(
    process: AbstractLinearSDE, covariance: Any, *, rtol: float = 1e-8, raise_error: bool = True
) -> float:
    """Check that ``N(0, covariance)`` (per pixel) is stationary for ``process``: the Lyapunov
    residual ``F S + S F^T + G G^T`` must vanish. Returns the relative residual; raises
    ``ValueError`` (naming ``covariance``) if it exceeds ``rtol`` and ``raise_error``."""
    S = _as_matrix("covariance", covariance)
    F, G = process.drift_matrix(), process.diffusion_matrix()
    if S.shape != F.shape:
        raise arg_error("covariance", S.shape, f"a {F.shape} matrix")
    res = F @ S + S @ F.T + G @ G.T
    scale = max(float(np.max(np.abs(G @ G.T))), float(np.max(np.abs(F @ S))), 1e-300)
    rel = float(np.max(np.abs(res))) / scale
    if raise_error and rel > rtol:
        raise arg_error(
            "covariance",
            _to_tuple(S),
            f"a stationary covariance of the process "
            f"(Lyapunov residual F S + S F^T + G G^T is {rel:.3g} relative)",
        )
    return rel


# ------------------------------------------------------------------------------------------------
# PSLD / CLD: critically damped phase-space processes with closed-form stable kernels
# ------------------------------------------------------------------------------------------------
_PSI_TERMS = 14


def _psi(kk: int, x: Array) -> Array:
    """``psi_k(x) = int_0^1 s^k exp(-x s) ds`` for ``k = 0, 1, 2``, without cancellation."""
    # series for x < 1
    term = jnp.ones_like(x)
    series = term / (kk + 1)
    for n in range(1, _PSI_TERMS):
        term = term * (-x) / n
        series = series + term / (n + kk + 1)
    xs = jnp.where(x < 1, 1.0, x)
    e = jnp.exp(-xs)
    if kk == 0:
        closed = -jnp.expm1(-xs) / xs
    elif kk == 1:
        closed = (1 - e * (1 + xs)) / xs**2
    else:
        closed = (2 - e * (2 + 2 * xs + xs**2)) / xs**3
    return jnp.where(x < 1, series, closed)


def _phase_space_kernel(b: Array, gamma: float, nu: float) -> tuple[Array, Array]:
    """``Phi(b)`` and ``Q(b)`` of PSLD in integrated time ``b`` (spec psld.md §4.1, §4.4)."""
    a = 0.5 * (gamma + nu)
    d = 0.25 * (nu - gamma)
    M = 1.0 / (4.0 * d * d)
    e = jnp.exp(-0.5 * a * b)
    phi = jnp.stack(
        [
            jnp.stack([e * (1 + d * b), e * (2 * d * d * b)], -1),
            jnp.stack([e * (-0.5 * b), e * (1 - d * b)], -1),
        ],
        -2,
    )
    x = a * b
    j0 = b * _psi(0, x)
    j1 = b**2 * _psi(1, x)
    j2 = b**3 * _psi(2, x)
    qxx = gamma * j0 + 2 * d * gamma * j1 + 2 * a * d * d * j2
    qxm = 2 * d * j1 - a * d * j2
    qmm = M * nu * j0 - 2 * d * M * nu * j1 + 0.5 * a * j2
    q = jnp.stack([jnp.stack([qxx, qxm], -1), jnp.stack([qxm, qmm], -1)], -2)
    return phi, q


_FLIP = np.diag([1.0, -1.0])


class AbstractPhaseSpaceSDE(AbstractLinearSDE):
    """Critically damped position/momentum processes (PSLD, CLD) in PSLD's normalisation:
    per unit of ``b = s B(t)``, ``F = 1/2 [[-Gamma, M^-1], [-1, -nu]]``,
    ``G = diag(sqrt(Gamma), sqrt(M nu))``, ``M^-1 = (Gamma - nu)^2 / 4``; kernels in closed form,
    cancellation-free in float32 (spec psld.md §4.4)."""

    @abc.abstractmethod
    def _params(self) -> tuple[float, float, float, float, float]:
        """``(Gamma, nu, kappa, s, M^-1)`` with ``s`` the factor from ``B(t)`` to PSLD's ``b``."""

    def _gnk(self):
        g, n, kap, s, minv = self._params()
        return float(g), float(n), float(kap), float(s), float(minv), 1.0 / float(minv)

    def drift_matrix(self) -> np.ndarray:
        g, n, _, s, minv, _ = self._gnk()
        return s * 0.5 * np.array([[-g, minv], [-1.0, -n]])

    def diffusion_matrix(self) -> np.ndarray:
        g, n, _, s, _, M = self._gnk()
        return math.sqrt(s) * np.diag([math.sqrt(g), math.sqrt(M * n)])

    def initial_covariance(self) -> np.ndarray:
        _, _, kap, _, _, M = self._gnk()
        return np.diag([0.0, kap * M])

    def stationary_cov(self) -> np.ndarray:
        _, _, _, _, _, M = self._gnk()
        return np.diag([1.0, M])

    def transition(self, b: Array) -> Array:
        g, n, _, s, _, _ = self._gnk()
        return _phase_space_kernel(s * jnp.asarray(b), g, n)[0]

    def noise_covariance(self, b: Array) -> Array:
        g, n, _, s, _, _ = self._gnk()
        return _phase_space_kernel(s * jnp.asarray(b), g, n)[1]

    def split_flow(self, b: Array) -> tuple[Array, Array]:
        g, n, _, s, _, _ = self._gnk()
        phi, q = _phase_space_kernel(s * jnp.asarray(b), g, n)
        flip = _mat(_FLIP, phi.dtype)
        return flip @ phi @ flip, flip @ q @ flip

    @property
    def M(self) -> float:
        """Mass ``M = 1 / M^-1``."""
        return self._gnk()[5]


class PSLD(AbstractPhaseSpaceSDE):
    """Phase Space Langevin Diffusion (Pandey & Mandt, ICCV 2023), state ``z = [x, m]``:

    ``dx = beta/2 (M^-1 m - Gamma x) dt + sqrt(beta Gamma) dW_x``,
    ``dm = beta/2 (-x - nu m) dt + sqrt(beta M nu) dW_m``,

    with critical damping ``M^-1 = (Gamma - nu)^2 / 4``; prior ``N(0, I) x N(0, M I)``.
    Parameter names are the original code's: ``gamma`` is the paper's capital Gamma (noise on
    ``x``), ``nu`` the noise on ``m``, ``kappa`` the paper's lower-case gamma
    (``m_0 ~ N(0, kappa M)``, marginalised: HSM), ``numerical_eps`` is added to
    ``Sigma_xx`` and ``Sigma_mm``, ``decomp_mode`` picks the lower/upper factor.

    ``mode`` (default: from ``gamma``/``nu``): ``score_xm`` (network outputs ``eps`` for both
    halves), ``score_m`` (``gamma = 0``, lower factor: only ``eps_m``, ``s_x = 0``) or
    ``score_x`` (``nu = 0``, upper factor: only ``eps_x``, ``s_m = 0``). Defaults: the CIFAR-10
    SOTA configuration (beta 8, Gamma 0.01, nu 4.01, kappa 0.04).
    """

    beta_min: float = 8.0
    beta_max: float = 8.0
    gamma: float = 0.01
    nu: float = 4.01
    kappa: float = 0.04
    decomp_mode: str = "lower"
    numerical_eps: float = 1e-9
    mode: str | None = None
    t0: float = 1e-5
    t1: float = 1.0

    def __check_init__(self):
        self._check_common()
        if not float(self.gamma) >= 0:
            raise arg_error("gamma", self.gamma, "a value >= 0")
        if not float(self.nu) >= 0:
            raise arg_error("nu", self.nu, "a value >= 0")
        if float(self.gamma) == 0 and float(self.nu) == 0:
            raise ValueError(
                "arguments `gamma` and `nu`: got gamma=0 and nu=0, expected at least "
                "one of them > 0 (no noise otherwise)."
            )
        if float(self.gamma) == float(self.nu):
            raise ValueError(
                f"arguments `gamma` and `nu`: got gamma = nu = {self.gamma!r}, "
                "expected gamma != nu (critical damping M^-1 = (gamma - nu)^2/4 > 0)."
            )
        if not float(self.kappa) >= 0:
            raise arg_error("kappa", self.kappa, "a value >= 0")
        if self.mode is not None:
            check_choice("mode", self.mode, PSLD_MODES)
        _check_mode(self._mode(), float(self.gamma), float(self.nu), self.decomp_mode)

    def _params(self):
        g, n = float(self.gamma), float(self.nu)
        return g, n, float(self.kappa), 1.0, (g - n) ** 2 / 4.0

    @property
    def m_inv(self) -> float:
        """``M^-1 = (gamma - nu)^2 / 4`` (critical damping)."""
        return (float(self.gamma) - float(self.nu)) ** 2 / 4.0

    def _mode(self) -> str:
        if self.mode is not None:
            return self.mode
        if float(self.gamma) == 0:
            return "score_m"
        if float(self.nu) == 0:
            return "score_x"
        return "score_xm"

    def predicted(self) -> tuple[int, ...]:
        return {"score_xm": (0, 1), "score_m": (1,), "score_x": (0,)}[self._mode()]


def _check_mode(mode: str, gamma: float, nu: float, decomp_mode: str) -> None:
    if mode == "score_m":
        if gamma != 0:
            raise arg_error("mode", mode, "'score_xm' when gamma > 0 (noise on x needs s_x)")
        if decomp_mode != "lower":
            raise arg_error("decomp_mode", decomp_mode, "'lower' in score_m mode")
    if mode == "score_x":
        if nu != 0:
            raise arg_error("mode", mode, "'score_xm' when nu > 0 (noise on m needs s_m)")
        if decomp_mode != "upper":
            raise arg_error("decomp_mode", decomp_mode, "'upper' in score_x mode")


class CLD(AbstractPhaseSpaceSDE):
    """Critically damped Langevin diffusion (Dockhorn et al., ICLR 2022), state ``z = [x, v]``:

    ``dx = beta M^-1 v dt``, ``dv = (-beta x - Gamma beta M^-1 v) dt + sqrt(2 Gamma beta) dW``,

    with ``Gamma = 2 sqrt(M)`` (critical damping), ``v_0 ~ N(0, kappa M)`` marginalised (HSM;
    CLD's code calls ``kappa`` ``gamma``). Identical to ``PSLD(gamma=0, nu=2 sqrt(m_inv),
    beta = 2 beta_CLD)``; the network predicts ``eps_v`` only (``score_m`` mode) unless
    ``mode="score_xm"``.
    """

    beta_min: float = 4.0
    beta_max: float = 4.0
    m_inv: float = 4.0
    kappa: float = 0.04
    decomp_mode: str = "lower"
    numerical_eps: float = 1e-9
    mode: str | None = None
    t0: float = 1e-5
    t1: float = 1.0

    def __check_init__(self):
        self._check_common()
        if not float(self.m_inv) > 0:
            raise arg_error("m_inv", self.m_inv, "a value > 0")
        if not float(self.kappa) >= 0:
            raise arg_error("kappa", self.kappa, "a value >= 0")
        if self.mode is not None:
            check_choice("mode", self.mode, ("score_xm", "score_m"))
        _check_mode(self._mode(), 0.0, 1.0, self.decomp_mode)

    def _params(self):
        minv = float(self.m_inv)
        return 0.0, 2.0 * math.sqrt(minv), float(self.kappa), 2.0, minv

    def _mode(self) -> str:
        return "score_m" if self.mode is None else self.mode

    def predicted(self) -> tuple[int, ...]:
        return (1,) if self._mode() == "score_m" else (0, 1)

    @property
    def Gamma(self) -> float:
        """CLD's friction ``Gamma = 2 sqrt(M)``."""
        return 2.0 / math.sqrt(float(self.m_inv))


__all__ = [
    "AbstractLinearSDE",
    "AbstractPhaseSpaceSDE",
    "CLD",
    "LinearSDE",
    "PSLD",
    "check_stationary",
    "from_recipe",
    "recipe_matrices",
    "stationary_covariance",
]
