"""Interpolant samplers and asynchronous generation on Gaussian data with the exact model."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.sampling import ODE, AdaptiveODE, AsyncGeneration, InterpolantSDE, sample

from .helpers import cov_error, make_gaussian, oracle_eps

D = 4
MU, COV = make_gaussian(D, seed=3)
N = 4000


def oracle_velocity(process, mu, cov):
    """Exact ``dx/dt = alpha' E[x0|x] + sigma' E[eps|x]`` for data ``N(mu, cov)``, per-example
    ``t``, written in the eigenbasis of ``cov`` (finite at ``alpha = 0``)."""
    w_np, v_np = np.linalg.eigh(np.asarray(cov, np.float64))
    w, v, mu = jnp.asarray(w_np, jnp.float32), jnp.asarray(v_np, jnp.float32), jnp.asarray(mu)

    def vel(x, t):
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None]
        a, s = process.alpha(t), process.sigma(t)
        da, ds = process.d_alpha(t), process.d_sigma(t)
        r = (x - a * mu) @ v
        den = a**2 * w + s**2
        ex0 = mu + ((a * w / den) * r) @ v.T
        eeps = ((s / den) * r) @ v.T
        return da * ex0 + ds * eeps

    return vel


def oracle_velocity_per_element(process, mu, cov):
    """Exact velocity for per-element time ``t`` of ``x``'s shape, shared by all examples:
    ``E[x0|x] = mu + Sigma A M^-1 (x - A mu)``, ``E[eps|x] = S M^-1 (x - A mu)`` with
    ``M = A Sigma A + S^2``."""
    cov = jnp.asarray(cov)
    mu = jnp.asarray(mu)

    def vel(x, t):
        t = jnp.broadcast_to(t, x.shape)[0]
        a, da = jax.jvp(process.alpha, (t,), (jnp.ones_like(t),))
        s, ds = jax.jvp(process.sigma, (t,), (jnp.ones_like(t),))
        m = a[:, None] * cov * a[None, :] + jnp.diag(s**2)
        minv = jnp.linalg.inv(m)
        r = (x - a * mu) @ minv
        ex0 = mu + (r * a) @ cov
        eeps = r * s
        return da * ex0 + ds * eeps

    return vel


def _check(samples, mu, cov, max_cov=0.06, n_se=4.0):
    x = np.asarray(samples, np.float64)
    assert np.all(np.isfinite(x))
    se = np.sqrt(np.diag(cov) / x.shape[0])
    assert np.all(np.abs(x.mean(0) - mu) < n_se * se), (x.mean(0), mu)
    _, ce = cov_error(x, mu, cov)
    assert ce < max_cov, ce
    return ce


def test_ode_dopri5_recovers_gaussian_and_equals_vp_pf_ode():
    """SiT's adaptive ODE (Dopri5, rtol 1e-3, atol 1e-6) from t = 1 with the exact velocity
    through `sample`; on the VP path it is the PF-ODE of the VP process (same alpha, sigma)."""
    ode = AdaptiveODE(solver="dopri5", rtol=1e-3, atol=1e-6)
    lin = sk.Interpolant("linear")
    r = sample(jr.key(0), lin, oracle_velocity(lin, MU, COV), (2000, D), method=ode,
               prediction="velocity", denoise="none")
    _check(r.samples, MU, COV)
    vp_i = sk.Interpolant("vp")
    tight = AdaptiveODE(solver="dopri5", rtol=1e-6, atol=1e-6)  # equal up to solver tolerance
    a = sample(jr.key(1), vp_i, oracle_velocity(vp_i, MU, COV), (256, D), method=tight,
               prediction="velocity", t_end=1e-2, denoise="none")
    b = sample(jr.key(1), sk.VP(), oracle_eps(sk.VP(), MU, COV), (256, D), method=tight,
               prediction="eps", t_end=1e-2, denoise="none")
    np.testing.assert_allclose(np.asarray(a.samples), np.asarray(b.samples), atol=1e-4)


FORMS = ["constant", "SBDM", "sigma", "linear", "decreasing", "increasing-decreasing"]


@pytest.mark.parametrize("form", FORMS)
def test_sde_every_diffusion_form_recovers_gaussian(form):
    p = sk.Interpolant("linear")
    t_start = 1.0 - 1e-3 if form == "SBDM" else None  # w_SBDM = t/(1-t) is infinite at t = 1
    # SiT's default ``Mean`` last step is a noise-free SDE step: with w(0) = 1 (``constant``) its
    # score term shrinks the low-variance directions (12 % covariance error at any step count,
    # measured); a probability-flow last step has no such bias.
    last = "euler" if form == "constant" else "mean"
    sde = InterpolantSDE(num_steps=120, diffusion=form, last_step=last)
    r = sample(jr.key(2), p, oracle_velocity(p, MU, COV), (N, D), method=sde,
               prediction="velocity", t_start=t_start)
    assert int(r.nfe) == 120
    _check(r.samples, MU, COV, max_cov=0.08)


def test_sde_heun_and_last_steps():
    p = sk.Interpolant("gvp")
    model = oracle_velocity(p, MU, COV)
    for last in ("tweedie", "euler", None):
        sde = InterpolantSDE(num_steps=60, solver="heun", last_step=last)
        t_end = 0.02 if last is None else 0.0
        r = sample(jr.key(3), p, model, (N, D), method=sde, prediction="velocity", t_end=t_end)
        assert int(r.nfe) == 2 * 59 + (last is not None)
        _check(r.samples, MU, COV, max_cov=0.08, n_se=6.0)
    with pytest.raises(ValueError, match="t_start"):
        sample(jr.key(0), p, model, (4, D), method=InterpolantSDE(diffusion="SBDM"),
               prediction="velocity")
    with pytest.raises(ValueError, match="t_end"):
        sample(jr.key(0), p, model, (4, D), method=InterpolantSDE(solver="heun", last_step=None),
               prediction="velocity")


def _conditional(mu, cov, fixed, given):
    f = np.setdiff1d(np.arange(len(mu)), fixed)
    sgg = cov[np.ix_(fixed, fixed)]
    sfg = cov[np.ix_(f, fixed)]
    k = sfg @ np.linalg.inv(sgg)
    return f, mu[f] + k @ (given - mu[fixed]), cov[np.ix_(f, f)] - k @ sfg.T


@pytest.mark.parametrize("name", ["interpolant", "vp"])
def test_async_inpainting_is_the_exact_conditional(name):
    mu, cov = MU.astype(np.float64), COV.astype(np.float64)
    proc = sk.Interpolant("linear") if name == "interpolant" else sk.VP()
    model = oracle_velocity_per_element(proc, MU, COV)
    fixed = np.array([0, 2])
    given = np.array([0.7, -0.4])
    x_given = np.zeros((N, D), np.float32)
    x_given[:, fixed] = given
    keep = np.zeros((N, D), bool)
    keep[:, fixed] = True
    f, m_c, c_c = _conditional(mu, cov, fixed, given)
    for method, steps in (("ode", 40), ("sde", 200)):
        sampler = ODE(num_steps=steps) if method == "ode" else InterpolantSDE(num_steps=steps)
        r = sample(jr.key(4), proc, model, x_given.shape, method=sampler, prediction="velocity",
                   condition=AsyncGeneration(jnp.asarray(x_given), keep=jnp.asarray(keep)))
        x = np.asarray(r.samples)
        assert np.array_equal(x[:, fixed], x_given[:, fixed])  # bit-identical
        _check(x[:, f], m_c, c_c, max_cov=0.05)
    # delayed groups: the second half waits until the clock reaches 0.5; with nothing kept the
    # joint law is the data's
    delay = np.zeros((N, D), np.float32)
    delay[:, 2:] = 0.5
    r = sample(jr.key(5), proc, model, x_given.shape, method=ODE(num_steps=40),
               prediction="velocity",
               condition=AsyncGeneration(jnp.asarray(x_given), delay=jnp.asarray(delay)))
    _check(r.samples, mu, cov, max_cov=0.05)


def test_pf_ode_likelihood_of_the_linear_interpolant_is_exact():
    """SiT's ``--likelihood``: the PF-ODE from data (t = 0) to pure noise (t = 1) with the exact
    velocity gives the data's log-density (alpha(1) = 0, so the prior is exact)."""
    from sdekit.sampling import log_likelihood

    p = sk.Interpolant("linear")
    chol = np.linalg.cholesky(COV.astype(np.float64))
    x = MU + np.asarray(jr.normal(jr.key(8), (8, D))) @ chol.T
    res = log_likelihood(jr.key(9), p, oracle_velocity(p, MU, COV), jnp.asarray(x, jnp.float32),
                         prediction="velocity", rtol=1e-6, atol=1e-6, solver="dopri5")
    d = x - MU
    quad = np.einsum("ni,ij,nj->n", d, np.linalg.inv(COV.astype(np.float64)), d)
    want = -0.5 * (quad + np.linalg.slogdet(COV.astype(np.float64))[1] + D * np.log(2 * np.pi))
    np.testing.assert_allclose(np.asarray(res.log_prob, np.float64), want, atol=2e-3)


def test_existing_samplers_run_interpolants():
    """sdekit's own samplers need nothing interpolant-specific: DDIM from t = 1 (alpha = 0
    exactly, also for GVP in float32) and the process's reverse SDE (SiT's SBDM) from 0.999."""
    from sdekit.sampling import DDIM, EulerMaruyama

    p = sk.Interpolant("gvp")
    t = jnp.asarray([0.0, 1.0], jnp.float32)
    assert float(p.alpha(t)[1]) == 0.0 and float(p.sigma(t)[0]) == 0.0
    assert np.all(np.isinf(np.asarray(p.logsnr(t)))) and np.all(np.asarray(p.g2(t)) >= 0)
    model = oracle_velocity(p, MU, COV)
    r = sample(jr.key(10), p, model, (N, D), method=DDIM(100), prediction="velocity", t_end=1e-3)
    _check(r.samples, MU, COV, max_cov=0.07)  # DDIM's own bias: 0.05 at 50 steps, 0.02 at 200
    r = sample(jr.key(11), p, model, (N, D), method=EulerMaruyama(200), prediction="velocity",
               t_start=0.999, t_end=1e-3)
    _check(r.samples, MU, COV, max_cov=0.06)
