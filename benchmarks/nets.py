"""Benchmark sdekit.nets: forward and forward+backward time, parameter count and memory.

Builds each named network, jit-compiles a forward pass (inference, ``key=None``) and a training
forward+backward pass (``value_and_grad`` of a mean-squared loss, dropout active), runs each
once to warm up, then reports the median wall time of ``--repeats`` runs. Memory is XLA's
compiled-memory estimate (arguments + outputs + temporaries of the forward+backward program)
and the process's peak resident set size.

Example::

    python benchmarks/nets.py                          # psld_cifar10 and tiny, batch 8
    python benchmarks/nets.py --nets tiny mnist_small --batch 32 --repeats 5
    python benchmarks/nets.py --out benchmarks/results_nets.txt
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from sdekit.nets import NET_CONFIGS, count_parameters, named_net

DEFAULT_SIZES = {"psld_celeba64": 64}


def _median_time(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # warm-up (compiled already)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name: str, batch: int, image_size: int | None, repeats: int, dtype: str) -> dict:
    key = jax.random.key(0)
    overrides = {"compute_dtype": dtype} if dtype != "float32" else {}
    if image_size is not None and NET_CONFIGS[name]["arch"] == "unet":
        overrides["image_size"] = image_size
    net = named_net(name, key=key, **overrides)
    size = image_size or getattr(net, "image_size", None) or DEFAULT_SIZES.get(name, 32)
    params, static = eqx.partition(net, eqx.is_array)
    kx, kt, kd = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (batch, size, size, net.in_channels))
    t = jax.random.uniform(kt, (batch,), minval=1e-3, maxval=1.0)

    def forward(p, x, t):
        return eqx.combine(p, static)(x, t)

    def loss(p, x, t, k):
        return jnp.mean(eqx.combine(p, static)(x, t, key=k) ** 2)

    train = jax.value_and_grad(loss)
    t0 = time.perf_counter()
    fwd_c = jax.jit(forward).lower(params, x, t).compile()
    train_c = jax.jit(train).lower(params, x, t, kd).compile()
    compile_s = time.perf_counter() - t0
    fwd_s = _median_time(fwd_c, (params, x, t), repeats)
    train_s = _median_time(train_c, (params, x, t, kd), repeats)
    mem = train_c.memory_analysis()
    xla_bytes = None
    if mem is not None:
        xla_bytes = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024
    return dict(
        name=name,
        shape=f"{batch}x{size}x{size}x{net.in_channels}",
        params=count_parameters(net),
        compile_s=compile_s,
        fwd_s=fwd_s,
        train_s=train_s,
        xla_gib=None if xla_bytes is None else xla_bytes / 2**30,
        rss_gib=rss_bytes / 2**30,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=(
            "Time sdekit.nets networks under jax.jit: forward (inference) and forward+backward "
            "(training loss gradient), median of --repeats runs after a warm-up, with the "
            "parameter count and peak memory (XLA compiled-memory estimate of the "
            "forward+backward program, and the process's max RSS)."
        )
    )
    parser.add_argument(
        "--nets",
        nargs="+",
        default=["tiny", "psld_cifar10"],
        choices=sorted(NET_CONFIGS),
        metavar="NAME",
        help="named configurations to benchmark, any of: "
        + ", ".join(sorted(NET_CONFIGS))
        + " (default: tiny psld_cifar10)",
    )
    parser.add_argument("--batch", type=int, default=8, help="batch size (default: 8)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="image side length (default: each configuration's own image_size)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per measurement (default: 3)"
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="compute dtype (parameters stay float32; default: float32)",
    )
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)

    dev = jax.devices()[0]
    header = (
        f"sdekit.nets benchmark | jax {jax.__version__} | device {dev.platform} "
        f"({dev.device_kind}) | {platform.processor() or platform.machine()} | "
        f"batch {args.batch} | dtype {args.dtype} | median of {args.repeats}"
    )
    cols = (
        f"{'net':<26}{'input':>14}{'params':>13}{'compile s':>11}{'fwd s':>10}"
        f"{'fwd+bwd s':>11}{'XLA mem GiB':>13}{'max RSS GiB':>13}"
    )
    lines = [header, cols, "-" * len(cols)]
    print("\n".join(lines), flush=True)
    for name in args.nets:
        r = bench(name, args.batch, args.image_size, args.repeats, args.dtype)
        xla = "n/a" if r["xla_gib"] is None else f"{r['xla_gib']:.3f}"
        line = (
            f"{r['name']:<26}{r['shape']:>14}{r['params']:>13,}{r['compile_s']:>11.1f}"
            f"{r['fwd_s']:>10.4f}{r['train_s']:>11.4f}{xla:>13}{r['rss_gib']:>13.2f}"
        )
        lines.append(line)
        print(line, flush=True)
    lines.append(
        "max RSS is cumulative over the process (includes every earlier row). "
        "XLA mem = arguments + outputs + temporaries of the compiled forward+backward."
    )
    print(lines[-1])
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
