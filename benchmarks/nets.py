"""Benchmark sdekit.nets: forward and forward+backward time, GFLOP/s, fraction of the machine's
fp32 peak, parameter count, memory, and the PyTorch original's time (measured side by side by
``pytorch_reference.py``).

Builds each network, jit-compiles a forward pass (inference, ``key=None``) and a training
forward+backward pass (``value_and_grad`` of a mean-squared loss, dropout active), warms both
up, then times them interleaved (fwd, fwd+bwd, fwd, ...) for ``--repeats`` rounds and reports
min/median/max wall seconds, the median CPU seconds (all threads; the better measure of work
on a shared machine), XLA's FLOP count divided by the median time, and that rate as a
fraction of the measured fp32 peak (GFLOP per CPU-second against a 2048^2 float32 matmul's in
the same process, which is robust to other jobs on the machine). Memory: XLA's estimate for
the forward+backward program, and the process's peak RSS above its RSS with the network and
inputs built and before the first compile (the same definition as
``benchmarks/pytorch_reference.py``: what running the network costs on top of holding it). As
in ``sdekit.train.fit``, the compiler's freed memory is handed back to the OS
(``sdekit.perf.trim_host_memory``) before the programs run; the compile's own peak is inside
the measurement.

Example::

    python benchmarks/nets.py                               # small (7.09 M) and psld_cifar10
    python benchmarks/nets.py --nets small --batch 32 --repeats 5
    python benchmarks/nets.py --nets tiny --quick
    python benchmarks/nets.py --dtype bfloat16             # mixed precision (e.g. on a GPU)
"""

from __future__ import annotations

import argparse
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
from _perf_common import (
    NETS,
    PYTORCH_REFERENCE,
    build_net,
    flops,
    fmt_stats,
    interleave,
    load,
    machine_line,
    measured_peak_gflops,
    peak_rss_gib,
    rates,
    reset_peak_rss,
    rss_gib,
)

from sdekit.nets import NET_CONFIGS, count_parameters, named_net, with_lean_gradients  # noqa: E402
from sdekit.perf import trim_host_memory


def _setup(name: str, batch: int, dtype: str):
    """(network, image side, params, static part, x, t, dropout key) for a benchmark run."""
    key = jax.random.key(0)
    overrides = {"compute_dtype": dtype} if dtype != "float32" else {}
    if name in NETS:
        net, size = build_net(name, key, **overrides)
    else:
        net = named_net(name, key=key, **overrides)
        size = getattr(net, "image_size", 32)
    params, static = eqx.partition(net, eqx.is_array)
    kx, kt, kd = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (batch, size, size, net.in_channels))
    t = jax.random.uniform(kt, (batch,), minval=1e-3, maxval=1.0)
    return net, size, params, static, x, t, kd


# GroupNorm and dropout gradients of the forward+backward program: "lean" as sdekit's train step
# differentiates its model (sdekit.nets.with_lean_gradients), or "plain" autodiff
# (--gradients plain)
LEAN_GRADIENTS = {"lean": True}


def _loss(static):
    def loss(p, x, t, k):
        net = with_lean_gradients(eqx.combine(p, static), LEAN_GRADIENTS["lean"])
        return jnp.mean(net(x, t, key=k) ** 2)

    return loss


def bench(name: str, batch: int, repeats: int, dtype: str) -> dict:
    net, size, params, static, x, t, kd = _setup(name, batch, dtype)

    def forward(p, x, t):
        return eqx.combine(p, static)(x, t)

    loss = _loss(static)

    t0, c0 = time.perf_counter(), time.process_time()
    fwd_c = jax.jit(forward).lower(params, x, t).compile()
    compile_fwd = (time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    train_c = jax.jit(jax.value_and_grad(loss)).lower(params, x, t, kd).compile()
    compile_train = (time.perf_counter() - t0, time.process_time() - c0)
    res = interleave(
        {"fwd": lambda: fwd_c(params, x, t), "train": lambda: train_c(params, x, t, kd)}, repeats
    )
    mem = train_c.memory_analysis()
    xla_gib = None
    if mem is not None:
        xla_gib = (
            mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        ) / 2**30
    return dict(
        name=name,
        batch=batch,
        shape=f"{batch}x{size}x{size}x{net.in_channels}",
        params=count_parameters(net),
        compile_fwd=compile_fwd,
        compile_train=compile_train,
        fwd=res["fwd"],
        train=res["train"],
        fwd_flops=flops(fwd_c),
        train_flops=flops(train_c),
        xla_gib=xla_gib,
        rss_gib=_train_memory_in_child(name, batch, dtype),
    )


def train_memory(name: str, batch: int, dtype: str) -> float:
    """Peak RSS (GiB) of the forward+backward program above the process's RSS with the network
    and inputs built, measured alone (a fresh process, as ``pytorch_reference.py`` measures
    each row): compile, hand the compiler's freed memory back (``trim_host_memory``, as
    ``fit`` does), run twice."""
    net, size, params, static, x, t, kd = _setup(name, batch, dtype)
    jax.block_until_ready((params, x, t))
    trim_host_memory()
    reset_peak_rss()
    rss0 = rss_gib()
    loss = _loss(static)
    train_c = jax.jit(jax.value_and_grad(loss)).lower(params, x, t, kd).compile()
    trim_host_memory()
    for _ in range(2):
        jax.block_until_ready(train_c(params, x, t, kd))
    return peak_rss_gib() - rss0


def _train_memory_in_child(name: str, batch: int, dtype: str) -> float | None:
    import json
    import subprocess

    res = subprocess.run(
        [sys.executable, __file__, "--_memory", name, str(batch), "--dtype", dtype,
         "--gradients", "lean" if LEAN_GRADIENTS["lean"] else "plain"],
        capture_output=True, text=True,
    )  # fmt: skip
    try:
        return float(json.loads(res.stdout.strip().splitlines()[-1])["rss_gib"])
    except (IndexError, KeyError, ValueError):
        print(f"# memory run failed: {res.stderr[-500:]}", file=sys.stderr)
        return None


def table(rows: list[dict], peak: float, header: str) -> list[str]:
    cols = (
        f"| {'net':<13} | {'input':<12} | {'params':>11} | {'what':<7} | {'compile s (CPU)':>15} | "
        f"{'wall s min/med/max':<22} | {'CPU s':>7} | {'GFLOP/s':>7} | {'% peak':>6} | "
        f"{'PyTorch s':>9} | {'speed vs PyTorch':>16} |"
    )
    lines = [header, "", cols, "|" + "|".join("-" * (len(c)) for c in cols.split("|")[1:-1]) + "|"]
    for r in rows:
        for what, st, fl, comp in (
            ("fwd", r["fwd"], r["fwd_flops"], r["compile_fwd"]),
            ("fwd+bwd", r["train"], r["train_flops"], r["compile_train"]),
        ):
            gfs, pct = rates(fl, st, peak)
            ref = PYTORCH_REFERENCE.get((r["name"], r["batch"], what))
            lines.append(
                f"| {r['name']:<13} | {r['shape']:<12} | {r['params']:>11,} | {what:<7} | "
                f"{f'{comp[0]:.1f} ({comp[1]:.1f})':>15} | {fmt_stats(st):<22} | "
                f"{st['cpu']:>7.3f} | "
                + f"{gfs:>7} | {pct:>6} | "
                + (f"{ref:>9.2f}" if ref else f"{'':>9}")
                + " | "
                + (f"{ref / st['med']:>15.2f}x" if ref else f"{'':>16}")
                + " |"
            )
    lines.append("")
    for r in rows:
        xla = "n/a" if r["xla_gib"] is None else f"{r['xla_gib']:.2f}"
        ref = PYTORCH_REFERENCE.get((r["name"], r["batch"], "rss_gib"))
        lines.append(
            f"- {r['name']} B={r['batch']}: XLA fwd+bwd memory {xla} GiB; peak RSS above the "
            f"built network, measured alone "
            + ("n/a" if r["rss_gib"] is None else f"{r['rss_gib']:.2f}")
            + " GiB"
            + (f" (PyTorch original: {ref} GiB)" if ref else "")
        )
    return lines


def main(argv=None) -> list[str]:
    choices = sorted(set(NETS) | set(NET_CONFIGS))
    parser = argparse.ArgumentParser(
        description=(
            "Time sdekit.nets networks under jax.jit: forward (inference) and forward+backward "
            "(training loss gradient), interleaved, min/median/max wall seconds, CPU seconds, "
            "GFLOP/s (XLA's FLOP count / median time), fraction of the measured fp32 peak, and "
            "the PyTorch original's time (pytorch_reference.py, same machine) where there is one."
        )
    )
    parser.add_argument(
        "--nets",
        nargs="+",
        default=None,
        choices=choices,
        metavar="NAME",
        help="networks, any of: " + ", ".join(choices) + " ('small' is issue 14's 7.09 M net: "
        "psld_cifar10 with nf 64, ch_mult 1,2,2, 2 res blocks; default: small psld_cifar10)",
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=None,
        help="batch size(s), one per net or one for all (default: 32 for small, 8 otherwise)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed rounds per measurement (default: 3)"
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="compute dtype (parameters stay float32; default: float32)",
    )
    parser.add_argument(
        "--gradients",
        default="lean",
        choices=["lean", "plain"],
        help="GroupNorm and dropout gradients in the forward+backward program: 'lean' as "
        "sdekit's train step uses them (sdekit.nets.with_lean_gradients; default) or 'plain' "
             "autodiff",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small and tiny only, batch 8, 2 rounds"
    )
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--_memory", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    LEAN_GRADIENTS["lean"] = args.gradients == "lean"
    nets = args.nets or (["tiny", "small"] if args.quick else ["small", "psld_cifar10"])
    repeats = 2 if args.quick and args.repeats == 3 else args.repeats
    if args._memory:
        import json

        print(json.dumps({"rss_gib": train_memory(args._memory[0], int(args._memory[1]),
                                                  args.dtype)}))
        return []
    if args.batch is None:
        batches = [8 if (args.quick or n != "small") else 32 for n in nets]
    elif len(args.batch) == 1:
        batches = args.batch * len(nets)
    elif len(args.batch) == len(nets):
        batches = args.batch
    else:
        parser.error(f"--batch: got {len(args.batch)} sizes for {len(nets)} nets")
    peak = measured_peak_gflops()
    load0 = load()
    rows = []
    for name, b in zip(nets, batches, strict=True):
        rows.append(bench(name, b, repeats, args.dtype))
        print(f"# done {name} B={b}", file=sys.stderr, flush=True)
    header = (
        f"sdekit.nets | {machine_line()} | dtype {args.dtype} | gradients "
        f"{args.gradients} | {repeats} interleaved rounds | "
        f"fp32 peak (2048^2 matmul): {peak['wall']:.0f} GFLOP/s wall, {peak['cpu']:.0f} GFLOP "
        "per CPU-second; % peak = GFLOP per CPU-second / the matmul's | load average "
        f"{load0:.1f} -> {load():.1f}"
    )
    lines = table(rows, peak, header)
    print("\n".join(lines), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
