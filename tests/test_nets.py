"""Tests for sdekit.nets: parameter counts, option combinations, conditioning, dropout, DiT,
self-conditioning, resampling maths and argument errors."""

import functools
from concurrent.futures import ThreadPoolExecutor

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdekit.nets import (
    NET_CONFIGS,
    DiT,
    UNet,
    count_parameters,
    named_net,
)
from sdekit.nets._layers import Downsample, Upsample, fir_downsample, fir_upsample
from sdekit.wrappers import SelfConditioning, self_conditioning_forward

KEY = jax.random.key(0)


@functools.lru_cache(maxsize=None)
def _shapes(name, frozen_overrides=()):
    """A named net built with eval_shape (no allocation), cached across tests."""
    overrides = dict(frozen_overrides)
    return eqx.filter_eval_shape(lambda k: named_net(name, key=k, **overrides), KEY)


def _shape_count(name, trainable_only=False, **overrides):
    net = _shapes(name, tuple(sorted(overrides.items())))
    return count_parameters(net, trainable_only=trainable_only)


# ------------------------------------------------------------------------------------------
# Parameter counts (exact; references from the original implementations).


def test_param_counts_named(psld_ref):
    ref = {k.split(" ")[0]: v for k, v in psld_ref["network_param_counts"].items()}
    # PSLD CIFAR-10 SOTA: 97,627,910 total (score_sde params_total), 97,627,782 trainable.
    assert _shape_count("psld_cifar10") == 97627910 == ref["cifar10_sota"]["params_total"]
    assert _shape_count("psld_cifar10", trainable_only=True) == 97627782
    assert ref["cifar10_sota"]["params_trainable"] == 97627782
    # PSLD CelebA-64 SOTA: 62,769,286 total, 62,769,158 trainable.
    assert _shape_count("psld_celeba64") == 62769286 == ref["celeba64_sota"]["params_total"]
    assert _shape_count("psld_celeba64", trainable_only=True) == 62769158
    # Reflected diffusion DDPM++ deep (reflected.md section 9): 107,587,075.
    assert _shape_count("reflected_ddpmpp_cifar10") == 107587075
    # Small configs (no reference; pinned so that changes are deliberate).
    assert _shape_count("vdpm_cifar10") == 58696451
    assert _shape_count("mnist_small") == 1752993
    assert _shape_count("tiny") == 189347
    assert _shape_count("dit_tiny") == 146892


def test_param_counts_psld_variants(psld_ref):
    ref = {k.split(" ")[0]: v["params_total"] for k, v in psld_ref["network_param_counts"].items()}
    positional = dict(
        embedding_type="positional",
        progressive_input="none",
        fir=False,
        dropout=0.1,
        ch_mult=(1, 2, 2, 2),
    )
    assert _shape_count("psld_cifar10", num_res_blocks=4, **positional) == 61811334
    assert ref["cifar10_yaml_default"] == 61811334
    assert _shape_count("psld_cifar10", num_res_blocks=2, **positional) == 39397254
    assert ref["cifar10_ablation"] == 39397254
    assert (
        _shape_count("psld_cifar10", num_res_blocks=2, out_channels=3, **positional)
        == (ref["cifar10_ablation_cld"])
    )
    assert (
        _shape_count(
            "psld_celeba64",
            ch_mult=(1, 1, 2, 2, 2),
            embedding_type="positional",
            progressive_input="none",
        )
        == ref["celeba64_ablation"]
    )
    assert (
        _shape_count(
            "psld_cifar10",
            ch_mult=(1, 2, 2, 2, 3),
            num_res_blocks=2,
            image_size=128,
            embedding_type="positional",
            progressive_input="none",
        )
        == ref["afhqv2_128"]
    )


@pytest.mark.parametrize(
    "name, size",
    [("psld_cifar10", 32), ("vdpm_cifar10", 32), ("mnist_small", 28), ("dit_tiny", 16)],
)
def test_named_configs_output_shapes(name, size):
    # shapes only (traced, never compiled or allocated)
    net = _shapes(name)
    x = jax.ShapeDtypeStruct((2, size, size, net.in_channels), jnp.float32)
    t = jax.ShapeDtypeStruct((2, size, size, net.in_channels), jnp.float32)
    cond = jax.ShapeDtypeStruct((2,), jnp.int32) if net.num_classes else None
    out = eqx.filter_eval_shape(lambda m, x, t, c: m(x, t, c), net, x, t, cond)
    assert out.shape == (2, size, size, net.out_channels) and out.dtype == jnp.float32


# ------------------------------------------------------------------------------------------
# Every option combination used by a named config, scaled down to 8x8, forward + backward.

_SMALL = dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), image_size=8)

COMBOS = {
    # (vdpm_cifar10, i.e. scale-shift norm, positional 1000 t, classes, no pyramids, is
    # covered in bfloat16 by the "bf16" case of the `grads` fixture)
    # biggan, FIR, progressive_input residual, fourier
    "psld": ("psld_cifar10", dict(_SMALL)),
    # biggan, no FIR, residual input pyramid, output_skip output pyramid, centred input
    "reflected_output_skip": ("reflected_ddpmpp_cifar10", dict(_SMALL, progressive="output_skip")),
    # ddpm resblocks, FIR resampling layers, input_skip (cat), residual output pyramid, classes
    "ddpm_input_skip_residual": (
        "tiny",
        dict(
            _SMALL,
            resblock_type="ddpm",
            fir=True,
            progressive_input="input_skip",
            progressive_combine="cat",
            progressive="residual",
            num_classes=3,
            embedding_type="fourier",
            in_channels=2,
        ),
    ),
}


_FWD = eqx.filter_jit(lambda m, x, t, c: m(x, t, c))


def _loss_and_grad(static):
    def fn(params, x, t, cond, key):
        def loss(p):
            out = eqx.combine(p, static)(x, t, cond, key=key)
            return jnp.mean((out - 0.5) ** 2), out

        (val, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return val, out, grads

    return fn


def _grad_case(net, x, t, cond=None, key=None):
    params, static = eqx.partition(net, eqx.is_array)
    args = (params, x, t, cond, key)
    return net, static, args, jax.jit(_loss_and_grad(static)).lower(*args)


def _combo_case(combo):
    name, overrides = COMBOS[combo]
    net = named_net(name, key=KEY, init_scale=1.0, **overrides)
    kx, kt = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (2, 8, 8, net.in_channels))
    # t = 0 included: the fourier embedding (log t) must not produce NaNs
    t = jax.random.uniform(kt, (2,), minval=0.1, maxval=1.0).at[0].set(0.0)
    cond = jnp.array([0, net.num_classes]) if net.num_classes else None
    # key=None: dropout masks are tested on the probe net below (saves PRNG compile time)
    return _grad_case(net, x, t, cond)


_BF16_KW = dict(
    nf=16,
    ch_mult=(1,),
    num_res_blocks=1,
    attn_resolutions=(8,),
    image_size=8,
    init_scale=1.0,
    num_classes=3,
)  # one level keeps the compilation small
_BF16_X = jax.random.normal(jax.random.key(2), (2, 8, 8, 3))
_BF16_T, _BF16_COND = jnp.array([0.3, 0.6]), jnp.array([1, 3])
_DIT_X = jax.random.normal(jax.random.key(7), (2, 8, 8, 2))
# per-patch time: constant on each 2x2 patch, different across patches
_DIT_T = jnp.repeat(
    jnp.repeat(jax.random.uniform(jax.random.key(8), (2, 4, 4), minval=0.05), 2, axis=1),
    2,
    axis=2,
)[..., None] * jnp.ones((1, 1, 1, 2))


@pytest.fixture(scope="module")
def grads():
    """Forward+backward of every option combination, compiled once, concurrently (the
    compilations dominate this file's run time and use one core each)."""
    cases = {combo: _combo_case(combo) for combo in COMBOS}
    net16 = named_net("vdpm_cifar10", key=KEY, compute_dtype="bfloat16", **_BF16_KW)
    cases["bf16"] = _grad_case(net16, _BF16_X, _BF16_T, _BF16_COND)
    dit = named_net("dit_tiny", key=KEY, num_classes=3, in_channels=2, dropout=0.1)
    cases["dit"] = _grad_case(dit, _DIT_X, _DIT_T, jnp.array([0, 3]), jax.random.key(9))
    with ThreadPoolExecutor(max_workers=2) as pool:
        compiled = dict(zip(cases, pool.map(lambda c: c[3].compile(), cases.values()), strict=True))
    out = {}
    for name, (net, static, args, _) in cases.items():
        val, y, g = compiled[name](*args)
        out[name] = (net, val, y, eqx.combine(g, static))
    return out


@pytest.mark.parametrize("combo", list(COMBOS))
def test_unet_options_forward_backward(combo, grads):
    net, val, out, g = grads[combo]
    assert out.shape == (2, 8, 8, net.out_channels)
    assert out.dtype == jnp.float32
    assert np.isfinite(float(val)) and float(val) > 0
    leaves = jax.tree.leaves(eqx.filter(g, eqx.is_inexact_array))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in leaves)
    # gradients reach the first layer and the time embedding
    assert float(jnp.abs(g.modules[0].weight).max()) > 0
    assert float(jnp.abs(g.temb0.weight).max()) > 0
    if net.fourier_w is not None:  # the Fourier matrix is frozen
        assert float(jnp.abs(g.fourier_w).max()) == 0.0


def test_bf16_forward_backward_close_to_fp32(grads):
    _, val, y16, g = grads["bf16"]
    net32 = named_net("vdpm_cifar10", key=KEY, **_BF16_KW)
    y32 = _FWD(net32, _BF16_X, _BF16_T, _BF16_COND)
    assert y16.dtype == jnp.float32 and y16.shape == (2, 8, 8, 3)
    rel = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
    assert 0 < rel < 0.05
    leaves = jax.tree.leaves(eqx.filter(g, eqx.is_inexact_array))
    assert all(v.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(v))) for v in leaves)
    assert float(jnp.abs(g.modules[0].weight).max()) > 0


# ------------------------------------------------------------------------------------------
# Conditioning, dropout and initialisation on one small probe network (compiled once).


def _zero_init_leaves(net):
    """The weights score_sde initialises with init_scale (1e-10 for init_scale=0)."""
    blocks = [m for m in net.modules if hasattr(m, "conv1")]
    attns = [m for m in net.modules if hasattr(m, "out") and hasattr(m, "q")]
    return (
        [b.conv1.weight for b in blocks]
        + [a.out.weight for a in attns]
        + [net.modules[-1].conv.weight]
    )


@pytest.fixture(scope="module")
def probe_init():
    """The tiny net as initialised (init_scale 0), with classes and dropout 0.5."""
    return named_net("tiny", key=KEY, image_size=8, num_classes=3, dropout=0.5)


@pytest.fixture(scope="module")
def probe(probe_init):
    """The same net with its zero-initialised weights made random, so every input matters
    (same static structure, so it shares compiled code with ``probe_init``)."""
    leaves = _zero_init_leaves(probe_init)
    keys = jax.random.split(jax.random.key(99), len(leaves))
    new = [
        jax.random.normal(k, w.shape) / np.sqrt(np.prod(w.shape[:-1]))  # fan-in scaling
        for k, w in zip(keys, leaves, strict=True)
    ]
    net = eqx.tree_at(_zero_init_leaves, probe_init, new)
    fwd_key = eqx.filter_jit(lambda m, x, t, c, k: m(x, t, c, key=k))
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
    return net, _FWD, fwd_key, x


def _maxdiff(a, b):
    return float(jnp.abs(a - b).max())


def test_time_shapes_agree(probe):
    # one compilation per t shape: (N,), (N, 1, 1, C), (N, H, W, C)
    net, fwd, _, x = probe
    cond = jnp.array([0, 1])
    y_example = fwd(net, x, jnp.array([0.4, 0.4]), cond)
    y_channel = fwd(net, x, jnp.full((2, 1, 1, 3), 0.4), cond)
    y_element = fwd(net, x, jnp.full((2, 8, 8, 3), 0.4), cond)
    np.testing.assert_allclose(np.asarray(y_element), np.asarray(y_example), atol=1e-5)
    np.testing.assert_allclose(np.asarray(y_channel), np.asarray(y_example), atol=1e-5)
    # per-example times act per example
    y_other = fwd(net, x, jnp.array([0.4, 0.9]), cond)
    np.testing.assert_allclose(np.asarray(y_other[0]), np.asarray(y_example[0]), atol=1e-5)
    assert _maxdiff(y_other[1], y_example[1]) > 1e-2


def test_per_element_time_changes_output(probe):
    net, fwd, _, x = probe
    cond = jnp.array([0, 1])
    left = jnp.concatenate([jnp.full((2, 8, 4, 3), 0.1), jnp.full((2, 8, 4, 3), 0.9)], axis=2)
    y_left = fwd(net, x, left, cond)
    y_right = fwd(net, x, left[:, :, ::-1], cond)
    y_const = fwd(net, x, jnp.full((2, 8, 8, 3), 0.5), cond)  # same mean time
    assert _maxdiff(y_left, y_right) > 1e-2
    assert _maxdiff(y_left, y_const) > 1e-2
    # per-element time is averaged over channels: permuting channels of t changes nothing
    tmap = jax.random.uniform(jax.random.key(4), (2, 8, 8, 3), minval=0.1)
    np.testing.assert_allclose(
        np.asarray(fwd(net, x, tmap, cond)),
        np.asarray(fwd(net, x, tmap[..., ::-1], cond)),
        atol=1e-4,
    )


def test_null_class(probe):
    net, fwd, _, x = probe
    t = jnp.array([0.5, 0.5])
    y_none = fwd(net, x, t, None)
    y_null = fwd(net, x, t, jnp.array([3, 3]))
    y_zero = fwd(net, x, t, jnp.array([0, 0]))
    np.testing.assert_allclose(np.asarray(y_none), np.asarray(y_null), atol=1e-6)
    assert _maxdiff(y_zero, y_null) > 1e-2


def test_dropout(probe):
    net, fwd, fwd_key, x = probe
    cond = jnp.array([0, 1])
    t = jnp.array([0.5, 0.5])
    y1 = fwd(net, x, t, cond)
    y2 = fwd(net, x, t, cond)
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    k1, k2 = jax.random.split(jax.random.key(5))
    a = fwd_key(net, x, t, cond, k1)
    b = fwd_key(net, x, t, cond, k1)
    c = fwd_key(net, x, t, cond, k2)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _maxdiff(a, c) > 1e-3
    assert _maxdiff(a, y1) > 1e-3


def test_zero_init_output(probe_init, probe):
    net, x = probe_init, probe[3]
    y = _FWD(net, x, jnp.array([0.5, 0.5]), jnp.array([0, 1]))
    assert y.shape == (2, 8, 8, 3)
    assert float(jnp.abs(y).max()) < 1e-3
    # near-zero exactly where score_sde uses init_scale, ordinary elsewhere
    assert max(float(jnp.abs(w).max()) for w in _zero_init_leaves(net)) < 1e-5
    assert float(jnp.abs(net.modules[0].weight).max()) > 1e-2
    y1 = _FWD(probe[0], x, jnp.array([0.5, 0.5]), jnp.array([0, 1]))
    assert float(jnp.abs(y1).max()) > 1e-2


# ------------------------------------------------------------------------------------------
# DiT with per-patch time.


def test_dit_per_patch_time(grads):
    net, val, out, g = grads["dit"]  # trained with dropout (key given) and per-patch time
    x, t = _DIT_X, _DIT_T
    assert out.shape == (2, 8, 8, 2) and out.dtype == jnp.float32
    # adaLN-zero: the output is exactly zero at initialisation
    assert float(jnp.abs(out).max()) == 0.0
    assert np.isfinite(float(val))
    assert float(jnp.abs(g.final.weight).max()) > 0
    # make the zero-initialised layers non-zero, then time maps must matter
    leaves = lambda m: [m.final.weight, m.final_ada.weight] + [b.ada.weight for b in m.blocks]
    rnd = [
        0.05 * jax.random.normal(jax.random.key(10 + i), w.shape) for i, w in enumerate(leaves(net))
    ]
    net = eqx.tree_at(leaves, net, rnd)
    fwd = eqx.filter_jit(lambda m, x, t: m(x, t, jnp.array([0, 3])))
    y1 = fwd(net, x, t)
    y2 = fwd(net, x, t[:, ::-1])
    y3 = fwd(net, x, jnp.mean(t, axis=(1, 2, 3)))  # per-example mean time
    assert float(jnp.abs(y1 - y2).max()) > 1e-4
    assert float(jnp.abs(y1 - y3).max()) > 1e-4
    # a time map constant over each patch equals that per-token time (pooling is exact)
    y4 = fwd(net, x, jnp.full((2, 8, 8, 2), 0.3))
    y5 = fwd(net, x, jnp.array([0.3, 0.3]))
    np.testing.assert_allclose(np.asarray(y4), np.asarray(y5), atol=1e-5)


# ------------------------------------------------------------------------------------------
# Self-conditioning.


def test_self_conditioning_wrapper():
    inner = named_net(
        "tiny",
        key=KEY,
        image_size=8,
        ch_mult=(1,),
        in_channels=6,
        out_channels=3,
        init_scale=1.0,
        dropout=0.0,
    )
    model = SelfConditioning(inner, estimate_channels=3)
    x = jax.random.normal(jax.random.key(11), (2, 8, 8, 3))
    t = jnp.array([0.3, 0.6])
    infer = eqx.filter_jit(lambda m, x, e: m(x, t, estimate=e))
    y0 = infer(model, x, jnp.zeros_like(x))
    y1 = infer(model, x, y0)  # conditioned on its previous estimate
    assert y1.shape == (2, 8, 8, 3)
    assert _maxdiff(y1, y0) > 1e-3
    # training pass: p=1 runs the estimate pass first, p=0 never does (dropout 0 here)
    train = eqx.filter_jit(lambda m, x, k, p: self_conditioning_forward(m, x, t, key=k, p=p))
    key = jax.random.key(12)
    np.testing.assert_allclose(
        np.asarray(train(model, x, key, jnp.array(1.0))), np.asarray(y1), atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(train(model, x, key, jnp.array(0.0))), np.asarray(y0), atol=1e-5
    )
    with pytest.raises(ValueError, match="estimate"):
        model(x, t, estimate=jnp.zeros((2, 8, 8, 2)))


# ------------------------------------------------------------------------------------------
# FIR resampling against a direct NumPy upfirdn2d.


def _upfirdn_np(x, k, up, down, pad0, pad1):
    n, h, w, c = x.shape
    if up > 1:
        z = np.zeros((n, h * up, w * up, c))
        z[:, ::up, ::up] = x
        x = z
    x = np.pad(x, ((0, 0), (pad0, pad1), (pad0, pad1), (0, 0)))
    kf = k[::-1, ::-1]
    kh = k.shape[0]
    oh = x.shape[1] - kh + 1
    out = np.zeros((n, oh, oh, c))
    for i in range(oh):
        for j in range(oh):
            out[:, i, j] = np.einsum("nabc,ab->nc", x[:, i : i + kh, j : j + kh], kf)
    return out[:, ::down, ::down]


def test_fir_resampling_matches_upfirdn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    k1 = np.array([1.0, 3.0, 3.0, 1.0])
    k = np.outer(k1, k1) / np.outer(k1, k1).sum()
    up = np.asarray(fir_upsample(jnp.asarray(x), (1, 3, 3, 1)))
    np.testing.assert_allclose(up, _upfirdn_np(x, 4 * k, 2, 1, 2, 1), atol=1e-5)
    down = np.asarray(fir_downsample(jnp.asarray(x), (1, 3, 3, 1)))
    np.testing.assert_allclose(down, _upfirdn_np(x, k, 1, 2, 1, 1), atol=1e-5)
    assert up.shape == (1, 12, 12, 2) and down.shape == (1, 3, 3, 2)
    # constants are preserved away from the borders
    ones = jnp.ones((1, 8, 8, 1))
    np.testing.assert_allclose(
        np.asarray(fir_upsample(ones, (1, 3, 3, 1)))[0, 2:-2, 2:-2], 1.0, rtol=1e-6
    )


def _correlate_np(x, w, stride=1):
    """Plain cross-correlation, NHWC x HWIO, VALID padding."""
    kh = w.shape[0]
    oh = (x.shape[1] - kh) // stride + 1
    out = np.zeros((x.shape[0], oh, oh, w.shape[-1]))
    for i in range(oh):
        for j in range(oh):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kh]
            out[:, i, j] = np.einsum("nabc,abco->no", patch, w)
    return out


def test_fir_conv_resampling_matches_reference():
    # score_sde's upsample_conv_2d (transposed 3x3 conv, then FIR) and conv_downsample_2d
    # (FIR, then stride-2 3x3 conv), written out directly in NumPy.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    k1 = np.array([1.0, 3.0, 3.0, 1.0])
    k = np.outer(k1, k1) / np.outer(k1, k1).sum()
    up = Upsample(2, 3, with_conv=True, fir=True, key=KEY)
    w = np.asarray(up.conv.weight, np.float64)
    z = np.zeros((1, 7, 7, 2))
    z[:, ::2, ::2] = x  # zero-stuffing, as a stride-2 transposed convolution
    h = _correlate_np(np.pad(z, ((0, 0), (2, 2), (2, 2), (0, 0))), w)  # (1, 9, 9, 3)
    ref = _upfirdn_np(h, 4 * k, 1, 1, 1, 1)
    np.testing.assert_allclose(np.asarray(up(jnp.asarray(x))), ref, atol=1e-5)
    down = Downsample(2, 3, with_conv=True, fir=True, key=KEY)
    w = np.asarray(down.conv.weight, np.float64)
    ref = _correlate_np(_upfirdn_np(x, k, 1, 1, 2, 2), w, stride=2)
    np.testing.assert_allclose(np.asarray(down(jnp.asarray(x))), ref, atol=1e-5)
    assert ref.shape == (1, 2, 2, 3)


# ------------------------------------------------------------------------------------------
# Argument errors.


def test_argument_errors():
    with pytest.raises(ValueError, match="resblock_type"):
        UNet(3, key=KEY, resblock_type="resnet")
    with pytest.raises(ValueError, match="attn_resolutions"):
        UNet(3, key=KEY, nf=16, ch_mult=(1, 2), image_size=8, attn_resolutions=(16,))
    with pytest.raises(ValueError, match="image_size"):
        UNet(3, key=KEY, nf=16, ch_mult=(1, 2, 2), image_size=10, attn_resolutions=())
    with pytest.raises(ValueError, match="progressive_input"):
        UNet(3, key=KEY, progressive_input="skip")
    with pytest.raises(ValueError, match="compute_dtype"):
        UNet(3, key=KEY, compute_dtype="float64")
    with pytest.raises(ValueError, match="name"):
        named_net("no_such_net", key=KEY)
    with pytest.raises(ValueError, match="overrides"):
        named_net("tiny", key=KEY, n_f=3)
    with pytest.raises(ValueError, match="num_heads"):
        DiT(3, key=KEY, width=64, num_heads=5)
    net = named_net("tiny", key=KEY, image_size=8)
    with pytest.raises(ValueError, match="`x`"):
        net(jnp.zeros((1, 8, 8, 4)), 0.5)
    with pytest.raises(ValueError, match="`x`"):
        net(jnp.zeros((1, 7, 7, 3)), 0.5)
    with pytest.raises(ValueError, match="`cond`"):
        net(jnp.zeros((1, 8, 8, 3)), 0.5, jnp.array([1]))
    with pytest.raises(ValueError, match="`t`"):
        net(jnp.zeros((1, 8, 8, 3)), jnp.zeros((3,)))


def test_configs_listed():
    assert {
        "psld_cifar10",
        "psld_celeba64",
        "reflected_ddpmpp_cifar10",
        "vdpm_cifar10",
        "mnist_small",
        "tiny",
    } <= set(NET_CONFIGS)
