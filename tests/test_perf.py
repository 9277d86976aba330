"""Performance rewrites keep the maths: FIR resampling as slices vs the depthwise convolution it
replaces (values and gradients), the XLA:CPU flag policy, the compilation-cache helper, and the
UNet's nested levels."""

import argparse
import os
import subprocess
import sys

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
