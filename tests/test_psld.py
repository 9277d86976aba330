"""PSLD / linear augmented SDEs: reference values, stable float32 kernel, recipe, samplers."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit
from sdekit.objectives._hsm import HSM, AugmentedDSM, hsm_loss
from sdekit.processes import CLD, PSLD, LinearSDE, check_stationary, from_recipe
from sdekit.sampling import SSCS, AdaptiveODE, EulerMaruyama, PredictionFn, sample, time_grid
from sdekit.sampling._sscs import SSCS_VARIANTS, sscs_step

SETS = ("cifar10_sota", "cifar10_gamma0.02")


def _psld(ref, name, **kw):
    pr = ref["param_sets"][name]["params"]
    return PSLD(
        beta_min=pr["beta_min"],
        beta_max=pr["beta_max"],
        gamma=pr["gamma"],
        nu=pr["nu"],
        kappa=pr["kappa"],
        **kw,
    )


def _img(xs, ms=None):
    """Reference '2-pixel, 1-channel' tensors -> NHWC (1, 1, 2, C) (x then m on channels)."""
    x = np.asarray(xs, np.float64).reshape(1, 1, 2, 1)
    if ms is None:
        return jnp.asarray(x)
    m = np.asarray(ms, np.float64).reshape(1, 1, 2, 1)
    return jnp.asarray(np.concatenate([x, m], -1))


def _close(got, want, rtol, atol=0.0):
    np.testing.assert_allclose(
        np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol
    )


def _triplet(c):
    c = np.asarray(c).reshape(-1, 2, 2)[0]
    return [c[0, 0], c[0, 1], c[1, 1]]


# ------------------------------------------------------------------------------------------------
# reference values (float64)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SETS)
def test_kernel_matches_reference(psld_ref, name):
    conv = psld_ref["conventions"]
    with jax.enable_x64(True):
        lower, upper = _psld(psld_ref, name), _psld(psld_ref, name, decomp_mode="upper")
        x0 = _img(conv["x0"])
        eps = _img(conv["eps_x"], conv["eps_m"])
        z0_dsm = _img(conv["x0"], conv["m0_DSM"])
        zero = np.zeros((2, 2))
        for kr in psld_ref["param_sets"][name]["kernel"]:
            t = jnp.asarray(kr["t"], jnp.float64)
            _close(lower.integrated_beta(t), kr["B_t=int_0^t beta"], 1e-14)
            mean, cov = lower.marginal(x0, t)
            _close(mean[..., 0], np.reshape(kr["hsm_mean_x"], (1, 1, 2)), 1e-12, 1e-18)
            _close(mean[..., 1], np.reshape(kr["hsm_mean_m"], (1, 1, 2)), 1e-12, 1e-18)
            _close(_triplet(cov), kr["hsm_cov_xx_xm_mm_highprec"], 1e-9)
            _close(
                _triplet(lower.kernel_covariance(t, zero)), kr["dsm_cov_xx_xm_mm_highprec"], 1e-9
            )
            _close(np.ravel(lower.kernel_factor(t)), kr["hsm_lower_L_l11_l12_l21_l22"], 1e-9)
            _close(np.ravel(upper.kernel_factor(t)), kr["hsm_upper_U_u11_u12_u21_u22"], 1e-9)
            _close(
                lower.transition_matrix(t),
                kr["check_hsm"]["Phi_t (2x2 transition matrix, rows x,m)"],
                1e-12,
            )
            for proc, tag in ((lower, "lower"), (upper, "upper")):
                cinv = np.linalg.inv(np.asarray(proc.kernel_factor(t))).T
                key = (
                    "hsm_lower_LinvT_11_12_21_22"
                    if tag == "lower"
                    else "hsm_upper_UinvT_11_12_21_22"
                )
                _close(np.ravel(cinv), kr[key], 1e-9, 1e-12)
                zt = proc.perturb(x0, t, eps)
                _close(zt[..., 0], np.reshape(kr[f"hsm_zt_{tag}_x"], (1, 1, 2)), 1e-9)
                _close(zt[..., 1], np.reshape(kr[f"hsm_zt_{tag}_m"], (1, 1, 2)), 1e-9)
                s = proc.eps_to_score(eps, zt, t)
                _close(
                    s[..., 0], np.reshape(kr[f"hsm_score_target_{tag}_exact64_x"], (1, 1, 2)), 1e-9
                )
                _close(
                    s[..., 1], np.reshape(kr[f"hsm_score_target_{tag}_exact64_m"], (1, 1, 2)), 1e-9
                )
                # eps <-> score round trip and the conditional score
                _close(proc.score_to_eps(s, zt, t), eps, 1e-9)
                _close(proc.conditional_score(zt, x0, t), s, 1e-7)
            # DSM kernel: z0 = [x0, m0], no initial covariance
            zt = lower.perturb_state(z0_dsm, t, eps, initial_covariance=zero)
            _close(zt[..., 0], np.reshape(kr["dsm_zt_lower_x"], (1, 1, 2)), 1e-9)
            _close(zt[..., 1], np.reshape(kr["dsm_zt_lower_m"], (1, 1, 2)), 1e-9)
            c = np.asarray(lower.kernel_factor(t, zero))
            s = -np.einsum("ji,...j->...i", np.linalg.inv(c), np.asarray(eps))
            _close(s[..., 0], np.reshape(kr["dsm_score_target_lower_x"], (1, 1, 2)), 2e-6)
            _close(s[..., 1], np.reshape(kr["dsm_score_target_lower_m"], (1, 1, 2)), 2e-6)


@pytest.mark.parametrize("name", SETS)
def test_sde_drifts_loss_match_reference(psld_ref, name):
    ps = psld_ref["param_sets"][name]
    with jax.enable_x64(True):
        p = _psld(psld_ref, name)
        z = _img([0.5, -0.3], [0.2, 0.1])
        for fw in ps["forward_sde_at_z_fixed"]:
            t = jnp.asarray(fw["t"], jnp.float64)
            f, g = p.drift(t, z), p.diffusion(t, z)
            _close(f[..., 0].ravel(), fw["drift_x"], 1e-12)
            _close(f[..., 1].ravel(), fw["drift_m"], 1e-12)
            _close(g[..., 0].ravel(), fw["diffusion_x"], 1e-12)
            _close(g[..., 1].ravel(), fw["diffusion_m"], 1e-12)

        def toy(zz, t):
            return 0.1 * zz + jnp.asarray(t, jnp.float32).astype(zz.dtype)[:, None, None, None]

        fn = PredictionFn(p, toy, "eps")
        rd = ps["reverse_drift_with_toy_eps_net"]
        for v in rd["values"]:
            t = 1.0 - v["tau (reverse time; forward t = 1 - tau)"]
            for ode, tag in ((False, "rev_sde_drift"), (True, "pf_ode_drift")):
                d = fn.reverse_drift(z, jnp.asarray(t, jnp.float64), ode=ode)
                _close(d[..., 0].ravel(), v[f"{tag}_x"], 1e-6)
                _close(d[..., 1].ravel(), v[f"{tag}_m"], 1e-6)

        # predict x0 from eps (reference helper)
        px = ps["predict_x_from_eps"]
        zt = _img(*px["z_t (x pixels, m pixels)"])
        e = _img(*px["eps (x pixels, m pixels)"])
        z0 = p.eps_to_state0(e, zt, jnp.asarray(px["t"], jnp.float64))
        _close(z0[..., 0].ravel(), px["x0_hat"], 1e-9)
        _close(z0[..., 1].ravel(), px["m0_hat"], 1e-9)
        # eps_to_x0 is the data prediction (the abstract contract): the x part
        x0_hat = p.eps_to_x0(e, zt, jnp.asarray(px["t"], jnp.float64))
        assert x0_hat.shape == zt.shape[:-1] + (1,)
        _close(x0_hat.ravel(), px["x0_hat"], 1e-9)

        # HSM loss with the toy network on a fixed batch
        hl = ps["hsm_loss_with_toy_eps_net"]
        x0 = jnp.asarray(np.reshape(hl["x0 (batch of 2, each 2 pixels)"], (2, 1, 2, 1)))
        ev = np.reshape(hl["eps (per sample: [eps_x pixels..., eps_m pixels...])"], (2, 2, 2))
        eps = jnp.asarray(np.transpose(ev, (0, 2, 1)).reshape(2, 1, 2, 2))
        t = jnp.asarray(hl["t"], jnp.float64)
        zt = p.perturb(x0, t, eps)
        want = np.transpose(
            np.reshape(hl["network_input_z_t (per sample: [x pixels..., m pixels...])"], (2, 2, 2)),
            (0, 2, 1),
        ).reshape(2, 1, 2, 2)
        _close(zt, want, 1e-6)
        _close(hsm_loss(p, toy, x0, t, eps), hl["loss (mean over all elements)"], 1e-6)


def test_prior_and_grids_match_reference(psld_ref):
    pr = psld_ref["prior"]
    p = _psld(psld_ref, pr["params"])
    _close(p.stationary_cov(), pr["exact_covariance_per_pixel [[xx, xm],[xm, mm]]"], 1e-12)
    z = p.prior_sample(jr.PRNGKey(0), (20000, 1, 2, 3))
    assert z.shape == (20000, 1, 2, 6)
    zz = np.asarray(z).reshape(-1, 2, 3).transpose(0, 2, 1).reshape(-1, 2)
    _close(np.cov(zz.T), pr["exact_covariance_per_pixel [[xx, xm],[xm, mm]]"], 0.02, 0.01)
    # log-density against the per-pixel bivariate normal
    lp = p.prior_log_prob(z[:3])
    S = np.diag([1.0, p.M])
    q = np.einsum("ni,ij,nj->n", zz[:18], np.linalg.inv(S), zz[:18]).reshape(3, 6).sum(-1)
    _close(lp, -0.5 * q - 6 * 0.5 * (np.log(np.linalg.det(S)) + 2 * math.log(2 * math.pi)), 1e-5)
    # grids: n-step PSLD sampler = n - 1 solver steps on [1e-3, 1] + 1 denoising step
    for key, grids in psld_ref["sampling_time_grids"].items():
        n = int(key.split("=")[1])
        for kind in ("uniform", "quadratic"):
            tau = 1.0 - np.asarray(time_grid(kind, n - 1, 1.0, 1e-3))
            _close(tau, grids[f"tau_{kind}"], 0, 2e-7)


# ------------------------------------------------------------------------------------------------
# float32 stability
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.01, 0.0, 0.5])
def test_float32_stable_kernel(gamma):
    kw = dict(gamma=gamma, nu=gamma + 4.0)
    if gamma == 0.5:
        kw = dict(gamma=0.5, nu=2.5, beta_min=0.1, beta_max=20.0)
    ts = np.array([1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0])
    p = PSLD(**kw)
    c32 = np.asarray(p.kernel_covariance(jnp.asarray(ts, jnp.float32)))
    f32 = np.asarray(p.kernel_factor(jnp.asarray(ts, jnp.float32)))
    with jax.enable_x64(True):
        c64 = np.asarray(p.kernel_covariance(jnp.asarray(ts, jnp.float64)))
        ref = LinearSDE(
            F=p.drift_matrix(),
            G=p.diffusion_matrix(),
            beta_min=p.beta_min,
            beta_max=p.beta_max,
            initial_cov=p.initial_covariance(),
            numerical_eps=1e-9,
        )
        _close(c64, ref.kernel_covariance(jnp.asarray(ts, jnp.float64)), 1e-8, 1e-15)
    assert c32.dtype == np.float32 and np.all(np.isfinite(c32)) and np.all(np.isfinite(f32))
    assert np.all(np.linalg.eigvalsh(c32.astype(np.float64)) > 0)
    for i in (0, 1):
        _close(c32[:, i, i], c64[:, i, i], 1e-6)
    # Sigma_xm: relative 1e-6 except near t = 1 where it is tiny (absolute ~3e-8, spec 4.4)
    _close(c32[:, 0, 1], c64[:, 0, 1], 1e-6, 5e-8)
    # the score at t = 1e-5 is finite (the reference returns NaN for Gamma = 0 in float32)
    z = jnp.ones((1, 1, 1, 2), jnp.float32)
    eps = jnp.ones(p.prediction_shape(z.shape), jnp.float32)
    assert np.all(np.isfinite(np.asarray(p.eps_to_score(eps, z, 1e-5))))


# ------------------------------------------------------------------------------------------------
# special cases: VP, CLD, the complete recipe
# ------------------------------------------------------------------------------------------------
def test_linear_sde_vp_equals_vp():
    vp = sdekit.VP(beta_min=0.1, beta_max=20.0)
    lin = LinearSDE(F=[[-0.5]], G=[[1.0]], beta_min=0.1, beta_max=20.0)
    x0 = jr.normal(jr.PRNGKey(1), (5, 3, 3, 2))
    t = jnp.array([1e-5, 1e-3, 0.1, 0.5, 1.0])
    eps = jr.normal(jr.PRNGKey(2), x0.shape)
    _close(lin.perturb(x0, t, eps), vp.perturb(x0, t, eps), 1e-5, 1e-6)
    mean, cov = lin.marginal(x0, t)
    vmean, vstd = vp.marginal(x0, t)
    _close(mean, vmean, 1e-5, 1e-7)
    _close(np.sqrt(np.asarray(cov)[..., 0, 0]).ravel(), np.asarray(vstd)[:, 0, 0, 0], 1e-5)
    _close(lin.drift(t, x0), vp.drift(t, x0), 1e-6)
    _close(lin.diffusion(t, x0), vp.diffusion(t, x0), 1e-6)
    _close(lin.eps_to_score(eps, x0, t), vp.eps_to_score(eps, x0, t), 1e-5)
    _close(lin.stationary_cov(), [[1.0]], 1e-12)
    # the recipe builds the same process: D = 1/2, Q = 0, H = x^2/2
    rec = from_recipe([[0.5]], [[0.0]], [[1.0]], beta_min=0.1, beta_max=20.0)
    assert rec.F == lin.F and rec.G == lin.G


def test_psld_gamma0_is_cld(psld_ref):
    with jax.enable_x64(True):
        ps = PSLD(gamma=0.0, nu=4.0, beta_min=8.0, beta_max=8.0)
        cld = CLD(beta_min=4.0, beta_max=4.0, m_inv=4.0)
        assert (
            ps.M == cld.M == 0.25 and cld.Gamma == 1.0 and ps.predicted() == cld.predicted() == (1,)
        )
        t = jnp.array([1e-5, 1e-3, 0.1, 0.37, 1.0])
        _close(cld.kernel_covariance(t), ps.kernel_covariance(t), 1e-13, 1e-20)
        _close(cld.transition_matrix(t), ps.transition_matrix(t), 1e-13)
        z = jr.normal(jr.PRNGKey(0), (5, 2, 2, 2), jnp.float64)
        _close(cld.drift(t, z), ps.drift(t, z), 1e-13)
        _close(cld.diffusion(t, z), ps.diffusion(t, z), 1e-13)
        # CLD's own form: dx = beta M^-1 v, dv = -beta x - Gamma beta M^-1 v, g_v^2 = 2 Gamma beta
        _close(cld.drift_matrix(), [[0.0, 4.0], [-1.0, -4.0]], 1e-14)
        _close(cld.diffusion_matrix(), np.diag([0.0, math.sqrt(2.0)]), 1e-14)
        # against the reference CLD kernel (independent matrix exponential), eps = 0
        ce = psld_ref["cld_equivalence_check"]
        cld0 = CLD(beta_min=4.0, beta_max=4.0, m_inv=4.0, numerical_eps=0.0)
        z0 = jnp.array([[ce["x0"], ce["m0"]]], jnp.float64)
        phi = cld0.transition_matrix(jnp.asarray(ce["t"], jnp.float64))
        _close(phi @ np.asarray(z0[0]), ce["cld_mean"], 1e-12)
        _close(
            _triplet(cld0.kernel_covariance(ce["t"], np.zeros((2, 2)))),
            ce["cld_cov_xx_xm_mm"],
            1e-12,
        )
        _close(
            _triplet(ps.kernel_covariance(ce["t"], np.zeros((2, 2)))),
            ce["psld_cov_xx_xm_mm(with eps 1e-9)"],
            1e-12,
        )
        # generic (expm / Van Loan) kernel of the same SDE
        gen = LinearSDE(
            F=cld.drift_matrix(),
            G=cld.diffusion_matrix(),
            beta_min=4.0,
            beta_max=4.0,
            initial_cov=cld.initial_covariance(),
            numerical_eps=1e-9,
        )
        _close(gen.kernel_covariance(t), cld.kernel_covariance(t), 1e-7, 1e-15)


def test_recipe_and_stationarity():
    g, nu = 0.01, 4.01
    M = 1.0 / ((g - nu) ** 2 / 4)
    D = 0.5 * np.diag([g, M * nu])
    Q = 0.5 * np.array([[0.0, -1.0], [1.0, 0.0]])
    A = np.diag([1.0, 1.0 / M])
    sde = from_recipe(
        D,
        Q,
        A,
        beta_min=8.0,
        beta_max=8.0,
        initial_cov=np.diag([0.0, 0.04 * M]),
        numerical_eps=1e-9,
    )
    ps = PSLD()
    _close(np.array(sde.F), ps.drift_matrix(), 1e-12)
    _close(np.array(sde.G), ps.diffusion_matrix(), 1e-12)
    assert check_stationary(ps, np.diag([1.0, M])) < 1e-12
    assert check_stationary(sde, sde.stationary_cov()) < 1e-10
    with pytest.raises(ValueError, match="covariance"):
        check_stationary(ps, np.eye(2))
    # a 3-component recipe instance with non-diagonal precision, against Lyapunov
    A3 = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.5]])
    D3 = np.diag([0.0, 0.0, 1.0])
    Q3 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    s3 = from_recipe(D3, Q3, A3)
    _close(s3.stationary_cov(), np.linalg.inv(A3), 1e-9, 1e-12)
    # generic kernels (Van Loan + doubling) stay accurate in float32 at large integrated time
    _close(
        s3.kernel_covariance(jnp.asarray([30.0, 1e3], jnp.float32)),
        np.stack([np.linalg.inv(A3)] * 2),
        1e-5,
        1e-6,
    )
    # bad input
    with pytest.raises(ValueError, match="`D`"):
        from_recipe(np.diag([1.0, -0.1]), Q, A)
    with pytest.raises(ValueError, match="`Q`"):
        from_recipe(D, np.array([[0.0, 1.0], [1.0, 0.0]]), A)
    with pytest.raises(ValueError, match="`precision`"):
        from_recipe(D, Q, np.diag([1.0, -1.0]))


def test_bad_input():
    with pytest.raises(ValueError, match="`gamma` and `nu`"):
        PSLD(gamma=0.0, nu=0.0)
    with pytest.raises(ValueError, match="`decomp_mode`"):
        PSLD(decomp_mode="middle")
    with pytest.raises(ValueError, match="`decomp_mode`"):
        PSLD(gamma=0.0, nu=4.0, decomp_mode="upper")  # score_m needs the lower factor
    with pytest.raises(ValueError, match="`mode`"):
        PSLD(mode="score_m")  # Gamma > 0 puts noise on x
    with pytest.raises(ValueError, match="`gamma`"):
        PSLD(gamma=-1.0)
    with pytest.raises(ValueError, match="`F`"):
        LinearSDE(F=[[0.5]], G=[[1.0]])  # unstable: no stationary prior
    with pytest.raises(ValueError, match="`m_inv`"):
        CLD(m_inv=0.0)
    p = PSLD()
    with pytest.raises(ValueError, match="`t`"):
        p.drift(jnp.ones((3,)), jnp.ones((2, 4, 4, 6)))


def test_modes_and_shapes():
    x0 = jr.normal(jr.PRNGKey(0), (3, 4, 4, 3))
    t = jnp.array([0.1, 0.5, 0.9])
    for p, pshape in (
        (PSLD(), 6),
        (PSLD(gamma=0.0, nu=4.0), 3),
        (PSLD(gamma=2.0, nu=0.0, decomp_mode="upper"), 3),
    ):
        z = p.sample_marginal(jr.PRNGKey(1), x0, t)
        assert z.shape == (3, 4, 4, 6) and p.data_part(z).shape == x0.shape
        assert p.prediction_shape(z.shape) == (3, 4, 4, pshape)
        eps = jnp.ones(p.prediction_shape(z.shape))
        s = p.eps_to_score(eps, z, t)
        assert s.shape == z.shape and np.all(np.isfinite(np.asarray(s)))
        # per-element time equals per-example time when all equal
        te = jnp.broadcast_to(t[:, None, None, None], x0.shape)
        _close(p.eps_to_score(eps, z, te), s, 1e-5, 1e-6)
        assert p.prior_sample(jr.PRNGKey(2), x0.shape).shape == z.shape
        loss = HSM(p)(lambda zz, tt: jnp.zeros(p.prediction_shape(zz.shape)), jr.PRNGKey(3), x0)
        assert loss.shape == () and np.isfinite(float(loss))
        dloss = AugmentedDSM(p)(
            lambda zz, tt: jnp.zeros(p.prediction_shape(zz.shape)), jr.PRNGKey(3), x0
        )
        assert np.isfinite(float(dloss))
    # score_m: s_x = 0, s_m = -eps_m / l22
    p = PSLD(gamma=0.0, nu=4.0)
    z = jnp.ones((1, 1, 1, 2))
    s = p.eps_to_score(jnp.full((1, 1, 1, 1), 2.0), z, 0.3)
    l22 = float(p.kernel_factor(0.3)[1, 1])
    _close(np.ravel(s), [0.0, -2.0 / l22], 1e-5)


def test_dsm_target_is_conditional_score_in_hsm_units():
    """AugmentedDSM's target converts back (with the process's HSM factor) to the DSM score."""
    with jax.enable_x64(True):
        p = PSLD()
        x0 = jr.normal(jr.PRNGKey(0), (4, 1, 2, 1), jnp.float64)
        eps = jr.normal(jr.PRNGKey(1), (4, 1, 2, 2), jnp.float64)
        eps0 = jr.normal(jr.PRNGKey(2), (4, 1, 2, 2), jnp.float64)
        t = jnp.array([1e-3, 0.1, 0.5, 1.0])
        captured = {}

        def net(z, tt):
            captured["z"] = z
            return jnp.zeros_like(z)

        loss = AugmentedDSM(p).per_example(net, x0, t, eps, eps0)
        z0 = p.state_from(x0) + jnp.concatenate(
            [jnp.zeros_like(x0), math.sqrt(p.kappa * p.M) * eps0[..., 1:]], -1
        )
        zt = captured["z"]
        mean = p.perturb_state(z0, t, jnp.zeros_like(eps), initial_covariance=np.zeros((2, 2)))
        cov = np.asarray(p.kernel_covariance(t, np.zeros((2, 2))))
        r = np.asarray(zt - mean)
        score = -np.einsum("nij,nhwj->nhwi", np.linalg.inv(cov), r)
        target = p.score_to_eps(jnp.asarray(score), zt, t)
        _close(loss, np.mean(np.asarray(target) ** 2, axis=(1, 2, 3)), 1e-8)


# ------------------------------------------------------------------------------------------------
# end to end: Gaussian data, exact eps network
# ------------------------------------------------------------------------------------------------
def _oracle(p, var):
    """Exact eps network for x0 ~ N(0, var): eps = C^T Sigma_marg^{-1} z (spec 11.5)."""
    s0 = p.initial_covariance() + np.diag([var] + [0.0] * (p.k - 1))

    def eps_net(z, t):
        tb = t[0]  # samplers evaluate every example at the same time
        c = p.kernel_factor(tb).astype(z.dtype)
        prec = jnp.linalg.inv(p.kernel_covariance(tb, s0)).astype(z.dtype)
        e = p.apply(jnp.swapaxes(c, -1, -2), p.apply(prec, z))
        return p.select_predicted(e)

    return eps_net


N_E2E = 16384


@pytest.mark.parametrize("method", ["em", "sscs", "ode"])
def test_gaussian_end_to_end(method):
    var = 0.25
    p = PSLD()
    if method == "em":
        m = EulerMaruyama(num_steps=999)
    elif method == "sscs":
        m = SSCS(num_steps=999)
    else:
        m = AdaptiveODE(rtol=1e-4, atol=1e-4)
    res = sample(
        jr.PRNGKey(0), p, _oracle(p, var), (N_E2E, 1), method=m, t_end=1e-3, denoise="euler"
    )
    x = np.asarray(res.samples, np.float64)
    assert res.samples.shape == (N_E2E, 1) and res.state.shape == (N_E2E, 2)
    assert abs(x.var() / var - 1) < 0.02, x.var()
    assert abs(x.mean()) < 0.02
    if method != "ode":
        assert int(res.nfe) == 1000


def test_sscs_cld_and_half_steps():
    """SSCS on CLD (score_m network), and the two half steps compose to the full A-flow for a
    time-varying beta (the reference's quirk would use the first half twice)."""
    p = PSLD(gamma=0.5, nu=2.5, beta_min=0.1, beta_max=20.0)
    b = p.integrated_beta
    t, h = 0.9, 0.3
    phi1, _ = p.split_flow(b(t) - b(t - h / 2))
    phi2, _ = p.split_flow(b(t - h / 2) - b(t - h))
    phi, _ = p.split_flow(b(t) - b(t - h))
    _close(phi2 @ phi1, phi, 1e-5)
    cld = CLD()
    res = sample(
        jr.PRNGKey(1),
        cld,
        _oracle(cld, 0.25),
        (8192, 1),
        method=SSCS(num_steps=199),
        t_end=1e-3,
        denoise="euler",
    )
    assert abs(float(np.var(np.asarray(res.samples))) / 0.25 - 1) < 0.06


def test_docs_recipe_block_runs():
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "recipes" / "psld_cifar10.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(page), "exec"), {})


# ------------------------------------------------------------------------------------------------
# SSCS variants: "original" is PSLD's sscs_sde exactly; "midpoint" (default) is more accurate
# ------------------------------------------------------------------------------------------------
def _ref_sscs_original(z, ts, keys, toy, gamma, nu, bmin, bmax):
    """PSLD's sscs_sde from spec psld.md §4, §6.3 in float64 numpy (an independent, literal
    implementation: the reference's closed-form covariance, both half flows over b_1)."""
    a, d = 0.5 * (gamma + nu), 0.25 * (nu - gamma)
    M = 1.0 / (4 * d * d)

    def B(t):
        return bmin * t + 0.5 * (bmax - bmin) * t**2

    def cov0(b, sxx, smm):  # spec §4.3 (Sigma_inf + Phi (Sigma_0 - Sigma_inf) Phi^T) + 1e-9
        E, p, q = math.exp(-a * b), sxx - 1.0, smm - M
        xx = 1 + E * ((1 + d * b) ** 2 * p + 4 * d**4 * b**2 * q) + 1e-9
        xm = E * (-(b / 2) * (1 + d * b) * p + 2 * d * d * b * (1 - d * b) * q)
        mm = M + E * ((b * b / 4) * p + (1 - d * b) ** 2 * q) + 1e-9
        return np.array([[xx, xm], [xm, mm]])

    def half_flow(zz, b, xi):
        e = math.exp(-a * b / 2)
        phi_a = e * np.array([[1 + d * b, -2 * d * d * b], [b / 2, 1 - d * b]])
        c = cov0(b, 0.0, 0.0) * np.array([[1.0, -1.0], [-1.0, 1.0]])  # Sigma_xm sign flipped
        chol = np.linalg.cholesky(c)
        return zz @ phi_a.T + xi @ chol.T

    for t, t_next, (xi1, xi2) in zip(ts[:-1], ts[1:], keys, strict=True):
        h = t - t_next
        b1 = B(t) - B(t - h / 2)
        z = half_flow(z, b1, xi1)
        L = np.linalg.cholesky(cov0(B(t), 0.0, 0.04 * M))
        s = -np.asarray(toy(z, t)) @ np.linalg.inv(L)  # s = -L^{-T} eps, per row
        beta = bmin + (bmax - bmin) * t
        z = z + h * beta * np.stack([gamma * (z[:, 0] + s[:, 0]),
                                     nu * z[:, 1] + M * nu * s[:, 1]], -1)
        z = half_flow(z, b1, xi2)
    return z


def test_sscs_original_variant_reproduces_psld_code():
    gamma, nu, bmin, bmax = 0.5, 2.5, 0.1, 20.0
    with jax.enable_x64(True):
        p = PSLD(gamma=gamma, nu=nu, beta_min=bmin, beta_max=bmax, kappa=0.04)

        def toy(zz, t):
            return 0.1 * zz + t

        fn = PredictionFn(p, lambda zz, t: toy(zz, t[:, None]), "eps")
        z0 = np.array([[0.5, -0.3], [1.2, 0.4], [-0.7, 0.9]])
        ts = np.asarray(time_grid("uniform", 3, 1.0, 0.1), np.float64)
        keys = jr.split(jr.PRNGKey(3), 3)
        outs = {}
        for variant in SSCS_VARIANTS:
            z = jnp.asarray(z0)
            for i in range(3):
                z = sscs_step(keys[i], fn, z, ts[i], ts[i] - ts[i + 1], variant)
            outs[variant] = np.asarray(z)
        noise = [
            [np.asarray(jr.normal(k, z0.shape, jnp.float64)) for k in jr.split(key)]
            for key in keys
        ]
        want = _ref_sscs_original(z0, ts, noise, toy, gamma, nu, bmin, bmax)
        _close(outs["original"], want, 1e-9, 1e-12)
        # with a time-varying beta the variants differ (start: correct second half interval)
        assert np.max(np.abs(outs["start"] - outs["original"])) > 1e-3
        assert np.max(np.abs(outs["midpoint"] - outs["start"])) > 1e-3
        # with a constant beta "start" and "original" coincide
        pc = PSLD(gamma=gamma, nu=nu, beta_min=8.0, beta_max=8.0)
        fc = PredictionFn(pc, lambda zz, t: toy(zz, t[:, None]), "eps")
        za = sscs_step(keys[0], fc, jnp.asarray(z0), 0.9, 0.3, "start")
        zb = sscs_step(keys[0], fc, jnp.asarray(z0), 0.9, 0.3, "original")
        _close(za, zb, 1e-12)
    with pytest.raises(ValueError, match="`variant`"):
        SSCS(variant="leapfrog")


@pytest.mark.slow
def test_sscs_midpoint_is_the_most_accurate():
    """Var(x) error after 100 NFE with the exact score on N(0, 0.25), linear beta (the issue's
    measurement; common random numbers across variants)."""
    p = PSLD(gamma=0.5, nu=2.5, beta_min=0.1, beta_max=20.0)
    errs = {}
    for variant in ("original", "start", "midpoint"):
        res = sample(jr.PRNGKey(0), p, _oracle(p, 0.25), (200_000, 1), t_end=1e-3,
                     method=SSCS(num_steps=99, variant=variant), denoise="euler")
        errs[variant] = float(np.var(np.asarray(res.samples, np.float64))) - 0.25
    assert abs(errs["midpoint"]) < abs(errs["original"]) < abs(errs["start"]), errs
    assert abs(errs["midpoint"]) < 0.0045, errs
