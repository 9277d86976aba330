"""Sampler overhead: wall time / (NFE x one model call), diffrax vs a plain lax.scan loop.

For a small jit-compiled MLP eps-network on VP, the Euler-type fixed-step methods are run with
both backends (the same algorithm), the rest of the fixed-step suite on the shared scan loop and
the adaptive methods with diffrax (the adaptive SDE with diffrax's VirtualBrownianTree and with
sdekit's GridBrownianPath); the table shows how much a sampler costs beyond its network
evaluations (min / median / max wall time over the repeats, the methods timed in interleaved
rounds; the ratio uses the median).

    python benchmarks/sampler_overhead.py --batch 256 --dim 64 --steps 200
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

import sdekit as sk

sk.perf.configure(compilation_cache=False)  # before any JAX computation
from sdekit.sampling import (
    DDIM,
    ODE,
    PC,
    AdaptiveODE,
    AdaptiveSDE,
    DPMSolverPP,
    EDMSampler,
    EulerMaruyama,
    sample,
)


class MLP(eqx.Module):
    net: eqx.nn.MLP

    def __init__(self, dim, width, *, key):
        self.net = eqx.nn.MLP(dim + 1, dim, width, 3, activation=jax.nn.silu, key=key)

    def __call__(self, x, t):
        h = jnp.concatenate([x, jnp.broadcast_to(t[:, None], (x.shape[0], 1))], axis=-1)
        return jax.vmap(self.net)(h)


def timeit(fn, repeats):
    """Wall times of ``repeats`` calls after a compile-and-warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return sorted(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256, help="samples per call (default 256)")
    ap.add_argument("--dim", type=int, default=64, help="data dimension (default 64)")
    ap.add_argument("--width", type=int, default=256, help="MLP width (default 256)")
    ap.add_argument("--steps", type=int, default=200,
                    help="fixed-step methods: steps (default 200)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed repeats; min / median / max are reported (default 5)")
    ap.add_argument("--only", default="",
                    help="comma-separated substrings: run only the methods whose name and "
                         "backend contain one of them, e.g. 'EM 200 diffrax,Tsit5' (default all)")
    args = ap.parse_args(argv)

    p = sk.VP()
    model = MLP(args.dim, args.width, key=jr.key(0))
    x = jr.normal(jr.key(1), (args.batch, args.dim))
    call = eqx.filter_jit(lambda m, x: m(x, jnp.full((x.shape[0],), 0.5)))
    t_call = timeit(lambda: call(model, x), args.repeats * 20)[0]

    rows = []
    methods = []
    for backend in ["scan", "diffrax"]:
        methods += [
            (f"EM {args.steps}", backend, EulerMaruyama(args.steps, backend=backend)),
            (f"ODE Euler {args.steps}", backend, ODE(args.steps, solver="euler", backend=backend)),
            (f"ODE Heun {args.steps // 2}", backend,
             ODE(args.steps // 2, solver="heun", backend=backend)),
        ]
    n = args.steps
    methods += [(f"PC {n // 2} (1 corrector)", "scan", PC(n // 2)),
                (f"DDIM {n}", "scan", DDIM(n)),
                (f"EDM Heun {n // 2 + 1}", "scan", EDMSampler(n // 2 + 1)),
                (f"DPM-Solver++ {n}", "scan", DPMSolverPP(n)),
                ("ODE Tsit5 tol 1e-4", "diffrax", AdaptiveODE(rtol=1e-4, atol=1e-4)),
                ("SDE Heun adaptive tol 1e-2", "diffrax", AdaptiveSDE(rtol=1e-2, atol=1e-2)),
                ("SDE Heun adaptive, grid BM", "diffrax",
                 AdaptiveSDE(rtol=1e-2, atol=1e-2, brownian="grid")),
                ("SDE ShARK adaptive tol 1e-2", "diffrax",
                 AdaptiveSDE(rtol=1e-2, atol=1e-2, solver="shark")),
                ("SDE ShARK adaptive, grid BM", "diffrax",
                 AdaptiveSDE(rtol=1e-2, atol=1e-2, solver="shark", brownian="grid"))]
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    methods = [(n, b, m) for n, b, m in methods
               if not wanted or any(w in f"{n} {b}" for w in wanted)]
    runs, nfes = [], []
    for _, _, m in methods:
        run = jax.jit(lambda k, m=m: sample(k, p, model, (args.batch, args.dim), method=m,
                                            denoise="none", jit=False))
        nfes.append(int(run(jr.key(2)).nfe))  # compiles; warm
        runs.append(lambda run=run: run(jr.key(2)).samples)
    # interleaved rounds: every method once per round, so load changes hit all of them alike
    walls = [[] for _ in runs]
    for _ in range(args.repeats):
        for i, fn in enumerate(runs):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            walls[i].append(time.perf_counter() - t0)
    for (name, backend, _), nfe, w in zip(methods, nfes, walls, strict=True):
        w = sorted(w)
        med = w[len(w) // 2]
        rows.append((name, backend, nfe, w[0] * 1e3, med * 1e3, w[-1] * 1e3,
                     med / (nfe * t_call)))

    print(f"device: {jax.devices()[0].device_kind}  batch {args.batch}  dim {args.dim}  "
          f"MLP width {args.width}; one model call = {t_call * 1e6:.1f} us")
    print(f"| {'method':<28} | {'backend':<8} | {'NFE':>5} | {'min ms':>8} | {'median ms':>9} "
          f"| {'max ms':>8} | {'median / (NFE x call)':>21} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 7}|{'-' * 10}|{'-' * 11}|{'-' * 10}|{'-' * 23}|")
    for name, backend, nfe, lo, med, hi, ratio in rows:
        print(f"| {name:<28} | {backend:<8} | {nfe:>5} | {lo:>8.2f} | {med:>9.2f} | {hi:>8.2f} "
              f"| {ratio:>21.2f} |")


if __name__ == "__main__":
    main()
