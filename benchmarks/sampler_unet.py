"""Sampling overhead with a real network: wall time / (NFE x one jitted forward at the same
batch) for Euler-Maruyama, the Heun probability-flow ODE, DPM-Solver++(2M), the adaptive ODE
(Tsit5) and the adaptive SDE (with diffrax's VirtualBrownianTree, and with sdekit's
GridBrownianPath: ``brownian="grid"``) on a UNet.

The network is issue 14's small UNet (psld_cifar10 with nf 64, ch_mult 1,2,2, 2 res blocks,
7.09 M parameters, 6 channels) used as an eps-predictor on VP; untrained (the cost does not
depend on the weights; the adaptive methods' NFE do). Every sampler call is jitted whole
(``jax.jit`` around ``sample(..., jit=False)``). The forward reference is timed as
``--fwd-calls`` back-to-back calls (default: ``--steps``), divided by their number, as the
samplers call the network back to back (one call alone, 0.07-0.1 s, varied by 40 % between
rounds here). The forward and the samplers are timed interleaved; min/median/max wall seconds,
the ratio of medians (1.00 = no overhead) and the same ratio of median CPU seconds (robust to
other jobs on the machine).

    python benchmarks/sampler_unet.py --batch 4 --steps 10
    python benchmarks/sampler_unet.py --net tiny --quick
"""

from __future__ import annotations

import argparse
import sys

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from _perf_common import NETS, build_net, fmt_stats, interleave, load, machine_line

import sdekit as sk
from sdekit.sampling import ODE, AdaptiveODE, AdaptiveSDE, DPMSolverPP, EulerMaruyama, sample


def main(argv=None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="small", choices=sorted(NETS), help="network (small)")
    ap.add_argument("--batch", type=int, default=4, help="samples per call (default 4)")
    ap.add_argument("--steps", type=int, default=10, help="fixed-step methods: steps (10)")
    ap.add_argument("--tol", type=float, default=1e-2, help="adaptive methods: rtol = atol")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument("--fwd-calls", type=int, default=None,
                    help="back-to-back forward calls per timing of the reference (default: "
                         "--steps)")
    ap.add_argument("--quick", action="store_true", help="tiny net, 5 steps, 2 rounds")
    ap.add_argument("--only", default="",
                    help="comma-separated substrings: run only the methods whose name contains "
                         "one of them, e.g. 'adaptive SDE' (default all)")
    ap.add_argument("--out", help="also write the table to this file")
    a = ap.parse_args(argv)
    name = "tiny" if a.quick and a.net == "small" else a.net
    steps = 5 if a.quick and a.steps == 10 else a.steps
    repeats = 2 if a.quick and a.repeats == 3 else a.repeats

    net, size = build_net(name, jr.key(0))
    shape = (a.batch, size, size, net.in_channels)
    process = sk.VP()
    x = jr.normal(jr.key(1), shape)
    fwd = eqx.filter_jit(lambda m, x: m(x, jnp.full((x.shape[0],), 0.5)))
    methods = {
        f"EM {steps}": EulerMaruyama(steps),
        f"ODE Heun {steps}": ODE(steps, solver="heun"),
        f"DPM-Solver++ {steps}": DPMSolverPP(steps),
        f"adaptive ODE tol {a.tol:g}": AdaptiveODE(rtol=a.tol, atol=a.tol),
        f"adaptive SDE tol {a.tol:g}": AdaptiveSDE(rtol=a.tol, atol=a.tol),
        f"adaptive SDE tol {a.tol:g} grid": AdaptiveSDE(rtol=a.tol, atol=a.tol, brownian="grid"),
    }
    wanted = [w.strip() for w in a.only.split(",") if w.strip()]
    methods = {k: m for k, m in methods.items() if not wanted or any(w in k for w in wanted)}
    runs, nfe = {}, {}
    for label, m in methods.items():
        run = eqx.filter_jit(
            lambda net, k, m=m: sample(k, process, net, shape, method=m, denoise="none", jit=False)
        )
        nfe[label] = int(run(net, jr.key(2)).nfe)
        runs[label] = lambda run=run: run(net, jr.key(2)).samples
        print(f"# compiled {label}: NFE {nfe[label]}", file=sys.stderr, flush=True)
    load0 = load()
    k = a.fwd_calls or steps

    def forwards():
        for _ in range(k - 1):
            fwd(net, x)
        return fwd(net, x)

    res = interleave({"forward": forwards, **runs}, repeats)
    f = {key: (v / k if key in ("min", "med", "max", "cpu") else v)
         for key, v in res["forward"].items()}
    lines = [
        f"sdekit sampling overhead, {name} UNet, batch {a.batch}, {size}x{size} | "
        f"{machine_line()} | {repeats} interleaved rounds | load average {load0:.1f} -> "
        f"{load():.1f}",
        "",
        f"one jitted forward ({k} back-to-back calls / {k}): {fmt_stats(f)} s (min/med/max), "
        f"{f['cpu']:.4g} CPU s",
        "",
        f"| {'method':<29} | {'NFE':>4} | {'wall s min/med/max':<24} | "
        f"{'wall / (NFE x fwd)':>18} | {'CPU / (NFE x fwd CPU)':>21} |",
        f"|{'-' * 31}|{'-' * 6}|{'-' * 26}|{'-' * 20}|{'-' * 23}|",
    ]
    for label in methods:
        r = res[label]
        ratio = r["med"] / (nfe[label] * f["med"])
        ratio_cpu = r["cpu"] / (nfe[label] * f["cpu"])
        lines.append(
            f"| {label:<29} | {nfe[label]:>4} | {fmt_stats(r):<24} | {ratio:>18.2f} | "
            f"{ratio_cpu:>21.2f} |"
        )
    print("\n".join(lines))
    if a.out:
        with open(a.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
