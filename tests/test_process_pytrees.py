"""Processes are pytrees: jit / vmap / grad over processes and their parameters; validation of
concrete values with errors naming the argument; traced values never fail unclearly."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdekit as sk
from sdekit.objectives import DSM, LogNormalTime, StratifiedTime, UniformTime
from sdekit.processes import AffineProcess, LinearSDE, LogSNRCosineSchedule

PROCESSES = {
    "vp": sk.VP(),
    "vp_cosine": sk.VP(schedule="cosine"),
    "subvp": sk.SubVP(),
    "ve": sk.VE(),
    "edm": sk.EDM(),
    "logsnr_cosine": sk.LogSNR("cosine"),
    "logsnr_legacy": sk.LogSNR("legacy"),
    "affine": AffineProcess(LogSNRCosineSchedule(-10.0, 10.0)),
    "psld": sk.PSLD(),
    "cld": sk.CLD(),
    "linear_sde": LinearSDE(F=[[-0.5, 1.0], [-1.0, -1.0]], G=[[1.0, 0.0], [0.0, 1.0]]),
}


def _probe(p, t, x0, eps):
    xt = p.perturb(x0, t, eps)
    out = p.prediction_shape(xt.shape)
    e = jnp.ones(out, xt.dtype)
    return xt, p.drift(t, xt), p.diffusion(t, xt), p.eps_to_score(e, xt, t), p.prior_log_prob(xt)


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_jit_over_a_process(name):
    """``jax.jit(f)(process, t)``: the process is an argument (its numeric fields traced)."""
    p = PROCESSES[name]
    x0 = jnp.linspace(-1.0, 1.0, 8).reshape(2, 2, 2)
    eps = jnp.cos(jnp.arange(np.prod(p.state_shape(x0.shape)))).reshape(p.state_shape(x0.shape))
    t = jnp.asarray([0.3, 0.6]) * (p.t1 - p.t0) + p.t0
    eager = _probe(p, t, x0, eps)
    jitted = jax.jit(_probe)(p, t, x0, eps)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)


def test_vmap_over_a_batch_of_processes():
    t = jnp.asarray([0.5, 0.5])
    # built inside vmap (traced parameters: the checks skip them)
    ps = eqx.filter_vmap(lambda b: sk.VP(beta_max=b))(jnp.asarray([10.0, 20.0]))
    got = eqx.filter_vmap(lambda p, s: p.alpha(s))(ps, t)  # beta_min stays a Python float
    want = [sk.VP(beta_max=10.0).alpha(0.5), sk.VP(beta_max=20.0).alpha(0.5)]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    # stacked from concrete processes
    stacked = jax.tree.map(lambda *a: jnp.stack(a), sk.VE(sigma_max=10.0), sk.VE(sigma_max=50.0))
    got = jax.vmap(lambda p: p.prior_std())(stacked)
    np.testing.assert_allclose(np.asarray(got), [10.0, 50.0], rtol=1e-6)
    # PSLD over Gamma (mode given: it is static and cannot be read from traced values)
    gammas = jnp.asarray([0.01, 0.5])
    ps = eqx.filter_vmap(lambda g: sk.PSLD(gamma=g, nu=g + 4.0, mode="score_xm"))(gammas)
    cov = eqx.filter_vmap(lambda p: p.kernel_covariance(0.3))(ps)
    for i, g in enumerate([0.01, 0.5]):
        np.testing.assert_allclose(
            np.asarray(cov[i]), np.asarray(sk.PSLD(gamma=g, nu=g + 4.0).kernel_covariance(0.3)),
            rtol=1e-5,
        )


def test_grad_with_respect_to_process_parameters():
    with jax.enable_x64(True):
        t = 0.5
        # d alpha / d beta_max = -alpha t^2 / 4 for the linear VP schedule
        g = jax.grad(lambda b: sk.VP(beta_max=b).alpha(t))(20.0)
        a = float(sk.VP(beta_max=20.0).alpha(t))
        np.testing.assert_allclose(float(g), -a * t**2 / 4, rtol=1e-12)
        # through the module itself: the gradient has the process's structure
        gp = jax.grad(lambda p: p.alpha(t))(sk.VP(beta_max=20.0))
        np.testing.assert_allclose(float(gp.schedule.beta_max), -a * t**2 / 4, rtol=1e-12)
        # PSLD: the kernel covariance against central finite differences in beta_max and gamma
        def cov(b, gam):
            return sk.PSLD(beta_max=b, gamma=gam, mode="score_xm").kernel_covariance(t)[0, 1]

        gb, gg = jax.grad(cov, argnums=(0, 1))(8.0, 0.01)
        h = 1e-5
        fd_b = (cov(8.0 + h, 0.01) - cov(8.0 - h, 0.01)) / (2 * h)
        fd_g = (cov(8.0, 0.01 + h) - cov(8.0, 0.01 - h)) / (2 * h)
        np.testing.assert_allclose(float(gb), float(fd_b), rtol=1e-6)
        np.testing.assert_allclose(float(gg), float(fd_g), rtol=1e-6)
        # LogSNR range
        gl = jax.grad(lambda hi: sk.LogSNR("cosine", logsnr_max=hi).logsnr(0.0))(20.0)
        np.testing.assert_allclose(float(gl), 1.0, rtol=1e-9)


def test_traced_values_give_clear_errors():
    with pytest.raises(ValueError, match=r"argument `t0`: got a traced value"):
        jax.jit(lambda s: sk.VP(t0=s).alpha(0.5))(1e-3)
    with pytest.raises(ValueError, match=r"argument `t0`.*explicit value when `sigma_min`"):
        jax.jit(lambda s: sk.EDM(sigma_min=s).sigma(1.0))(0.01)
    with pytest.raises(ValueError, match=r"argument `mode`.*explicit mode"):
        jax.jit(lambda g: sk.PSLD(gamma=g).drift(0.5, jnp.ones((1, 2))))(0.01)
    # an explicit t0 makes the traced EDM fine
    out = jax.jit(lambda s: sk.EDM(sigma_min=s, t0=0.002).sigma(1.0))(0.01)
    assert float(out) == 1.0


@pytest.mark.parametrize(
    "make, name, expected",
    [
        (lambda: sk.VP(beta_min=float("nan")), "beta_min", "finite"),
        (lambda: sk.VP(beta_max=float("inf")), "beta_max", "finite"),
        (lambda: sk.VE(sigma_max=float("inf")), "sigma_max", "finite"),
        (lambda: sk.EDM(sigma_data=float("nan")), "sigma_data", "finite"),
        (lambda: sk.SubVP(beta_min=-1.0), "beta_min", ">= 0"),
        (lambda: sk.PSLD(kappa=float("inf")), "kappa", "finite"),
        (lambda: sk.PSLD(beta_max=float("nan")), "beta_max", "finite"),
        (lambda: sk.PSLD(numerical_eps=-1e-9), "numerical_eps", ">= 0"),
        (lambda: sk.CLD(m_inv=float("inf")), "m_inv", "finite"),
        (lambda: sk.LogSNR(logsnr_max=float("inf")), "logsnr_max", "finite"),
        (lambda: sk.LogSNR(logsnr_min=float("nan")), "logsnr_min", "finite"),
        (lambda: sk.VP(schedule="cosine", t1=1.0), "t1", "t1 < 1"),
        (lambda: sk.VP(cosine_s=-0.5), "cosine_s", ">= 0"),
        (lambda: sk.VP(t0=-0.1), "t0", ">= 0"),
        (lambda: sk.VE(t0=-1e-3), "t0", ">= 0"),
        (lambda: sk.LogSNR("cosine", t0=-0.5), "t0", ">= 0"),
        (lambda: sk.PSLD(t0=-1e-5), "t0", ">= 0"),
        (lambda: sk.VP(t1=float("inf")), "t1", "finite"),
        (lambda: DSM(sk.VP(), weighting="min_snr", min_snr_gamma=-1.0), "min_snr_gamma", "> 0"),
        (lambda: DSM(sk.VP(), sigma_data=0.0), "sigma_data", "> 0"),
        (lambda: UniformTime(t_min=-1.0), "t_min", ">= 0"),
        (lambda: StratifiedTime(t_min=-1.0), "t_min", ">= 0"),
        (lambda: LogNormalTime(p_std=float("inf")), "p_std", "finite"),
        (lambda: LogNormalTime(t_min=0.0), "t_min", "> 0"),
    ],
)
def test_bad_parameters_name_the_argument(make, name, expected):
    """Issue 15: non-finite, negative or singular parameters are refused at construction, with
    the argument's name, the value given and what was expected."""
    with pytest.raises(ValueError, match=rf"argument `{name}`: got .*expected .*{expected}"):
        make()
