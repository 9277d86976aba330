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

Data and states are never told apart by their shapes: methods taking *data* (``x0`` of the
data's shape) and methods taking *states* (``z``, ``k`` times the channels) are separate
(`perturb` / `perturb_state`, `eps_to_x0` / `eps_to_state0`, `state_from` / `data_part`).

[`LinearSDE`][] is the general process (matrix exponentials); the critically damped
phase-space processes [`PSLD`][] and [`CLD`][] (closed-form, float32-stable kernels) live in
``_phase_space.py`` and the complete recipe in ``_recipe.py``.
"""

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import (
    Array,
    ArrayLike,
    Data,
    DataC,
    Float,
    Key,
    PredP,
    Shape,
    StateS,
    Time,
    TimeT,
)
from .._validate import arg_error, check_choice, check_real, static_float
from ._base import AbstractGaussianProcess
from ._linalg import (
    Matrix,
    Vector,
    align_time,
    apply_per_pixel,
    as_array,
    as_matrix,
    expm_transition,
    float_dtype,
    inv_small,
    stationary_covariance,
    tile_time,
    to_tuple,
    tri_factor,
    van_loan_covariance,
)
from ._schedules import linear_beta, linear_beta_integral

DECOMP_MODES = ("lower", "upper")


def _t0(v: Any) -> float:
    return static_float("t0", v)


def _t1(v: Any) -> float:
    return static_float("t1", v)


def _is_zero(a: Any) -> bool:
    """Whether ``a`` is a concrete all-zero matrix (so its term can be skipped)."""
    return not isinstance(a, jax.Array) and not np.any(np.asarray(a) != 0)


class AbstractLinearSDE(AbstractGaussianProcess):
    """``dz = beta(t) F z dt + sqrt(beta(t)) G dW`` on ``k`` stacked components (see module doc).

    ``beta(t) = beta_min + t (beta_max - beta_min)``. Subclasses give the matrices
    (`drift_matrix`, `diffusion_matrix`, `initial_covariance`, `stationary_cov`) and the
    kernel pieces ``Phi(b)`` and ``Q(b)`` as functions of the integrated time ``b``. Networks
    predict ``eps`` for the components in `predicted` (all of them by default; PSLD's
    ``score_m`` / ``score_x`` modes predict one), and the score of the other components is
    taken as 0.
    """

    beta_min: eqx.AbstractVar[Any]
    beta_max: eqx.AbstractVar[Any]
    numerical_eps: eqx.AbstractVar[Any]
    decomp_mode: eqx.AbstractVar[str]
    t0: eqx.AbstractVar[float]
    t1: eqx.AbstractVar[float]

    def __check_init__(self):
        check_choice("decomp_mode", self.decomp_mode, DECOMP_MODES)
        check_real("beta_min", self.beta_min, lo=0.0)
        check_real("beta_max", self.beta_max, lo=0.0, lo_open=True)
        check_real("numerical_eps", self.numerical_eps, lo=0.0)

    # --- what subclasses supply ------------------------------------------------------------
    @property
    @abc.abstractmethod
    def k(self) -> int:
        """Number of stacked components (``x`` and the auxiliary variables)."""

    @abc.abstractmethod
    def drift_matrix(self) -> Matrix:
        """``F`` (``k x k``; float64 numpy for concrete parameters)."""

    @abc.abstractmethod
    def diffusion_matrix(self) -> Matrix:
        """``G`` (``k x k``)."""

    @abc.abstractmethod
    def diffusion_diagonal(self) -> Vector:
        """The diagonal of ``G`` (``k``); raises if ``G`` is not diagonal (the samplers use
        diagonal noise)."""

    @abc.abstractmethod
    def initial_covariance(self) -> Matrix:
        """``Sigma_0`` of ``z_0`` around ``[x_0, 0, ...]`` (HSM: the auxiliary variance)."""

    @abc.abstractmethod
    def stationary_cov(self) -> Matrix:
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
    def beta(self, t: Time) -> Array:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return linear_beta(self.beta_min, self.beta_max, t)

    def integrated_beta(self, t: Time) -> Array:
        """``B(t) = int_0^t beta``."""
        return linear_beta_integral(self.beta_min, self.beta_max, t)

    # --- data and states ---------------------------------------------------------------------
    def state_shape(self, data_shape: Shape) -> Shape:
        s = tuple(data_shape)
        return s[:-1] + (self.k * s[-1],)

    def prediction_shape(self, state_shape: Shape) -> Shape:
        s = tuple(state_shape)
        return s[:-1] + (len(self.predicted()) * (s[-1] // self.k),)

    def data_part(self, z: StateS) -> Float[Array, "*pix c"]:
        """``x``, the first of the ``k`` components of a state ``z``."""
        return z[..., : z.shape[-1] // self.k]

    def state_from(self, x: DataC, aux: Float[Array, "*pix a"] | None = None) -> StateS:
        """The state ``[x, aux]`` from data ``x`` (zeros for the auxiliary components unless
        ``aux``, ``k - 1`` times the channels of ``x``, is given)."""
        if aux is None:
            aux = jnp.zeros(x.shape[:-1] + ((self.k - 1) * x.shape[-1],), x.dtype)
        return jnp.concatenate([x, aux], axis=-1)

    def select_predicted(self, z: Data) -> Data:
        """The predicted components of a state-shaped array (the network's output shape)."""
        k, c = self.k, z.shape[-1] // self.k
        pred = self.predicted()
        if len(pred) == k:
            return z
        return jnp.concatenate([z[..., i * c : (i + 1) * c] for i in pred], axis=-1)

    def expand_predicted(self, eps: Data, state_shape: Shape) -> Data:
        """A network output (predicted components only) as a state, zeros elsewhere."""
        if len(self.predicted()) == self.k:
            return eps
        k, c = self.k, state_shape[-1] // self.k
        parts = [jnp.zeros(tuple(state_shape[:-1]) + (c,), eps.dtype)] * k
        for j, i in enumerate(self.predicted()):
            parts[i] = eps[..., j * c : (j + 1) * c]
        return jnp.concatenate(parts, axis=-1)

    def _mask(self, z: Data) -> Data:
        """Zero the components that are not predicted (their score is taken as 0)."""
        k, c = self.k, z.shape[-1] // self.k
        if len(self.predicted()) == k:
            return z
        m = np.repeat(np.array([1.0 if i in self.predicted() else 0.0 for i in range(k)]), c)
        return z * jnp.asarray(m, z.dtype)

    def apply(self, mat: Float[ArrayLike, "*tdims k k"], z: Data) -> Data:
        """Apply per-pixel ``k x k`` matrices (shape ``T + (k, k)``) to a state ``z``."""
        return apply_per_pixel(as_array(mat, z.dtype), z, self.k)

    # --- time handling -----------------------------------------------------------------------
    def _tb(self, t: Time, z: Data, *, state: bool = True) -> Array:
        """``t`` aligned with the *data* shape (last axis 1 or C; or a scalar)."""
        k = self.k
        t = jnp.asarray(t)
        t = t.astype(float_dtype(t, z))
        if state:
            dshape = z.shape[:-1] + (z.shape[-1] // k,)
            if k > 1 and t.ndim == z.ndim and t.shape[-1] == z.shape[-1] and z.shape[-1] > 1:
                t = t[..., : dshape[-1]]  # a state-shaped time: the x part's time is used
        else:
            dshape = z.shape
        return align_time(t, dshape)

    # --- SDE ---------------------------------------------------------------------------------
    def drift(self, t: TimeT, x: StateS) -> StateS:
        tb = self._tb(t, x)
        return tile_time(self.beta(tb), self.k).astype(x.dtype) * self.apply(
            self.drift_matrix(), x
        )

    def diffusion(self, t: TimeT, x: StateS) -> StateS:
        tb = self._tb(t, x)
        c = x.shape[-1] // self.k
        g = jnp.repeat(as_array(self.diffusion_diagonal(), x.dtype), c)
        out = jnp.sqrt(tile_time(self.beta(tb), self.k)).astype(x.dtype) * g
        return jnp.broadcast_to(out, x.shape)

    # --- kernel ------------------------------------------------------------------------------
    def transition_matrix(self, t: Time) -> Array:
        """``Phi(t) = exp(B(t) F)``: shape ``t.shape + (k, k)``."""
        t = jnp.asarray(t)
        return self.transition(self.integrated_beta(t.astype(float_dtype(t))))

    def kernel_covariance(self, t: Time, initial_covariance: Any = None) -> Array:
        """Per-pixel covariance of ``p(z_t | z_0)``: ``Phi S0 Phi^T + Q + numerical_eps I``.

        ``initial_covariance`` (``k x k``) defaults to the process's ``Sigma_0`` (HSM); pass
        zeros for the kernel given the full ``z_0`` (DSM)."""
        t = jnp.asarray(t)
        t = t.astype(float_dtype(t))
        b = self.integrated_beta(t)
        s0 = self.initial_covariance() if initial_covariance is None else initial_covariance
        cov = self.noise_covariance(b)
        if not _is_zero(s0):
            phi = self.transition(b)
            cov = cov + phi @ as_array(s0, b.dtype) @ jnp.swapaxes(phi, -1, -2)
        return cov + self.numerical_eps * jnp.eye(self.k, dtype=b.dtype)

    def kernel_factor(self, t: Time, initial_covariance: Any = None) -> Array:
        """Triangular factor ``C_t`` (``decomp_mode``) of `kernel_covariance`."""
        return tri_factor(self.kernel_covariance(t, initial_covariance), self.decomp_mode)

    def marginal(self, x0: Data, t: Time) -> tuple[Data, Array]:
        """Mean state ``Phi(t) [x_0, 0]`` and per-pixel covariance (shape ``T + (k, k)``, ``T``
        the time's shape aligned with the data) of ``p(z_t | x_0)`` for *data* ``x0`` with the
        process's initial covariance."""
        tb = self._tb(t, x0, state=False)
        return self.apply(self.transition_matrix(tb), self.state_from(x0)), self.kernel_covariance(
            tb
        )

    def perturb(self, x0: DataC, t: TimeT, eps: StateS) -> StateS:
        """``z_t = Phi(t) [x_0, 0] + C_t eps`` (HSM kernel) for *data* ``x0``; ``eps`` has the
        state's shape."""
        return self.perturb_state(self.state_from(x0), self._tb(t, x0, state=False), eps)

    def perturb_state(
        self, z0: StateS, t: TimeT, eps: StateS, initial_covariance: Any = None
    ) -> StateS:
        """``z_t = Phi(t) z_0 + C_t eps`` for a full initial *state* ``z_0``."""
        tb = self._tb(t, z0)
        phi = self.transition_matrix(tb)
        c = self.kernel_factor(tb, initial_covariance)
        return self.apply(phi, z0) + self.apply(c, eps)

    def sample_initial_state(self, x0: Data, eps0: Data) -> Data:
        """``z_0 = [x_0, 0] + Sigma_0^{1/2} eps0``: the auxiliary variables drawn from the
        initial covariance with state-shaped noise ``eps0`` (DSM on the augmented state)."""
        s0 = as_array(self.initial_covariance(), x0.dtype)
        w, v = jnp.linalg.eigh(s0)
        root = (v * jnp.sqrt(jnp.clip(w, 0.0, None))) @ v.T  # any square root of Sigma_0
        return self.state_from(x0) + self.apply(root, eps0)

    def conditional_score(self, x_t: StateS, x0: DataC, t: TimeT) -> StateS:
        """``-Sigma_t^{-1} (z_t - Phi [x_0, 0])`` (HSM kernel) for *data* ``x0``."""
        tb = self._tb(t, x_t)
        mean = self.apply(self.transition_matrix(tb), self.state_from(x0))
        return -self.apply(inv_small(self.kernel_covariance(tb)), x_t - mean)

    def kernel_score(self, eps: Data, z_t: Data, t: Time, initial_covariance: Any = None) -> Data:
        """``-C_t^{-T} eps`` for state-shaped ``eps`` with the factor of the kernel of the given
        initial covariance (default the process's, HSM; zeros for the DSM kernel of a full
        ``z_0``)."""
        c = self.kernel_factor(self._tb(t, z_t), initial_covariance)
        return -self.apply(jnp.swapaxes(inv_small(c), -1, -2), eps)

    # --- parameterisation --------------------------------------------------------------------
    def _factor_at(self, x_t: Data, t: Time) -> Array:
        return self.kernel_factor(self._tb(t, x_t)).astype(x_t.dtype)

    def eps_to_score(self, eps: PredP, x_t: StateS, t: TimeT) -> StateS:
        """``-C_t^{-T} eps`` (HSM factor). A partial ``eps`` (``score_m``/``score_x``) gives the
        score of the predicted components and 0 for the others."""
        c = self._factor_at(x_t, t)
        cinvt = jnp.swapaxes(inv_small(c), -1, -2)
        return self._mask(-self.apply(cinvt, self.expand_predicted(eps, x_t.shape)))

    def score_to_eps(self, score: StateS, x_t: StateS, t: TimeT) -> PredP:
        """``-C_t^T s`` (restricted to the predicted components)."""
        c = self._factor_at(x_t, t)
        return self.select_predicted(-self.apply(jnp.swapaxes(c, -1, -2), score))

    def eps_to_state0(self, eps: PredP, x_t: StateS, t: TimeT) -> StateS:
        """``Phi_t^{-1} (z_t - C_t eps)``: the full initial state ``[x_0, m_0]`` (PSLD's helper;
        missing components of a partial ``eps`` are taken as 0)."""
        tb = self._tb(t, x_t)
        c = self.kernel_factor(tb)
        phi_inv = inv_small(self.transition_matrix(tb))
        return self.apply(phi_inv, x_t - self.apply(c, self.expand_predicted(eps, x_t.shape)))

    def eps_to_x0(self, eps: PredP, x_t: StateS, t: TimeT) -> Float[Array, "*pix c"]:
        """The *data* prediction: the ``x`` part of `eps_to_state0`."""
        return self.data_part(self.eps_to_state0(eps, x_t, t))

    def x0_to_eps(self, x0: DataC, x_t: StateS, t: TimeT) -> PredP:
        """``C_t^{-1} (z_t - Phi_t [x_0, 0])`` for *data* ``x0``."""
        return self.state0_to_eps(self.state_from(x0), x_t, t)

    def state0_to_eps(self, z0: StateS, x_t: StateS, t: TimeT) -> PredP:
        """``C_t^{-1} (z_t - Phi_t z_0)`` for a full initial *state* ``z_0``."""
        tb = self._tb(t, x_t)
        c = self.kernel_factor(tb)
        phi = self.transition_matrix(tb)
        return self.select_predicted(self.apply(inv_small(c), x_t - self.apply(phi, z0)))

    # --- SSCS (symmetric splitting) ----------------------------------------------------------
    def split_flow_sample(self, key: Key, z: Data, b: Any) -> Data:
        """Exact solution of ``dz = F_A z db + G dW`` over integrated time ``b`` (a scalar):
        ``Phi_A(b) z + chol(Q_A(b) + numerical_eps I) xi``, ``xi ~ N(0, I)``."""
        phi, q = self.split_flow(b)
        q = as_array(q, z.dtype) + self.numerical_eps * jnp.eye(self.k, dtype=z.dtype)
        c = tri_factor(q, self.decomp_mode)
        xi = jr.normal(key, z.shape, z.dtype)
        return self.apply(phi, z) + self.apply(c, xi)

    def split_score_drift(self, t: Time, z: Data, score: Data) -> Data:
        """The score part of the reverse drift, ``beta(t) G G^T (s + Sigma_inf^{-1} z)``."""
        G = as_array(self.diffusion_matrix(), z.dtype)
        ggt = G @ G.T
        w = ggt @ jnp.linalg.inv(as_array(self.stationary_cov(), z.dtype))
        beta = jnp.asarray(self.beta(t)).astype(z.dtype)
        return beta * (self.apply(ggt, score) + self.apply(w, z))

    # --- prior -------------------------------------------------------------------------------
    def prior_sample(self, key: Key, shape: Shape) -> Data:
        """``z ~ N(0, Sigma_inf)`` per pixel; ``shape`` is the *data* shape."""
        sshape = self.state_shape(shape)
        eps = jr.normal(key, sshape)
        chol = jnp.linalg.cholesky(as_array(self.stationary_cov(), eps.dtype))
        return self.apply(chol, eps)

    def prior_log_prob(self, z: Float[Array, "batch *rest"]) -> Float[Array, " batch"]:
        S = as_array(self.stationary_cov(), z.dtype)
        quad = z * self.apply(jnp.linalg.inv(S), z)
        c = z.shape[-1] // self.k
        _, logdet = jnp.linalg.slogdet(S)
        per_pixel = 0.5 * (logdet + self.k * math.log(2 * math.pi))
        n_pix = int(np.prod(z.shape[1:-1], dtype=np.int64)) * c
        return -0.5 * jnp.sum(quad.reshape(z.shape[0], -1), axis=-1) - n_pix * per_pixel


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
    - `initial_cov`: ``Sigma_0`` of ``z_0`` around ``[x_0, 0, ...]`` (default 0; HSM uses
      the auxiliary variance, e.g. ``diag(0, kappa M)``).
    - `numerical_eps`: added to the diagonal of every kernel covariance.
    - `decomp_mode`: ``lower`` (Cholesky) or ``upper`` factor of the covariance.
    - `predicted_components`: the components whose ``eps`` the network outputs (default all).
      With the lower factor it must be a trailing range, with the upper factor a leading range.

    ``LinearSDE(F=[[-0.5]], G=[[1.0]], beta_min=0.1, beta_max=20)`` is the VP-SDE.
    """

    F: tuple = eqx.field(
        static=True, converter=lambda a: to_tuple(as_matrix("F", a)), kw_only=True
    )
    G: tuple = eqx.field(
        static=True, converter=lambda a: to_tuple(as_matrix("G", a)), kw_only=True
    )
    beta_min: Any = 1.0
    beta_max: Any = 1.0
    initial_cov: tuple | None = eqx.field(
        static=True,
        default=None,
        converter=lambda a: None if a is None else to_tuple(as_matrix("initial_cov", a)),
    )
    numerical_eps: Any = 0.0
    decomp_mode: str = eqx.field(static=True, default="lower")
    predicted_components: tuple | None = eqx.field(
        static=True,
        default=None,
        converter=lambda a: None if a is None else tuple(int(i) for i in np.ravel(a)),
    )
    t0: float = eqx.field(static=True, default=1e-5, converter=_t0)
    t1: float = eqx.field(static=True, default=1.0, converter=_t1)

    def __check_init__(self):
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

    @property
    def k(self) -> int:
        return len(self.F)

    def drift_matrix(self) -> Matrix:
        return np.array(self.F)

    def diffusion_matrix(self) -> Matrix:
        return np.array(self.G)

    def diffusion_diagonal(self) -> Vector:
        G = np.array(self.G)
        if not np.allclose(G, np.diag(np.diag(G))):
            raise ValueError(
                "argument `G`: got a non-diagonal matrix, expected a diagonal one for "
                "`diffusion` and the samplers (sdekit's samplers use diagonal noise). "
                "Kernels, losses and the prior work for any G; for sampling choose a diagonal G "
                "(possible whenever G G^T is diagonal)."
            )
        return np.diag(G)

    def initial_covariance(self) -> Matrix:
        k = len(self.F)
        return np.zeros((k, k)) if self.initial_cov is None else np.array(self.initial_cov)

    def stationary_cov(self) -> Matrix:
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


__all__ = ["DECOMP_MODES", "AbstractLinearSDE", "LinearSDE"]
