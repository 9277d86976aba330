"""Performance rewrites keep the maths: FIR resampling as slices vs the depthwise convolution it
replaces (values and gradients), the XLA:CPU flag policy, the compilation-cache helper, and the
UNet's nested levels."""

import argparse
import json
import math
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdekit.perf as perf
from sdekit.nets import UNet
from sdekit.nets._layers import fir_downsample, fir_upsample, upfirdn2d
from sdekit.nets._unet import DownLevel, MiddleLevel, UpLevel

_DN = ("NHWC", "HWIO", "NHWC")


def _kernel_2d(kernel, gain=1.0):
    k = np.asarray(kernel, np.float64)
    k2 = np.outer(k, k)
    return (gain * k2 / k2.sum()).astype(np.float32)


def _depthwise(x, k2d, pad, stride=1, lhs_dilation=1):
    """The previous implementation: upfirdn2d as a depthwise convolution (plain JAX)."""
    c = x.shape[-1]
    w = jnp.asarray(np.ascontiguousarray(k2d[::-1, ::-1])[:, :, None, None])
    w = jnp.broadcast_to(w, (*k2d.shape, 1, c))
    return jax.lax.conv_general_dilated(
        x,
        w,
        (stride, stride),
        (pad, pad),
        lhs_dilation=(lhs_dilation, lhs_dilation),
        dimension_numbers=_DN,
        feature_group_count=c,
    )


def _cases(kernel):
    p = len(kernel) - 2
    yield (
        lambda x: fir_upsample(x, kernel),
        lambda x: _depthwise(x, _kernel_2d(kernel, 4.0), ((p + 1) // 2 + 1, p // 2 + 1), 1, 2),
    )
    yield (
        lambda x: fir_downsample(x, kernel),
        lambda x: _depthwise(x, _kernel_2d(kernel), ((p + 1) // 2, p // 2), 2),
    )
    for pad in [(1, 1), (2, 2), (0, 1)]:
        yield (
            lambda x, pad=pad: upfirdn2d(x, kernel, pad=pad, gain=4.0),
            lambda x, pad=pad: _depthwise(x, _kernel_2d(kernel, 4.0), pad),
        )


@pytest.mark.parametrize("kernel", [(1, 3, 3, 1), (1, 2, 1), (1, 3, 3, 1, 2), (1, 1)])
def test_fir_slices_match_depthwise_conv_values_and_gradients(kernel):
    x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
    for new, ref in _cases(kernel):
        y_new, vjp_new = jax.vjp(new, x)
        y_ref, vjp_ref = jax.vjp(ref, x)
        assert y_new.shape == y_ref.shape
        np.testing.assert_allclose(np.asarray(y_new), np.asarray(y_ref), rtol=0, atol=1e-6)
        g = jax.random.normal(jax.random.key(1), y_new.shape)
        np.testing.assert_allclose(
            np.asarray(vjp_new(g)[0]), np.asarray(vjp_ref(g)[0]), rtol=0, atol=2e-6
        )


def test_xla_cpu_flag_policy(monkeypatch):
    # Once a backend exists, the flag is never added late.
    jax.devices()
    monkeypatch.delenv("SDEKIT_XLA_CPU_FLAGS", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    assert perf.configure_xla_cpu() is False
    assert "initialised" in perf.XLA_CPU_FLAG_STATUS["reason"]
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"
    # A user's own setting wins, whatever its value.
    user = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
    monkeypatch.setenv("XLA_FLAGS", user)
    assert perf.configure_xla_cpu() is False and os.environ["XLA_FLAGS"] == user
    assert "user" in perf.XLA_CPU_FLAG_STATUS["reason"]
    # The opt-out.
    monkeypatch.setenv("SDEKIT_XLA_CPU_FLAGS", "0")
    monkeypatch.setenv("XLA_FLAGS", "")
    assert perf.configure_xla_cpu() is False and os.environ["XLA_FLAGS"] == ""
    # Not for a GPU-only process.
    monkeypatch.delenv("SDEKIT_XLA_CPU_FLAGS")
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert perf.configure_xla_cpu() is False and "exclude cpu" in perf.XLA_CPU_FLAG_STATUS["reason"]


def test_xla_cpu_flag_fresh_process():
    # A fresh process: the flag is appended after the user's flags, and XLA accepts it.
    env = {k: v for k, v in os.environ.items() if k != "SDEKIT_XLA_CPU_FLAGS"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    code = (
        "import os, sdekit, jax, jax.numpy as jnp\n"
        "sdekit.perf.configure(compilation_cache=False)\n"
        "x = jnp.ones((1, 4, 4, 2)); w = jnp.ones((3, 3, 2, 2))\n"
        "y = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',"
        " dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(x, w)\n"
        "print(os.environ['XLA_FLAGS']); print(sdekit.perf.XLA_CPU_FLAG_STATUS['applied'],"
        " jax.device_count(), float(y[0, 1, 1, 0]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    flags, status = out.stdout.strip().splitlines()[-2:]
    applied, ndev, centre = status.split()
    assert ndev == "2" and float(centre) == 18.0
    assert flags.startswith("--xla_force_host_platform_device_count=2")
    assert (perf.XLA_CPU_FLAG in flags) == (applied == "True")


def test_import_changes_nothing(tmp_path):
    """`import sdekit` sets no environment variable, writes no file, reads no jaxlib binary
    and imports no private JAX module beyond what its dependencies import."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "SDEKIT_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path / "home"))
    code = (
        "import os, sys, json, builtins\n"
        "import jax, equinox, diffrax, optax, grain, jaxtyping, beartype, tqdm, numpy, PIL\n"
        "opened = []\n"
        "real_open = builtins.open\n"
        "def spy(f, *a, **k):\n"
        "    opened.append(str(f)); return real_open(f, *a, **k)\n"
        "builtins.open = spy\n"
        "env0, mods0 = dict(os.environ), set(sys.modules)\n"
        "import sdekit\n"
        "builtins.open = real_open\n"
        "new = sorted(m for m in set(sys.modules) - mods0 if m.startswith('jax._src'))\n"
        "print(json.dumps({'env': dict(os.environ) == env0, 'jax_src': new,\n"
        "                  'jaxlib_reads': [f for f in opened if 'jaxlib' in f]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["env"] is True
    assert report["jaxlib_reads"] == []
    assert report["jax_src"] == [], report["jax_src"]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "home").exists()


def test_compiler_options_give_the_same_program_numbers():
    opts = perf.compiler_options()
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))

    def loss(w):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(y**2)

    lowered = jax.jit(jax.grad(loss)).lower(w)
    plain = lowered.compile()(w)
    tuned = lowered.compile(compiler_options=opts or None)(w)
    np.testing.assert_allclose(np.asarray(tuned), np.asarray(plain), rtol=1e-5, atol=1e-4)


def test_enable_compilation_cache(tmp_path):
    assert perf.enable_compilation_cache(False) is None
    old = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    try:
        path = perf.enable_compilation_cache(True, tmp_path / "c", min_compile_time_secs=2.0)
        assert path == str(tmp_path / "c") and os.path.isdir(path)
        assert jax.config.jax_compilation_cache_dir == path
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.0
    finally:
        jax.config.update("jax_compilation_cache_dir", old[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
    with pytest.raises(ValueError, match="min_compile_time_secs"):
        perf.enable_compilation_cache(True, tmp_path, min_compile_time_secs=-1)
    parser = argparse.ArgumentParser()
    perf.add_compilation_cache_flag(parser)
    args = parser.parse_args(["--no-compile-cache", "--compile-cache-dir", str(tmp_path)])
    assert args.no_compile_cache and perf.compilation_cache_from_args(args) is None
    assert not parser.parse_args([]).no_compile_cache


def test_unet_levels_are_the_structure():
    net = UNet(
        3, key=jax.random.key(0), nf=16, ch_mult=(1, 2, 2), num_res_blocks=2,
        attn_resolutions=(4,), image_size=16,
    )  # fmt: skip
    assert [type(m) for m in net.down_levels] == [DownLevel] * 3
    assert isinstance(net.middle, MiddleLevel)
    assert [type(m) for m in net.up_levels] == [UpLevel] * 3
    assert [len(lv.blocks) for lv in net.down_levels] == [2, 2, 2]
    assert [len(lv.blocks) for lv in net.up_levels] == [3, 3, 3]
    # attention only at the 4x4 level; no downsampling at the lowest level, no upsampling at
    # the highest
    assert [lv.attns is not None for lv in net.down_levels] == [False, False, True]
    assert net.down_levels[-1].down is None and net.up_levels[-1].up is None
    # the flat view lists every layer once: input conv; per down level blocks, attentions,
    # downsampling, input pyramid; middle; per up level blocks, attention, upsampling; head
    flat = net.modules
    assert flat[0] is net.conv_in and flat[-1] is net.head
    assert len({id(m) for m in flat}) == len(flat) == 1 + (6 + 2 + 2 + 2) + 3 + (9 + 1 + 2) + 1


@pytest.mark.parametrize(
    "rate, shape",
    [(0.15, (4, 16, 16, 32)), (0.5, (3, 7, 5)), (0.1, (1001,)), (0.003, (64, 128))],
)
def test_dropout_rate_scale_and_mask(rate, shape):
    """The 16-bit (or, for small rates, 32-bit) mask drops each element independently with
    the requested probability (within its quantisation, 2**-17) and keeps the mean: checked
    against the binomial standard error on 4 keys; the gradient uses the same mask."""
    from sdekit.nets._layers import dropout

    x = jnp.ones(shape, jnp.float32)
    keys = jax.random.split(jax.random.key(0), 4)
    ys = jax.jit(jax.vmap(lambda k: dropout(x, rate, k)))(keys)
    n = ys.size
    drop = float(jnp.mean(ys == 0))
    se = (rate * (1 - rate) / n) ** 0.5
    assert abs(drop - rate) < 5 * se + 2**-17, (drop, rate, se)
    # kept values are 1 / p_keep, so the mean is 1 up to sampling noise
    kept = np.unique(np.asarray(ys[ys != 0]))
    assert kept.size == 1 and abs(kept[0] * (1 - rate) - 1) < 2e-5
    assert abs(float(jnp.mean(ys)) - 1) < 5 * se / (1 - rate)
    # different keys give different masks; the same key the same mask, also in the gradient
    assert not np.array_equal(np.asarray(ys[0] == 0), np.asarray(ys[1] == 0))
    g = jax.grad(lambda v: jnp.sum(dropout(v, rate, keys[0])))(x)
    np.testing.assert_array_equal(np.asarray(g == 0), np.asarray(ys[0] == 0))
    # the lean gradient draws the mask again from the key: the same mask, the same scale
    def lean_sum(v):
        return jnp.sum(dropout(v, rate, keys[0], lean=True) * jnp.arange(v.size).reshape(v.shape))

    g_lean = jax.jit(jax.grad(lean_sum))(x)
    want = ys[0] * jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape)
    np.testing.assert_array_equal(np.asarray(g_lean), np.asarray(want))
    # samples (leading axis) get different masks
    if shape[0] > 1 and math.prod(shape[1:]) * rate > 10:
        assert not np.array_equal(np.asarray(ys[0, 0] == 0), np.asarray(ys[0, 1] == 0))
    # neighbours (the two 16-bit halves of one draw) agree only as often as independent ones
    flat = np.asarray(ys[0] == 0).reshape(-1)
    half = flat.size // 2
    if half > 100:
        agree = np.mean(flat[0:2 * half:2] == flat[1:2 * half:2])
        assert abs(agree - (rate**2 + (1 - rate) ** 2)) < 6 * (0.25 / half) ** 0.5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_trim_host_memory_returns_freed_heap():
    """Freed small blocks stay in glibc's heap (RSS) until ``trim_host_memory`` returns them."""
    import ctypes
    import ctypes.util

    def rss_mib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "malloc_trim"):
        assert perf.trim_host_memory() is False
        return
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    blocks = []
    for _ in range(4000):  # 4000 x 64 KiB = 250 MiB below the mmap threshold
        p = libc.malloc(64 * 1024)
        libc.memset(p, 1, 64 * 1024)
        blocks.append(p)
    for p in blocks[0::2]:  # holes: the live blocks keep glibc from shrinking the heap itself
        libc.free(p)
    before = rss_mib()
    try:
        assert perf.trim_host_memory() in (True, False)
        after = rss_mib()
    finally:
        for p in blocks[1::2]:
            libc.free(p)
    assert before - after > 60, (before, after)  # 125 MiB were freed into holes


# ----------------------------------------------------------------------------------------------
# The memory-lean GroupNorm(+SiLU) gradient: same values and gradients as plain autodiff.


def _gn_case(shape, groups, dtype, seed=0):
    from sdekit.nets._layers import GroupNorm

    ks = jax.random.split(jax.random.key(seed), 4)
    x = (jax.random.normal(ks[0], shape) * 2.0 + 0.7).astype(dtype)
    norm = GroupNorm(shape[-1], groups)
    norm = eqx.tree_at(
        lambda m: (m.weight, m.bias),
        norm,
        (
            1.0 + 0.5 * jax.random.normal(ks[1], (shape[-1],)),
            jax.random.normal(ks[2], (shape[-1],)),
        ),
    )
    ct = jax.random.normal(ks[3], shape).astype(dtype)
    return norm, x, ct


def _gn_grads(norm, x, ct, act, lean):
    from sdekit.nets import with_lean_gradients

    def f(x, norm):
        y = with_lean_gradients(norm, lean)(x, silu=act)
        return jnp.sum(y.astype(jnp.float32) * ct.astype(jnp.float32)), y

    (_, y), g = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(x, norm)
    return y, g[0], g[1].weight, g[1].bias


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("act", [False, True])
@pytest.mark.parametrize("shape, groups", [((3, 8, 8, 64), 16), ((2, 5, 12), 3), ((4, 6, 8), 1)])
def test_lean_group_norm_matches_plain_autodiff(act, shape, groups):
    norm, x, ct = _gn_case(shape, groups, jnp.float32)
    plain = _gn_grads(norm, x, ct, act, lean=False)
    lean = _gn_grads(norm, x, ct, act, lean=True)
    assert _rel(lean[0], plain[0]) < 1e-6  # the forward is the plain one
    for name, a, b in zip(("x", "weight", "bias"), lean[1:], plain[1:], strict=True):
        assert _rel(a, b) < 2e-6, name
    # and against central finite differences of a float64 NumPy GroupNorm along a direction
    w, b = (np.asarray(a, np.float64) for a in (norm.weight, norm.bias))
    x64, ct64 = np.asarray(x, np.float64), np.asarray(ct, np.float64)
    d = np.random.default_rng(0).standard_normal(x.shape)

    def f(z):
        zr = z.reshape(z.shape[0], -1, groups, z.shape[-1] // groups)
        mean = zr.mean(axis=(1, 3), keepdims=True)
        var = ((zr - mean) ** 2).mean(axis=(1, 3), keepdims=True)
        y = ((zr - mean) / np.sqrt(var + norm.eps)).reshape(z.shape) * w + b
        return np.sum((y / (1 + np.exp(-y)) if act else y) * ct64)

    fd = (f(x64 + 1e-6 * d) - f(x64 - 1e-6 * d)) / 2e-6
    ad = float(np.sum(np.asarray(lean[1], np.float64) * d))
    assert abs(ad - fd) < 1e-4 * max(1.0, abs(fd)), (ad, fd)


def test_lean_group_norm_bfloat16_close_to_float32():
    norm, x, ct = _gn_case((2, 8, 8, 32), 8, jnp.float32, seed=3)
    ref = _gn_grads(norm, x, ct, True, lean=False)
    lean16 = _gn_grads(norm, x.astype(jnp.bfloat16), ct.astype(jnp.bfloat16), True, lean=True)
    assert lean16[0].dtype == lean16[1].dtype == jnp.bfloat16
    assert lean16[2].dtype == lean16[3].dtype == jnp.float32
    for a, b in zip(lean16, ref, strict=True):
        assert _rel(a, b) < 3e-2


def _tiny_unet(**kw):
    return UNet(
        3, key=jax.random.key(0), nf=16, ch_mult=(1, 2), num_res_blocks=1,
        attn_resolutions=(4,), image_size=8, init_scale=1.0, dropout=0.1, **kw,
    )  # fmt: skip


def test_lean_gradients_give_the_unets_gradients():
    from sdekit.nets import with_lean_gradients

    net = _tiny_unet()
    params, static = eqx.partition(net, eqx.is_inexact_array)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    t = jnp.array([0.2, 0.9])

    def loss(p, lean):
        out = with_lean_gradients(eqx.combine(p, static), lean)(x, t, key=jax.random.key(5))
        return jnp.mean((out - x) ** 2)

    lp, gp = jax.jit(jax.value_and_grad(lambda p: loss(p, False)))(params)
    ll, gl = jax.jit(jax.value_and_grad(lambda p: loss(p, True)))(params)
    assert abs(float(ll - lp)) <= 1e-6 * abs(float(lp))
    pairs = zip(jax.tree.leaves(gl), jax.tree.leaves(gp), strict=True)
    num = sum(float(jnp.sum((a - b) ** 2)) for a, b in pairs)
    den = sum(float(jnp.sum(b**2)) for b in jax.tree.leaves(gp))
    assert np.sqrt(num / den) < 1e-5


def test_lean_gradients_use_less_memory_and_only_where_asked():
    from sdekit.nets import AbstractLeanLayer, with_lean_gradients

    net = UNet(3, key=jax.random.key(0), nf=16, ch_mult=(1,), num_res_blocks=2,
               attn_resolutions=(), image_size=16, dropout=0.0)  # fmt: skip
    params, static = eqx.partition(net, eqx.is_inexact_array)
    x, t = jnp.ones((4, 16, 16, 3)), jnp.full((4,), 0.5)

    def temp_bytes(lean):
        def loss(p):
            return jnp.mean(with_lean_gradients(eqx.combine(p, static), lean)(x, t) ** 2)

        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain, lean = temp_bytes(False), temp_bytes(True)
    assert lean < 0.8 * plain, (lean, plain)
    # a built network is plain, so forward-mode autodiff works through it
    def lean_flags(m):
        leaves = jax.tree.leaves(m, is_leaf=lambda n: isinstance(n, AbstractLeanLayer))
        return {n.lean for n in leaves if isinstance(n, AbstractLeanLayer)}

    assert lean_flags(net) == {False}
    _, tangent = jax.jvp(lambda z: net(z, t), (x,), (x,))
    assert tangent.shape == x.shape
    lean_net = with_lean_gradients(net)
    assert lean_flags(lean_net) == {True} and lean_flags(net) == {False}
    assert lean_flags(with_lean_gradients(lean_net, False)) == {False}


@pytest.mark.parametrize("lean", [True, False])
def test_train_step_traces_the_loss_with_lean_gradients_by_default(lean):
    import optax

    import sdekit.train as st
    from sdekit.nets._layers import GroupNorm

    seen = []

    def objective(model, key, x0):
        seen.append(model.lean)
        return jnp.mean((model(x0) - x0) ** 2)

    model = GroupNorm(4, 2)
    opt = optax.sgd(0.1)
    state = st.init_state(model, opt, key=jax.random.key(1))
    kwargs = {} if lean else {"lean_gradients": False}
    step = st.make_train_step(objective, opt, **kwargs)
    step(state, jnp.ones((4, 3, 4)))
    assert seen == [lean]
    assert model.lean is False  # the caller's model is not changed

