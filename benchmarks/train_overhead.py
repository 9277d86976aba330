"""Training-step overhead of ``sdekit.train``: full step time / bare forward+backward time.

For each network, times (a) the bare ``jit(value_and_grad(loss))`` of a DSM-like loss and
(b) the jitted train step that ``sdekit.train.fit`` runs (same loss + gradient-norm clipping,
Adam with warm-up, EMA update, sharding constraints over a mesh of all devices), and optionally
(c) ``fit``'s whole loop per step (host data -> global array, metrics check, progress).
Prints a table of the ratio (b)/(a) and images per second.

Examples::

    python benchmarks/train_overhead.py                                # tiny + psld_cifar10
    python benchmarks/train_overhead.py --net mlp --net tiny --batch 8
    python benchmarks/train_overhead.py --net psld_cifar10 --big-batch 2 --steps 3

Networks ``tiny`` and ``psld_cifar10`` come from ``sdekit.nets.named_net``; ``mlp`` is a small
local MLP on 2-D points (fallback when ``sdekit.nets`` is unavailable).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import sdekit.train as st


class LocalMLP(eqx.Module):
    """``model(x, t, cond=None, *, key=None)`` on (N, 2) points."""

    mlp: eqx.nn.MLP

    def __init__(self, width: int = 256, depth: int = 3, *, key):
        self.mlp = eqx.nn.MLP(3, 2, width, depth, activation=jax.nn.silu, key=key)

    def __call__(self, x, t, cond=None, *, key=None):
        t = jnp.broadcast_to(jnp.reshape(t, (-1, 1)), (x.shape[0], 1))
        return jax.vmap(self.mlp)(jnp.concatenate([x, t], -1))


class LinearDSM(eqx.Module):
    """x_t = (1 - t) x0 + t eps; MSE between model(x_t, t) and eps (dropout key passed)."""

    def __call__(self, model, key, x0, cond=None):
        kt, ke, kd = jr.split(key, 3)
        t = jr.uniform(kt, (x0.shape[0],), minval=1e-3, maxval=1.0)
        eps = jr.normal(ke, x0.shape)
        tb = t.reshape((-1,) + (1,) * (x0.ndim - 1))
        return jnp.mean((model((1 - tb) * x0 + tb * eps, t, key=kd) - eps) ** 2)


def build(name: str, key):
    """(model, example batch shape) for a network name."""
    if name == "mlp":
        return LocalMLP(key=key), (2,)
    from sdekit.nets import named_net

    if name == "psld_cifar10":
        return named_net(name, key=key), (32, 32, 6)
    if name == "tiny":
        return named_net(name, key=key), (16, 16, 3)
    return named_net(name, key=key), None


def timeit(fn, reps: int) -> float:
    """Median wall time (s) of ``fn()`` over ``reps`` runs (``fn`` must block)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name: str, batch: int, steps: int, fit_loop: bool) -> dict:
    key = jr.key(0)
    model, shape = build(name, key)
    if shape is None:
        raise SystemExit(f"--net {name}: unknown input shape; use mlp, tiny or psld_cifar10.")
    n_params = sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    x = np.random.default_rng(0).uniform(-1, 1, (batch,) + shape).astype(np.float32)
    objective = LinearDSM()
    mesh = st.make_mesh()
    opt = st.make_optimizer("adam", 2e-4, warmup_steps=5000, clip_norm=1.0)

    # (a) bare forward + backward
    params, static = eqx.partition(model, eqx.is_inexact_array)

    @jax.jit
    def fwd_bwd(p, k, xb):
        return jax.value_and_grad(lambda q: objective(eqx.combine(q, static), k, xb))(p)

    xj = jnp.asarray(x)
    t0 = time.perf_counter()
    jax.block_until_ready(fwd_bwd(params, key, xj))
    compile_bare = time.perf_counter() - t0
    bare = timeit(lambda: jax.block_until_ready(fwd_bwd(params, key, xj)), steps)

    # (b) fit's jitted step: optimiser, EMA, sharding
    state = st.init_state(model, opt, key=jr.key(1), ema_decays=(0.9999,))
    state = st.shard_state(state, mesh)
    step = st.make_train_step(objective, opt, mesh=mesh, donate=True)
    gx = st.make_global_batch({"image": x}, mesh)
    t0 = time.perf_counter()
    state, m = step(state, gx)
    jax.block_until_ready(m)
    compile_step = time.perf_counter() - t0

    def one():
        nonlocal state
        state, met = step(state, gx)
        jax.block_until_ready((state.model, met))

    full = timeit(one, steps)
    row = {
        "net": name,
        "params": n_params,
        "batch": batch,
        "devices": mesh.size,
        "bare_ms": 1e3 * bare,
        "step_ms": 1e3 * full,
        "ratio": full / bare,
        "img_s": batch / full,
        "compile_s": compile_bare + compile_step,
        "fit_ms": float("nan"),
        # process-wide peak resident memory so far (run the big net alone for its own peak)
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if fit_loop:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.jsonl")

            def data():
                while True:
                    yield {"image": x}

            fresh, _ = build(name, jr.key(0))  # the timed step donated `model`'s buffers
            st.fit(
                objective,
                fresh,
                data(),
                optimizer=opt,
                num_steps=steps + 2,
                key=jr.key(2),
                mesh=mesh,
                metrics_path=path,
                progress=False,
                ema_decays=(0.9999,),
                donate=True,
            )
            import json

            rates = [json.loads(line)["steps_per_sec"] for line in open(path)][2:]
            row["fit_ms"] = 1e3 / statistics.median(rates)
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--net",
        action="append",
        help="mlp, tiny, psld_cifar10 (repeatable); default tiny + psld_cifar10",
    )
    p.add_argument("--batch", type=int, default=16, help="batch for mlp/tiny")
    p.add_argument("--big-batch", type=int, default=2, help="batch for psld_cifar10")
    p.add_argument("--steps", type=int, default=10, help="timed repetitions (median)")
    p.add_argument("--big-steps", type=int, default=3, help="timed repetitions for psld_cifar10")
    p.add_argument("--no-fit-loop", action="store_true", help="skip timing fit's whole loop")
    p.add_argument("--out", help="also write the table to this file")
    a = p.parse_args(argv)
    nets = a.net or ["tiny", "psld_cifar10"]
    rows = []
    for name in nets:
        big = name == "psld_cifar10"
        try:
            rows.append(
                bench(
                    name,
                    a.big_batch if big else a.batch,
                    a.big_steps if big else a.steps,
                    fit_loop=not a.no_fit_loop and not big,
                )
            )
        except ImportError as e:
            print(f"# {name}: sdekit.nets not importable ({e}); use --net mlp", file=sys.stderr)
        print(f"# done {name}", file=sys.stderr, flush=True)
    head = (
        f"{'net':<14}{'params':>12}{'batch':>7}{'dev':>5}{'fwd+bwd ms':>12}{'step ms':>10}"
        f"{'ratio':>8}{'img/s':>10}{'fit ms/step':>13}{'compile s':>11}{'peak RSS GiB':>14}"
    )
    lines = [
        f"# sdekit.train overhead on {jax.devices()[0].platform.upper()} "
        f"(jax {jax.__version__}, {os.cpu_count()} cores); step = fit's jitted step "
        "(Adam + clip + EMA + sharding); ratio = step / fwd+bwd",
        head,
    ]
    for r in rows:
        lines.append(
            f"{r['net']:<14}{r['params']:>12,}{r['batch']:>7}{r['devices']:>5}{r['bare_ms']:>12.2f}"
            f"{r['step_ms']:>10.2f}{r['ratio']:>8.2f}{r['img_s']:>10.1f}{r['fit_ms']:>13.2f}{r['compile_s']:>11.1f}"
            f"{r['peak_rss_gib']:>14.2f}"
        )
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
