"""The sampler architecture: one stepping loop, reflection on every path, sampler controls
(explicit grids, sigma ranges, x_start / t_start, x64 grids, DDIM without noise, x0 clipping),
clear errors for bad settings, classifier-free guidance with an sdekit network."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
import sdekit.sampling as sks
from sdekit.objectives import drop_labels
from sdekit.sampling import (
    DDIM,
    ODE,
    PC,
    SSCS,
    AbstractSampler,
    AdaptiveODE,
    AdaptiveSDE,
    Ancestral,
    DPMSolverPP,
    DynamicThreshold,
    EDMSampler,
    EulerMaruyama,
    PredictionFn,
    affine_grid,
    sample,
    time_grid,
)
from sdekit.sampling._affine import scaled_sigma
from sdekit.wrappers import ClassifierFreeGuidance
from tests.helpers import cov_error, make_gaussian
from tests.test_samplers import fast_eps

MU, COV = make_gaussian(8)


def _fold(x, lo, hi):
    """The fold map of the real line onto [lo, hi] (reflection at both ends, period 2 (hi - lo))."""
    u = jnp.mod((x - lo) / (hi - lo), 2.0)
    return lo + (hi - lo) * jnp.where(u > 1.0, 2.0 - u, u)


class _ReflectedBM(sk.AbstractProcess):
    """Brownian motion reflected in [0, 1]^d: its stationary law is uniform, and the folded free
    Brownian motion has exactly its law."""

    t0: float = 0.0
    t1: float = 1.0
    bounded: ClassVar[bool] = True

    def drift(self, t, x):
        return jnp.zeros_like(x)

    def diffusion(self, t, x):
        return jnp.ones((), x.dtype)

    def reflect(self, x):
        return _fold(x, 0.0, 1.0)

    def prior_sample(self, key, shape):
        return jr.uniform(key, shape)

    def prior_log_prob(self, z):
        return jnp.zeros(z.shape[:1])

    def sample_marginal(self, key, x0, t):
        return self.reflect(x0 + jnp.sqrt(t) * jr.normal(key, x0.shape, x0.dtype))


class _FoldedVP(sk.VP):
    """VP whose states are folded into [-1, 1]^d: a bounded affine process for the affine
    samplers."""

    bounded: ClassVar[bool] = True

    def reflect(self, x):
        return _fold(x, -1.0, 1.0)


class _FoldedPSLD(sk.PSLD):
    bounded: ClassVar[bool] = True

    def reflect(self, x):
        return _fold(x, -0.5, 0.5)


def _outward_score(x, t):
    """A score that pushes every state out of [0, 1]: only the reflection keeps it inside."""
    return 8.0 * (x - 0.5)


def _check_in(r, lo, hi):
    traj = np.asarray(r.trajectory)
    rows = np.all(np.isfinite(traj.reshape(traj.shape[0], -1)), axis=1)  # adaptive: inf padding
    assert rows.sum() >= 2
    traj = traj[rows]
    assert traj.min() >= lo and traj.max() <= hi, (traj.min(), traj.max())
    x = np.asarray(r.samples)
    assert x.min() >= lo and x.max() <= hi


N_BOUNDED = 10000

TOY_METHODS = [
    EulerMaruyama(12), EulerMaruyama(12, backend="diffrax"), ODE(8, solver="euler"),
    ODE(6, solver="heun", backend="diffrax"), PC(6, n_corrector=1),
    AdaptiveODE(rtol=1e-3, atol=1e-3, max_steps=128),
    AdaptiveSDE(rtol=5e-2, atol=5e-2, max_steps=128),
    AdaptiveSDE(rtol=5e-2, atol=5e-2, max_steps=128, brownian="grid"),
]


@pytest.mark.parametrize("method", TOY_METHODS, ids=lambda m: type(m).__name__ + (
    "_" + m.backend if hasattr(m, "backend") else "") + (
    "_" + m.brownian if hasattr(m, "brownian") else ""))
def test_reflection_after_every_step_toy(method):
    """Every method keeps a bounded process in [0, 1]^2 at every saved step, 10^4 states, with a
    score that pushes outward (so an unreflected step would leave the domain)."""
    p = _ReflectedBM()
    r = sample(jr.key(0), p, _outward_score, (N_BOUNDED, 2), method=method, prediction="score",
               save_trajectory=True)
    _check_in(r, 0.0, 1.0)


def test_reflected_bm_keeps_uniform_law():
    """With the exact score (0: uniform data) the reflected reverse SDE keeps the uniform law."""
    p = _ReflectedBM()
    r = sample(jr.key(1), p, lambda x, t: jnp.zeros_like(x), (N_BOUNDED, 2),
               method=EulerMaruyama(20), prediction="score", save_trajectory=True)
    _check_in(r, 0.0, 1.0)
    x = np.asarray(r.samples, np.float64)
    se = math.sqrt(1 / 12 / N_BOUNDED)
    assert np.all(np.abs(x.mean(0) - 0.5) < 4 * se)
    assert np.all(np.abs(x.var(0) - 1 / 12) < 0.005)


@pytest.mark.parametrize("method", [
    DDIM(8), DDIM(8, eta=1.0, final_x0=False), Ancestral(8), EDMSampler(5), DPMSolverPP(8),
], ids=["ddim", "ddim_eta1", "ancestral", "edm", "dpmpp"])
def test_reflection_after_every_step_affine(method):
    """The affine samplers on a VP folded into [-1, 1]: data far outside, 10^4 states."""
    p = _FoldedVP()
    mu, cov = np.array([2.5, -2.5], np.float32), np.eye(2, dtype=np.float32)
    r = sample(jr.key(2), p, fast_eps(p, mu, cov), (N_BOUNDED, 2), method=method,
               save_trajectory=True)
    _check_in(r, -1.0, 1.0)


def test_reflection_sscs():
    p = _FoldedPSLD()
    model = lambda z, t: jnp.zeros(p.prediction_shape(z.shape), z.dtype)  # noqa: E731
    r = sample(jr.key(3), p, model, (N_BOUNDED, 1), method=SSCS(6), t_end=1e-3,
               denoise="euler", save_trajectory=True)
    _check_in(r, -0.5, 0.5)
    assert float(jnp.max(jnp.abs(r.state))) <= 0.5


class _NoReflection(AbstractSampler):
    """A hand-written sampler that does not promise to stay in the domain."""

    def solve(self, key, fn, z1, t_end, *, save_trajectory=False, t_start=None):
        return z1, sks.SolveStats(jnp.asarray(0), jnp.asarray(0), jnp.asarray(0))


def test_methods_that_cannot_reflect_refuse_bounded_processes():
    with pytest.raises(ValueError, match="_NoReflection does not keep a bounded process"):
        sample(jr.key(0), _ReflectedBM(), _outward_score, (4, 2), method=_NoReflection(),
               prediction="score")
    # log_likelihood supports bounded processes (the exact flow is tangent to the walls):
    # tests/test_reflected_sampling.py checks it against the exact log-density.
    # the unbounded default still works
    r = sample(jr.key(0), sk.VP(), fast_eps(sk.VP()), (4, 8), method=_NoReflection())
    assert r.samples.shape == (4, 8)


# --- the loop ------------------------------------------------------------------------------------

def test_capabilities_and_stats_are_typed():
    for m, ode, x0, order in [(EulerMaruyama(3), False, False, 1), (ODE(3), True, False, 2),
                              (DDIM(3), True, True, 1), (EDMSampler(3), True, True, 2),
                              (DPMSolverPP(3), True, False, 2), (Ancestral(3), False, True, 1)]:
        assert (m.ode, m.returns_x0, m.order, m.keeps_in_domain) == (ode, x0, order, True)
    assert DDIM.requires is sk.AbstractAffineGaussianProcess
    p = sk.VP()
    fn = PredictionFn(p, fast_eps(p))
    z, stats = PC(4, n_corrector=2).solve(jr.key(0), fn, jnp.zeros((3, 8)), p.t0,
                                          save_trajectory=True)
    assert isinstance(stats, sks.SolveStats)
    assert int(stats.nfe) == 12 and stats.trajectory.shape == (4, 3, 8)


def test_explicit_grid_equals_the_named_grid():
    """A sampler given the array of its named grid draws exactly the same samples."""
    p = sk.VP()
    model = fast_eps(p)
    for m in [EulerMaruyama(6, grid="quadratic"), ODE(5), PC(4), DDIM(5, grid="logsnr"),
              Ancestral(5), EDMSampler(5), DPMSolverPP(5)]:
        g = np.asarray(m.times(p, p.t1, p.t0, jnp.float32))
        assert g.shape == (m.num_steps + 1,)
        m2 = dataclasses.replace(m, grid=g, num_steps=None)
        assert m2.num_steps == m.num_steps
        a = sample(jr.key(4), p, model, (16, 8), method=m, save_trajectory=True)
        b = sample(jr.key(4), p, model, (16, 8), method=m2, save_trajectory=True)
        # the same up to float32 rounding: the named grid is computed inside jit, the array
        # eagerly (one ulp apart), which EDM's 1/sigma amplifies to ~1e-5
        np.testing.assert_allclose(b.samples, a.samples, rtol=1e-4, atol=2e-5,
                                   err_msg=type(m).__name__)
        np.testing.assert_allclose(b.ts, a.ts, rtol=1e-5)  # eager vs jit: an ulp or two
        assert int(a.nfe) == int(b.nfe)


def test_explicit_grid_errors():
    with pytest.raises(ValueError, match="argument `grid`"):
        EulerMaruyama(grid=np.array([0.5, 0.7, 0.1]))
    with pytest.raises(ValueError, match="`num_steps` and `grid`"):
        EulerMaruyama(3, grid=np.array([1.0, 0.5, 0.1]))
    with pytest.raises(ValueError, match="argument `grid`"):
        sample(jr.key(0), sk.VP(), fast_eps(sk.VP()), (4, 8),
               method=ODE(grid=np.array([2.0, 0.5, 0.1])))
    with pytest.raises(ValueError, match="`t_end` and `method`"):
        sample(jr.key(0), sk.VP(), fast_eps(sk.VP()), (4, 8), t_end=0.2,
               method=ODE(grid=np.array([1.0, 0.5, 0.1])))


# --- controls ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", [EDMSampler(40), DPMSolverPP(40)], ids=["edm", "dpmpp"])
def test_default_sigma_range_on_logsnr_cosine(method):
    """EDM's 0.002..80 clipped to the process's range is the default: on LogSNR("cosine") (range
    4.5e-5..2.2e4) the Gaussian-oracle covariance error is under 5 % (measured: EDM Heun 40
    steps 3.2-4.2 % clipped vs 11-13 % on the whole range; DPM-Solver++ 3.5-5 % vs 7-9 % at 20
    steps, 4096 samples, whose own noise is ~3.5 %), and smaller than on the whole range."""
    p = sk.LogSNR("cosine")
    ts = method.times(p, p.t1, p.t0, jnp.float32)
    first = ts[0]
    last = ts[-2] if method.returns_x0 else ts[-1]
    np.testing.assert_allclose(scaled_sigma(p, jnp.stack([first, last])), [80.0, 0.002],
                               rtol=2e-3)
    n = 16384
    r = sample(jr.key(5), p, fast_eps(p), (n, 8), method=method)
    x = np.asarray(r.samples, np.float64)
    _, cerr = cov_error(x, MU, COV)
    assert cerr < 0.05, cerr
    assert np.max(np.abs((x.mean(0) - MU) / np.sqrt(np.diag(COV) / n))) < 4.5
    full = dataclasses.replace(method, sigma_min=0.0, sigma_max=math.inf)
    r = sample(jr.key(5), p, fast_eps(p), (n, 8), method=full)
    _, cerr_full = cov_error(np.asarray(r.samples, np.float64), MU, COV)
    assert cerr_full > cerr, (cerr_full, cerr)
    ts = full.times(p, p.t1, p.t0, jnp.float32)
    assert float(ts[0]) == pytest.approx(p.t1) and float(ts[-2 if full.returns_x0 else -1]) \
        == pytest.approx(p.t0)


def test_x_start_t_start_sdedit():
    """Start from the exact marginal at t_start = 0.5: the reverse SDE from there recovers the
    data law, and the trajectory starts below t_start."""
    p = sk.VP()
    n = 4096
    x0 = MU + jr.normal(jr.key(6), (n, 8)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
    xs = p.sample_marginal(jr.key(7), x0, 0.5)
    r = sample(jr.key(8), p, fast_eps(p), (n, 8), method=EulerMaruyama(100), x_start=xs,
               t_start=0.5, save_trajectory=True)
    _, cerr = cov_error(np.asarray(r.samples, np.float64), MU, COV)
    assert cerr < 0.05
    assert float(r.ts[0]) < 0.5 and float(r.ts[0]) > 0.49
    a = sample(jr.key(9), p, fast_eps(p), (8, 8), method=DDIM(10), x_start=xs[:8], t_start=0.3)
    b = sample(jr.key(10), p, fast_eps(p), (8, 8), method=DDIM(10), x_start=xs[:8], t_start=0.3)
    np.testing.assert_allclose(a.samples, b.samples)  # deterministic from a given state
    for bad, match in [(dict(x_start=xs[:4, :3], t_start=0.5), "`x_start`"),
                       (dict(t_start=1.5), "`t_start`"), (dict(t_start=0.2, t_end=0.4), "t_end")]:
        with pytest.raises(ValueError, match=match):
            sample(jr.key(0), p, fast_eps(p), (4, 8), **bad)


def test_x64_grids_match_float64_references():
    with jax.enable_x64(True):
        n, t1, te = 7, 1.0, 1e-3
        i = np.arange(n + 1, dtype=np.float64)
        refs = {"uniform": t1 - (t1 - te) * i / n,
                "quadratic": t1 - (t1 - te) * (1 - ((n - i) / n) ** 2),
                "karras": (t1 ** (1 / 7) + i / n * (te ** (1 / 7) - t1 ** (1 / 7))) ** 7}
        for kind, ref in refs.items():
            g = time_grid(kind, n, t1, te)
            assert g.dtype == jnp.float64
            np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-12, atol=1e-12)
        p = sk.VP()
        r = sample(jr.key(0), p, fast_eps(p, dtype=np.float64), (4, 8),
                   method=EulerMaruyama(n, grid="quadratic"), save_trajectory=True, t_end=te)
        assert r.ts.dtype == jnp.float64 and r.samples.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(r.ts), refs["quadratic"][1:], rtol=1e-12,
                                   atol=1e-12)
        lam = 0.5 * np.asarray(p.logsnr(affine_grid(p, "logsnr", n, t1, te)))
        np.testing.assert_allclose(np.diff(lam), np.full(n, (lam[-1] - lam[0]) / n), rtol=1e-10)


def test_ddim_eta0_draws_no_noise():
    p = sk.VP()
    fn = PredictionFn(p, fast_eps(p))
    z1 = jnp.zeros((2, 8))

    def jaxpr(m):
        return str(jax.make_jaxpr(lambda k: m.solve(k, fn, z1, p.t0)[0])(jr.key(0)))

    assert "random_bits" not in jaxpr(DDIM(4))
    assert "random_bits" in jaxpr(DDIM(4, eta=0.5))


def test_dynamic_threshold_closed_form():
    x0 = jnp.array([[0.5, -3.0, 2.0, 0.1], [0.2, -0.4, 0.9, 0.3]])
    out = DynamicThreshold(percentile=1.0)(x0)
    np.testing.assert_allclose(out[0], [0.5 / 3, -1.0, 2.0 / 3, 0.1 / 3], rtol=1e-6)
    np.testing.assert_allclose(out[1], x0[1])  # inside [-1, 1]: unchanged


@pytest.mark.parametrize("method", [
    EDMSampler(6, clip_x0=1.0), DPMSolverPP(6, clip_x0=1.0),
    DPMSolverPP(6, clip_x0=DynamicThreshold(0.9)), DDIM(6, clip_x0=DynamicThreshold()),
], ids=["edm_clip", "dpmpp_clip", "dpmpp_dynamic", "ddim_dynamic"])
def test_x0_clipping_for_every_x0_sampler(method):
    p = sk.VP()
    mu = MU * 6
    r = sample(jr.key(11), p, fast_eps(p, mu), (64, 8), method=method)
    assert float(jnp.max(jnp.abs(r.samples))) <= 1.0 + 1e-6
    free = sample(jr.key(11), p, fast_eps(p, mu), (64, 8),
                  method=dataclasses.replace(method, clip_x0=None))
    assert float(jnp.max(jnp.abs(free.samples))) > 1.5


# --- bad inputs (issue 15) ---------------------------------------------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda: EulerMaruyama(True), "`num_steps`"), (lambda: ODE(num_steps=2.5), "`num_steps`"),
    (lambda: EulerMaruyama(1.5), "`num_steps`"), (lambda: EulerMaruyama("5"), "`num_steps`"),
    (lambda: DDIM(num_steps=3.0), "`num_steps`"), (lambda: SSCS(0), "`num_steps`"),
    (lambda: PC(snr=math.inf), "`snr`"), (lambda: PC(n_corrector=1.5), "`n_corrector`"),
    (lambda: AdaptiveSDE(brownian_tol=-0.1), "`brownian_tol`"),
    (lambda: AdaptiveSDE(brownian_tol=0.0), "`brownian_tol`"),
    (lambda: AdaptiveSDE(brownian="grid", brownian_cells=0), "`brownian_cells`"),
    (lambda: AdaptiveODE(rtol=math.nan), "`rtol`"), (lambda: AdaptiveODE(max_steps=10.5),
                                                     "`max_steps`"),
    (lambda: EDMSampler(rho=math.inf), "`rho`"), (lambda: EDMSampler(sigma_min=-1.0),
                                                  "`sigma_min`"),
    (lambda: DPMSolverPP(sigma_min=1.0, sigma_max=0.5), "`sigma_min` and `sigma_max`"),
    (lambda: DDIM(clip_x0=math.inf), "`clip_x0`"), (lambda: DDIM(eta=True), "`eta`"),
    (lambda: DynamicThreshold(percentile=0.0), "`percentile`"),
])
def test_bad_sampler_settings(make, match):
    """A clear error naming the argument: ValueError from the checks, or (for a value of the
    wrong type, with the test suite's jaxtyping/beartype hook) a TypeError naming it."""
    name = match.strip("`").split("`")[0]
    with pytest.raises((ValueError, TypeError), match=f"{match}|parameter '{name}'"):
        make()


@pytest.mark.parametrize("make,match", [
    (lambda s: EulerMaruyama(s), "`num_steps`"), (lambda s: DDIM(4, eta=s / 10), "`eta`"),
    (lambda s: PC(4, snr=s * 1.0), "`snr`"), (lambda s: AdaptiveODE(rtol=s * 1e-3), "`rtol`"),
    (lambda s: EDMSampler(4, s_churn=s * 1.0), "`s_churn`"),
])
def test_traced_settings_name_the_argument(make, match):
    name = match.strip("`")
    with pytest.raises((ValueError, TypeError), match=f"{match}.*traced|parameter '{name}'"):
        jax.jit(lambda s: make(s).num_steps)(5)


def test_bad_sample_arguments():
    p = sk.VP()
    model = fast_eps(p)
    for kw, match in [(dict(t_end=-0.5), "`t_end`"), (dict(t_end=1.5), "`t_end`"),
                      (dict(t_end=math.nan), "`t_end`"), (dict(t_start=-1.0), "`t_start`")]:
        with pytest.raises(ValueError, match=match):
            sample(jr.key(0), p, model, (4, 8), **kw)
    for shape in [(4, 2.7), (4, True), (0, 8), ("4", 8)]:
        with pytest.raises((ValueError, TypeError), match="shape"):
            sample(jr.key(0), p, model, shape)


# --- guidance with an sdekit network ----------------------------------------------------

def _tiny_dit(num_classes):
    net = sk.nets.DiT(in_channels=1, key=jr.key(0), patch_size=2, width=16, depth=1,
                      num_heads=2, num_classes=num_classes, freq_dim=8)
    # adaLN-zero starts at a constant output: perturb every weight so the labels matter
    leaves, tree = jax.tree.flatten(net)
    keys = jr.split(jr.key(1), len(leaves))
    leaves = [x + 0.3 * jr.normal(k, x.shape, x.dtype) if eqx.is_inexact_array(x) else x
              for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, leaves)


def explicit_at(net, x, t, labels):
    return ClassifierFreeGuidance(net, w=2.0, null_label=3)(x, t, labels)


def test_guidance_default_null_is_the_network_null_class():
    net = _tiny_dit(3)
    guided = ClassifierFreeGuidance(net, w=2.0)
    assert guided.null_label == 3
    x = jr.normal(jr.key(2), (4, 8, 8, 1))
    t = jnp.full((4,), 0.5)
    labels = jnp.array([0, 1, 2, 0])

    @eqx.filter_jit
    def outputs(net, x, t, labels):  # one compilation for all the calls
        return (ClassifierFreeGuidance(net, w=2.0)(x, t, labels), explicit_at(net, x, t, labels),
                ClassifierFreeGuidance(net, w=2.0, null_label=0)(x, t, labels),
                net(x, t, labels), net(x, t, jnp.full((4,), 3)))

    out, explicit, wrong, c, u = outputs(net, x, t, labels)
    np.testing.assert_allclose(out, explicit, rtol=1e-6)
    # the unconditional branch is the network's null class: (1 + w) c - w u by hand
    np.testing.assert_allclose(out, 3.0 * c - 2.0 * u, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(out - wrong))) > 1e-3
    # end to end through the sampler (one step: the last DDIM step is the guided x0 itself)
    p = sk.VP()
    z = p.prior_sample(jr.key(3), (4, 8, 8, 1))
    r = sample(jr.key(4), p, guided, (4, 8, 8, 1), method=DDIM(1), cond=labels, x_start=z)
    t1 = jnp.full((4,), p.t1)
    eps = outputs(net, z, t1, labels)[1]
    np.testing.assert_allclose(r.samples, p.eps_to_x0(eps, z, t1), rtol=1e-4, atol=1e-4)


def test_integer_labels_need_a_null_label():
    with pytest.raises(ValueError, match="argument `null_label`"):
        drop_labels(jr.key(0), jnp.arange(8), 0.5)
    with pytest.raises(ValueError, match="argument `null_label`"):
        ClassifierFreeGuidance(lambda x, t, cond: x, 1.0)(jnp.ones((2, 2)), jnp.ones(2),
                                                          jnp.array([0, 1]))
    out = drop_labels(jr.key(0), jnp.arange(1000) % 3, 0.5, null_label=3)
    assert set(np.unique(np.asarray(out))) == {0, 1, 2, 3}


# --- public classes and types ------------------------------------------------------------------

def test_public_classes_are_abstract_or_final():
    """The equinox pattern: a public eqx.Module is named Abstract* and abstract, or concrete and
    not subclassed by another public class."""
    classes = {n: c for n, c in vars(sks).items()
               if inspect.isclass(c) and issubclass(c, eqx.Module) and not n.startswith("_")}
    assert {"AbstractSampler", "AbstractFixedStepSampler", "EulerMaruyama"} <= set(classes)
    for name, cls in classes.items():
        subs = [n for n, c in classes.items() if c is not cls and issubclass(c, cls)]
        if name.startswith("Abstract"):
            assert inspect.isabstract(cls) or cls.__abstractvars__, name
        else:
            assert not inspect.isabstract(cls), name
            assert not subs, (name, subs)


def test_named_dimensions_are_checked():
    """Public signatures name their dimensions; jaxtyping + beartype (the test suite's import
    hook) reject mismatched shapes."""
    p = sk.VP()
    hint = inspect.signature(sks.ddim_step).parameters["x_t"].annotation
    assert "batch" in str(hint)
    with pytest.raises(Exception, match="x0_hat|dims|shape"):
        sks.ddim_step(p, jnp.ones((4, 3)), jnp.ones((5, 3)), 0.7, 0.5)
    z = jnp.zeros(())
    with pytest.raises(Exception, match="state|batch|shape"):  # samples and state: same batch
        sks.SampleResult(samples=jnp.ones((4, 3)), nfe=z.astype(int), num_steps=z.astype(int),
                         num_rejected=z.astype(int), state=jnp.ones((5, 3)))
