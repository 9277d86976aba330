"""Conversions among eps / x0 / v / score / velocity, and EDM preconditioning."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.parameterisation import PREDICTIONS, convert
from sdekit.wrappers import Precond

PROCESSES = [sk.VP(), sk.VP(schedule="cosine"), sk.SubVP(), sk.VE(), sk.EDM(), sk.LogSNR("cosine"),
             sk.LogSNR("legacy")]


def test_conversions_match_vdpm_reference(vdpm_ref):
    ref = vdpm_ref["conversions"]
    keys = {k.split("=")[0]: k for k in ref}
    with jax.enable_x64(True):
        p = sk.LogSNR("sigmoid")  # conversions depend on logsnr only
        lam = jnp.asarray(ref["logsnr"], jnp.float64)
        # choose t with the given logsnr under the sigmoid schedule (exactly linear)
        t = (20.0 - lam) / 40.0
        np.testing.assert_allclose(np.asarray(p.logsnr(t)), np.asarray(lam), atol=1e-12)
        x0 = jnp.broadcast_to(jnp.asarray(ref["x0"], jnp.float64), (5, 2))
        eps = jnp.broadcast_to(jnp.asarray(ref["eps"], jnp.float64), (5, 2))
        xt = p.perturb(x0, t, eps)
        np.testing.assert_allclose(np.asarray(xt), ref[keys["x_t"]], rtol=1e-12)
        v = convert(p, eps, xt, t, source="eps", target="v")
        np.testing.assert_allclose(np.asarray(v), ref[keys["v"]], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(convert(p, eps, xt, t, source="eps", target="x0")),
                                   ref[keys["pred_x0_from_eps(x_t,eps)"]], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(convert(p, x0, xt, t, source="x0", target="eps")),
                                   ref[keys["pred_eps_from_x0(x_t,x0)"]], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(convert(p, v, xt, t, source="v", target="x0")),
                                   ref[keys["pred_x0_from_v(x_t,v)"]], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(convert(p, v, xt, t, source="v", target="eps")),
                                   ref[keys["pred_eps_from_v(x_t,v)"]], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(convert(p, x0, xt, t, source="x0", target="v")),
                                   ref[keys["pred_v_from_x0(x_t,x0)"]], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("p", PROCESSES, ids=lambda p: type(p).__name__ + type(p.schedule).__name__)
def test_round_trip_every_kind_with_per_element_time(p):
    with jax.enable_x64(True):
        key = jr.key(0)
        x0 = jr.normal(key, (3, 4, 4, 2), jnp.float64)
        eps = jr.normal(jr.key(1), x0.shape, jnp.float64)
        lo, hi = p.t0 + 0.02 * (p.t1 - p.t0), 0.98 * p.t1
        for t in [jnp.float64(0.5 * (lo + hi)),
                  jr.uniform(jr.key(2), (3,), jnp.float64, lo, hi),
                  jr.uniform(jr.key(3), x0.shape, jnp.float64, lo, hi)]:
            xt = p.perturb(x0, t, eps)
            truth = {"eps": eps, "x0": x0, "score": p.conditional_score(xt, x0, t)}
            for src in PREDICTIONS:
                val = convert(p, eps, xt, t, source="eps", target=src)
                for dst in PREDICTIONS:
                    back = convert(p, val, xt, t, source=src, target=dst)
                    want = convert(p, eps, xt, t, source="eps", target=dst)
                    np.testing.assert_allclose(np.asarray(back), np.asarray(want), rtol=1e-7, atol=1e-7)
            for k, v in truth.items():
                np.testing.assert_allclose(np.asarray(convert(p, eps, xt, t, source="eps", target=k)),
                                           np.asarray(v), rtol=1e-7, atol=1e-9)


def test_unknown_prediction_kind_is_an_error():
    with pytest.raises(ValueError, match="argument `source`"):
        convert(sk.VP(), jnp.zeros(2), jnp.zeros(2), 0.5, source="noise", target="x0")


@pytest.mark.parametrize("p", [sk.EDM(), sk.VP(), sk.VE()], ids=lambda p: type(p).__name__)
def test_precond_coefficients_and_exact_denoiser(p):
    """With the ideal raw network F* = (x0 - c_skip x/s) / c_out the wrapper returns x0 exactly;
    c_* follow Karras et al. (2022) Table 1 in the x/alpha frame."""
    x0 = jr.normal(jr.key(0), (4, 3))
    eps = jr.normal(jr.key(1), (4, 3))
    t = jnp.array([0.1, 0.3, 0.6, 0.9]) * p.t1
    xt = p.perturb(x0, t, eps)
    pre_probe = Precond(lambda x, c: jnp.zeros_like(x), p)
    c_skip, c_out, c_in, c_noise = pre_probe.coefficients(t[:, None])
    s = (p.sigma(t) / p.alpha(t))[:, None]
    np.testing.assert_allclose(np.asarray(c_skip), 0.25 / (s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(c_out), s * 0.5 / np.sqrt(s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(c_in), 1 / np.sqrt(s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(c_noise), np.log(s) / 4, rtol=1e-6)
    xhat = xt / p.alpha(t)[:, None]

    def ideal(x_in, c_n):
        np.testing.assert_allclose(np.asarray(x_in), np.asarray(c_in * xhat), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(c_n), np.asarray(0.25 * jnp.log(s[:, 0])), rtol=1e-5)
        return (x0 - c_skip * xhat) / c_out

    out = Precond(ideal, p)(xt, t)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x0), rtol=1e-4, atol=1e-5)
