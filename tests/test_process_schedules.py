"""Schedules as modules: inverses, closed forms against the generic defaults, AffineProcess."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdekit as sk
from sdekit.processes import (
    AbstractSchedule,
    AffineProcess,
    CosineSchedule,
    EDMSchedule,
    GeometricSchedule,
    LinearBetaSchedule,
    LogSNRCosineSchedule,
    LogSNRLegacySchedule,
    LogSNRLinearSchedule,
    LogSNRSigmoidSchedule,
    SubVPSchedule,
)
from sdekit.sampling import ODE

SCHEDULES = {
    "linear_beta": (LinearBetaSchedule(0.1, 20.0), 1.0),
    "cosine": (CosineSchedule(), 0.999),
    "subvp": (SubVPSchedule(0.1, 20.0), 1.0),
    "geometric": (GeometricSchedule(0.01, 50.0), 1.0),
    "edm": (EDMSchedule(), 80.0),
    "logsnr_linear": (LogSNRLinearSchedule(-20.0, 20.0), 1.0),
    "logsnr_sigmoid": (LogSNRSigmoidSchedule(-10.0, 8.0), 1.0),
    "logsnr_cosine": (LogSNRCosineSchedule(-20.0, 20.0), 1.0),
    "logsnr_legacy": (LogSNRLegacySchedule(), 1.0),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_inverses_and_closed_forms(name):
    """t_from_logsnr / t_from_scaled_sigma invert the schedule, and agree with the generic
    bisection; logsnr agrees with the generic 2 log(alpha / sigma)."""
    sched, t1 = SCHEDULES[name]
    with jax.enable_x64(True):
        t = jnp.linspace(0.02 * t1, 0.98 * t1, 9, dtype=jnp.float64)
        lam = sched.logsnr(t)
        np.testing.assert_allclose(
            np.asarray(lam), np.asarray(AbstractSchedule.logsnr(sched, t)), rtol=1e-9, atol=1e-9
        )
        np.testing.assert_allclose(np.asarray(sched.t_from_logsnr(lam, t_max=t1)), t, atol=1e-9)
        s = jnp.exp(-0.5 * lam)
        np.testing.assert_allclose(
            np.asarray(sched.t_from_scaled_sigma(s, t_max=t1)), t, rtol=1e-9, atol=1e-9
        )
        bisect = AbstractSchedule.t_from_logsnr(sched, lam, t_max=t1, iters=80)
        np.testing.assert_allclose(np.asarray(bisect), t, atol=1e-9)


def test_affine_process_of_a_schedule_is_the_named_process():
    x0 = jnp.linspace(-1.0, 1.0, 6).reshape(3, 2)
    eps = jnp.ones_like(x0)
    t = jnp.array([0.1, 0.5, 0.9])
    for named, sched in [
        (sk.VP(), LinearBetaSchedule(0.1, 20.0)),
        (sk.VP(schedule="cosine"), CosineSchedule(0.008)),
        (sk.LogSNR("sigmoid"), LogSNRSigmoidSchedule()),
        (sk.VE(), GeometricSchedule()),
    ]:
        p = AffineProcess(sched, t0=named.t0, t1=named.t1)
        for fn in ("drift", "diffusion"):
            np.testing.assert_allclose(getattr(p, fn)(t, x0), getattr(named, fn)(t, x0), rtol=1e-6)
        np.testing.assert_allclose(p.perturb(x0, t, eps), named.perturb(x0, t, eps), rtol=1e-6)
        np.testing.assert_allclose(p.prior_std(), named.prior_std(), rtol=1e-6)
    # the constructors keep their spellings and expose the schedule module
    assert isinstance(sk.VP(schedule="cosine").schedule, CosineSchedule)
    assert isinstance(sk.LogSNR("legacy").schedule, LogSNRLegacySchedule)
    assert sk.VP(beta_max=10.0).beta_max == 10.0 and sk.VE(sigma_max=7.0).sigma_max == 7.0
    assert sk.LogSNR("cosine", -10.0, 8.0).logsnr_min == -10.0


class _LinearPath(AbstractSchedule):
    """An interpolant-style path written as a user would: alpha = 1 - t, sigma = t."""

    def alpha(self, t):
        return 1.0 - jnp.asarray(t, float)

    def sigma(self, t):
        return jnp.asarray(t, float)


def test_a_user_schedule_gets_sde_coefficients_inverses_and_samplers():
    p = AffineProcess(_LinearPath(), t0=1e-3, t1=0.999)
    with jax.enable_x64(True):
        t = jnp.linspace(0.05, 0.95, 7, dtype=jnp.float64)
        # f = d log alpha / dt = -1 / (1 - t); g^2 = 2 t + 2 t^2 / (1 - t)
        np.testing.assert_allclose(p.f(t), -1.0 / (1.0 - t), rtol=1e-12)
        np.testing.assert_allclose(p.g2(t), 2 * t + 2 * t**2 / (1 - t), rtol=1e-12)
        np.testing.assert_allclose(p.t_from_scaled_sigma(t / (1 - t)), t, atol=1e-12)
    # the exact-score sampler recovers N(mu, Sigma) on the user's process
    from tests.helpers import cov_error, make_gaussian, oracle_eps

    mu, cov = make_gaussian(4)
    res = sk.sample(
        jax.random.key(0), p, oracle_eps(p, mu, cov), (4096, 4),
        method=ODE(num_steps=64, solver="heun", grid="quadratic"), prediction="eps",
    )
    x = np.asarray(res.samples, np.float64)
    assert np.all(np.abs(x.mean(0) - mu) < 4 * np.sqrt(np.diag(cov) / len(x)))
    assert cov_error(x, mu, cov)[1] < 0.05


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sk.VP(schedule="cosine", t1=1.0), "argument `t1`: got 1.0, expected t1 < 1"),
        (lambda: AffineProcess(CosineSchedule(), t1=1.0), "argument `t1`"),
        (lambda: AffineProcess(_LinearPath(), t0=0.5, t1=0.2), "`t0` and `t1`"),
        (lambda: AffineProcess(_LinearPath(), t0=1.0, t1=2.0), "argument `t0`"),
    ],
)
def test_schedule_domain_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
    with pytest.raises(TypeError, match="schedule"):  # jaxtyping's check names the parameter
        AffineProcess("linear")


def test_no_class_dispatch_in_samplers_or_objectives():
    root = pathlib.Path(sk.__file__).parent
    for sub in ("sampling", "objectives"):
        for f in (root / sub).glob("*.py"):
            text = f.read_text()
            assert not re.search(r"type\([^)]*\) is ", text), f
            named = r"isinstance\([^)]*, *\(?(VP|VE|EDM|SubVP|LogSNR|PSLD|CLD)\b"
            assert not re.search(named, text), f
