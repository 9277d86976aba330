"""Processes: VDPM reference schedules, marginals vs Monte-Carlo of the forward SDE, errors."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

import sdekit as sk
from sdekit.processes import AbstractSchedule

PROCESSES = {
    "vp": sk.VP(),
    "vp_cosine": sk.VP(schedule="cosine"),
    "subvp": sk.SubVP(),
    "ve": sk.VE(sigma_min=0.01, sigma_max=10.0),
    "edm": sk.EDM(),
    "logsnr_cosine": sk.LogSNR("cosine"),
    "logsnr_linear": sk.LogSNR("linear"),
    "logsnr_sigmoid": sk.LogSNR("sigmoid", logsnr_min=-10, logsnr_max=8),
    "logsnr_legacy": sk.LogSNR("legacy"),
}


@pytest.mark.parametrize("schedule", ["linear", "sigmoid", "cosine", "legacy"])
def test_logsnr_schedules_match_vdpm_reference_float64(vdpm_ref, schedule):
    ref = vdpm_ref["schedules_default_range_float64"][schedule]
    with jax.enable_x64(True):
        p = sk.LogSNR(schedule)
        t = jnp.asarray(ref["t"], dtype=jnp.float64)
        for name, fn in [("logsnr", p.logsnr), ("alpha", p.alpha), ("sigma", p.sigma)]:
            got = np.asarray(fn(t))
            assert got.dtype == np.float64
            want = np.asarray(ref[name])
            # relative 1e-6, with an absolute floor for the logsnr = 0 crossing (reference 2e-16)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(np.asarray(p.alpha(t) ** 2), ref["alpha2"], rtol=1e-6, atol=1e-15)
        np.testing.assert_allclose(np.asarray(p.sigma(t) ** 2), ref["sigma2"], rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("schedule", ["linear", "sigmoid", "cosine"])
def test_logsnr_truncation_range(vdpm_ref, schedule):
    ref = vdpm_ref["schedules_logsnr_min_-10_max_8_float64"][schedule]
    with jax.enable_x64(True):
        p = sk.LogSNR(schedule, logsnr_min=-10.0, logsnr_max=8.0)
        got = p.logsnr(jnp.asarray(ref["t"], dtype=jnp.float64))
        np.testing.assert_allclose(np.asarray(got), ref["logsnr"], rtol=1e-6, atol=1e-12)
        assert float(p.logsnr(jnp.float64(0.0))) == pytest.approx(8.0, abs=1e-9)
        assert float(p.logsnr(jnp.float64(1.0))) == pytest.approx(-10.0, abs=1e-9)


def test_logsnr_float32_is_accurate(vdpm_ref):
    """The cancellation-free formulas keep float32 close to the float64 reference (the HEAD
    reference code itself loses ~1e-2 for legacy in float32)."""
    for schedule in ["linear", "sigmoid", "cosine", "legacy"]:
        ref = vdpm_ref["schedules_default_range_float64"][schedule]
        got = np.asarray(sk.LogSNR(schedule).logsnr(jnp.asarray(ref["t"], jnp.float32)))
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, ref["logsnr"], rtol=2e-6, atol=2e-6)


def test_legacy_matches_ddpm_discrete(vdpm_ref):
    ref = vdpm_ref["legacy_vs_ddpm_discrete"]
    with jax.enable_x64(True):
        p = sk.LogSNR("legacy")
        a2 = jax.nn.sigmoid(p.logsnr(jnp.asarray(ref["n"], jnp.float64) / 1000))
        np.testing.assert_allclose(np.asarray(a2), ref["alpha2_legacy"], rtol=1e-9)
        np.testing.assert_allclose(np.asarray(a2), ref["alphabar_ddpm"], rtol=3e-3)


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_closed_form_coefficients_match_autodiff(name):
    """f = d log alpha/dt and g^2 = d sigma^2/dt - 2 f sigma^2 (the SDE behind the marginal)."""
    p = PROCESSES[name]
    with jax.enable_x64(True):
        t = jnp.linspace(p.t0 + 0.05 * (p.t1 - p.t0), 0.95 * p.t1, 7, dtype=jnp.float64)
        # the schedule's autodiff defaults (every schedule overrides them with closed forms)
        f = AbstractSchedule.f(p.schedule, t)
        g2 = AbstractSchedule.g2(p.schedule, t)
        np.testing.assert_allclose(np.asarray(p.f(t)), np.asarray(f), rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(np.asarray(p.g2(t)), np.asarray(g2), rtol=1e-7, atol=1e-10)
        assert np.all(np.asarray(p.g2(t)) > 0)


def _simulate_forward(p, x0, s, t, key, n_steps=400):
    """Solve the forward SDE from x_s ~ p(x_s | x0) to t with diffrax Euler–Maruyama."""
    k0, k1 = jr.split(key)
    xs = p.sample_marginal(k0, x0, s)
    bm = dfx.UnsafeBrownianPath(shape=xs.shape, key=k1)
    terms = dfx.MultiTerm(
        dfx.ODETerm(lambda u, x, a: p.drift(u, x)),
        dfx.ControlTerm(lambda u, x, a: lx.DiagonalLinearOperator(p.diffusion(u, x)), bm),
    )
    sol = dfx.diffeqsolve(terms, dfx.Euler(), s, t, dt0=(t - s) / n_steps, y0=xs,
                          adjoint=dfx.ForwardMode(), max_steps=n_steps + 1)
    return sol.ys[-1]


@pytest.mark.parametrize("name", ["vp", "vp_cosine", "subvp", "ve", "edm", "logsnr_cosine"])
def test_marginal_matches_monte_carlo_of_forward_sde(name):
    p = PROCESSES[name]
    n = 4000
    x0 = jnp.broadcast_to(jnp.array([0.8, -0.5, 0.0, 1.5]), (n, 4))
    s = p.t0 + 0.05 * (p.t1 - p.t0)
    t = p.t0 + 0.6 * (p.t1 - p.t0)
    xt = jax.jit(lambda k: _simulate_forward(p, x0, s, t, k))(jr.key(1))
    mean, std = p.marginal(x0[:1], t)
    emp_mean = np.asarray(xt.mean(0))
    emp_var = np.asarray(xt.var(0))
    var = np.asarray(std[0]) ** 2
    se_mean = np.sqrt(var / n)
    se_var = var * np.sqrt(2.0 / (n - 1))
    assert np.all(np.abs(emp_mean - np.asarray(mean[0])) < 4 * se_mean + 1e-3 * np.abs(mean[0]))
    assert np.all(np.abs(emp_var - var) < 4 * se_var + 1e-2 * var)


@pytest.mark.parametrize("name", ["vp", "ve", "logsnr_cosine", "edm"])
def test_per_element_time_equals_scalar_time(name):
    p = PROCESSES[name]
    x0 = jr.normal(jr.key(0), (3, 4, 4, 2))
    eps = jr.normal(jr.key(1), x0.shape)
    t = jr.uniform(jr.key(2), x0.shape, minval=p.t0 + 0.01 * p.t1, maxval=p.t1)
    xt = p.perturb(x0, t, eps)
    i = (1, 2, 3, 1)
    xt_scalar = p.perturb(x0[i], t[i], eps[i])
    np.testing.assert_allclose(float(xt[i]), float(xt_scalar), rtol=1e-6)
    # per example
    te = t[:, 0, 0, 0]
    xe = p.perturb(x0, te, eps)
    np.testing.assert_allclose(np.asarray(xe[2]), np.asarray(p.perturb(x0[2], te[2], eps[2])), rtol=1e-6)
    score = p.conditional_score(xt, x0, t)
    np.testing.assert_allclose(np.asarray(score), np.asarray(-eps / p.sigma(t)), rtol=1e-4, atol=1e-5)


def test_prior_sample_and_log_prob():
    for p in [sk.VP(), sk.VE(sigma_max=7.0), sk.EDM()]:
        z = p.prior_sample(jr.key(0), (20000, 3))
        std = float(p.prior_std())
        assert abs(float(z.std()) / std - 1) < 0.02
        lp = p.prior_log_prob(z[:5])
        want = (-0.5 * (np.asarray(z[:5]) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
        np.testing.assert_allclose(np.asarray(lp), want, rtol=1e-5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sk.VE(sigma_min=0.0), "sigma_min"),
        (lambda: sk.VE(sigma_min=-1.0), "sigma_min"),
        (lambda: sk.VE(sigma_min=5.0, sigma_max=1.0), "sigma_min"),
        (lambda: sk.EDM(sigma_min=0.0), "sigma_min"),
        (lambda: sk.EDM(sigma_min=100.0, sigma_max=80.0), "sigma_max"),
        (lambda: sk.LogSNR("cosine", logsnr_min=5.0, logsnr_max=1.0), "logsnr_min"),
        (lambda: sk.LogSNR("cosine", logsnr_min=1.0, logsnr_max=1.0), "logsnr_max"),
        (lambda: sk.LogSNR("quadratic"), "schedule"),
        (lambda: sk.VP(schedule="exp"), "schedule"),
        (lambda: sk.VP(beta_min=30.0, beta_max=20.0), "beta_min"),
    ],
)
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_time_that_does_not_broadcast_is_an_error():
    p = sk.VP()
    x0 = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="argument `t`.*expected a scalar or a shape aligned"):
        p.perturb(x0, jnp.ones((3,)), x0)
    with pytest.raises(ValueError, match="argument `t`"):
        p.marginal(x0, jnp.ones((4, 5)))
