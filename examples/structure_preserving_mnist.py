"""Structure-preserving diffusion on C4/D4-rotated MNIST (Lu, Szabados & Yu 2024), end to end.

Train a denoiser whose samples are exactly (or approximately) invariant under the group, sample,
and measure the equivariance error of the network and of the whole sampler:

    python examples/structure_preserving_mnist.py --variant equivariant --group C4
    python examples/structure_preserving_mnist.py --variant invariant       # paper's weight-tied
    python examples/structure_preserving_mnist.py --variant symmetrised     # plain net, averaged
    python examples/structure_preserving_mnist.py --variant eqv_reg         # plain + regulariser
    python examples/structure_preserving_mnist.py --variant plain           # baseline

MNIST is read from the official idx files (downloaded into the cache) and every training image
is rotated (C4) or rotated and flipped (D4) once by a random element, as in the paper's C4-MNIST.
The process is EDM (sigma = t) with EDM preconditioning, Karras weighting and log-normal noise
levels (spec structure_preserving.md sections 4-6).

Outputs in --out: metrics.jsonl (loss, and at the end the equivariance errors), samples.png,
equivariance.png (a noise draw, its transforms, and the samples from them), summary.json.

Smoke test on built-in synthetic 16x16 images (tiny network, a few steps, CPU):

    python examples/structure_preserving_mnist.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

VARIANTS = ("equivariant", "invariant", "symmetrised", "eqv_reg", "plain")
SAMPLERS = ("edm_heun", "ode_heun", "ddim", "dpm_solver++")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="structure_preserving_mnist.py",
        description="Train and sample a structure-preserving (group-equivariant) diffusion model "
                    "on rotated MNIST; report the equivariance errors of the network and the "
                    "sampler.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = ap.add_argument_group("run")
    g.add_argument("--out", default="runs/structure_preserving_mnist",
                   help="output directory: metrics.jsonl, PNGs, summary.json")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--smoke", action="store_true",
                   help="tiny network, built-in synthetic 16x16 images and a few steps: checks the "
                        "whole pipeline on CPU in about a minute (compiles with "
                        "JAX_DISABLE_MOST_OPTIMIZATIONS=1 unless set)")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    g = ap.add_argument_group("data")
    g.add_argument("--group", choices=["C4", "D4"], default="C4",
                   help="symmetry group of the data and of the model")
    g.add_argument("--num-train", type=int, default=6000,
                   help="training images (the paper's subsets: 600, 3000, 6000)")
    g.add_argument("--data-root", default=None,
                   help="MNIST cache directory (default $SDEKIT_DATA or ~/.cache/sdekit)")
    g.add_argument("--synthetic", action="store_true",
                   help="train on the built-in synthetic 16x16 glyphs instead of MNIST (implied by "
                        "--smoke)")
    g.add_argument("--no-class-cond", action="store_true",
                   help="unconditional model (default: conditioned on the digit label)")
    g = ap.add_argument_group("model")
    g.add_argument("--variant", choices=VARIANTS, default="equivariant",
                   help="equivariant: regular-field group CNN (exact); invariant: the paper's "
                        "invariant-kernel UNet (exact); symmetrised: plain UNet averaged over the "
                        "group at sampling time (exact, |G| evaluations); eqv_reg: plain UNet "
                        "trained with the equivariance regulariser (approximate); plain: baseline")
    g.add_argument("--net", default=None,
                   help="named network (default: sp_mnist_c4 / sp_mnist_d4 / sp_mnist_invariant "
                        "for the equivariant variants, mnist_small for the plain ones)")
    g.add_argument("--reg-weight", type=float, default=1.0, help="eqv_reg: regulariser weight")
    g.add_argument("--target-ema", type=float, default=0.95,
                   help="eqv_reg: EMA rate of the target network (the paper's start_ema)")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=100_000, help="training steps")
    g.add_argument("--batch-size", type=int, default=64, help="batch size")
    g.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    g.add_argument("--ema", type=float, default=0.9999, help="EMA decay of the sampled weights")
    g.add_argument("--log-every", type=int, default=100, help="steps between metric lines")
    g = ap.add_argument_group("sampling")
    g.add_argument("--sampler", choices=SAMPLERS, default="edm_heun",
                   help="deterministic sampler used for samples and the error measurement")
    g.add_argument("--sample-steps", type=int, default=40, help="sampler steps (paper: 40)")
    g.add_argument("--num-samples", type=int, default=64, help="images in samples.png")
    g.add_argument("--num-error", type=int, default=4,
                   help="noise draws for the sampler equivariance error (each run |G| times)")
    return ap


def _smoke_overrides(args: argparse.Namespace) -> None:
    args.out = args.out if args.out != "runs/structure_preserving_mnist" else "runs/sp_smoke"
    args.steps, args.batch_size, args.lr, args.ema = 30, 16, 2e-3, 0.9
    args.log_every, args.sample_steps = 10, 6
    # one sampling batch shape for the grid and the orbit (|G| * num_error): one compilation
    args.num_samples, args.num_error = 8, 2 if args.group == "C4" else 1


def synthetic_digits(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Built-in data for smoke runs: ``n`` uint8 grey images ``(n, size, size, 1)`` of three
    asymmetric glyphs (an L, a T and a bar with a dot; label 0-2), with random stroke width and
    offset (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size, 1), np.uint8)
    labels = rng.integers(0, 3, n).astype(np.int32)
    for i in range(n):
        img = np.zeros((size, size))
        w = int(rng.integers(1, 3))
        o = size // 4 + int(rng.integers(-1, 2))
        e = size - size // 4 + int(rng.integers(-1, 2))
        if labels[i] == 0:  # L
            img[o:e, o:o + w] = 1
            img[e - w:e, o:e - 2] = 1
        elif labels[i] == 1:  # T
            img[o:o + w, o:e] = 1
            img[o:e, (o + e) // 2:(o + e) // 2 + w] = 1
        else:  # bar and dot
            img[o:e, o:o + w] = 1
            img[o:o + 2, e - 2:e] = 1
        out[i, ..., 0] = (255 * img).astype(np.uint8)
    return out, labels


def _network(args, size: int, num_classes, key):
    from sdekit.nets import named_net

    equi = args.variant in ("equivariant", "invariant")
    if args.net is not None:
        name = args.net
    elif args.smoke or args.synthetic:
        name = "equivariant_tiny" if equi else "tiny"
    elif args.variant == "invariant":
        name = "sp_mnist_invariant"
    else:
        name = f"sp_mnist_{args.group.lower()}" if equi else "mnist_small"
    kw = dict(in_channels=1, out_channels=1, image_size=size, num_classes=num_classes)
    if equi:
        kw.update(group=args.group)
        if args.variant == "invariant":
            kw.update(kind="invariant")
    if (args.smoke or args.synthetic) and not equi:
        kw.update(nf=8, dropout=0.0)
    return name, named_net(name, key=key, **kw)


def _sampler(name: str, steps: int):
    from sdekit.sampling import DDIM, ODE, DPMSolverPP, EDMSampler

    return {"edm_heun": lambda: EDMSampler(num_steps=steps),
            "ode_heun": lambda: ODE(num_steps=steps, solver="heun"),
            "ddim": lambda: DDIM(num_steps=steps, grid="edm"),
            "dpm_solver++": lambda: DPMSolverPP(num_steps=steps, grid="edm")}[name]()


def run(args: argparse.Namespace) -> dict:
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    import optax
    from tqdm.auto import tqdm

    import sdekit as sk
    from sdekit.data import load_rotated_mnist, make_pipeline, transform_once
    from sdekit.nets.equivariant import equivariance_error, get_group
    from sdekit.objectives import DSM, EqvReg, LogNormalTime, ema_target
    from sdekit.sampling import PredictionFn
    from sdekit.train import save_image_grid
    from sdekit.wrappers import Precond, symmetrise

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = (out / "metrics.jsonl").open("w")

    def log(**kw):
        metrics.write(json.dumps(kw) + "\n")
        metrics.flush()

    # -- data: each image transformed once by a random group element
    if args.smoke or args.synthetic:
        images, labels = synthetic_digits(256, 16, seed=args.seed)
        images, _ = transform_once(images, args.group, seed=args.seed)
        num_classes = 3
    else:
        images, labels = load_rotated_mnist("train", group=args.group, num=args.num_train,
                                            seed=args.seed, root=args.data_root)
        num_classes = 10
    if args.no_class_cond:
        num_classes = None
    size = images.shape[1]
    pipe = make_pipeline(sk.data.ArraySource(images, labels), batch_size=args.batch_size,
                         seed=args.seed)

    # -- model, objective
    key = jr.key(args.seed)
    k_net, k_train, k_sample = jr.split(key, 3)
    process = sk.EDM()
    net_name, net = _network(args, size, num_classes, k_net)
    model = Precond(net, process)
    dsm = DSM(process, prediction="x0", target="x0", weighting="karras",
              time_sampler=LogNormalTime())
    weight = args.reg_weight if args.variant == "eqv_reg" else 0.0
    objective = EqvReg(dsm, args.group, weight=weight) if weight > 0 else dsm
    opt = optax.adam(args.lr)
    params = eqx.filter(model, eqx.is_array)
    opt_state = opt.init(params)
    ema, target = model, model

    @eqx.filter_jit
    def step(model, ema, target, opt_state, x, y, key):
        cond = None if num_classes is None else y
        def loss_fn(m):
            if weight > 0:
                return objective(m, key, x, cond, aux=target)
            return objective(m, key, x, cond)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
        return (model, ema_target(ema, model, args.ema), ema_target(target, model, args.target_ema),
                opt_state, loss)

    t0 = time.time()
    bar = tqdm(range(args.steps), disable=args.no_progress, desc=f"train {args.variant}")
    for i in bar:
        batch = next(pipe)
        model, ema, target, opt_state, loss = step(
            model, ema, target, opt_state, jnp.asarray(batch["image"]),
            jnp.asarray(batch["label"]), jr.fold_in(k_train, i))
        if (i + 1) % args.log_every == 0 or i + 1 == args.steps:
            log(step=i + 1, loss=float(loss), time=round(time.time() - t0, 2))
            bar.set_postfix(loss=f"{float(loss):.4f}")
    train_time = time.time() - t0

    # -- the denoiser that is sampled
    denoiser = ema
    if args.variant == "symmetrised":
        denoiser = Precond(symmetrise(ema.net, args.group), process)
    grp = get_group(args.group)
    sampler = _sampler(args.sampler, args.sample_steps)

    def draw(z, cond):
        fn = PredictionFn(process, denoiser, "x0", cond)
        x, _ = sampler.solve(k_sample, fn, z, float(process.t0))
        if not sampler.returns_x0:
            x = fn.x0(x, float(process.t0))
        return x

    draw = eqx.filter_jit(draw)
    n = args.num_samples
    z = process.t1 * jr.normal(jr.fold_in(k_sample, 1), (n, size, size, 1))
    cond = None if num_classes is None else jnp.arange(n) % num_classes
    t1 = time.time()
    samples = np.asarray(draw(z, cond))
    save_image_grid(samples, out / "samples.png")

    # -- equivariance errors: the network (at a few noise levels) and the whole sampler
    xe = jnp.asarray(images[: args.num_error].astype(np.float32) / 127.5 - 1.0)
    sig = jnp.geomspace(0.05, 20.0, args.num_error) if args.num_error > 1 else jnp.array([1.0])
    x_t = xe + sig[:, None, None, None] * jr.normal(jr.fold_in(k_sample, 2), xe.shape)
    c_err = None if num_classes is None else jnp.arange(args.num_error) % num_classes
    net_err = float(eqx.filter_jit(
        lambda d, x, t, c: equivariance_error(d, x, args.group, t=t, cond=c))(
            denoiser, x_t, sig, c_err))
    ze = z[: args.num_error]
    orbit = jnp.concatenate(grp.orbit(ze), axis=0)
    c_orbit = None if c_err is None else jnp.tile(c_err, grp.order)
    xs = np.asarray(draw(orbit, c_orbit))
    m = ze.shape[0]
    samp_err = max(float(np.max(np.abs(xs[g * m:(g + 1) * m] - np.asarray(grp.act(g, xs[:m])))))
                   for g in range(grp.order))
    save_image_grid(np.concatenate([np.asarray(orbit[::m]) / float(process.t1) * 0.5,
                                    xs[::m]]), out / "equivariance.png", nrow=grp.order)
    summary = dict(variant=args.variant, group=args.group, net=net_name,
                   parameters=sk.nets.count_parameters(net), steps=args.steps,
                   final_loss=float(loss), train_seconds=round(train_time, 1),
                   sampler=args.sampler, sample_steps=args.sample_steps,
                   sample_seconds=round(time.time() - t1, 1),
                   network_equivariance_error=net_err,
                   sampler_equivariance_error=samp_err)
    log(**summary)
    metrics.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if hasattr(pipe, "close"):
        pipe.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("steps", "batch_size", "sample_steps", "num_samples", "num_error", "num_train"):
        if getattr(args, name) < 1:
            _parser().error(f"--{name.replace('_', '-')}: got {getattr(args, name)}, expected >= 1")
    if not 0.0 <= args.target_ema < 1.0:
        _parser().error(f"--target-ema: got {args.target_ema}, expected a rate in [0, 1)")
    if args.smoke:
        _smoke_overrides(args)
        # the smoke run checks the pipeline, not speed: compile with fewer XLA optimisations
        os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    t0 = time.time()
    summary = run(args)
    print(json.dumps(summary, indent=2))
    print(f"total: {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
