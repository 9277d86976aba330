"""Exactly equivariant sampling (spec structure_preserving.md section 2, section 8 rule 3), the
eqv_reg objective, and the group-transformed data sets."""

import gzip
import struct

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import sdekit as sk
from sdekit.data import GroupAugment, load_rotated_mnist, transform_once
from sdekit.nets.equivariant import (
    GroupConv,
    equivariance_error,
    get_group,
    group_pool,
)
from sdekit.objectives import DSM, EqvReg, LogNormalTime, ema_target, raw_output
from sdekit.sampling import (
    DDIM,
    ODE,
    AdaptiveODE,
    DPMSolverPP,
    EDMSampler,
    PredictionFn,
    ancestral_step,
    ddim_step,
)
from sdekit.wrappers import Precond, symmetrise

GROUP = "D4"  # contains C4, C2, D2 and both flips
KEY = jr.key(0)


class _SmallEquivariant(eqx.Module):
    """lift -> SiLU -> group conv -> group pooling, modulated by the time: exactly D4-equivariant
    and cheap to compile (the full UNet is tested in test_equivariant.py)."""

    lift: GroupConv
    conv: GroupConv

    def __init__(self, key):
        k1, k2 = jr.split(key)
        self.lift = GroupConv(1, 3, group=GROUP, in_rep="trivial", out_rep="regular", key=k1)
        self.conv = GroupConv(3, 1, group=GROUP, key=k2)

    def __call__(self, x, t, cond=None, *, key=None):
        h = jax.nn.silu(self.lift(x)) * (1.0 + 0.1 * jnp.reshape(t, (-1, 1, 1, 1)))
        return group_pool(self.conv(h), GROUP)


def _tiny_equivariant(process):
    return Precond(_SmallEquivariant(KEY), process)


def _orbit(z):
    return jnp.concatenate(get_group(GROUP).orbit(z), axis=0)


def _traj_error(traj):
    """max over steps and g of |x_g - g x_e| / max |x| for a trajectory of orbit batches."""
    grp = get_group(GROUP)
    traj = np.asarray(traj)
    err = max(np.max(np.abs(traj[:, g:g + 1] - np.asarray(grp.act(g, traj[:, :1]))))
              for g in range(grp.order))
    return err / np.max(np.abs(traj))


@pytest.fixture(scope="module")
def edm_setup():
    process = sk.EDM()
    z = 80.0 * jr.normal(jr.key(1), (1, 8, 8, 1))
    return process, z


SAMPLERS = {
    "ode_euler": ODE(num_steps=6, solver="euler"),
    "adaptive_ode": AdaptiveODE(rtol=1e-3, atol=1e-3),
    "ddim": DDIM(num_steps=6, grid="karras"),
    "edm_heun": EDMSampler(num_steps=5),
    "dpm_solver++": DPMSolverPP(num_steps=6, grid="edm"),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_deterministic_samplers_are_equivariant_along_the_whole_trajectory(name, edm_setup):
    process, z = edm_setup
    fn = PredictionFn(process, _tiny_equivariant(process), "x0")
    sampler = SAMPLERS[name]
    run = eqx.filter_jit(lambda fn, z1: sampler.solve(KEY, fn, z1, float(process.t0),
                                                      save_trajectory=True))
    zend, stats = run(fn, _orbit(z))  # all eight transformed noises in one batch
    traj = np.concatenate([np.asarray(stats.trajectory), np.asarray(zend)[None]], axis=0)
    traj = traj[np.isfinite(traj).reshape(traj.shape[0], -1).all(axis=1)]  # adaptive: padded
    err = _traj_error(traj)
    assert traj.shape[0] >= 3
    assert err <= 1e-4, (name, err)


def test_symmetrised_plain_network_samples_equivariantly(edm_setup):
    process, z = edm_setup

    k1, k2 = jr.split(jr.key(3))
    w = jr.normal(k1, (3, 3, 1, 1)) * 0.5
    pos = 1.0 + 0.5 * jr.normal(k2, (1, 8, 8, 1))

    def plain(x, t, cond=None):  # not equivariant: a random kernel and position-dependent gain
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(y * pos) * (1 + 0.1 * jnp.reshape(t, (-1, 1, 1, 1)))

    sampler = EDMSampler(num_steps=5)
    errs = {}
    for label, net in (("plain", plain), ("symmetrised", symmetrise(plain, GROUP))):
        fn = PredictionFn(process, Precond(net, process), "x0")
        zend, stats = sampler.solve(KEY, fn, _orbit(z), float(process.t0), save_trajectory=True)
        errs[label] = _traj_error(jnp.concatenate([stats.trajectory, zend[None]], axis=0))
    assert errs["plain"] > 1e-2 and errs["symmetrised"] <= 1e-5, errs


def test_stochastic_steps_are_equivariant_when_the_noise_is_transformed_too():
    """The stochastic samplers draw their noise inside ``solve`` from a key, so the noise cannot
    be transformed from outside; the steps they are built from take the noise as an argument.
    Drive Euler-Maruyama (reverse SDE), ancestral and DDIM (eta = 1) steps over a whole
    trajectory with the noise of copy g equal to g applied to the noise of copy e."""
    process = sk.VP()
    fn = PredictionFn(process, _tiny_equivariant(process), "x0")
    ts = jnp.linspace(1.0, 1e-3, 4)
    z1 = _orbit(jr.normal(jr.key(2), (1, 8, 8, 1)))
    noises = [_orbit(jr.normal(k, (1, 8, 8, 1))) for k in jr.split(jr.key(4), len(ts) - 1)]

    @jax.jit
    def run(z1, noises):
        out = {}
        for kind in ("euler_maruyama", "ancestral", "ddim_eta1"):
            z, traj = z1, [z1]
            for i in range(len(ts) - 1):
                t, s, e = ts[i], ts[i + 1], noises[i]
                if kind == "euler_maruyama":
                    h = t - s
                    z = z + h * fn.reverse_drift(z, t) + process.diffusion(t, z) * jnp.sqrt(h) * e
                elif kind == "ancestral":
                    z = ancestral_step(process, z, fn.x0(z, t), t, s, e)
                else:
                    z = ddim_step(process, z, fn.x0(z, t), t, s, 1.0, e)
                traj.append(z)
            out[kind] = jnp.stack(traj)
        return out

    for kind, traj in run(z1, noises).items():
        assert _traj_error(traj) <= 1e-4, kind


# ---------------------------------------------------------------------------------------------
# eqv_reg


class _TinyCNN(eqx.Module):
    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d

    def __init__(self, key):
        k1, k2 = jr.split(key)
        self.c1 = eqx.nn.Conv2d(2, 8, 3, padding=1, key=k1)
        self.c2 = eqx.nn.Conv2d(8, 1, 3, padding=1, key=k2)

    def __call__(self, x, t, cond=None, *, key=None):
        def one(xi, ti):
            inp = jnp.concatenate([xi, jnp.broadcast_to(ti, xi.shape)], axis=-1)
            h = jax.nn.silu(self.c1(inp.transpose(2, 0, 1)))
            return self.c2(h).transpose(1, 2, 0)

        return jax.vmap(one)(x, jnp.broadcast_to(t, x.shape[:1]))


def _data(n=16, size=8):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):  # off-centre blobs: the data law is not invariant, the sample set is
        cy, cx = rng.uniform(1, size - 2, 2)
        out.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)[..., None])
    x = 2.0 * np.stack(out) - 1.0
    return jnp.asarray(transform_once(x.astype(np.float32), GROUP, seed=1)[0])


def test_eqv_reg_is_the_papers_term_and_vanishes_for_equivariant_nets():
    process = sk.EDM()
    base = DSM(process, prediction="x0", target="x0", weighting="karras",
               time_sampler=LogNormalTime())
    reg = EqvReg(base, "C4")
    x0 = _data(4)
    plain = Precond(_TinyCNN(KEY), process)
    key = jr.key(5)
    # closed form with the same draws: mean |F(x_t) - g^{-1} F(g x_t)|^2, F the raw output
    k_t, k_x, k_g = jr.split(key, 3)
    t = LogNormalTime()(k_t, x0.shape)
    x_t = process.sample_marginal(k_x, x0, t)
    g = int(jr.randint(k_g, (), 1, 4))
    grp = get_group("C4")
    f = raw_output(plain, x_t, t)
    back = grp.act(grp.inv(g), raw_output(plain, grp.act(g, x_t), t))
    want = float(jnp.mean((f - back) ** 2))
    assert want > 1e-4
    np.testing.assert_allclose(float(reg.regulariser(plain, key, x0)), want, rtol=1e-5)
    # raw output = the network inside the EDM preconditioning
    c_skip, c_out, c_in, c_noise = plain.coefficients(t)
    np.testing.assert_allclose(
        raw_output(plain, x_t, t), plain.net(c_in[:, None, None, None] * x_t, c_noise),
        rtol=1e-6)
    # the full loss is DSM + weight * regulariser
    k_base, k_reg = jr.split(key)
    np.testing.assert_allclose(
        float(reg(plain, key, x0)),
        float(base(plain, k_base, x0)) + float(reg.regulariser(plain, k_reg, x0)), rtol=1e-6)
    # an exactly equivariant network has a (round-off) zero regulariser
    equi = _tiny_equivariant(process)
    assert float(EqvReg(base, "D4").regulariser(equi, key, x0)) < 1e-9
    # EMA target update
    tgt = ema_target(plain, Precond(_TinyCNN(jr.key(9)), process), rate=0.95)
    np.testing.assert_allclose(
        tgt.net.c1.weight, 0.95 * plain.net.c1.weight + 0.05 * _TinyCNN(jr.key(9)).c1.weight,
        rtol=1e-6)
    with pytest.raises(ValueError, match="group"):
        EqvReg(base, "C5")


def test_eqv_reg_reduces_the_equivariance_error_of_a_plain_network():
    """Same init, data and steps: DSM alone vs DSM + eqv_reg (weight 1, EMA target 0.95).
    Measured: the regulariser's mean squared error of the raw network at fixed draws, and
    max_g |D(g x_t) - g D(x_t)| / max |D| of the preconditioned denoiser on noisy data."""
    process = sk.EDM()
    base = DSM(process, prediction="x0", target="x0", weighting="karras",
               time_sampler=LogNormalTime())
    x0 = _data(16)
    sig = jnp.array([0.2, 0.5, 1.0, 2.0])
    x_t = x0[:4] + sig[:, None, None, None] * jr.normal(jr.key(12), (4, 8, 8, 1))
    measured = {}
    for weight in (0.0, 1.0):
        loss_fn = EqvReg(base, "C4", weight=weight)
        model = Precond(_TinyCNN(KEY), process)
        target = model
        opt = optax.adam(3e-3)
        state = opt.init(eqx.filter(model, eqx.is_array))

        @eqx.filter_jit
        def step(model, target, state, key, loss_fn=loss_fn, opt=opt):
            loss, grads = eqx.filter_value_and_grad(
                lambda m: loss_fn(m, key, x0, aux=target))(model)
            updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_array))
            model = eqx.apply_updates(model, updates)
            return model, ema_target(target, model, 0.95), state, loss

        for i in range(150):
            model, target, state, _ = step(model, target, state, jr.fold_in(KEY, i))
        measured[weight] = (
            float(EqvReg(base, "C4").regulariser(model, jr.key(13), x0)),
            float(equivariance_error(model, x_t, "C4", t=sig)),
        )
    # measured on 2026-12-01: regulariser 0.056 -> 0.020, denoiser error 0.31 -> 0.21
    assert measured[1.0][0] < 0.6 * measured[0.0][0], measured
    assert measured[1.0][1] < measured[0.0][1], measured


# ---------------------------------------------------------------------------------------------
# data


def test_transform_once_and_group_augment():
    x = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
    a, ga = transform_once(np.repeat(x, 50, axis=0), "C4", seed=0)
    b, _ = transform_once(np.repeat(x, 50, axis=0), "C4", seed=0)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(ga)) == {0, 1, 2, 3}
    grp = get_group("C4")
    for i in range(6):
        np.testing.assert_array_equal(a[i], grp.act(int(ga[i]), np.repeat(x, 50, axis=0)[i],
                                                     axes=(0, 1)))
    aug = GroupAugment("D4")
    rng = np.random.default_rng(0)
    outs = {aug(x[0], rng).tobytes() for _ in range(200)}
    orbit = {get_group("D4").act(g, x[0], axes=(0, 1)).tobytes() for g in range(8)}
    assert outs == orbit
    with pytest.raises(ValueError, match="images"):
        transform_once(np.zeros((2, 4, 5, 1)), "C4")


def _write_idx(path, arr):
    arr = np.asarray(arr)
    codes = {np.dtype(np.uint8): 0x08}
    head = struct.pack(">HBB", 0, codes[arr.dtype], arr.ndim) + struct.pack(
        f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def test_rotated_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 10).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    md5s = {"train-images-idx3-ubyte.gz": None, "train-labels-idx1-ubyte.gz": None}
    x, y = load_rotated_mnist("train", group="C4", num=6, seed=3, root=tmp_path,
                              download=False, md5s=md5s)
    assert x.shape == (6, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, labels[:6])
    want, _ = transform_once(imgs[:6, :, :, None], "C4", seed=3)
    np.testing.assert_array_equal(x, want)
    with pytest.raises(ValueError, match="num"):
        load_rotated_mnist("train", num=11, root=tmp_path, download=False, md5s=md5s)
