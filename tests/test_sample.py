"""Gaussian oracle: sampling with the exact score recovers N(mu, Sigma) for every method."""

import jax
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.sampling import ODE, AdaptiveODE, AdaptiveSDE, EulerMaruyama, sample, time_grid
from tests.helpers import cov_error, make_gaussian, oracle_eps, oracle_score

MU, COV = make_gaussian(8)
N = 4096

PROCESSES = {
    "vp": sk.VP(),
    "vp_cosine": sk.VP(schedule="cosine"),
    "subvp": sk.SubVP(),
    "ve": sk.VE(sigma_min=0.01, sigma_max=20.0),
    "edm": sk.EDM(),
    "logsnr": sk.LogSNR("cosine"),
}


def _check(result, max_cov_err=0.05):
    x = np.asarray(result.samples)
    assert np.all(np.isfinite(x))
    se = np.sqrt(np.diag(COV) / N)
    assert np.all(np.abs(x.mean(0) - MU) < 4.5 * se + 0.01), (x.mean(0) - MU) / se
    _, cerr = cov_error(x, MU, COV)
    assert cerr < max_cov_err, cerr
    return cerr


def _grid(name):
    return "karras" if name == "edm" else "uniform"


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_oracle_euler_maruyama_200(name):
    p = PROCESSES[name]
    m = EulerMaruyama(200, grid=_grid(name) if name != "vp_cosine" else "quadratic")
    r = sample(jr.key(0), p, oracle_eps(p, MU, COV), (N, 8), method=m)
    _check(r)
    assert int(r.nfe) == 201  # 200 steps + the Tweedie denoising step


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_oracle_pf_ode_heun_100(name):
    p = PROCESSES[name]
    r = sample(jr.key(1), p, oracle_score(p, MU, COV), (N, 8), prediction="score",
               method=ODE(100, solver="heun", grid=_grid(name)))
    _check(r)
    assert int(r.nfe) == 201


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_oracle_adaptive_ode(name):
    p = PROCESSES[name]
    r = sample(jr.key(2), p, oracle_eps(p, MU, COV), (N, 8),
               method=AdaptiveODE(rtol=1e-4, atol=1e-4))
    _check(r)
    assert int(r.nfe) == 6 * int(r.num_steps) + 1 + 1


def test_oracle_pf_ode_euler_200_vp():
    p = PROCESSES["vp"]
    r = sample(jr.key(3), p, oracle_eps(p, MU, COV), (N, 8), method=ODE(200, solver="euler"))
    _check(r)


@pytest.mark.parametrize("name", ["vp", pytest.param("ve", marks=pytest.mark.slow)])
def test_oracle_adaptive_sde(name):
    p = PROCESSES[name]
    r = sample(jr.key(4), p, oracle_eps(p, MU, COV), (N, 8),
               method=AdaptiveSDE(rtol=1e-2, atol=1e-2))
    _check(r)
    assert int(r.num_steps) > 0 and int(r.nfe) == 2 * int(r.num_steps) + 1


def test_fixed_step_backends_agree():
    """lax.scan and diffrax run the same deterministic algorithm: identical up to float error."""
    p = PROCESSES["vp"]
    model = oracle_eps(p, MU, COV)
    for solver in ["euler", "heun"]:
        a = sample(jr.key(5), p, model, (64, 8), method=ODE(50, solver=solver, backend="scan"))
        b = sample(jr.key(5), p, model, (64, 8), method=ODE(50, solver=solver, backend="diffrax"))
        np.testing.assert_allclose(np.asarray(a.samples), np.asarray(b.samples), rtol=1e-4,
                                   atol=1e-4)
    r = sample(jr.key(6), p, model, (N, 8), method=EulerMaruyama(200, backend="diffrax"))
    _check(r, max_cov_err=0.07)


def test_adaptive_ode_nfe_counts_every_model_call():
    """NFE reported from solver statistics equals the number of times the model actually ran."""
    p = PROCESSES["vp"]
    exact = oracle_eps(p, MU, COV)
    calls = []

    def model(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return exact(x, t)

    r = sample(jr.key(7), p, model, (16, 8), method=AdaptiveODE(rtol=1e-4, atol=1e-4), jit=False)
    jax.effects_barrier()
    assert len(calls) == int(r.nfe)


def test_trajectory_and_result_fields():
    p = PROCESSES["vp"]
    r = sample(jr.key(8), p, oracle_eps(p, MU, COV), (32, 8), method=EulerMaruyama(20),
               save_trajectory=True, denoise="none")
    assert r.trajectory.shape == (20, 32, 8) and r.ts.shape == (20,)
    np.testing.assert_allclose(np.asarray(r.trajectory[-1]), np.asarray(r.samples))
    assert float(r.ts[-1]) == pytest.approx(p.t0)


def test_time_grids():
    u = np.asarray(time_grid("uniform", 4, 1.0, 1e-3))
    np.testing.assert_allclose(u, [1.0, 0.75025, 0.5005, 0.25075, 1e-3], rtol=1e-6)
    q = np.asarray(time_grid("quadratic", 3, 1.0, 1e-3))
    np.testing.assert_allclose(1 - q, [0.0, 0.555, 0.888, 0.999], rtol=1e-5, atol=1e-7)
    k = np.asarray(time_grid("karras", 10, 80.0, 0.002))
    assert k[0] == pytest.approx(80.0) and k[-1] == pytest.approx(0.002) and np.all(np.diff(k) < 0)
    mid = (80.0 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert k[5] == pytest.approx(mid, rel=1e-5)


def test_bad_sampler_arguments():
    p = PROCESSES["vp"]
    model = oracle_eps(p, MU, COV)
    with pytest.raises(ValueError, match="argument `method`"):
        sample(jr.key(0), p, model, (4, 8), method="rk4")
    with pytest.raises(ValueError, match="argument `grid`"):
        EulerMaruyama(10, grid="cubic")
    with pytest.raises(ValueError, match="argument `num_steps`"):
        EulerMaruyama(0)
    with pytest.raises(ValueError, match="argument `prediction`"):
        sample(jr.key(0), p, model, (4, 8), prediction="noise")
    with pytest.raises(ValueError, match="`model` returned an array of shape"):
        sample(jr.key(0), p, lambda x, t: x[:, :3], (4, 8), method=EulerMaruyama(2))
    with pytest.raises(ValueError, match="argument `shape`"):
        sample(jr.key(0), p, model, (8,))
