"""SiT samplers on a Gaussian oracle: NFE vs covariance error (and mean error).

Data ``N(mu, Sigma)`` in ``--dim`` dimensions (a fixed, well-conditioned covariance); the model
is the exact velocity of the linear interpolant. For the adaptive ODE (Dopri5) the tolerance
is varied, for the SDE (diffusion forms ``sigma`` and ``SBDM``) and the fixed-step Heun ODE
the number of steps. Errors are relative Frobenius norms of the sample covariance against
Sigma (``--num`` samples: the Monte-Carlo floor is about ``sqrt(2 / num)``). For the ODEs,
``map err`` is the discretisation error alone: the exact flow of Gaussian data maps the prior
draw ``z`` to ``mu + Sigma^(1/2) z``, and the column is the RMS distance of the samples from
that, relative to the RMS of ``Sigma^(1/2) z``.

    python benchmarks/sit_oracle.py --num 20000
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import jax.random as jr
import numpy as np

import sdekit as sk
from sdekit.sampling import ODE, AdaptiveODE, InterpolantSDE, sample


def gaussian(d, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=d) * 0.5
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    cov = a @ a.T + 0.3 * np.eye(d)
    return mu, cov / np.max(np.diag(cov))


def oracle_velocity(p, mu, cov):
    w_np, v_np = np.linalg.eigh(cov)
    w, v, mu = (jnp.asarray(w_np, jnp.float32), jnp.asarray(v_np, jnp.float32),
                jnp.asarray(mu, jnp.float32))

    def vel(x, t):
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None]
        a, s, da, ds = p.alpha(t), p.sigma(t), p.d_alpha(t), p.d_sigma(t)
        r = (x - a * mu) @ v
        den = a**2 * w + s**2
        return da * (mu + ((a * w / den) * r) @ v.T) + ds * (((s / den) * r) @ v.T)

    return vel


def errors(x, mu, cov):
    x = np.asarray(x, np.float64)
    c = np.cov(x.T)
    return (float(np.linalg.norm(x.mean(0) - mu) / np.linalg.norm(mu)),
            float(np.linalg.norm(c - cov) / np.linalg.norm(cov)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=20000, help="samples per run")
    ap.add_argument("--dim", type=int, default=4, help="data dimension")
    ap.add_argument("--seed", type=int, default=0, help="PRNG seed")
    args = ap.parse_args(argv)
    mu, cov = gaussian(args.dim, 3)
    p = sk.Interpolant("linear")
    model = oracle_velocity(p, mu, cov)
    shape = (args.num, args.dim)
    key = jr.key(args.seed)
    print(f"Monte-Carlo floor of the covariance error ~ {np.sqrt(2 / args.num):.3f}")
    w, v = np.linalg.eigh(cov)
    z = np.asarray(p.prior_sample(jr.split(key)[0], shape), np.float64)
    exact = mu + z @ (v * np.sqrt(w)) @ v.T

    def map_err(x):
        d = np.asarray(x, np.float64) - exact
        return float(np.sqrt(np.mean(d**2) / np.mean((exact - mu) ** 2)))

    print(f"{'sampler':<34} {'setting':>10} {'NFE':>6} {'mean err':>9} {'cov err':>8} "
          f"{'map err':>8}")
    for tol in (1e-2, 1e-3, 1e-4, 1e-6):
        r = sample(key, p, model, shape, method=AdaptiveODE(solver="dopri5", rtol=tol, atol=tol),
                   prediction="velocity", denoise="none")
        me, ce = errors(r.samples, mu, cov)
        print(f"{'ODE Dopri5 (rtol = atol)':<34} {tol:>10g} {int(r.nfe):>6} {me:>9.4f} {ce:>8.4f} "
              f"{map_err(r.samples):>8.1e}")
    for n in (5, 10, 25, 50):
        r = sample(key, p, model, shape, method=ODE(num_steps=n, solver="heun"),
                   prediction="velocity", denoise="none")
        me, ce = errors(r.samples, mu, cov)
        print(f"{'ODE Heun (fixed)':<34} {n:>10} {int(r.nfe):>6} {me:>9.4f} {ce:>8.4f} "
              f"{map_err(r.samples):>8.1e}")
    for form, t_start in (("sigma", None), ("SBDM", 1 - 1e-3)):
        for n in (10, 25, 50, 100, 250, 500):
            sde = InterpolantSDE(num_steps=n, diffusion=form)
            r = sample(key, p, model, shape, method=sde, prediction="velocity", t_start=t_start)
            me, ce = errors(r.samples, mu, cov)
            print(f"{'SDE Euler ' + form + ' (Mean last step)':<34} {n:>10} {int(r.nfe):>6} "
                  f"{me:>9.4f} {ce:>8.4f}")


if __name__ == "__main__":
    main()
