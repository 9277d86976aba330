"""Training-step overhead of ``sdekit.train``: full step time / bare forward+backward time.

For each network, times (a) the bare ``jit(value_and_grad(loss))`` of a DSM-like loss and
(b) the jitted train step that ``sdekit.train.fit`` runs (same loss + gradient-norm clipping,
Adam with warm-up, EMA update, sharding constraints over a mesh, donated state), interleaved
(a, b, a, b, ...) so that both see the same machine load. Prints min/median/max wall seconds,
median CPU seconds, the ratio of the medians (wall and CPU), GFLOP/s and the fraction of the
measured fp32 peak of the step, and the PyTorch original's full-step time (measured side by
side by ``pytorch_reference.py``) where there is one.
With ``--devices 1 2 4 8`` the step is also timed on meshes of that many devices (on CPU
the script then asks XLA for 8 simulated host devices; the total work is the same, so this
measures the overhead of data parallelism, not a speed-up).

Examples::

    python benchmarks/train_overhead.py                          # small (B 32), psld (B 2)
    python benchmarks/train_overhead.py --net tiny --net mlp --batch 16 --steps 5
    python benchmarks/train_overhead.py --net tiny --devices 1 2 4 8
    python benchmarks/train_overhead.py --quick

Networks: ``small`` (issue 14's 7.09 M net), ``psld_cifar10``, ``tiny`` from
``sdekit.nets``; ``mlp`` is a small local MLP on 2-D points.
"""

from __future__ import annotations

import argparse
import os
import sys


def _devices_requested(argv) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--devices" not in args:
        return 0
    out = []
    for a in args[args.index("--devices") + 1 :]:
        if a.startswith("-"):
            break
        out.append(int(a))
    return max(out, default=0)


def _ensure_host_devices(n: int) -> None:
    """Ask XLA:CPU for ``n`` simulated devices (before JAX initialises its backend)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if n > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={n}").strip()


_ensure_host_devices(_devices_requested(None) if __name__ == "__main__" else 0)

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
from _perf_common import (  # noqa: E402
    NETS,
    PYTORCH_REFERENCE,
    build_net,
    flops,
    fmt_stats,
    interleave,
    load,
    machine_line,
    measured_peak_gflops,
    rates,
)

import sdekit.train as st  # noqa: E402
from sdekit.nets import with_lean_gradients  # noqa: E402


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
    """(model, example shape) for a network name."""
    if name == "mlp":
        return LocalMLP(key=key), (2,)
    net, size = build_net(name, key)
    return net, (size, size, net.in_channels)


def bench(name: str, batch: int, steps: int, devices: int | None = None) -> dict:
    key = jr.key(0)
    model, shape = build(name, key)
    n_params = sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    x = np.random.default_rng(0).uniform(-1, 1, (batch,) + shape).astype(np.float32)
    objective = LinearDSM()
    mesh = st.make_mesh(jax.devices()[: devices or 1])
    opt = st.make_optimizer("adam", 2e-4, warmup_steps=5000, clip_norm=1.0)

    # (a) bare forward + backward (on the mesh's devices, replicated params, sharded batch)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    gx = st.make_global_batch({"image": x}, mesh)
    params = eqx.filter_shard(
        params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    )

    def fwd_bwd(p, k, xb):
        # the lean copy, as the train step differentiates it (lean_gradients=True)
        return jax.value_and_grad(
            lambda q: objective(with_lean_gradients(eqx.combine(q, static)), k, xb))(p)

    bare_c = jax.jit(fwd_bwd).lower(params, key, gx["image"]).compile()

    # (b) fit's jitted step: optimiser, EMA, sharding, donated state
    state = st.shard_state(st.init_state(model, opt, key=jr.key(1), ema_decays=(0.9999,)), mesh)
    step = st.make_train_step(objective, opt, mesh=mesh, donate=True)
    holder = {"state": state}

    def one_step():
        holder["state"], met = step(holder["state"], gx)
        return holder["state"].model, met

    one_step()  # compile
    try:  # XLA's FLOP count of the whole step (informative only)
        step_flops = flops(step.lower(holder["state"], gx).compile())
    except Exception:  # noqa: BLE001
        step_flops = None
    res = interleave({"bare": lambda: bare_c(params, key, gx["image"]), "step": one_step}, steps)
    return dict(
        net=name,
        params=n_params,
        batch=batch,
        devices=mesh.size,
        bare=res["bare"],
        step=res["step"],
        ratio=res["step"]["med"] / res["bare"]["med"],
        ratio_cpu=res["step"]["cpu"] / res["bare"]["cpu"],
        bare_flops=flops(bare_c),
        step_flops=step_flops,
    )


def table(rows, peak, header) -> list[str]:
    cols = (
        f"| {'net':<12} | {'params':>11} | {'batch':>5} | {'dev':>3} | "
        f"{'fwd+bwd s min/med/max':<22} | {'step s min/med/max':<22} | {'ratio':>5} | "
        f"{'ratio CPU':>9} | {'step GFLOP/s':>12} | {'% peak':>6} | {'PyTorch step s':>14} | "
        f"{'speed vs PyTorch':>16} |"
    )
    lines = [header, "", cols, "|" + "|".join("-" * len(c) for c in cols.split("|")[1:-1]) + "|"]
    for r in rows:
        fl = r["step_flops"] if r["step_flops"] is not None else r["bare_flops"]
        gfs, pct = rates(fl, r["step"], peak)
        ref = PYTORCH_REFERENCE.get((r["net"], r["batch"], "step"))
        lines.append(
            f"| {r['net']:<12} | {r['params']:>11,} | {r['batch']:>5} | {r['devices']:>3} | "
            f"{fmt_stats(r['bare']):<22} | {fmt_stats(r['step']):<22} | {r['ratio']:>5.2f} | "
            f"{r['ratio_cpu']:>9.2f} | {gfs:>12} | {pct:>6} | "
            + (
                f"{ref:>14.2f} | {ref / r['step']['med']:>15.2f}x |"
                if ref
                else f"{'':>14} | {'':>16} |"
            )
        )
    return lines


def main(argv=None) -> list[str]:
    p = argparse.ArgumentParser(
        description="Train step / bare forward+backward, interleaved, with GFLOP/s, % of the "
        "fp32 peak and the PyTorch original's step time (pytorch_reference.py)."
    )
    p.add_argument(
        "--net",
        action="append",
        choices=sorted(set(NETS) | {"mlp"}),
        help="network (repeatable): "
        + ", ".join(sorted(set(NETS) | {"mlp"}))
        + "; default small + psld_cifar10",
    )
    p.add_argument("--batch", type=int, default=32, help="batch for small/tiny/mlp (default 32)")
    p.add_argument("--big-batch", type=int, default=2, help="batch for psld_cifar10 (default 2)")
    p.add_argument("--steps", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--big-steps", type=int, default=3, help="timed rounds for psld_cifar10")
    p.add_argument(
        "--devices",
        type=int,
        nargs="+",
        default=None,
        help="also time the step on meshes of these device counts (e.g. 1 2 4 8; on CPU the "
        "script simulates 8 host devices); the first --net only",
    )
    p.add_argument("--quick", action="store_true", help="tiny and mlp only, batch 16, 3 rounds")
    p.add_argument("--out", help="also write the table to this file")
    a = p.parse_args(argv)
    nets = a.net or (["tiny", "mlp"] if a.quick else ["small", "psld_cifar10"])
    batch = 16 if a.quick and a.batch == 32 else a.batch
    steps = 3 if a.quick and a.steps == 5 else a.steps
    peak = measured_peak_gflops()
    load0 = load()
    rows = []
    for name in nets:
        big = name == "psld_cifar10"
        rows.append(bench(name, a.big_batch if big else batch, a.big_steps if big else steps))
        print(f"# done {name}", file=sys.stderr, flush=True)
    for n in a.devices or []:
        if n > jax.device_count():
            print(f"# skip {n} devices: only {jax.device_count()}", file=sys.stderr)
            continue
        name = nets[0]
        b = a.big_batch if name == "psld_cifar10" else batch
        if b % n:
            print(f"# skip {n} devices: batch {b} is not divisible", file=sys.stderr)
            continue
        rows.append(bench(name, b, steps, devices=n))
        print(f"# done {name} on {n} devices", file=sys.stderr, flush=True)
    header = (
        f"sdekit.train step overhead | {machine_line()} | step = fit's jitted step (Adam + clip "
        "+ EMA + sharding, donated state); ratio = median step / median fwd+bwd | fp32 peak "
        f"(2048^2 matmul) {peak['wall']:.0f} GFLOP/s wall, {peak['cpu']:.0f} GFLOP per "
        f"CPU-second | load average {load0:.1f} -> {load():.1f}"
    )
    lines = table(rows, peak, header)
    print("\n".join(lines))
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
