"""Structure-preserving diffusion: group actions, equivariant layers and UNet, symmetrise,
steerable bases, eqv_reg (spec structure_preserving.md, equivariant_layers.md)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdekit.nets import named_net
from sdekit.nets.equivariant import (
    GROUPS,
    EquivariantUNet,
    FieldNorm,
    GroupAttention,
    GroupConv,
    SteerableConv,
    act_filter,
    avg_pool2,
    equivariance_error,
    get_group,
    group_pool,
    load_bases,
    nearest_up2,
    reynolds_basis,
)
from sdekit.wrappers import SelfConditioning, symmetrise

KEY = jax.random.key(0)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ---------------------------------------------------------------------------------------------
# group actions


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_group_table_is_a_group_and_actions_are_representations(name):
    grp = get_group(name)
    n = grp.order
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 6, 3))
    f = rng.normal(size=(2, 6, 6, 3 * n))
    assert grp.elements[0] == (0, 0) and (grp.table[0] == np.arange(n)).all()
    for a in range(n):
        assert sorted(grp.table[a]) == list(range(n))  # Latin square
        assert grp.table[a, grp.inverse[a]] == 0
        for b in range(n):
            ab = grp.compose(a, b)
            # the table matches the action on random arrays, for images and regular fields
            np.testing.assert_array_equal(grp.act(a, grp.act(b, x)), grp.act(ab, x))
            np.testing.assert_array_equal(
                grp.act_regular(a, grp.act_regular(b, f)), grp.act_regular(ab, f))
            np.testing.assert_array_equal(
                grp.permutation_matrix(a) @ grp.permutation_matrix(b), grp.permutation_matrix(ab))
    # associativity
    t = grp.table
    assert (t[t[:, :, None], np.arange(n)[None, None, :]] == t[:, t]).all()


def test_group_conventions():
    d4 = get_group("D4")
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(d4.act(1, x)[0, ..., 0], np.rot90(x[0, ..., 0]))
    np.testing.assert_array_equal(d4.act(4, x)[0, ..., 0], x[0, :, ::-1, 0])
    np.testing.assert_array_equal(d4.act(5, x)[0, ..., 0], np.rot90(x[0, :, ::-1, 0]))
    v = get_group("flipV")
    np.testing.assert_array_equal(v.act(1, x)[0, ..., 0], x[0, ::-1, :, 0])
    with pytest.raises(ValueError, match="group"):
        get_group("C8")


# ---------------------------------------------------------------------------------------------
# layers


def _layer_errors(grp_name, dtype):
    grp = get_group(grp_name)
    n = grp.order
    k1, k2, k3, k4, k5 = jax.random.split(KEY, 5)
    x = jax.random.normal(k1, (2, 8, 8, 3), dtype)
    f = jax.random.normal(k2, (2, 8, 8, 4 * n), dtype)
    s_map = jax.random.normal(k5, (2, 8, 8, 4), dtype)  # per-pixel FiLM (a scalar field)
    acts = {"trivial": grp.act, "regular": grp.act_regular}
    ins = {"trivial": x, "regular": f}
    fields_in = {"trivial": 3, "regular": 4}
    layers = {}
    for i in ("trivial", "regular"):
        for o in ("trivial", "regular"):
            layers[f"conv {i}->{o}"] = (
                GroupConv(fields_in[i], 2, group=grp_name, in_rep=i, out_rep=o, key=k3), i, o)
            layers[f"steerable {i}->{o}"] = (
                SteerableConv(fields_in[i], 2, group=grp_name, in_rep=i, out_rep=o,
                              basis=reynolds_basis(grp_name, i, o, 3), key=k3), i, o)
    layers["conv 5x5 regular"] = (
        GroupConv(4, 2, group=grp_name, kernel_size=5, key=k4), "regular", "regular")
    norm = FieldNorm(4, n, num_groups=2)
    norm = eqx.tree_at(lambda m: (m.weight, m.bias), norm,
                       (jax.random.normal(k4, (4,)), jax.random.normal(k5, (4,))))
    layers["attention"] = (GroupAttention(4, group=grp_name, num_heads=2, num_groups=2, key=k4),
                           "regular", "regular")
    layers["group pool"] = (lambda h: group_pool(h, grp_name), "regular", "trivial")
    layers["avgpool+up"] = (lambda h: nearest_up2(avg_pool2(h)), "regular", "regular")

    @eqx.filter_jit
    def run(layers, norm):  # every layer on the whole orbit in one compiled call
        out = {}
        for name, (fn, i, o) in layers.items():
            xs = jnp.concatenate([acts[i](g, ins[i]) for g in range(n)], axis=0)
            out[name] = (fn(xs), o)
        ss = jnp.concatenate(grp.orbit(s_map), axis=0)
        fs = jnp.concatenate([grp.act_regular(g, f) for g in range(n)], axis=0)
        out["fieldnorm+film"] = (norm(fs, ss, 2 * ss), "regular")
        return out

    errs = {}
    for name, (y, o) in run(layers, norm).items():
        m = x.shape[0]
        errs[name] = max(_rel(y[g * m:(g + 1) * m], acts[o](g, y[:m])) for g in range(n))
    return errs


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_every_layer_is_equivariant(group):
    with jax.enable_x64(True):
        e64 = _layer_errors(group, jnp.float64)
    e32 = _layer_errors(group, jnp.float32)
    assert max(e64.values()) <= 1e-12, e64
    assert max(e32.values()) <= 1e-5, e32


def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        GroupConv(1, 1, group="C4", kernel_size=2, key=KEY)
    with pytest.raises(ValueError, match="in_rep"):
        GroupConv(1, 1, group="C4", in_rep="irrep", key=KEY)
    conv = GroupConv(2, 2, group="C4", key=KEY)
    with pytest.raises(ValueError, match="argument `x`"):
        conv(jnp.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="image_size"):
        EquivariantUNet(nf=4, ch_mult=(1, 2, 2), image_size=6, num_groups=4, key=KEY)


# ---------------------------------------------------------------------------------------------
# the whole UNet (orbit batched into one call: one compile per configuration)


def _orbit_error(fn, grp, x, t, cond):
    """max_g |fn(g x, g t) - g fn(x, t)| / max|fn(x)| with all |G| copies in one batch."""
    n = x.shape[0]
    xs = jnp.concatenate(grp.orbit(x), axis=0)
    if t.ndim == 4:
        ts = jnp.concatenate(grp.orbit(t), axis=0)
    else:
        ts = jnp.tile(t, grp.order)
    cs = jnp.tile(cond, grp.order)
    out = eqx.filter_jit(fn)(xs, ts, cs)
    base = out[:n]
    return max(_rel(out[g * n:(g + 1) * n], grp.act(g, base)) for g in range(grp.order))


def _unet_errors(group, kind, dtype, times):
    grp = get_group(group)
    net = EquivariantUNet(group=group, kind=kind, in_channels=2, out_channels=1, nf=4,
                          ch_mult=(1, 2), attn_resolutions=(4,), image_size=8, num_classes=3,
                          num_heads=2, num_groups=2, key=KEY)
    sc = SelfConditioning(net, estimate_channels=1)
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(k1, (2, 8, 8, 1), dtype)
    est = jax.random.normal(k2, (2, 8, 8, 1), dtype)
    t_all = {"per-example t": jnp.array([0.2, 0.7], dtype),
             "per-element t": jax.random.uniform(k3, x.shape, dtype)}  # ComboStoc time
    cond = jnp.array([0, 2])

    def f(xx, tt, cc):  # self-conditioning: the estimate rides along with x in the channels
        xe, ee = xx[..., :1], xx[..., 1:]
        if dtype == jnp.float32:  # the SelfConditioning wrapper runs the network in float32
            return sc(xe, tt, cc, estimate=ee)
        return net(jnp.concatenate([xe, ee], axis=-1), tt, cc)

    xin = jnp.concatenate([x, est], axis=-1)
    return {k: _orbit_error(f, grp, xin, t_all[k], cond) for k in times}


@pytest.mark.parametrize("group,kind", [("C4", "regular"), ("D4", "regular"),
                                        ("D4", "invariant")])
def test_unet_is_equivariant_with_time_class_and_self_conditioning(group, kind):
    # float64 through the per-element (per-pixel) time path and, for C4, the per-example one;
    # float32 through the SelfConditioning wrapper with a per-example time
    times = ["per-element t"] + (["per-example t"] if group == "C4" else [])
    with jax.enable_x64(True):
        e64 = _unet_errors(group, kind, jnp.float64, times)
    e32 = _unet_errors(group, kind, jnp.float32, ["per-example t"])
    assert max(e64.values()) <= 1e-12, e64
    assert max(e32.values()) <= 1e-5, e32


def test_named_equivariant_configs_build():
    from sdekit.nets import NET_CONFIGS, count_parameters

    for name in ("sp_mnist_invariant", "sp_mnist_c4", "sp_mnist_d4", "sp_lysto64_d4",
                 "equivariant_tiny"):
        assert NET_CONFIGS[name]["arch"] == "equivariant_unet"
    net = named_net("equivariant_tiny", key=KEY)
    assert isinstance(net, EquivariantUNet) and net.group == "C4"
    shape = eqx.filter_eval_shape(lambda k: named_net("sp_mnist_d4", key=k), KEY)
    assert count_parameters(shape) == 1_104_929


# ---------------------------------------------------------------------------------------------
# symmetrise


def _plain_net():
    """A deliberately non-equivariant network: a random 3x3 conv, position-dependent gains."""
    k1, k2 = jax.random.split(jax.random.key(7))
    w = jax.random.normal(k1, (3, 3, 1, 1))
    pos = jax.random.normal(k2, (1, 8, 8, 1))

    def net(x, t, cond=None, *, key=None):
        y = jax.lax.conv_general_dilated(x, w.astype(x.dtype), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        tt = jnp.reshape(t, (-1, 1, 1, 1)) if jnp.ndim(t) == 1 else t
        return jnp.tanh(y * pos.astype(x.dtype)) * (1.0 + tt) + x[:, ::-1] * 0.3

    return net


@pytest.mark.parametrize("group", ["C4", "D4", "flipH"])
def test_symmetrise_makes_any_network_exactly_equivariant(group):
    net = _plain_net()
    with jax.enable_x64(True):
        x = jax.random.normal(KEY, (2, 8, 8, 1), jnp.float64)
        t = jnp.array([0.3, 0.9])
        assert float(equivariance_error(net, x, group, t=t)) > 0.1
        sym = symmetrise(net, group)
        assert float(equivariance_error(sym, x, group, t=t)) <= 1e-12
        # per-element time maps are transformed with x
        tp = jax.random.uniform(KEY, x.shape, jnp.float64)
        assert float(equivariance_error(sym, x, group, t=tp)) <= 1e-12
        # symmetrising an equivariant function changes nothing; symmetrising is idempotent
        np.testing.assert_allclose(symmetrise(sym, group)(x, t), sym(x, t), atol=1e-13)


# ---------------------------------------------------------------------------------------------
# steerable bases


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_shipped_steerable_bases_are_equivariant_orthonormal_and_complete(group):
    bases = load_bases()
    assert "NOT escnn" in bases["meta"]["source"]
    dims = {"trivial_regular": 9, "regular_regular": 36 if group == "C4" else 72,
            "trivial_trivial": 3}
    for pair, d in dims.items():
        i, o = pair.split("_")
        b = bases[f"{group}_{pair}_k3"]
        assert b.shape[0] == d
        flat = b.reshape(d, -1)
        np.testing.assert_allclose(flat @ flat.T, np.eye(d), atol=1e-15)
        for g in range(get_group(group).order):  # every element satisfies the constraint
            np.testing.assert_array_equal(act_filter(group, g, b, i, o), b)
        # complete: the Reynolds projection of a random filter lies in the span
        rng = np.random.default_rng(0)
        f = rng.normal(size=b.shape[1:])
        pf = sum(act_filter(group, g, f, i, o) for g in range(get_group(group).order))
        pf = (pf / get_group(group).order).ravel()
        np.testing.assert_allclose(flat.T @ (flat @ pf), pf, atol=1e-13)
        np.testing.assert_array_equal(b, reynolds_basis(group, i, o, 3))


def test_steerable_conv_uses_the_shipped_file_and_equals_a_group_conv():
    with jax.enable_x64(True):
        conv = SteerableConv(2, 3, group="D4", key=KEY)  # shipped basis
        x = jax.random.normal(KEY, (1, 8, 8, 16), jnp.float64)
        grp = get_group("D4")
        errs = [_rel(conv(grp.act_regular(g, x)), grp.act_regular(g, conv(x))) for g in range(8)]
        assert max(errs) <= 1e-12
        # the full basis spans the group-conv filters: same function class, same count
        assert conv.weight.shape == (3, 2, 72)


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_shipped_escnn_bases_are_equivariant_and_in_the_equivariant_space(group):
    """The escnn export (tools/escnn_bases.py, escnn 1.0.11): escnn's dimensions, every element
    satisfies sdekit's equivariance constraint to float32 sampling (escnn stores float32), and it
    lies in the span of the exact full basis; a SteerableConv on it is exactly equivariant."""
    bases = load_bases("escnn")
    assert bases["meta"]["source"].startswith("escnn")
    dims = {"trivial_regular": 6, "regular_regular": 24 if group == "C4" else 48,
            "trivial_trivial": 2}
    order = get_group(group).order
    for pair, d in dims.items():
        i, o = pair.split("_")
        b = bases[f"{group}_{pair}_k3"].astype(np.float64)
        assert b.shape[0] == d and np.linalg.matrix_rank(b.reshape(d, -1)) == d
        for g in range(order):
            np.testing.assert_allclose(act_filter(group, g, b, i, o), b, atol=1e-6)
        full = reynolds_basis(group, i, o, 3).reshape(-1, b[0].size)
        flat = b.reshape(d, -1)
        np.testing.assert_allclose(flat @ full.T @ full, flat, atol=1e-6)
    with jax.enable_x64(True):
        conv = SteerableConv(2, 3, group=group, basis="escnn", key=KEY)
        assert conv.weight.shape[-1] == dims["regular_regular"]
        x = jax.random.normal(KEY, (1, 8, 8, 2 * order), jnp.float64)
        grp = get_group(group)
        errs = [_rel(conv(grp.act_regular(g, x)), grp.act_regular(g, conv(x)))
                for g in range(order)]
        assert max(errs) <= 1e-12
