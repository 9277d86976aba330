"""NFE vs error of every sampler on the Gaussian oracle (d = 8, full covariance, exact score).

For each method and step count: the network evaluations (NFE, including the final denoising
step that ``sample`` adds) and the relative Frobenius error of the sample covariance and the
relative error of the sample mean, over ``--n`` samples from the same key. The sampling noise of
the covariance estimate alone is about ``sqrt((||S||_F^2 + tr(S)^2) / n) / ||S||_F`` (~3.5 % for
n = 4096), so errors below that floor are indistinguishable.

    python benchmarks/nfe_vs_error.py [--n 4096] [--process vp] [--steps 10 25 50 100 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import sdekit as sk  # noqa: E402
from sdekit.sampling import (  # noqa: E402
    DDIM,
    PC,
    AdaptiveODE,
    Ancestral,
    DPMSolverPP,
    EDMSampler,
    EulerMaruyama,
    sample,
)
from tests.helpers import cov_error, make_gaussian  # noqa: E402
from tests.test_samplers import fast_eps  # noqa: E402  (helpers.oracle_eps via eigh, no solves)

PROCESSES = {"vp": sk.VP, "ve": sk.VE, "edm": sk.EDM, "logsnr": sk.LogSNR}


def methods(n: int, process: str):
    grid = "karras" if process == "edm" else "uniform"
    return {
        "EM": EulerMaruyama(n, grid=grid),
        "PC (1 corrector)": PC(max(n // 2, 1), grid=grid),
        "DDIM eta=0": DDIM(n, grid=grid),
        "ancestral fixed_small": Ancestral(n, variance="fixed_small", grid=grid),
        "EDM Heun": EDMSampler(max(n // 2, 2)),
        "DPM-Solver++(2M)": DPMSolverPP(n, grid="quadratic" if process != "edm" else "logsnr"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="number of samples")
    ap.add_argument("--process", choices=sorted(PROCESSES), default="vp")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100, 200],
                    help="step counts (PC and EDM Heun use half, to match NFE)")
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-2, 1e-3, 1e-5],
                    help="rtol = atol of the adaptive PF-ODE (Tsit5)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    mu, cov = make_gaussian(8)
    p = PROCESSES[args.process]()
    model = fast_eps(p, mu, cov)
    key = jr.key(args.seed)
    print(f"process={type(p).__name__} n={args.n} d=8 seed={args.seed}")
    print(f"{'method':<24} {'setting':>12} {'NFE':>6} {'cov err':>9} {'mean err':>9} {'time s':>7}")
    rows = []
    for n in args.steps:
        for name, m in methods(n, args.process).items():
            rows.append((name, f"steps={getattr(m, 'num_steps', n)}", m))
    for tol in args.tols:
        rows.append(("adaptive PF-ODE Tsit5", f"tol={tol:g}", AdaptiveODE(rtol=tol, atol=tol)))
    rows.sort(key=lambda r: r[0])
    for name, setting, m in rows:
        t0 = time.perf_counter()
        res = sample(key, p, model, (args.n, 8), method=m)
        x = np.asarray(res.samples)
        dt = time.perf_counter() - t0
        merr, cerr = cov_error(x, mu, cov)
        print(f"{name:<24} {setting:>12} {int(res.nfe):>6} {cerr:>9.4f} {merr:>9.4f} {dt:>7.2f}",
              flush=True)


if __name__ == "__main__":
    main()
