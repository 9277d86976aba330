"""The complete recipe (Ma, Chen & Fox 2015; Pandey & Mandt 2023) for linear SDEs.

``dz = -(D + Q) grad H(z) dt + sqrt(2 D) dW`` with ``D`` positive semidefinite, ``Q``
skew-symmetric and ``H(z) = z^T A z / 2`` has the stationary law ``N(0, A^{-1})``.
[`recipe_matrices`][sdekit.processes.recipe_matrices] gives ``(F, G)``,
[`from_recipe`][sdekit.processes.from_recipe] builds the `LinearSDE`, and
[`check_stationary`][sdekit.processes.check_stationary] verifies a claimed stationary law.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import arg_error
from ._linalg import as_matrix, to_tuple
from ._linear_sde import AbstractLinearSDE, LinearSDE


# ------------------------------------------------------------------------------------------------
def _check_psd(name: str, a: np.ndarray, tol: float = 1e-10) -> None:
    if not np.allclose(a, a.T, atol=tol, rtol=0):
        raise arg_error(
            name, to_tuple(a), "a symmetric positive semidefinite matrix (it is not symmetric)"
        )
    w = np.linalg.eigvalsh(0.5 * (a + a.T))
    if np.min(w) < -tol * max(1.0, float(np.max(np.abs(w)))):
        raise arg_error(
            name,
            to_tuple(a),
            f"a positive semidefinite matrix (smallest eigenvalue {np.min(w):.3g} < 0)",
        )


def _check_skew(name: str, a: np.ndarray, tol: float = 1e-10) -> None:
    if not np.allclose(a, -a.T, atol=tol, rtol=0):
        raise arg_error(name, to_tuple(a), "a skew-symmetric matrix (Q = -Q^T)")


def recipe_matrices(D: Any, Q: Any, precision: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(F, G)`` of the complete recipe with constant ``D`` (PSD), ``Q`` (skew) and
    ``H(z) = z^T A z / 2`` (``A = precision``, symmetric positive definite): the SDE
    ``dz = -(D + Q) A z dt + sqrt(2 D) dW`` has stationary law ``N(0, A^{-1})``. ``G`` is the
    symmetric square root of ``2 D`` (diagonal when ``D`` is)."""
    D = as_matrix("D", D)
    Q = as_matrix("Q", Q)
    A = as_matrix("precision", precision)
    if not (D.shape == Q.shape == A.shape):
        raise ValueError(
            f"arguments `D`, `Q` and `precision`: got shapes {D.shape}, {Q.shape} and "
            f"{A.shape}, expected the same k x k shape."
        )
    _check_psd("D", D)
    _check_skew("Q", Q)
    _check_psd("precision", A)
    if np.min(np.linalg.eigvalsh(0.5 * (A + A.T))) <= 0:
        raise arg_error("precision", to_tuple(A), "a positive definite matrix")
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
            to_tuple(np.asarray(D, float)),
            "noise that reaches every component "
            "through Q (the drift -(D+Q)A is not stable, so N(0, A^-1) is not the "
            "unique stationary law)",
        )
    sde = LinearSDE(F=F, G=G, beta_min=beta_min, beta_max=beta_max, **kwargs)
    check_stationary(sde, np.linalg.inv(as_matrix("precision", precision)))
    return sde


def check_stationary(
    process: AbstractLinearSDE, covariance: Any, *, rtol: float = 1e-8, raise_error: bool = True
) -> float:
    """Check that ``N(0, covariance)`` (per pixel) is stationary for ``process``: the Lyapunov
    residual ``F S + S F^T + G G^T`` must vanish. Returns the relative residual; raises
    ``ValueError`` (naming ``covariance``) if it exceeds ``rtol`` and ``raise_error``."""
    S = as_matrix("covariance", covariance)
    F = np.asarray(process.drift_matrix(), np.float64)
    G = np.asarray(process.diffusion_matrix(), np.float64)
    if S.shape != F.shape:
        raise arg_error("covariance", S.shape, f"a {F.shape} matrix")
    res = F @ S + S @ F.T + G @ G.T
    scale = max(float(np.max(np.abs(G @ G.T))), float(np.max(np.abs(F @ S))), 1e-300)
    rel = float(np.max(np.abs(res))) / scale
    if raise_error and rel > rtol:
        raise arg_error(
            "covariance",
            to_tuple(S),
            f"a stationary covariance of the process "
            f"(Lyapunov residual F S + S F^T + G G^T is {rel:.3g} relative)",
        )
    return rel


__all__ = ["check_stationary", "from_recipe", "recipe_matrices"]
