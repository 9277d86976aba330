"""Likelihood bound of augmented processes (PSLD) on Gaussian data, where log p(x0) is known."""

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.sampling import augmented_log_likelihood

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


def oracle_score(p, d, aux_var=None):
    """Exact score of z_t (only the components the process's network predicts); ``aux_var``
    replaces the initial auxiliary variance (a model that is exact for another process)."""

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
        full = -(z - mean) @ prec.T
        return jnp.concatenate([full[:, c * d:(c + 1) * d] for c in p.predicted()], axis=-1)

    return score


def gaussian_logpdf(x, mean, cov):
    x = np.asarray(x, np.float64) - mean
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", x, np.linalg.inv(cov), x)
    return -0.5 * (quad + logdet + x.shape[1] * math.log(2 * math.pi))


def test_bound_is_exact_for_the_true_score():
    p = sk.PSLD()
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
