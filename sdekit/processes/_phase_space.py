"""Critically damped phase-space processes (PSLD, CLD) with closed-form, float32-stable kernels.

The 2 x 2 per-pixel kernels ``Phi(b) = exp(b F)`` and ``Q(b) = int_0^b Phi G G^T Phi^T`` of the
phase-space SDE (Pandey & Mandt 2023, "A Complete Recipe for Diffusion Generative Models",
appendix) are written as
functions of the integrated time ``b`` without cancellation (``psi_k`` series for small
arguments), so float32 matches float64 to ~1e-6 relative for ``t`` in ``[1e-5, 1]``.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array
from .._validate import arg_error, check_choice, check_real, concrete_array, static_float
from ._linalg import Matrix, Vector, array_module
from ._linear_sde import AbstractLinearSDE

PSLD_MODES = ("score_xm", "score_m", "score_x")


def _t0(v: Any) -> float:
    return static_float("t0", v)


def _t1(v: Any) -> float:
    return static_float("t1", v)


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


def _phase_space_kernel(b: Array, gamma: Any, nu: Any) -> tuple[Array, Array]:
    """``Phi(b)`` and ``Q(b)`` of PSLD in integrated time ``b`` (the closed forms of the paper's
    appendix)."""
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


def _sqrt(x: Any) -> Any:
    return jnp.sqrt(x) if isinstance(x, jax.Array) else math.sqrt(x)


def _mat2(xp: Any, a: Any, b: Any, c: Any, d: Any) -> Matrix:
    if xp is np:
        return np.array([[a, b], [c, d]], dtype=np.float64)
    return jnp.stack([jnp.stack(jnp.broadcast_arrays(a, b)), jnp.stack(jnp.broadcast_arrays(c, d))])


_FLIP = np.diag([1.0, -1.0])


class AbstractPhaseSpaceSDE(AbstractLinearSDE):
    """Critically damped position/momentum processes (PSLD, CLD) in PSLD's normalisation:
    per unit of ``b = s B(t)``, ``F = 1/2 [[-Gamma, M^-1], [-1, -nu]]``,
    ``G = diag(sqrt(Gamma), sqrt(M nu))``, ``M^-1 = (Gamma - nu)^2 / 4``; kernels in closed form,
    cancellation-free in float32. Parameters may be traced (``jit``,
    ``vmap``, ``grad``); matrices are float64 numpy for concrete parameters."""

    @abc.abstractmethod
    def phase_space_params(self) -> tuple[Any, Any, Any, Any, Any]:
        """``(Gamma, nu, kappa, s, M^-1)`` with ``s`` the factor from ``B(t)`` to PSLD's ``b``."""

    def _xp(self) -> Any:
        return array_module(*self.phase_space_params())

    @property
    def k(self) -> int:
        return 2

    @property
    def M(self) -> Any:
        """Mass ``M = 1 / M^-1``."""
        return 1.0 / self.phase_space_params()[4]

    def drift_matrix(self) -> Matrix:
        g, n, _, s, minv = self.phase_space_params()
        return _mat2(self._xp(), -0.5 * s * g, 0.5 * s * minv, -0.5 * s, -0.5 * s * n)

    def diffusion_diagonal(self) -> Vector:
        g, n, _, s, _ = self.phase_space_params()
        xp = self._xp()
        return xp.stack([_sqrt(s * g), _sqrt(s * self.M * n)]) if xp is jnp else np.array(
            [_sqrt(s * g), _sqrt(s * self.M * n)]
        )

    def diffusion_matrix(self) -> Matrix:
        d = self.diffusion_diagonal()
        return _mat2(self._xp(), d[0], 0.0 * d[0], 0.0 * d[0], d[1])

    def initial_covariance(self) -> Matrix:
        _, _, kap, _, _ = self.phase_space_params()
        return _mat2(self._xp(), 0.0, 0.0, 0.0, kap * self.M)

    def stationary_cov(self) -> Matrix:
        return _mat2(self._xp(), 1.0, 0.0, 0.0, self.M)

    def transition(self, b: Array) -> Array:
        g, n, _, s, _ = self.phase_space_params()
        return _phase_space_kernel(s * jnp.asarray(b), g, n)[0]

    def noise_covariance(self, b: Array) -> Array:
        g, n, _, s, _ = self.phase_space_params()
        return _phase_space_kernel(s * jnp.asarray(b), g, n)[1]

    def split_flow(self, b: Array) -> tuple[Array, Array]:
        g, n, _, s, _ = self.phase_space_params()
        phi, q = _phase_space_kernel(s * jnp.asarray(b), g, n)
        flip = jnp.asarray(_FLIP, phi.dtype)
        return flip @ phi @ flip, flip @ q @ flip


def _resolve_mode(mode: Any, gamma: Any, nu: Any) -> str:
    if mode is not None:
        return mode
    g, n = concrete_array(gamma), concrete_array(nu)
    if g is None or n is None or g.ndim or n.ndim:
        raise arg_error(
            "mode", None, "an explicit mode ('score_xm', 'score_m' or 'score_x') when gamma or "
            "nu is traced or batched (the default is read from their values)"
        )
    if float(g) == 0:
        return "score_m"
    if float(n) == 0:
        return "score_x"
    return "score_xm"


class PSLD(AbstractPhaseSpaceSDE):
    """Phase Space Langevin Diffusion (Pandey & Mandt, ICCV 2023), state ``z = [x, m]``:

    ``dx = beta/2 (M^-1 m - Gamma x) dt + sqrt(beta Gamma) dW_x``,
    ``dm = beta/2 (-x - nu m) dt + sqrt(beta M nu) dW_m``,

    with critical damping ``M^-1 = (Gamma - nu)^2 / 4``; prior ``N(0, I) x N(0, M I)``.
    Parameter names are the original code's: ``gamma`` is the paper's capital Gamma (noise on
    ``x``), ``nu`` the noise on ``m``, ``kappa`` the paper's lower-case gamma
    (``m_0 ~ N(0, kappa M)``, marginalised: HSM), ``numerical_eps`` is added to
    ``Sigma_xx`` and ``Sigma_mm``, ``decomp_mode`` picks the lower/upper factor.

    ``mode`` (static; default: from ``gamma``/``nu``): ``score_xm`` (network outputs ``eps``
    for both halves), ``score_m`` (``gamma = 0``, lower factor: only ``eps_m``, ``s_x = 0``) or
    ``score_x`` (``nu = 0``, upper factor: only ``eps_x``, ``s_m = 0``). Defaults: the CIFAR-10
    SOTA configuration (beta 8, Gamma 0.01, nu 4.01, kappa 0.04). Numeric parameters are pytree
    leaves (``jit``, ``vmap``, ``grad`` work); ``t0``, ``t1``, ``mode`` and ``decomp_mode`` are
    static.
    """

    beta_min: Any = 8.0
    beta_max: Any = 8.0
    gamma: Any = 0.01
    nu: Any = 4.01
    kappa: Any = 0.04
    decomp_mode: str = eqx.field(static=True, default="lower")
    numerical_eps: Any = 1e-9
    mode: str | None = eqx.field(static=True, default=None)
    t0: float = eqx.field(static=True, default=1e-5, converter=_t0)
    t1: float = eqx.field(static=True, default=1.0, converter=_t1)

    def __post_init__(self):
        if self.mode is not None:
            check_choice("mode", self.mode, PSLD_MODES)
        self.mode = _resolve_mode(self.mode, self.gamma, self.nu)

    def __check_init__(self):
        check_real("gamma", self.gamma, lo=0.0)
        check_real("nu", self.nu, lo=0.0)
        check_real("kappa", self.kappa, lo=0.0)
        g, n = concrete_array(self.gamma), concrete_array(self.nu)
        if g is not None and n is not None:
            if np.any((g == 0) & (n == 0)):
                raise ValueError(
                    "arguments `gamma` and `nu`: got gamma=0 and nu=0, expected at least "
                    "one of them > 0 (no noise otherwise)."
                )
            if np.any(g == n):
                raise ValueError(
                    f"arguments `gamma` and `nu`: got gamma = nu = {self.gamma!r}, "
                    "expected gamma != nu (critical damping M^-1 = (gamma - nu)^2/4 > 0)."
                )
        _check_mode(self.mode, g, n, self.decomp_mode)

    def phase_space_params(self):
        return self.gamma, self.nu, self.kappa, 1.0, self.m_inv

    @property
    def m_inv(self) -> Any:
        """``M^-1 = (gamma - nu)^2 / 4`` (critical damping)."""
        return (self.gamma - self.nu) ** 2 / 4.0

    def predicted(self) -> tuple[int, ...]:
        return {"score_xm": (0, 1), "score_m": (1,), "score_x": (0,)}[self.mode]


def _check_mode(mode: str, gamma: Any, nu: Any, decomp_mode: str) -> None:
    if mode == "score_m":
        if gamma is not None and np.any(gamma != 0):
            raise arg_error("mode", mode, "'score_xm' when gamma > 0 (noise on x needs s_x)")
        if decomp_mode != "lower":
            raise arg_error("decomp_mode", decomp_mode, "'lower' in score_m mode")
    if mode == "score_x":
        if nu is not None and np.any(nu != 0):
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

    beta_min: Any = 4.0
    beta_max: Any = 4.0
    m_inv: Any = 4.0
    kappa: Any = 0.04
    decomp_mode: str = eqx.field(static=True, default="lower")
    numerical_eps: Any = 1e-9
    mode: str = eqx.field(static=True, default="score_m")
    t0: float = eqx.field(static=True, default=1e-5, converter=_t0)
    t1: float = eqx.field(static=True, default=1.0, converter=_t1)

    def __check_init__(self):
        check_real("m_inv", self.m_inv, lo=0.0, lo_open=True)
        check_real("kappa", self.kappa, lo=0.0)
        check_choice("mode", self.mode, ("score_xm", "score_m"))
        _check_mode(self.mode, None, None, self.decomp_mode)

    def phase_space_params(self):
        return 0.0, 2.0 * _sqrt(self.m_inv), self.kappa, 2.0, self.m_inv

    def predicted(self) -> tuple[int, ...]:
        return (1,) if self.mode == "score_m" else (0, 1)

    @property
    def Gamma(self) -> Any:
        """CLD's friction ``Gamma = 2 sqrt(M)``."""
        return 2.0 / _sqrt(self.m_inv)


__all__ = ["PSLD_MODES", "AbstractPhaseSpaceSDE", "CLD", "PSLD"]
