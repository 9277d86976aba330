"""Benchmark the equivariant UNet against a plain UNet of the same width: parameters and CPU
forward+backward time.

"Same width" means the same number of channels per feature map: the plain net is the very same
``EquivariantUNet`` code with the trivial group (ordinary convolutions, ``nf`` channels), the
paper's invariant-kernel net has ``nf`` scalar fields, and the regular group CNNs have
``nf / |G|`` fields of ``|G|`` channels. The symmetrised row is the plain net averaged over C4
(``|G|`` = 4 evaluations, batched). Each round times every network once, in turn (interleaved,
so load from other processes hits all of them alike); the table gives min / median / max over
rounds of a jitted ``value_and_grad`` of a mean-squared loss (dropout active).

    python benchmarks/equivariant_nets.py                       # MNIST size 28, batch 8
    python benchmarks/equivariant_nets.py --nf 32 --batch 4 --rounds 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from sdekit.nets import count_parameters
from sdekit.nets.equivariant import EquivariantUNet
from sdekit.wrappers import symmetrise


def _nets(nf: int, size: int, key):
    common = dict(in_channels=1, ch_mult=(1, 2, 4), num_res_blocks=1, attn_resolutions=(size,),
                  image_size=size, dropout=0.1, num_heads=2, num_groups=32)
    plain = EquivariantUNet(group="trivial", nf=nf, **common, key=key)
    return {
        "plain (trivial group)": plain,
        "C4 invariant kernels": EquivariantUNet(group="C4", kind="invariant", nf=nf, **common,
                                                key=key),
        "C4 regular": EquivariantUNet(group="C4", nf=nf // 4, **common, key=key),
        "D4 regular": EquivariantUNet(group="D4", nf=nf // 8, **common, key=key),
        "plain symmetrised over C4": symmetrise(plain, "C4"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nf", type=int, default=64, help="channels per feature map at level 1")
    ap.add_argument("--size", type=int, default=28, help="image side (square)")
    ap.add_argument("--batch", type=int, default=8, help="batch size")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up)")
    args = ap.parse_args(argv)
    if args.nf % 8:
        ap.error(f"--nf: got {args.nf}, expected a multiple of 8 (D4 fields of 8 channels)")
    nets = _nets(args.nf, args.size, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (args.batch, args.size, args.size, 1))
    t = jax.random.uniform(jax.random.key(2), (args.batch,))
    fns, compile_s = {}, {}
    for name, net in nets.items():
        params, static = eqx.partition(net, eqx.is_array)

        @jax.jit
        def step(p, x, t, k, static=static):
            return jax.value_and_grad(
                lambda p: jnp.mean(eqx.combine(p, static)(x, t, key=k) ** 2))(p)

        t0 = time.perf_counter()
        jax.block_until_ready(step(params, x, t, jax.random.key(3)))
        compile_s[name] = time.perf_counter() - t0
        fns[name] = (step, params)
    times = {name: [] for name in nets}
    for r in range(args.rounds):
        for name, (step, params) in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(step(params, x, t, jax.random.key(4 + r)))
            times[name].append(time.perf_counter() - t0)
    print(f"# equivariant UNet vs plain, {args.size}x{args.size}x1, batch {args.batch}, "
          f"nf {args.nf} channels, ch_mult (1,2,4), attention at {args.size}; "
          f"jax {jax.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.rounds} interleaved rounds (shared machine: noisy)")
    print("| network | parameters | fwd+bwd min (ms) | median | max | first call (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, ts in times.items():
        ms = [1e3 * v for v in ts]
        print(f"| {name} | {count_parameters(nets[name]):,} | {min(ms):.0f} | "
              f"{statistics.median(ms):.0f} | {max(ms):.0f} | {compile_s[name]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
