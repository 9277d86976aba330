"""DSM is minimised by the truth for every target and weighting; VDPM weight identities."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.objectives import DSM, WEIGHTINGS, LogNormalTime, StratifiedTime, UniformTime
from tests.helpers import make_gaussian, oracle_eps

MU, COV = make_gaussian(4, seed=3)


@pytest.fixture(scope="module")
def batch():
    n = 4096
    x0 = jnp.asarray(MU) + jr.normal(jr.key(0), (n, 4)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
    eps = jr.normal(jr.key(1), (n, 4))
    return x0, eps


@pytest.mark.parametrize("target", ["eps", "x0", "v", "score"])
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_exact_model_minimises_dsm(batch, target, weighting):
    p = sk.VP() if weighting != "karras" else sk.EDM(sigma_max=10.0)
    x0, eps = batch
    t = jr.uniform(jr.key(2), (x0.shape[0],), minval=0.15 * p.t1, maxval=0.95 * p.t1)
    exact = oracle_eps(p, MU, COV)
    loss = DSM(p, prediction="eps", target=target, weighting=weighting)
    base = float(jnp.mean(loss.per_example(exact, x0, t, eps)))
    direction = jr.normal(jr.key(3), (4,))
    for scale in (0.05, -0.05, 0.2):
        def perturbed(x, tt, s=scale):
            return exact(x, tt) + s * (direction + 0.5 * x)
        worse = float(jnp.mean(loss.per_example(perturbed, x0, t, eps)))
        assert worse > base, (scale, worse, base)


def test_vdpm_loss_weights_in_x0_space(vdpm_ref):
    """(target, weighting) pairs reproduce VDPM's constant / snr / snr_trunc / snr_1plus weights
    on the x0 error for self-consistent predictions."""
    ref = vdpm_ref["mse_loss_weights_x0_space"]
    lam = np.asarray(ref["logsnr"])
    with jax.enable_x64(True):
        p = sk.LogSNR("sigmoid")
        t = jnp.asarray((20.0 - lam) / 40.0)
        x0 = jnp.broadcast_to(jnp.array([0.3, -0.7, 0.1, 0.9]), (len(lam), 4))
        eps = jnp.broadcast_to(jnp.array([1.2, 0.4, -0.5, -1.1]), x0.shape)
        delta = jnp.array([0.01, -0.02, 0.03, 0.015])
        model = lambda x, tt: x0 + delta  # noqa: E731  an x0-predicting model with a fixed error
        x0_mse = float(jnp.mean(delta**2))
        cases = {
            "constant (model_out_type=x0)": DSM(p, "x0", "x0", "constant"),
            "snr (model_out_type=eps)": DSM(p, "x0", "eps", "constant"),
            "snr_trunc (model_out_type=v)": DSM(p, "x0", "x0", "truncated_snr"),
            "snr_1plus (model_out_type=v)": DSM(p, "x0", "v", "constant"),
        }
        for name, loss in cases.items():
            w = np.asarray(loss.per_example(model, x0, t, eps)) / x0_mse
            # the reference ran in float32 (~7e-5 relative noise); the closed form is exact
            np.testing.assert_allclose(w, ref[name], rtol=1e-4)
        closed = next(v for k, v in ref.items() if k.startswith("closed_form_x0_space"))
        for name, key in zip(cases, ["constant", "snr", "truncated", "1plus"], strict=True):
            w = np.asarray(cases[name].per_example(model, x0, t, eps)) / x0_mse
            np.testing.assert_allclose(w, closed[key], rtol=1e-9)
        w_trunc = np.asarray(cases["snr_trunc (model_out_type=v)"].per_example(model, x0, t, eps)) / x0_mse
        np.testing.assert_allclose(w_trunc, closed["truncated"], rtol=1e-9)
        # snr_trunc is also max(x0 mse, eps mse) per example
        eps_mse = np.asarray(DSM(p, "x0", "eps").per_example(model, x0, t, eps))
        np.testing.assert_allclose(w_trunc * x0_mse, np.maximum(x0_mse, eps_mse), rtol=1e-9)


def test_loss_call_is_jittable_and_per_element_time():
    p = sk.VP()
    x0 = jr.normal(jr.key(0), (8, 4, 4, 1))
    seen = {}

    def model(x, t):
        seen["t"] = t.shape
        return jnp.zeros_like(x)

    loss = DSM(p, time_sampler=UniformTime(1e-5, 1.0, per_element=True))
    val = jax.jit(lambda k: loss(model, k, x0))(jr.key(1))
    assert seen["t"] == x0.shape and np.isfinite(float(val))
    assert abs(float(val) - 1.0) < 0.3  # eps target with a zero model: E|eps|^2 = 1


def test_time_samplers():
    u = UniformTime(0.1, 0.2)(jr.key(0), (1000, 3))
    assert u.shape == (1000,) and float(u.min()) >= 0.1 and float(u.max()) <= 0.2
    s = StratifiedTime(0.0, 1.0)(jr.key(0), (10, 3))
    assert np.all(np.floor(np.asarray(s) * 10) == np.arange(10))
    ln = LogNormalTime()(jr.key(0), (20000, 3))
    assert abs(float(jnp.mean(jnp.log(ln))) + 1.2) < 0.05


def test_bad_objective_arguments():
    with pytest.raises(ValueError, match="argument `weighting`"):
        DSM(sk.VP(), weighting="snr2")
    with pytest.raises(ValueError, match="argument `target`"):
        DSM(sk.VP(), target="noise")
    with pytest.raises(ValueError, match="`model` returned an array of shape"):
        DSM(sk.VP()).per_example(lambda x, t: x[:, :2], jnp.ones((2, 4)), 0.5, jnp.ones((2, 4)))
