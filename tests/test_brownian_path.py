"""GridBrownianPath: Brownian law (moments against closed forms, also against diffrax's
VirtualBrownianTree below the resolution), additivity and determinism (what a rejected and retried
adaptive step needs), argument errors, and the sampler oracle with
``AdaptiveSDE(brownian="grid")``."""

import math

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.sampling import AdaptiveSDE, GridBrownianPath, sample
from sdekit.sampling._brownian import (
    DEFAULT_GRID_CELLS,
    _cumsum0,
    default_num_cells,
    grid_bytes,
)
from tests.helpers import cov_error, make_gaussian, oracle_eps

T1 = 2.0
CELLS = 8
TOL = T1 / 128  # 8 cells x 2^4 refinement levels: finest width T1 / 128, as the tree's level 7
KEYS = 20000
DIM = 4


def _values(make, ts):
    """W(t) for every t in ``ts``: shape (KEYS * DIM, len(ts)), one row per key and coordinate."""
    ts = jnp.asarray(ts, jnp.float32)

    def one(key):
        path = make(key)
        return jax.vmap(path.evaluate)(ts)  # (len(ts), DIM)

    w = jax.jit(jax.vmap(one))(jr.split(jr.key(0), KEYS))
    return np.asarray(w, np.float64).transpose(0, 2, 1).reshape(-1, len(ts))


def _grid(key):
    return GridBrownianPath(0.0, T1, (DIM,), key, num_cells=CELLS, tol=TOL)


def test_increments_mean_variance_and_independence():
    """Increments between times in different finest intervals (grid points, refined dyadic points,
    arbitrary times) are N(0, t - s), and non-overlapping ones are uncorrelated: checked within
    4.5 standard errors over 8 10^4 samples."""
    ts = [0.0, 0.25, 0.5, 0.5 + 3 * TOL, 0.7, 1.3, 1.75, T1]  # 0.25, 0.5, 1.75: stored grid points
    w = _values(_grid, ts)
    assert np.all(w[:, 0] == 0.0)
    m = w.shape[0]
    inc = np.diff(w, axis=1)
    dt = np.diff(ts)
    mean_z = inc.mean(0) / np.sqrt(dt / m)
    assert np.all(np.abs(mean_z) < 4.5), mean_z
    var_ratio = inc.var(0) / dt
    assert np.all(np.abs(var_ratio - 1) < 4.5 * math.sqrt(2 / m)), var_ratio
    corr = np.corrcoef(inc.T)[np.triu_indices(len(dt), 1)]
    assert np.all(np.abs(corr) < 4.5 / math.sqrt(m)), corr
    # the marginal W(t) ~ N(0, t) at every time, on the grid or not
    var_ratio = w[:, 1:].var(0) / np.asarray(ts[1:])
    assert np.all(np.abs(var_ratio - 1) < 4.5 * math.sqrt(2 / m)), var_ratio


def test_below_resolution_same_law_as_virtual_brownian_tree():
    """Inside one finest interval [a, a + d] both paths are the linear interpolation plus
    ``sqrt(r (d - r) / d) z`` with one z per interval, so Var(W(a + r2) - W(a + r1)) =
    (r2 - r1)^2 / d + (sqrt(r2 (d - r2) / d) - sqrt(r1 (d - r1) / d))^2 for both (not r2 - r1)."""
    d, a, r1, r2 = TOL, 0.5, 0.1 * TOL, 0.6 * TOL
    want = (r2 - r1) ** 2 / d + (math.sqrt(r2 * (d - r2) / d) - math.sqrt(r1 * (d - r1) / d)) ** 2
    assert abs(want / (r2 - r1) - 1) > 0.3  # the closed form is not Brownian's
    tree = lambda key: dfx.VirtualBrownianTree(0.0, T1, tol=TOL, shape=(DIM,), key=key)  # noqa: E731
    for make in (_grid, tree):
        w = _values(make, [a + r1, a + r2])
        ratio = np.diff(w, axis=1)[:, 0].var() / want
        assert abs(ratio - 1) < 4.5 * math.sqrt(2 / w.shape[0]), (make, ratio)


def test_space_time_levy_area():
    """With ``levy_area=SpaceTimeLevyArea``: over intervals between grid points, refined points
    and arbitrary times, W ~ N(0, t - s) and H ~ N(0, (t - s) / 12), H independent of W and
    of the other intervals (4.5 standard errors); Chen's relation
    (u - s) H_su = (m - s) H_sm + (u - m) H_mu + ((u - m) W_sm - (m - s) W_mu) / 2 holds."""
    ts = np.array([0.0, 0.25, 0.5, 0.5 + 3 * TOL, 0.7, 1.3, 1.75, T1])
    s_, m_, u_ = 0.2513, 0.7001, 1.3071

    def one(key):
        p = GridBrownianPath(0.0, T1, (DIM,), key, num_cells=CELLS, tol=TOL,
                             levy_area=dfx.SpaceTimeLevyArea)
        inc = jax.vmap(lambda a, b: p.evaluate(a, b, use_levy=True))(jnp.asarray(ts[:-1]),
                                                                     jnp.asarray(ts[1:]))
        w, a, b = (p.evaluate(x, y, use_levy=True) for x, y in ((s_, u_), (s_, m_), (m_, u_)))
        chen = ((m_ - s_) * a.H + (u_ - m_) * b.H
                + 0.5 * ((u_ - m_) * a.W - (m_ - s_) * b.W)) / (u_ - s_)
        return inc.W, inc.H, w.W - a.W - b.W, w.H - chen

    w, hh, dw, dh = jax.jit(jax.vmap(one))(jr.split(jr.key(1), KEYS))
    assert float(jnp.abs(dw).max()) < 2e-6 and float(jnp.abs(dh).max()) < 2e-6
    w, hh = (np.asarray(v, np.float64).transpose(0, 2, 1).reshape(-1, len(ts) - 1)
             for v in (w, hh))
    m, dt = w.shape[0], np.diff(ts)
    tol = 4.5 * math.sqrt(2 / m)
    assert np.all(np.abs(w.var(0) / dt - 1) < tol), w.var(0) / dt
    assert np.all(np.abs(hh.var(0) / (dt / 12) - 1) < tol), hh.var(0) / (dt / 12)
    assert np.all(np.abs(hh.mean(0)) < 4.5 * np.sqrt(dt / 12 / m))
    corr = np.corrcoef(np.concatenate([w, hh], axis=1).T)[np.triu_indices(2 * len(dt), 1)]
    assert np.all(np.abs(corr) < 4.5 / math.sqrt(m)), np.abs(corr).max()


def test_additive_and_deterministic():
    """W is a function of t: an increment equals the sum of the increments of any split of its
    interval (a rejected step retried on [s, u] then [u, t]), the same key gives the same path
    (built twice), another key another path."""
    key = jr.key(3)
    p, q = _grid(key), _grid(key)
    st = np.sort(np.asarray(jr.uniform(jr.key(4), (64, 3), minval=0.0, maxval=T1)), axis=1)
    s, u, t = (jnp.asarray(st[:, i]) for i in range(3))
    inc = jax.jit(jax.vmap(lambda path, a, b: path.evaluate(a, b), (None, 0, 0)))
    whole = inc(p, s, t)
    split = inc(p, s, u) + inc(p, u, t)
    np.testing.assert_allclose(np.asarray(split), np.asarray(whole), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(inc(q, s, t)), np.asarray(whole))
    np.testing.assert_array_equal(np.asarray(q.evaluate(s[0], t[0])), np.asarray(whole[0]))
    other = inc(_grid(jr.key(5)), s, t)
    assert not np.allclose(np.asarray(other), np.asarray(whole))
    inc = p.evaluate(0.3, 0.9, use_levy=True)
    assert isinstance(inc, dfx.BrownianIncrement)
    np.testing.assert_allclose(float(inc.dt), 0.6, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(inc.W), np.asarray(p.evaluate(0.3, 0.9)))


def test_refinement_levels_and_default_cells():
    assert _grid(jr.key(0)).refine_levels == 4
    assert GridBrownianPath(0.0, 1.0, (2,), jr.key(0), num_cells=256, tol=1 / 4096
                            ).refine_levels == 4
    assert GridBrownianPath(0.0, 1.0, (2,), jr.key(0), num_cells=4096, tol=1 / 4096
                            ).refine_levels == 0
    assert GridBrownianPath(0.0, 1.0, (2,), jr.key(0), num_cells=3).refine_levels == 0
    small = jax.ShapeDtypeStruct((64, 8), jnp.float32)
    assert default_num_cells(small) == DEFAULT_GRID_CELLS
    big = jax.ShapeDtypeStruct((2**24,), jnp.float32)  # 64 MiB a state: 64 cells do not fit
    cells = default_num_cells(big)
    assert cells == 8 and grid_bytes(cells, big) <= 2**30 < grid_bytes(2 * cells, big)


def test_half_precision_state():
    """A bfloat16 state: times and sums in float32 (a bfloat16 position in 64 cells would be off
    by a quarter cell), values returned in bfloat16 and equal to the float32 path's, rounded."""
    for dtype in (jnp.bfloat16, jnp.float16):
        p = GridBrownianPath(0.0, 1.0, jax.ShapeDtypeStruct((5,), dtype), jr.key(7), num_cells=64,
                             tol=1 / 4096)
        q = GridBrownianPath(0.0, 1.0, (5,), jr.key(7), num_cells=64, tol=1 / 4096)
        a, b = p.evaluate(0.3017, 0.9), q.evaluate(0.3017, 0.9)
        assert p.w.dtype == dtype and a.dtype == dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b), rtol=2e-2,
                                   atol=2e-2)


def test_cumulative_sum_both_backends_agree():
    """The grid's cumulative sum: the sequential scan (CPU) and ``jnp.cumsum`` (other devices)."""
    x = jr.normal(jr.key(6), (33, 3, 2))
    want = np.cumsum(np.asarray(x, np.float64), axis=0)
    for sequential in (True, False):
        np.testing.assert_allclose(np.asarray(_cumsum0(x, sequential)), want, rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_cells=0), "`num_cells`"),
    (dict(num_cells=2.5), "`num_cells`|parameter 'num_cells'"),
    (dict(t0=1.0, t1=1.0), "`t0` and `t1`"),
    (dict(t1=math.nan), "`t1`"),
    (dict(tol=-0.1), "`tol`"),
    (dict(shape=jax.ShapeDtypeStruct((3,), jnp.int32)), "`shape`"),
    (dict(levy_area=dfx.SpaceTimeTimeLevyArea), "`levy_area`"),
    (dict(max_bytes=0), "`max_bytes`"),
    (dict(shape=(1000,), num_cells=1000, max_bytes=10**6), r"`num_cells`: got 1000, expected at "
                                                           r"most 249"),
])
def test_invalid_arguments(kwargs, match):
    args = dict(t0=0.0, t1=1.0, shape=(3,), key=jr.key(0)) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        GridBrownianPath(**args)


def test_outside_the_interval_is_an_error():
    p = GridBrownianPath(0.0, 1.0, (3,), jr.key(0))
    with pytest.raises(Exception, match="outside its interval"):
        jax.block_until_ready(p.evaluate(0.5, 1.5))


def test_adaptive_sde_grid_errors():
    with pytest.raises(ValueError, match="`brownian`"):
        AdaptiveSDE(brownian="forest")
    with pytest.raises(ValueError, match="`brownian_cells`"):
        AdaptiveSDE(brownian_cells=64)  # a tree has no cells
    with pytest.raises((ValueError, TypeError), match="`brownian_cells`|'brownian_cells'"):
        AdaptiveSDE(brownian="grid", brownian_cells=0)
    with pytest.raises(ValueError, match="`solver`.*Lévy area"):
        AdaptiveSDE(brownian="grid", solver=dfx.ShOULD())  # needs space-time-time Lévy area
    with pytest.raises(ValueError, match="brownian_cells=4096.*`num_cells`"):
        sample(jr.key(0), sk.VP(), lambda x, t: x, (64, 1024),
               method=AdaptiveSDE(brownian="grid", brownian_cells=4096))


def test_oracle_adaptive_sde_grid():
    """The Gaussian oracle: with the exact score under VP, the adaptive SDE on the grid path
    recovers the data's mean (4.5 standard errors) and covariance (5 % Frobenius)."""
    mu, cov = make_gaussian(8)
    n = 4096
    p = sk.VP()
    r = sample(jr.key(4), p, oracle_eps(p, mu, cov), (n, 8),
               method=AdaptiveSDE(rtol=1e-2, atol=1e-2, brownian="grid"))
    x = np.asarray(r.samples)
    assert np.all(np.isfinite(x))
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mu) < 4.5 * se + 0.01), (x.mean(0) - mu) / se
    _, cerr = cov_error(x, mu, cov)
    assert cerr < 0.05, cerr
    assert int(r.num_steps) > 0 and int(r.nfe) == 2 * int(r.num_steps) + 1


@pytest.mark.slow
def test_oracle_adaptive_sde_grid_shark():
    """ShARK (needs space-time Lévy area) on the grid path: the same Gaussian oracle (slow:
    about 6-10 s of compilation on 2 cores)."""
    mu, cov = make_gaussian(8)
    n = 4096
    p = sk.VP()
    r = sample(jr.key(5), p, oracle_eps(p, mu, cov), (n, 8),
               method=AdaptiveSDE(rtol=1e-2, atol=1e-2, solver="shark", brownian="grid"))
    x = np.asarray(r.samples)
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mu) < 4.5 * se + 0.01), (x.mean(0) - mu) / se
    _, cerr = cov_error(x, mu, cov)
    assert cerr < 0.05, cerr
