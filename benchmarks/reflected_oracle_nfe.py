"""NFE against error of the reflected samplers on a closed-form data law on [0, 1].

Data: atoms (0.1, 0.5, 0.97) with weights (0.2, 0.5, 0.3), diffused by ``ReflectedVE()``
(sigma_min 0.01, sigma_max 5); the exact score is `sdekit.processes.ReflectedMixture`. Every
sampler runs from the uniform prior to ``t0 = 1e-5``; the error is the Kolmogorov-Smirnov
distance between the samples and the exact law p_t0 (whose CDF is integrated numerically), with
``N`` samples (noise floor about ``0.9 / sqrt(N)``). Also prints the largest weight deviation in
standard errors.

    python benchmarks/reflected_oracle_nfe.py --n 10000
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import sdekit as sk  # noqa: E402
from sdekit.processes import ReflectedMixture  # noqa: E402
from sdekit.sampling import ODE, ReflectedODE, ReflectedPC  # noqa: E402

ATOMS = np.array([0.1, 0.5, 0.97])
WEIGHTS = np.array([0.2, 0.5, 0.3])


def exact_cdf(process, oracle):
    with jax.enable_x64(True):
        grid = np.linspace(0.0, 1.0, 200_001)
        lp = np.asarray(oracle.log_prob(jnp.asarray(grid)[:, None], float(process.t0)))
    dens = np.exp(lp)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    return grid, cdf / cdf[-1]


def ks(samples, grid, cdf):
    x = np.sort(np.asarray(samples).ravel())
    f = np.interp(x, grid, cdf)
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def weights_z(samples):
    idx = np.argmin(np.abs(np.asarray(samples).ravel()[:, None] - ATOMS), -1)
    freq = np.bincount(idx, minlength=3) / idx.size
    return float(np.max(np.abs(freq - WEIGHTS) / np.sqrt(WEIGHTS * (1 - WEIGHTS) / idx.size)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="samples per run")
    ap.add_argument("--only-new", action="store_true", help="run only the unmollified rows")
    args = ap.parse_args()
    p = sk.ReflectedVE()
    oracle = ReflectedMixture(p, jnp.asarray(ATOMS), jnp.asarray(WEIGHTS))
    grid, cdf = exact_cdf(p, oracle)
    runs = [(f"PC (reference dt), N={n}", ReflectedPC(num_steps=n))
            for n in (25, 50, 100, 200)]
    runs += [(f"ODE Heun fixed, {n} steps", ReflectedODE(num_steps=n, solver="heun"))
             for n in (5, 10, 25, 50)]
    runs += [(f"ODE Tsit5 adaptive, tol={t:g}", ReflectedODE(rtol=t, atol=t))
             for t in (1e-1, 1e-2, 1e-3, 1e-4)]
    runs += [(f"ODE Heun fixed, no mollifier, {n} steps", ReflectedODE(num_steps=n, solver="heun",
                                                                      moll=None))
             for n in (10, 25)]
    runs += [(f"ODE Tsit5 adaptive, no mollifier, tol={t:g}", ReflectedODE(rtol=t, atol=t,
                                                                          moll=None))
             for t in (1e-2, 1e-3)]
    runs += [("sdekit.sampling.ODE (Heun, no mollifier, prior on the full cube), 25 steps",
              ODE(num_steps=25))]
    if args.only_new:
        runs = runs[-5:]
    if not args.only_new:
        print(f"samples per run: {args.n}; KS noise floor ~ {0.9 / np.sqrt(args.n):.4f}")
        print("| sampler | NFE | KS distance | max weight error (s.e.) | seconds |")
        print("| --- | --- | --- | --- | --- |")
    for name, method in runs:
        t0 = time.time()
        r = sk.sample(jr.key(0), p, oracle, (args.n, 1), method=method, prediction="score")
        x = np.asarray(r.samples)
        assert x.min() >= 0 and x.max() <= 1
        print(f"| {name} | {int(r.nfe)} | {ks(x, grid, cdf):.4f} | {weights_z(x):.2f} | "
              f"{time.time() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
