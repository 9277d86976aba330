"""Probability-flow log-likelihood of Gaussian data against closed forms; Hutchinson's estimator
is unbiased; bits/dim and dequantisation."""

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.sampling import bits_per_dim, dequantize, log_likelihood
from tests.helpers import make_gaussian
from tests.test_samplers import fast_eps

MU, COV = make_gaussian(4, seed=2)


def gaussian_logpdf(x, mean, cov):
    x = np.asarray(x, np.float64) - mean
    sign, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", x, np.linalg.inv(cov), x)
    return -0.5 * (quad + logdet + x.shape[1] * math.log(2 * math.pi))


def marginal(p, t):
    """Mean and covariance of p_t for data N(MU, COV)."""
    tt = jnp.asarray(t, jnp.float32)
    a, s = float(p.alpha(tt)), float(p.sigma(tt))
    return a * MU, a**2 * COV + s**2 * np.eye(len(MU))


def flow_log_density(p, x):
    """The density the PF-ODE defines: prior log-density of the exact flow map of ``x`` plus the
    log-determinant of the (linear, for Gaussian data) map; ``x~ - mu`` scales by
    ``sqrt((lam + s1^2) / (lam + s0^2))`` per eigen-direction."""
    lam, u = np.linalg.eigh(np.asarray(COV, np.float64))
    ts = jnp.asarray([p.t0, p.t1], jnp.float32)
    (s0, s1), (a0, a1) = np.asarray(jnp.exp(-0.5 * p.logsnr(ts))), np.asarray(p.alpha(ts))
    scale = np.sqrt((lam + s1**2) / (lam + s0**2))
    z1 = a1 * (((np.asarray(x) / a0 - MU) @ u * scale) @ u.T + MU)
    logdet = np.sum(np.log(scale)) + len(MU) * math.log(a1 / a0)
    return np.asarray(p.prior_log_prob(jnp.asarray(z1, jnp.float32)), np.float64) + logdet


# (process, whether p_{t1} matches the prior to < 1e-3 in log-density). With the default
# beta_max = 20, alpha(1) = 6.6e-3 and the mismatch is ~3e-3 relative; beta_max = 40 gives
# alpha(1) = 4.5e-5. VE's mismatch (the data mean is not scaled away) decays like 1/sigma_max.
PROCESSES = [(sk.VP(), False), (sk.VP(beta_max=40.0), True), (sk.VE(sigma_max=50.0), False),
             (sk.VE(sigma_max=2000.0), True), (sk.LogSNR(schedule="cosine"), True)]


@pytest.mark.parametrize("process,prior_matches", PROCESSES,
                         ids=["vp20", "vp40", "ve50", "ve2000", "logsnr_cosine"])
def test_exact_divergence_matches_closed_form(process, prior_matches):
    p = process
    x = jnp.asarray(MU) + jr.normal(jr.key(0), (8, 4)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
    res = log_likelihood(jr.key(1), p, fast_eps(p, MU, COV), x, rtol=1e-6, atol=1e-6)
    lp = np.asarray(res.log_prob, np.float64)
    # the density the flow defines (exact prior at t1 replaced by process.prior_log_prob)
    np.testing.assert_allclose(lp, flow_log_density(p, x), rtol=2e-4)
    # and the model's data density p_{t0}: equal up to the prior mismatch
    if prior_matches:
        np.testing.assert_allclose(lp, gaussian_logpdf(x, *marginal(p, p.t0)), rtol=1e-3)
    assert res.log_prob.shape == (8,) and int(res.nfe) > 0 and res.latent.shape == x.shape


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(probe):
    p = sk.VP()
    model = fast_eps(p, MU, COV)
    x = jnp.broadcast_to(jnp.asarray(MU + 0.3), (256, 4))  # one point, 256 independent probes
    exact = float(log_likelihood(jr.key(0), p, model, x[:1], rtol=1e-5, atol=1e-5).log_prob[0])
    est = np.asarray(log_likelihood(jr.key(1), p, model, x, divergence="hutchinson", probe=probe,
                                    rtol=1e-5, atol=1e-5).log_prob, np.float64)
    se = est.std(ddof=1) / math.sqrt(len(est))
    assert se > 0 and abs(est.mean() - exact) < 3 * se, (est.mean(), exact, se)
    several = log_likelihood(jr.key(1), p, model, x[:64], divergence="hutchinson", probe=probe,
                             n_probes=4, rtol=1e-5, atol=1e-5).log_prob
    assert np.std(np.asarray(several)) < est.std()  # averaging probes reduces the variance


def test_bits_per_dim():
    lp = jnp.asarray([-10.0, -3.0])
    np.testing.assert_allclose(bits_per_dim(lp, 5), [10 / (5 * math.log(2)), 3 / (5 * math.log(2))])
    # uniform density on [-1, 1]^D (log p = -D log 2) of dequantised 8-bit data: 8 bits/dim
    d = 12
    np.testing.assert_allclose(bits_per_dim(-d * math.log(2.0), d, num_bits=8), 8.0, rtol=1e-6)
    np.testing.assert_allclose(bits_per_dim(-d * math.log(2.0), d, num_bits=5), 5.0, rtol=1e-6)
    # hand formula: bpd = (-log p + D log 128) / (D log 2)
    np.testing.assert_allclose(bits_per_dim(-7.0, 3, num_bits=8),
                               (7.0 + 3 * math.log(128)) / (3 * math.log(2)), rtol=1e-6)


def test_dequantize():
    u = jnp.asarray(np.random.default_rng(0).integers(0, 256, size=(5000, 3)), jnp.uint8)
    x = dequantize(jr.key(0), u)
    assert x.dtype == jnp.float32 and float(x.min()) >= -1.0 and float(x.max()) < 1.0
    y = (np.asarray(x, np.float64) + 1.0) * 128.0 - np.asarray(u)  # the uniform noise
    assert y.min() >= 0.0 and y.max() < 1.0 and abs(y.mean() - 0.5) < 0.02
    # the average of the exact log-density of x ~ U[-1, 1]^3: a flat density gives 8 bits/dim
    np.testing.assert_allclose(bits_per_dim(jnp.full((5000,), -3 * math.log(2.0)), 3,
                                            num_bits=8).mean(), 8.0, rtol=1e-6)


def test_errors():
    p = sk.VP()
    x = jnp.zeros((2, 4))
    model = fast_eps(p, MU, COV)
    with pytest.raises(ValueError, match="`divergence`"):
        log_likelihood(jr.key(0), p, model, x, divergence="trace")
    with pytest.raises(ValueError, match="`probe`"):
        log_likelihood(jr.key(0), p, model, x, divergence="hutchinson", probe="sphere")
    with pytest.raises(ValueError, match="`n_probes`"):
        log_likelihood(jr.key(0), p, model, x, n_probes=0)
    with pytest.raises(ValueError, match="`x`"):
        log_likelihood(jr.key(0), p, model, jnp.zeros(4))
    with pytest.raises(ValueError, match="`dims`"):
        bits_per_dim(-1.0, 0)
