"""The sampler suite (PC, DDIM, ancestral, EDM, DPM-Solver++) against the Gaussian oracle, the VDPM
reference values and the theoretical convergence orders."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.processes import posterior_coefficients
from sdekit.sampling import (
    DDIM,
    ODE,
    PC,
    Ancestral,
    DPMSolverPP,
    EDMSampler,
    PredictionFn,
    ancestral_step,
    ddim_coefficients,
    ddim_step,
    sample,
    sigma_to_time,
)
from tests.helpers import cov_error, make_gaussian, oracle_eps

MU, COV = make_gaussian(8)
N = 4096


def fast_eps(p, mu=MU, cov=COV, dtype=np.float32):
    """``helpers.oracle_eps`` through the eigendecomposition of ``cov`` (matmuls, no solves)."""
    lam, u = np.linalg.eigh(np.asarray(cov, np.float64))
    lam, u, mu = (jnp.asarray(a.astype(dtype)) for a in (lam, u, np.asarray(mu, np.float64)))

    def eps(x, t):
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None]
        a, s = p.alpha(t), p.sigma(t)
        return (s * ((x - a * mu) @ u) / (a**2 * lam + s**2)) @ u.T

    return eps


def test_fast_oracle_is_the_oracle():
    for p in (sk.VP(), sk.LogSNR()):
        x = jr.normal(jr.key(0), (16, 8)) * 3
        for t in (0.3 * p.t1, 0.9 * p.t1):
            np.testing.assert_allclose(fast_eps(p)(x, t), oracle_eps(p, MU, COV)(x, t),
                                       rtol=1e-4, atol=1e-4)


CASES = [
    ("pc", sk.VP(), PC(200), 401),
    ("pc_reverse_diffusion", sk.VE(), PC(200, predictor="reverse_diffusion"), 401),
    ("ddim", sk.VP(), DDIM(400), 400),
    ("ddim_ve", sk.VE(), DDIM(400, grid="logsnr"), 400),
    ("ddim_edm", sk.EDM(), DDIM(400, grid="karras"), 400),
    ("ddim_eta1", sk.VP(), DDIM(200, eta=1.0), 200),
    ("ancestral_small", sk.VP(), Ancestral(200, variance="fixed_small"), 200),
    ("ancestral_large_logsnr", sk.LogSNR(), Ancestral(200, variance="fixed_large"), 200),
    ("edm_heun_vp", sk.VP(), EDMSampler(60), 119),
    ("edm_heun_logsnr", sk.LogSNR(), EDMSampler(120), 239),
    ("edm_euler_edm", sk.EDM(), EDMSampler(400, solver="euler"), 400),
    ("edm_churn", sk.EDM(), EDMSampler(80, s_churn=20.0, s_tmin=0.05, s_tmax=50.0), 159),
    ("dpmpp_vp", sk.VP(), DPMSolverPP(40, grid="quadratic"), 41),
    ("dpmpp_edm", sk.EDM(), DPMSolverPP(40), 41),
]


@pytest.mark.parametrize("name,process,method,nfe", CASES, ids=[c[0] for c in CASES])
def test_gaussian_oracle(name, process, method, nfe):
    """Exact-score sampling recovers N(mu, Sigma): covariance to 5 % (relative Frobenius; the
    sampling noise of 4096 samples alone is ~3.5 %) and the mean within 4 standard errors."""
    res = sample(jr.key(0), process, fast_eps(process), (N, 8), method=method)
    assert int(res.nfe) == nfe
    x = np.asarray(res.samples, np.float64)
    assert np.all(np.isfinite(x))
    _, cerr = cov_error(x, MU, COV)
    z = (x.mean(0) - MU) / np.sqrt(np.diag(COV) / N)
    assert cerr < 0.05, (name, cerr)
    assert np.max(np.abs(z)) < 4.0, (name, z)


def _whitened_prior(p, n, d, seed=0):
    z = np.random.default_rng(seed).normal(size=(n, d))
    z = z - z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z.T, bias=True))).T
    return jnp.asarray(z, jnp.float32) * p.prior_std()


@pytest.mark.parametrize("process,method", [
    (sk.VP(), DDIM(400)), (sk.EDM(), EDMSampler(60)), (sk.VP(), DPMSolverPP(40, grid="quadratic")),
    (sk.EDM(), DPMSolverPP(40)),
], ids=["ddim_vp", "edm_edm", "dpmpp_vp", "dpmpp_edm"])
def test_deterministic_bias(process, method):
    """With a prior sample whose mean and covariance are exactly 0 and I, a deterministic (linear
    for Gaussian data) sampler's output moments carry only its discretisation bias (and, for the
    mean, the prior's own mismatch, 1 % for EDM): covariance < 1.5 %, mean < 2 %."""
    fn = PredictionFn(process, fast_eps(process), "eps")
    z1 = _whitened_prior(process, 1024, 8)
    z, _ = eqx.filter_jit(method.solve)(jr.key(0), fn, z1, float(process.t0))
    if not getattr(method, "returns_x0", False):
        z = fn.x0(z, process.t0)
    x = np.asarray(z, np.float64)
    c = np.cov(x.T, bias=True)
    assert np.linalg.norm(c - COV) / np.linalg.norm(COV) < 0.015
    assert np.linalg.norm(x.mean(0) - MU) / np.linalg.norm(MU) < 0.02


# --- VDPM reference values ---------------------------------------------------------------------

def test_vdpm_reference_step():
    """spec/vdpm.md section 6: cosine schedule, T_s = 10, i = 6, clipped x0."""
    p = sk.LogSNR(schedule="cosine")
    x_t = jnp.array([0.8, -1.3, 0.2, 2.1])
    x0 = jnp.clip(jnp.array([0.4, -0.9, 1.5, 0.0]), -1.0, 1.0)
    np.testing.assert_allclose(ddim_step(p, x_t, x0, 0.7, 0.6),
                               [0.796612, -1.338384, 0.357159, 1.906765], atol=2e-6)
    noise = jnp.array([0.5, -0.25, 1.0, -1.5])
    np.testing.assert_allclose(
        ancestral_step(p, x_t, x0, 0.7, 0.6, noise, variance="fixed_large"),
        [0.946477, -1.255427, 1.061190, 0.384534], atol=2e-6)


def _times(lam_t, lam_s):
    """Times of the sigmoid log-SNR schedule (lambda = 20 - 40 t) with these log-SNRs."""
    return (20.0 - lam_t) / 40.0, (20.0 - lam_s) / 40.0


def test_vdpm_posterior_and_ddim_coefficients(vdpm_ref):
    p = sk.LogSNR(schedule="sigmoid")
    with jax.enable_x64(True):
        for pair in vdpm_ref["posterior_and_ddim_coefficients"]["pairs"]:
            t, s = _times(pair["logsnr_t"], pair["logsnr_s"])
            for key, var, f in (("fixed_small", "fixed_small", 0.0),
                                ("fixed_large", "fixed_large", 0.0),
                                ("fixed_medium_intp0.3", "fixed_medium", 0.3)):
                c_xt, c_x0, lv = posterior_coefficients(p, t, s, var, f)
                ref = pair[key]
                np.testing.assert_allclose([c_xt, c_x0, lv],
                                           [ref["coef_xt"], ref["coef_x0"], ref["logvar"]],
                                           rtol=2e-6, atol=1e-7)
            for key, eta in (("ddim_eta0", 0.0), ("ddim_eta0.5", 0.5)):
                c_xt, c_x0, std = ddim_coefficients(p, t, s, eta)
                ref = pair[key]
                np.testing.assert_allclose([c_xt, c_x0], [ref["coef_xt"], ref["coef_x0"]],
                                           rtol=2e-6, atol=1e-7)
                if eta > 0:
                    np.testing.assert_allclose(2 * np.log(std), ref["logvar"], rtol=2e-6)
                else:
                    assert float(std) == 0.0


def test_vdpm_ddim_step_direct(vdpm_ref):
    p = sk.LogSNR(schedule="sigmoid")
    with jax.enable_x64(True):
        for case in vdpm_ref["ddim_step_direct"]:
            t, s = _times(case["logsnr_t"], case["logsnr_s"])
            x_t = jnp.asarray(case["x_t"], jnp.float64)
            x0 = jnp.asarray(case["x0_pred"], jnp.float64)
            np.testing.assert_allclose(ddim_step(p, x_t, x0, t, s),
                                       case["x_s_ddim_closed_form"], rtol=1e-9)
            np.testing.assert_allclose(ancestral_step(p, x_t, x0, t, s),
                                       case["ancestral_posterior_mean (reference)"], atol=1e-6)


def test_ddim_eta1_is_fixed_small():
    p = sk.VE()
    x_t, x0, z = (jr.normal(k, (3, 4)) for k in jr.split(jr.key(0), 3))
    np.testing.assert_allclose(ddim_step(p, x_t, x0, 0.7, 0.5, 1.0, z),
                               ancestral_step(p, x_t, x0, 0.7, 0.5, z, variance="fixed_small"),
                               rtol=1e-5, atol=1e-5)


def test_sigma_to_time_inverts():
    with jax.enable_x64(True):
        for p in (sk.VP(), sk.VP(schedule="cosine"), sk.VE(), sk.EDM(), sk.LogSNR()):
            t = jnp.linspace(0.05, 0.95, 7, dtype=jnp.float64) * p.t1
            sig = jnp.exp(-0.5 * p.logsnr(t))
            np.testing.assert_allclose(sigma_to_time(p, sig), t, rtol=1e-7, err_msg=repr(p))


def test_vdpm_final_step_returns_clipped_x0():
    """With final_x0 the last step is the clipped x0 prediction itself (no denoising NFE)."""
    p = sk.LogSNR(schedule="cosine")
    res = sample(jr.key(0), p, fast_eps(p, MU * 4, COV * 9), (64, 8),
                 method=Ancestral(10, clip_x0=1.0), save_trajectory=True)
    assert int(res.nfe) == 10
    assert float(jnp.max(jnp.abs(res.samples))) <= 1.0
    assert res.trajectory.shape == (10, 64, 8)


# --- convergence orders ---------------------------------------------------------------------------

def _exact_flow(p, z1, t_end):
    """Exact PF-ODE map for Gaussian data: ``x~ - mu`` scales by ``sqrt((lam + s_e^2) /
    (lam + s_1^2))`` per eigen-direction (``x~ = x / alpha``, ``s = sigma / alpha``); also the
    denoiser at ``t_end``."""
    lam, u = np.linalg.eigh(np.asarray(COV, np.float64))
    mu = np.asarray(MU, np.float64)
    ts = jnp.asarray([p.t1, t_end], jnp.float64)
    (s1, se), (a1, ae) = np.asarray(jnp.exp(-0.5 * p.logsnr(ts))), np.asarray(p.alpha(ts))
    y = (np.asarray(z1) / a1 - mu) @ u * np.sqrt((lam + se**2) / (lam + s1**2))
    return ae * (y @ u.T + mu), (y * lam / (lam + se**2)) @ u.T + mu


ORDER_CASES = [
    ("ddim", lambda n: DDIM(n, final_x0=False), 1, False),
    ("dpmpp_2m", lambda n: DPMSolverPP(n), 2, False),
    ("edm_euler", lambda n: EDMSampler(n, solver="euler"), 1, True),
    ("edm_heun", lambda n: EDMSampler(n), 2, True),
    ("ode_euler", lambda n: ODE(n, solver="euler"), 1, False),
    ("ode_heun", lambda n: ODE(n, solver="heun"), 2, False),
]


@pytest.mark.parametrize("name,make,order,denoised", ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_convergence_order(name, make, order, denoised):
    """Max error against the exact PF-ODE solution from the same noise (float64, VP, 16
    samples) at 16, 32, 64 steps: the fitted slope is within 0.3 of the theoretical order."""
    p = sk.VP()
    steps = [16, 32, 64]
    with jax.enable_x64(True):
        fn = PredictionFn(p, fast_eps(p, dtype=np.float64), "eps")
        z1 = jr.normal(jr.key(3), (16, 8), jnp.float64)
        ref_x, ref_d = _exact_flow(p, z1, p.t0)
        ref = ref_d if denoised else ref_x
        errs = []
        for n in steps:
            z, _ = eqx.filter_jit(make(n).solve)(jr.key(0), fn, z1, p.t0)
            errs.append(float(np.max(np.abs(np.asarray(z) - ref))))
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.3, (name, errs, slope)


# --- API ------------------------------------------------------------------------------------------

class _Toy(sk.AbstractProcess):
    t0: float = 0.0
    t1: float = 1.0

    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return jnp.ones_like(x)

    def prior_sample(self, key, shape):
        return jr.normal(key, shape)

    def prior_log_prob(self, z):
        return jnp.sum(-0.5 * z**2 - 0.5 * math.log(2 * math.pi), axis=-1)

    def sample_marginal(self, key, x0, t):
        return x0


@pytest.mark.parametrize("method", [DDIM(4), Ancestral(4), EDMSampler(4), DPMSolverPP(4)])
def test_affine_methods_reject_other_processes(method):
    with pytest.raises(TypeError, match=f"{type(method).__name__} needs an "
                                        "AbstractAffineGaussianProcess.*got _Toy"):
        sample(jr.key(0), _Toy(), lambda x, t: x, (4, 2), method=method, prediction="score")


def test_pc_runs_on_any_process():
    res = sample(jr.key(0), _Toy(), lambda x, t: -x, (8, 2), method=PC(5, n_corrector=2),
                 prediction="score")
    assert int(res.nfe) == 15 and res.samples.shape == (8, 2)


@pytest.mark.parametrize("make,match", [
    (lambda: DDIM(eta=1.5), "`eta`"), (lambda: DDIM(num_steps=0), "`num_steps`"),
    (lambda: DDIM(grid="cubic"), "`grid`"), (lambda: DDIM(clip_x0=-1.0), "`clip_x0`"),
    (lambda: Ancestral(variance="learned"), "`variance`"),
    (lambda: Ancestral(variance="fixed_medium", intp_frac=2.0), "`intp_frac`"),
    (lambda: EDMSampler(solver="rk4"), "`solver`"), (lambda: EDMSampler(s_churn=-1.0), "`s_churn`"),
    (lambda: PC(snr=0.0), "`snr`"), (lambda: PC(n_corrector=-1), "`n_corrector`"),
    (lambda: PC(predictor="ald"), "`predictor`"),
    (lambda: DPMSolverPP(num_steps=0), "`num_steps`"),
])
def test_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", ["pc", "ddim", "ancestral", "ddpm", "edm_heun", "edm_euler",
                                  "dpm_solver++", "dpmpp_2m"])
def test_method_strings(name):
    p = sk.VP()
    res = sample(jr.key(0), p, fast_eps(p), (4, 8), method=name, save_trajectory=True)
    assert res.samples.shape == (4, 8) and bool(jnp.all(jnp.isfinite(res.samples)))
    assert res.trajectory.shape[1:] == (4, 8) and res.ts.shape[0] == res.trajectory.shape[0]


def test_pc_corrector_with_a_zero_score_is_finite():
    """The Langevin step size snr^2 |noise|^2 / |score|^2 is undefined for a zero score: the
    corrector is skipped there (the exact score of a uniform law is 0) instead of giving NaN."""
    import jax.numpy as jnp
    import jax.random as jr

    import sdekit as sk
    from sdekit.sampling import PC, sample

    process = sk.VE()
    res = sample(jr.key(0), process, lambda x, t: jnp.zeros_like(x), (64, 2),
                 method=PC(4, snr=0.16, n_corrector=1), prediction="score")
    assert bool(jnp.all(jnp.isfinite(res.samples)))
