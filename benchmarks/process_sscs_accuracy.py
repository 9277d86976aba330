"""SSCS variants: Var(x) error with the exact score on N(0, var) data (spec psld.md 11.5).

Prints, for each process and variant, the error of the sample variance after ``n`` network
evaluations (``n - 1`` SSCS steps on ``[1e-3, 1]`` plus PSLD's Euler denoising step), with the
same random numbers for every variant (common random numbers: differences between variants are
far more precise than each error's Monte-Carlo standard error, shown as ``se``).

    python benchmarks/process_sscs_accuracy.py [--n 100] [--samples 400000]
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import jax.random as jr
import numpy as np

import sdekit as sk
from sdekit.sampling import SSCS, sample


def oracle(p, var):
    """Exact eps network for x0 ~ N(0, var): eps = C^T Sigma_marg^{-1} z."""
    s0 = np.asarray(p.initial_covariance()) + np.diag([var] + [0.0] * (p.k - 1))

    def eps_net(z, t):
        tb = t[0]
        c = p.kernel_factor(tb).astype(z.dtype)
        prec = jnp.linalg.inv(p.kernel_covariance(tb, s0)).astype(z.dtype)
        return p.select_predicted(p.apply(jnp.swapaxes(c, -1, -2), p.apply(prec, z)))

    return eps_net


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="network evaluations (n - 1 SSCS steps)")
    ap.add_argument("--samples", type=int, default=400_000, help="number of 1-d samples")
    ap.add_argument("--var", type=float, default=0.25, help="data variance")
    args = ap.parse_args(argv)
    procs = {
        "PSLD beta 0.1->20, Gamma 0.5, nu 2.5": sk.PSLD(beta_min=0.1, beta_max=20.0, gamma=0.5,
                                                        nu=2.5),
        "PSLD beta 0.1->20, Gamma 0.01, nu 4.01": sk.PSLD(beta_min=0.1, beta_max=20.0),
        "CLD beta 0.1->20 (PSLD Gamma 0, nu 4)": sk.PSLD(beta_min=0.1, beta_max=20.0, gamma=0.0,
                                                        nu=4.0),
        "PSLD beta 8 (constant), Gamma 0.01": sk.PSLD(),
    }
    se = args.var * np.sqrt(2.0 / args.samples)
    print(f"| process | variant | Var(x) error (se {se:.4f}) |")
    print("| --- | --- | --- |")
    for name, p in procs.items():
        for variant in ("original", "start", "midpoint"):
            res = sample(jr.key(0), p, oracle(p, args.var), (args.samples, 1),
                         method=SSCS(num_steps=args.n - 1, variant=variant), t_end=1e-3,
                         denoise="euler")
            v = float(np.var(np.asarray(res.samples, np.float64)))
            print(f"| {name} | {variant} | {v - args.var:+.4f} |")


if __name__ == "__main__":
    main()
