"""Likelihood bound of augmented processes (PSLD, CLD) on Gaussian data, where log p(x0) is
known; CLD's network predicts only the score of the velocity part."""

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.parameterisation import convert
from sdekit.sampling import AdaptiveODE, augmented_log_likelihood

MU = np.array([0.3, -0.5], np.float32)
COV = np.array([[0.5, 0.2], [0.2, 0.3]], np.float32)


def joint_moments(p, t, d):
    """Mean and covariance of z_t = [x, m] (layout: d data entries, then d auxiliaries)."""
    b = p.integrated_beta(jnp.asarray(t, jnp.float32))
    phi = np.asarray(p.transition(b), np.float64)
    q = np.asarray(p.noise_covariance(b), np.float64)
    s0 = np.asarray(p.initial_covariance(), np.float64)
    eye = np.eye(d)
    a = np.kron(phi, eye)
    cov0 = np.kron(s0, eye)
    cov0[:d, :d] = COV
    mean = a @ np.concatenate([MU, np.zeros(d)])
    return mean, a @ cov0 @ a.T + np.kron(q, eye)


def oracle_score(p, d, aux_var=None, full=False):
    """Exact score of z_t (only the components the process's network predicts, all of them with
    ``full``); ``aux_var`` replaces the initial auxiliary variance (a model that is exact for
    another process)."""

    def score(z, t):
        t = jnp.broadcast_to(jnp.asarray(t, z.dtype), z.shape[:1])
        b = p.integrated_beta(t[0])
        phi = p.transition(b).astype(z.dtype)
        q = p.noise_covariance(b).astype(z.dtype)
        s0 = np.asarray(p.initial_covariance(), np.float64).copy()
        if aux_var is not None:
            s0[1, 1] = aux_var
        s0 = jnp.asarray(s0, z.dtype)
        eye = jnp.eye(d, dtype=z.dtype)
        a = jnp.kron(phi, eye)
        cov0 = jnp.kron(s0, eye).at[:d, :d].set(jnp.asarray(COV, z.dtype))
        c = a @ cov0 @ a.T + jnp.kron(q, eye)
        mean = a @ jnp.concatenate([jnp.asarray(MU, z.dtype), jnp.zeros(d, z.dtype)])
        prec = jnp.linalg.inv(c)
        score = -(z - mean) @ prec.T
        if full:
            return score
        return jnp.concatenate([score[:, i * d:(i + 1) * d] for i in p.predicted()], axis=-1)

    return score


def gaussian_logpdf(x, mean, cov):
    x = np.asarray(x, np.float64) - mean
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", x, np.linalg.inv(cov), x)
    return -0.5 * (quad + logdet + x.shape[1] * math.log(2 * math.pi))


@pytest.mark.parametrize("p", [sk.PSLD(), sk.CLD()], ids=["psld", "cld"])
def test_bound_is_exact_for_the_true_score(p):
    """PSLD's network predicts the score of [x, m], CLD's only the m part (the x part carries no
    noise, so its score is not needed): both give log p(x0) exactly."""
    d = 2
    x = jnp.asarray(MU) + jr.normal(jr.key(0), (5, d)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
    model = oracle_score(p, d)
    res = augmented_log_likelihood(jr.key(1), p, model, x, prediction="score", num_samples=2,
                                   rtol=1e-6, atol=1e-6)
    mean, cov = joint_moments(p, p.t0, d)
    exact = gaussian_logpdf(x, mean[:d], cov[:d, :d])  # log p_{t0}(x0), the model's data density
    # for the true score q(m0 | x0) is the model's conditional, so every sample gives log p(x0)
    np.testing.assert_allclose(np.asarray(res.joint_log_prob - res.aux_log_prob),
                               np.broadcast_to(exact, (2, 5)), atol=2e-2)
    np.testing.assert_allclose(np.asarray(res.log_prob_bound), exact, atol=2e-2)
    assert np.all(np.asarray(res.log_prob_bound) >= np.asarray(res.elbo) - 1e-6)
    np.testing.assert_allclose(np.asarray(res.bits_per_dim),
                               -np.asarray(res.log_prob_bound) / (d * math.log(2)), rtol=1e-6)
    # the joint itself is the Gaussian joint density at t0
    assert res.joint_log_prob.shape == (2, 5) and int(res.nfe) > 0


def test_cld_partial_score_converts_exactly():
    """A CLD score network outputs grad_m log p_t only; read as the state's score with 0 for x,
    its probability-flow velocity is the full score's (g_x = 0) and score -> eps -> score is the
    identity on the m part."""
    p = sk.CLD()
    d = 2
    assert p.predicted() == (1,)
    z = jr.normal(jr.key(7), (6, 2 * d))
    t = jnp.full((6,), 0.3)
    part, full = oracle_score(p, d)(z, t), oracle_score(p, d, full=True)(z, t)
    assert part.shape == (6, d) and full.shape == (6, 2 * d)
    u_part = convert(p, part, z, t, source="score", target="velocity")
    u_full = convert(p, full, z, t, source="score", target="velocity")
    np.testing.assert_allclose(np.asarray(u_part), np.asarray(u_full), rtol=1e-5, atol=1e-5)
    s = convert(p, part, z, t, source="score", target="score")  # the state's score
    np.testing.assert_allclose(np.asarray(s), np.concatenate([np.zeros((6, d)), part], -1))
    eps = convert(p, part, z, t, source="score", target="eps")
    assert eps.shape == (6, d)
    back = convert(p, eps, z, t, source="eps", target="score")
    np.testing.assert_allclose(np.asarray(back)[:, d:], np.asarray(part), rtol=1e-4, atol=1e-4)
    # eps_m = -C_mm s_m with C the lower factor of Sigma_t (the x part of s does not enter)
    c = np.linalg.cholesky(np.asarray(p.kernel_covariance(jnp.asarray(0.3)), np.float64))
    np.testing.assert_allclose(np.asarray(eps), -c[1, 1] * np.asarray(part), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        convert(p, jnp.zeros((6, 3)), z, t, source="score", target="eps")


def test_cld_score_model_samples_with_adaptive_ode():
    """The probability-flow ODE of CLD's exact m-score carries the stationary prior to the data
    law N(MU, COV) (at t0, up to the 1e-5 of noise)."""
    p = sk.CLD()
    d = 2
    n = 4000
    res = sk.sample(jr.key(8), p, oracle_score(p, d), (n, d), prediction="score",
                    method=AdaptiveODE(rtol=1e-5, atol=1e-5))
    x = np.asarray(res.samples, np.float64)
    assert x.shape == (n, d) and res.state.shape == (n, 2 * d) and np.all(np.isfinite(x))
    mean, cov = joint_moments(p, p.t0, d)
    se = np.sqrt(np.diag(cov[:d, :d]) / n)
    assert np.all(np.abs(x.mean(0) - mean[:d]) < 4 * se)
    np.testing.assert_allclose(np.cov(x.T), cov[:d, :d], atol=0.05)


def test_importance_samples_tighten_a_loose_bound():
    """A model that is exact for an auxiliary variance of 0.04 while q draws m0 with 0.01: the
    plain bound is below log p(x0) by KL(q || p(m0 | x0)) = 2 x 0.5 (ln 4 + 1/4 - 1) = 0.636
    nats on average; importance samples close the gap."""
    p = sk.PSLD()
    d = 2
    x = jnp.asarray(MU) + jr.normal(jr.key(3), (8, d)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
    model = oracle_score(p, d, aux_var=0.04)
    mean, cov = joint_moments(p, p.t0, d)
    exact = gaussian_logpdf(x, mean[:d], cov[:d, :d])
    one = augmented_log_likelihood(jr.key(4), p, model, x, prediction="score", num_samples=1,
                                   rtol=1e-5, atol=1e-5)
    many = augmented_log_likelihood(jr.key(5), p, model, x, prediction="score", num_samples=6,
                                    rtol=1e-5, atol=1e-5)
    gap_one = float(np.mean(exact - np.asarray(one.log_prob_bound)))
    gap_many = float(np.mean(exact - np.asarray(many.log_prob_bound)))
    gap_elbo = float(np.mean(exact - np.asarray(many.elbo)))
    assert 0.3 < gap_elbo < 1.0  # 0.636 in expectation (48 draws)
    assert gap_one > 0.2 and -0.02 < gap_many < 0.5 * gap_one


def test_errors():
    with pytest.raises(TypeError, match="use log_likelihood"):
        augmented_log_likelihood(jr.key(0), sk.VP(), lambda x, t: x, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="num_samples"):
        augmented_log_likelihood(jr.key(0), sk.PSLD(), lambda x, t: x, jnp.zeros((2, 3)),
                                 num_samples=0)
