"""Sampling reflected diffusion: every iterate of every method stays in [0,1]^d; oracle tests
with closed-form data laws (uniform; a product of small mixtures); the reference's PC step."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.processes import ReflectedMixture
from sdekit.sampling import (
    DDIM,
    ODE,
    PC,
    SSCS,
    AdaptiveSDE,
    Ancestral,
    DPMSolverPP,
    EDMSampler,
    EulerMaruyama,
    ReflectedODE,
    ReflectedPC,
    mollifier,
)
from tests.conftest import load_reference

P = sk.ReflectedVE()
ATOMS = jnp.array([0.1, 0.5, 0.97])
WEIGHTS = jnp.array([0.2, 0.5, 0.3])
ORACLE = ReflectedMixture(P, ATOMS, WEIGHTS)

DOMAIN_METHODS = {
    "reflected_pc": ReflectedPC(num_steps=12),
    "reflected_pc_langevin": ReflectedPC(num_steps=6, corrector="langevin", snr=0.16),
    "reflected_pc_clip_grid": ReflectedPC(num_steps=12, projection="clip", dt="grid"),
    "reflected_ode_adaptive": ReflectedODE(rtol=1e-2, atol=1e-2),
    "reflected_ode_fixed_euler": ReflectedODE(num_steps=8, solver="euler", moll=None),
    "adaptive_sde": AdaptiveSDE(rtol=0.2, atol=0.2),
    "euler_maruyama": EulerMaruyama(num_steps=12),
    "ode_heun": ODE(num_steps=6),
    "pc_no_corrector": PC(num_steps=12, n_corrector=0),
}


def _push_out(x, t):
    """A (cheap) score repelling from the centre: the drift throws states across the walls."""
    return 4.0 * (x - 0.5) / P.sigma(t)[:, None] ** 2


_ADAPTIVE = ("adaptive_sde", "reflected_ode_adaptive")
_CASES = [pytest.param(n, 25_000, marks=pytest.mark.slow) if n in _ADAPTIVE else (n, 25_000)
          for n in sorted(DOMAIN_METHODS)] + [(n, 2_500) for n in _ADAPTIVE]


@pytest.mark.parametrize(("name", "batch"), _CASES)
def test_every_iterate_stays_in_the_unit_cube(name, batch):
    """10^5 float32 states (10^4 for the adaptive solvers outside `-m slow`) under a score that
    pushes every state hard into the walls."""
    r = sk.sample(jr.key(1), P, _push_out, (batch, 4), method=DOMAIN_METHODS[name],
                  prediction="score", save_trajectory=True)
    traj = np.asarray(r.trajectory)
    assert traj.dtype == np.float32
    rows = traj[np.isfinite(traj).reshape(traj.shape[0], -1).any(axis=1)]  # adaptive: inf padding
    assert rows.shape[0] >= 1 and np.all(np.isfinite(rows))
    assert rows.min() >= 0.0 and rows.max() <= 1.0, (rows.min(), rows.max())
    s = np.asarray(r.samples)
    assert s.min() >= 0.0 and s.max() <= 1.0


@pytest.mark.parametrize("method", [DDIM(), Ancestral(), EDMSampler(), DPMSolverPP(), SSCS()])
def test_gaussian_only_samplers_refuse_with_a_clear_error(method):
    with pytest.raises(TypeError, match="ReflectedVE"):
        sk.sample(jr.key(0), P, ORACLE, (4, 2), method=method, prediction="score")


def test_reflected_samplers_refuse_unbounded_processes():
    for m in (ReflectedPC(), ReflectedODE()):
        with pytest.raises(TypeError, match="bounded"):
            sk.sample(jr.key(0), sk.VE(), lambda x, t: -x, (4, 2), method=m, prediction="score")
    with pytest.raises(ValueError, match="projection"):
        ReflectedPC(projection="mirror")
    with pytest.raises(ValueError, match="dt"):
        ReflectedPC(dt="exact")
    with pytest.raises(ValueError, match="moll"):
        ReflectedODE(moll=-1.0)


def test_uniform_data_has_zero_score_and_stays_uniform():
    uni = ReflectedMixture.uniform(P)
    x = jr.uniform(jr.key(0), (8, 3))
    assert np.all(np.asarray(uni(x, jnp.full((8,), 0.3))) == 0.0)
    r = sk.sample(jr.key(2), P, uni, (20_000, 2), method=ReflectedPC(num_steps=20),
                  prediction="score")
    counts, _ = np.histogram(np.asarray(r.samples).ravel(), np.linspace(0, 1, 21))
    expected = r.samples.size / 20
    assert np.abs((counts - expected) / np.sqrt(expected)).max() < 4.5


def _weights_z(x):
    x = np.asarray(x)
    idx = np.argmin(np.abs(x[..., None] - np.asarray(ATOMS)), -1).ravel()
    freq = np.bincount(idx, minlength=3) / idx.size
    w = np.asarray(WEIGHTS)
    return np.abs(freq - w) / np.sqrt(w * (1 - w) / idx.size)


@pytest.mark.parametrize("method", [ReflectedPC(num_steps=200), ReflectedODE(rtol=1e-3, atol=1e-3)],
                         ids=["pc", "ode"])
def test_mixture_oracle_recovers_weights_within_4_standard_errors(method):
    r = sk.sample(jr.key(3), P, ORACLE, (3000, 2), method=method, prediction="score")
    z = _weights_z(r.samples)
    assert z.max() < 4.0, z
    # every coordinate ends within a few sigma_min of an atom
    d = np.min(np.abs(np.asarray(r.samples)[..., None] - np.asarray(ATOMS)), -1)
    assert np.quantile(d, 0.99) < 4 * P.sigma_min


def test_oracle_score_is_the_gradient_of_its_log_density():
    x = jr.uniform(jr.key(0), (5, 3))
    t = jnp.array([0.1, 0.3, 0.5, 0.7, 0.9])
    g, s = jax.jit(lambda u: (jax.grad(lambda v: jnp.sum(ORACLE.log_prob(v, t)))(u),
                              ORACLE(u, t)))(x)
    np.testing.assert_allclose(np.asarray(g), np.asarray(s), rtol=2e-4, atol=2e-3)


def test_reference_pc_grid_and_mollifier_values():
    ref = load_reference("reflected")
    g = ref["pc_time_grid"]
    pc = ReflectedPC()
    assert pc.num_steps == 999 and pc.nfe() == 999
    with jax.enable_x64(True):
        ts = np.asarray(pc.times(P, 1.0, 1e-5, jnp.float64)[:-1])  # the update times
    np.testing.assert_allclose(ts[:3], g["first"], rtol=1e-12)
    np.testing.assert_allclose(ts[-1], g["last_used"], rtol=1e-12)
    np.testing.assert_allclose(P.t1 / (pc.num_steps + 1), -g["dt_used"], rtol=1e-12)
    assert ReflectedPC(corrector="langevin", n_corrector=2).nfe() == 999 * 3
    m = ref["ode_mollifier"]
    xs = jnp.asarray([r["x"] for r in m["rows"]], jnp.float32)
    np.testing.assert_allclose(np.asarray(mollifier(xs, m["moll"])),
                               [r["bump"] for r in m["rows"]], rtol=2e-4, atol=1e-30)
    assert float(mollifier(jnp.float32(0.0), 200.0)) == 0.0
    assert float(mollifier(jnp.float32(1.3), 200.0)) == 0.0


def test_reflected_pc_step_is_the_reference_formula():
    """One update (the reference's N = 2: one step at t = 1 with dt = 1/2) against the formula
    ``x <- F(x + g^2 s h + g sqrt(h) z)`` in numpy, with the same noise."""
    x1 = jr.uniform(jr.key(5), (4, 3), minval=0.3, maxval=0.7)
    key = jr.key(6)
    fn = sk.sampling.PredictionFn(P, ORACLE, "score")
    out, stats = ReflectedPC(num_steps=1).solve(key, fn, x1, 1e-5)
    assert int(stats.nfe) == 1
    _, kp = jr.split(jr.split(key, 1)[0])
    z = np.asarray(jr.normal(kp, x1.shape))
    t, h = 1.0, 0.5
    g2 = float(P.g2(t))
    s = np.asarray(ORACLE(x1, jnp.full((4,), t)))
    expected = np.asarray(sk.processes.fold(np.asarray(x1) + g2 * s * h + np.sqrt(g2 * h) * z))
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-6)


def test_likelihood_with_the_exact_score_is_the_exact_log_density():
    """PF-ODE log-likelihood with the oracle score = exact log p at t0 (sigma_min = 0.05)."""
    p = sk.ReflectedVE(sigma_min=0.05, sigma_max=5.0)
    oracle = ReflectedMixture(p, ATOMS, WEIGHTS)
    x0 = oracle.sample_data(jr.key(0), (8, 2))
    x = p.sample_marginal(jr.key(1), x0, p.t0)
    exact = np.asarray(oracle.log_prob(x, p.t0))
    for divergence in ("exact", "hutchinson"):
        r = sk.log_likelihood(jr.key(2), p, oracle, x, prediction="score",
                              divergence=divergence, n_probes=1)
        assert np.all(np.asarray(r.prior_log_prob) == 0.0)
        lat = np.asarray(r.latent)
        assert lat.min() >= 0 and lat.max() <= 1
        if divergence == "exact":
            got = np.asarray(r.log_prob)
            np.testing.assert_allclose(got, exact, rtol=1e-3, atol=1e-3 * np.abs(exact).max())
        else:  # unbiased, noisy: the mean over the batch is close
            assert abs(float(np.mean(np.asarray(r.log_prob) - exact))) < 0.5


def test_uniform_data_costs_exactly_the_dequantisation_bits():
    u = jr.randint(jr.key(0), (4, 2, 2, 1), 0, 256)
    x = sk.sampling.dequantize(jr.key(1), u, interval=(0.0, 1.0))
    assert float(x.min()) >= 0 and float(x.max()) < 1
    r = sk.log_likelihood(jr.key(2), P, ReflectedMixture.uniform(P), x, prediction="score")
    np.testing.assert_allclose(np.asarray(r.log_prob), 0.0, atol=1e-6)
    bpd = sk.sampling.bits_per_dim(r.log_prob, 4, num_bits=8, interval=(0.0, 1.0))
    np.testing.assert_allclose(np.asarray(bpd), 8.0, atol=1e-6)
    # [-1, 1] keeps its 7-bit offset
    np.testing.assert_allclose(float(sk.sampling.bits_per_dim(0.0, 4, num_bits=8)), 7.0)


def _class_oracle():
    """Class-conditional closed-form model on [0,1]: class c has atom weights W[c]; the model
    takes one-hot labels and the zero vector (the reference's null condition) gives the
    unconditional law (class-averaged weights)."""
    from sdekit.processes import heat_kernel_log_density, heat_kernel_score

    W = jnp.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])

    def model(x, t, cond):
        w = jnp.asarray(cond, x.dtype) @ W  # (N, 3); zero vector -> zero weights
        null = jnp.sum(jnp.asarray(cond), axis=-1, keepdims=True) == 0
        w = jnp.where(null, jnp.mean(W, axis=0), w)
        sig = P.sigma(t)[:, None, None]
        logk = jnp.log(w)[:, None, :] + heat_kernel_log_density(x[..., None], ATOMS, sig)
        return jnp.sum(jax.nn.softmax(logk, -1) * heat_kernel_score(x[..., None], ATOMS, sig),
                       -1)

    return model, W


def test_classifier_free_guidance_with_the_zero_null_condition():
    model, W = _class_oracle()
    labels = jax.nn.one_hot(jnp.array([0, 1, 0, 1]), 2)
    x = jr.uniform(jr.key(0), (4, 3))
    t = jnp.full((4,), 0.3)
    cfg0 = sk.wrappers.ClassifierFreeGuidance(model, w=0.0, null_label=0)
    np.testing.assert_allclose(np.asarray(cfg0(x, t, labels)), np.asarray(model(x, t, labels)),
                               rtol=1e-6)
    cfg = sk.wrappers.ClassifierFreeGuidance(model, w=2.0, null_label=0)
    expect = 3.0 * model(x, t, labels) - 2.0 * model(x, t, jnp.zeros_like(labels))
    np.testing.assert_allclose(np.asarray(cfg(x, t, labels)), np.asarray(expect), rtol=1e-5)
    # the guided score keeps the Neumann condition: 0 at the walls
    walls = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert np.all(np.asarray(cfg(walls, t, labels)) == 0.0)
    # label dropout for training replaces the whole one-hot vector by zeros
    dropped = sk.objectives.drop_labels(jr.key(1), jnp.tile(labels, (50, 1)), 0.5, null_label=0)
    assert set(np.asarray(dropped.sum(-1)).tolist()) == {0.0, 1.0}
    # guided sampling stays in [0, 1] and sharpens the class: more mass on the class's atom
    n = 1000
    lab = jax.nn.one_hot(jnp.zeros((n,), int), 2)
    out = {}
    for w in (0.0, 3.0):
        g = sk.wrappers.ClassifierFreeGuidance(model, w=w, null_label=0)
        r = sk.sample(jr.key(3), P, g, (n, 1), method=ReflectedPC(num_steps=100),
                      prediction="score", cond=lab)
        s = np.asarray(r.samples)
        assert s.min() >= 0 and s.max() <= 1
        out[w] = np.mean(np.abs(s - 0.1) < 0.05)
    assert abs(out[0.0] - 0.8) < 4 * np.sqrt(0.16 / n)
    assert out[3.0] > out[0.0] + 0.05
