"""Shared helpers of the performance benchmarks: timing statistics, FLOP counts, the machine's
measured fp32 peak, and the PyTorch reference figures of issue 14.

Times are wall seconds (min / median / max over repeats, runs of the compared programs
interleaved) and the process's CPU seconds per run (all threads), which is the better measure of
work on a machine shared with other jobs: under oversubscription wall time grows, CPU time much
less. ``load`` is the 1-minute load average while the benchmark ran.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import sdekit

# before any JAX computation: XLA's own CPU convolutions for every program of the benchmark
sdekit.perf.configure(compilation_cache=False)

# The original PSLD PyTorch code (torch 2.13.0 CPU, 2 threads, float32), measured on the
# project's 2-core machine on 2026-12-01 by ``benchmarks/pytorch_reference.py`` side by side
# with sdekit (four rounds between 20:56 and 23:46 UTC; the mean of the four rounds' medians).
# Seconds; RSS in GiB (peak above the built network). Re-run that script on your machine for
# a fair comparison: these are only a default reference column.
PYTORCH_REFERENCE = {
    ("psld_cifar10", 8, "fwd+bwd"): 8.00,
    ("psld_cifar10", 8, "fwd"): 2.44,
    ("psld_cifar10", 2, "step"): 2.48,
    ("small", 32, "step"): 3.45,
    ("psld_cifar10", 8, "rss_gib"): 3.10,
}

# Networks by benchmark name: (named config, overrides, image side).
NETS = {
    "psld_cifar10": ("psld_cifar10", {}, 32),
    # issue 14's "small net": nf 64, ch_mult [1, 2, 2], 2 res blocks, 7,087,174 parameters
    "small": ("psld_cifar10", dict(nf=64, ch_mult=(1, 2, 2), num_res_blocks=2), 32),
    "tiny": ("tiny", {}, 16),
}


def build_net(name: str, key, **overrides):
    """(network, image side) for a benchmark net name."""
    from sdekit.nets import named_net

    cfg, kw, size = NETS[name]
    return named_net(cfg, key=key, **{**kw, **overrides}), size


def load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


class Timer:
    """Collects (wall, cpu) seconds of blocking calls; ``stats()`` gives min/median/max."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.loads: list[float] = []

    def __call__(self, fn, *args):
        w0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn(*args))
        self.wall.append(time.perf_counter() - w0)
        self.cpu.append(time.process_time() - c0)
        self.loads.append(load())
        return out

    def stats(self) -> dict:
        w = self.wall
        return dict(
            min=min(w),
            med=statistics.median(w),
            max=max(w),
            cpu=statistics.median(self.cpu),
            load=statistics.median(self.loads),
        )


def _proc_status_gib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def rss_gib() -> float:
    """The process's resident memory now (Linux), else its peak so far (``ru_maxrss``)."""
    now = _proc_status_gib("VmRSS")
    return now if now is not None else peak_rss_gib()


def peak_rss_gib() -> float:
    """The process's peak resident memory since the last ``reset_peak_rss``."""
    hwm = _proc_status_gib("VmHWM")
    if hwm is not None:
        return hwm
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (r if sys.platform == "darwin" else r * 1024) / 2**30


def reset_peak_rss() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux ``/proc/self/clear_refs``), so that
    each network of a run is measured on its own; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def interleave(fns: dict, repeats: int) -> dict:
    """Run each blocking ``fns[name]()`` once per round, in turn, for ``repeats`` rounds (after
    one warm-up round); returns ``{name: Timer.stats()}``."""
    for f in fns.values():
        jax.block_until_ready(f())
    timers = {k: Timer() for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            timers[k](f)
    return {k: t.stats() for k, t in timers.items()}


def flops(compiled) -> float | None:
    """XLA's FLOP count of a compiled program (None where the backend does not report it)."""
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    return float(ca["flops"])


_PEAK: dict = {}


def measured_peak_gflops(n: int = 2048, repeats: int = 5) -> dict:
    """The machine's fp32 peak as measured by an ``n x n`` float32 matmul on the default device
    (on CPU, XLA's GEMM on all cores): ``wall`` = best GFLOP/s over ``repeats`` runs, ``cpu`` =
    best GFLOP per CPU-second (all threads). A practical ceiling, not the vendor's number.

    On a shared, oversubscribed machine the wall rate understates the peak; the per-CPU-second
    rate does not (a thread's CPU second does the same work whoever else runs), so the
    benchmarks' "% peak" is ``(FLOP / CPU seconds of the program) / cpu``: the fraction of the
    GEMM's efficiency per core that the program reaches.
    """
    if n in _PEAK:
        return _PEAK[n]
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(mm(a, b))
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, max(time.process_time() - c0, 1e-9))
    _PEAK[n] = dict(wall=2 * n**3 / wall / 1e9, cpu=2 * n**3 / cpu / 1e9)
    return _PEAK[n]


def rates(flop: float | None, st: dict, peak: dict) -> tuple[str, str]:
    """(GFLOP/s at the median wall time, % of peak per CPU second) as table cells."""
    if flop is None:
        return "n/a", "n/a"
    gfs = flop / st["med"] / 1e9
    eff = flop / max(st["cpu"], 1e-9) / 1e9 / peak["cpu"]
    return f"{gfs:.1f}", f"{100 * eff:.0f}%"


def machine_line() -> str:
    dev = jax.devices()[0]
    flags = os.environ.get("XLA_FLAGS", "")
    return (
        f"jax {jax.__version__} | {dev.platform} ({dev.device_kind}) x {jax.device_count()} | "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores | "
        f"XLA_FLAGS={flags!r}"
    )


def fmt_stats(s: dict, scale: float = 1.0, digits: int = 4) -> str:
    lo, med, hi = (s[k] * scale for k in ("min", "med", "max"))
    return f"{lo:.{digits}g}/{med:.{digits}g}/{hi:.{digits}g}"
