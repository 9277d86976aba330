"""Reflected diffusion on CIFAR-10 (Lou & Ermon, "Reflected Diffusion Models", ICML 2023).

Images live in [0, 1]^d; the forward process is the reflected VE SDE (``sdekit.ReflectedVE``),
the network (DDPM++ "deep", 107.6 M parameters) is conditioned on sigma(t) and its output F is
turned into the score F / sigma, trained with constrained (sigma^2-weighted) denoising score
matching against the exact reflected heat-kernel score. Defaults are the paper's CIFAR-10
generation recipe (sigma_min 0.01, sigma_max 5, Adam 2e-4 with 5000 warm-up steps, clip 1,
EMA 0.9999 with score_sde's warm-up, batch 128, 1.3 M steps); use ``--sigma-min 1e-4`` and
``--no-flip`` for the likelihood configuration.

Train (the global batch is sharded over all devices; a killed run resumes from its last
checkpoint when started again with the same --out):

    python examples/reflected_cifar10.py train --out runs/reflected_cifar10

Sample from the EMA weights (PNG grid + .npz of uint8 images for FID tools):

    python examples/reflected_cifar10.py sample --out runs/reflected_cifar10 --method pc
    python examples/reflected_cifar10.py sample --out runs/reflected_cifar10 --method ode

Bits per dimension on the test set (probability-flow ODE, Hutchinson divergence, uniform
dequantisation, uniform prior):

    python examples/reflected_cifar10.py bpd --out runs/reflected_cifar10 --num 10000

Smoke test of the whole pipeline (train, sample with PC and ODE, bpd) on built-in synthetic
images with a tiny network, on CPU:

    python examples/reflected_cifar10.py --smoke
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

SUBCOMMANDS = ("train", "sample", "bpd")
PROCESS_KEYS = ("sigma_min", "sigma_max", "t_eps")


def _add_common(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("run")
    g.add_argument("--out", default="runs/reflected_cifar10",
                   help="run directory: checkpoints, metrics.jsonl, samples")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--smoke", action="store_true",
                   help="tiny network, built-in synthetic 16x16 images and a few steps: runs "
                        "train, sample (PC and ODE) and bpd end to end on CPU in about a minute")
    g = ap.add_argument_group("process (reflected VE SDE on [0,1]^d; spec reflected.md sec. 2)")
    g.add_argument("--sigma-min", type=float, default=0.01,
                   help="sigma at t = 0 (0.01 for FID, 1e-4 for likelihood)")
    g.add_argument("--sigma-max", type=float, default=5.0,
                   help="sigma at t = 1 (the uniform prior is exact to 5e-54 at 5)")
    g.add_argument("--t-eps", type=float, default=1e-5,
                   help="smallest time: training t ~ U(t_eps, 1) and the samplers' end time")


def _train_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="reflected_cifar10.py [train]",
        description="Train reflected diffusion with constrained denoising score matching on "
                    "CIFAR-10 (the paper's recipe by default). Resumes from the latest checkpoint "
                    "in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(ap)
    g = ap.add_argument_group("data")
    g.add_argument("--data-root", default=None,
                   help="directory holding cifar-10-python.tar.gz (default: $SDEKIT_DATA or "
                        "~/.cache/sdekit; downloaded with checksum verification if missing)")
    g.add_argument("--no-flip", action="store_true",
                   help="disable random horizontal flips (the likelihood configuration)")
    g = ap.add_argument_group("network (DDPM++ deep; spec reflected.md sec. 9)")
    g.add_argument("--net", default="reflected_ddpmpp_cifar10",
                   help="named network config from sdekit.nets.NET_CONFIGS")
    g.add_argument("--dropout", type=float, default=None, help="override the config's dropout")
    g.add_argument("--bf16", action="store_true", help="bfloat16 compute, float32 parameters")
    g = ap.add_argument_group("objective (constrained DSM; spec reflected.md sec. 5)")
    g.add_argument("--weighting", choices=["sigma2", "likelihood"], default="sigma2",
                   help="loss weight sigma(t)^2 or g(t)^2 (the same up to 2 log(sigma_max/"
                        "sigma_min) for this process)")
    g.add_argument("--reduce", choices=["half_sum", "mean"], default="half_sum",
                   help="half the sum over dimensions (the reference) or the mean")
    g = ap.add_argument_group("optimisation (spec reflected.md sec. 10)")
    g.add_argument("--steps", type=int, default=1_300_001, help="training steps")
    g.add_argument("--batch-size", type=int, default=128,
                   help="global batch size, split over all devices")
    g.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate")
    g.add_argument("--warmup", type=int, default=5000, help="linear warm-up steps (from lr 0)")
    g.add_argument("--clip", type=float, default=1.0, help="gradient global-norm clip")
    g.add_argument("--ema", type=float, default=0.9999,
                   help="EMA decay, with the warm-up min(decay, (1 + n) / (10 + n))")
    g.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    g = ap.add_argument_group("logging")
    g.add_argument("--checkpoint-every", type=int, default=10_000,
                   help="steps between checkpoints")
    g.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    g.add_argument("--sample-every", type=int, default=50_000, help="steps between sample grids")
    g.add_argument("--sample-steps", type=int, default=100,
                   help="reflected PC steps for the periodic grids")
    g.add_argument("--num-grid", type=int, default=64, help="images in periodic grids")
    g.add_argument("--log-every", type=int, default=100, help="steps between metric lines")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return ap


def _add_restore(g) -> None:
    g.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    g.add_argument("--checkpoint", default=None, help="checkpoint file (default: latest in --out)")


def _sample_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="reflected_cifar10.py sample",
        description="Sample a trained model (EMA weights by default); every iterate stays in "
                    "[0, 1]. Writes a PNG grid and an .npz of uint8 images (key 'images', NHWC) "
                    "for FID tools.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(ap)
    g = ap.add_argument_group("sampling (spec reflected.md sec. 6)")
    g.add_argument("--method", choices=["pc", "ode", "adaptive_sde"], default="pc",
                   help="reference PC sampler (reflected Euler-Maruyama, optional Langevin "
                        "corrector), probability-flow ODE with the wall mollifier (adaptive), or "
                        "the reverse SDE with an adaptive solver")
    g.add_argument("--steps", type=int, default=999,
                   help="pc: updates (999 = the reference's N = 1000 grid points)")
    g.add_argument("--dt", choices=["reference", "grid"], default="reference",
                   help="pc: step length 1/N (reference) or the grid spacing")
    g.add_argument("--corrector", choices=["none", "langevin"], default="none",
                   help="pc: Langevin corrector")
    g.add_argument("--snr", type=float, default=0.01, help="pc: corrector signal-to-noise ratio")
    g.add_argument("--projection", choices=["fold", "clip"], default="fold",
                   help="pc: reflection (fold) or thresholding (clip) after every update")
    g.add_argument("--tol", type=float, default=1e-5, help="ode / adaptive_sde: rtol = atol")
    g.add_argument("--moll", type=float, default=200.0,
                   help="ode: mollifier strength (<= 0 disables it)")
    g.add_argument("--num", type=int, default=64, help="number of images")
    g.add_argument("--batch", type=int, default=64, help="images per sampling call")
    _add_restore(g)
    return ap


def _bpd_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="reflected_cifar10.py bpd",
        description="Bits per dimension of test images under the probability-flow ODE (uniform "
                    "dequantisation, uniform prior; spec reflected.md sec. 8). Appends a line to "
                    "bpd.jsonl.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(ap)
    g = ap.add_argument_group("likelihood")
    g.add_argument("--data-root", default=None, help="directory holding cifar-10-python.tar.gz")
    g.add_argument("--num", type=int, default=10_000, help="test images evaluated")
    g.add_argument("--batch", type=int, default=50, help="images per ODE solve")
    g.add_argument("--divergence", choices=["hutchinson", "exact"], default="hutchinson",
                   help="divergence estimator (exact costs d JVPs per step)")
    g.add_argument("--probe", choices=["rademacher", "gaussian"], default="rademacher",
                   help="Hutchinson probe distribution")
    g.add_argument("--tol", type=float, default=1e-5, help="ODE rtol = atol")
    g.add_argument("--repeats", type=int, default=1, help="dequantisation draws per image")
    _add_restore(g)
    return ap


def _smoke_overrides(args: argparse.Namespace, command: str) -> None:
    """Settings of the --smoke run (small enough for a CPU, same code path)."""
    args.out = args.out if args.out != "runs/reflected_cifar10" else "runs/reflected_smoke"
    if command == "train":
        args.net, args.steps, args.batch_size = "tiny", 40, 16
        args.warmup, args.checkpoint_every, args.sample_every = 10, 20, 40
        args.sample_steps, args.num_grid, args.log_every, args.ema = 10, 16, 5, 0.99
        args.lr = 1e-3
    elif command == "sample":
        args.num, args.batch = 8, 8
        args.steps = min(args.steps, 20)
        args.tol = max(args.tol, 1e-2)
    else:
        args.num, args.batch, args.tol = 2, 2, max(args.tol, 1e-2)


def synthetic_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Built-in data for smoke runs: ``n`` uint8 RGB images of a bright disc or square on a
    dark-to-light background, many pixels at the extremes 0 and 255 (deterministic in
    ``seed``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = rng.uniform(0, 1, 3)[None, None] * yy[..., None]
        cy, cx = rng.uniform(0.3, 0.7, 2)
        r = rng.uniform(0.15, 0.3)
        if rng.random() < 0.5:
            mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[mask] = (rng.random(3) < 0.5).astype(float)  # saturated colours: 0 or 1 per channel
        out[i] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return out


def _process(cfg: dict):
    import sdekit as sk

    return sk.ReflectedVE(sigma_min=float(cfg["sigma_min"]), sigma_max=float(cfg["sigma_max"]),
                          t0=float(cfg["t_eps"]))


def _model(cfg: dict, process, key):
    from sdekit.nets import named_net
    from sdekit.wrappers import SigmaScaledScore

    net = named_net(cfg["net"], key=key, in_channels=3, out_channels=3, **cfg["net_overrides"])
    return SigmaScaledScore(net, process)


def _sampler(args):
    from sdekit.sampling import AdaptiveSDE, ReflectedODE, ReflectedPC

    if args.method == "pc":
        return ReflectedPC(num_steps=args.steps, dt=args.dt, corrector=args.corrector,
                           snr=args.snr, projection=args.projection)
    if args.method == "ode":
        return ReflectedODE(rtol=args.tol, atol=args.tol,
                            moll=args.moll if args.moll > 0 else None)
    return AdaptiveSDE(rtol=args.tol, atol=args.tol)


def _to_uint8(x) -> np.ndarray:
    return np.clip(np.round(255 * np.asarray(x)), 0, 255).astype(np.uint8)


def train(args: argparse.Namespace) -> int:
    import jax
    import jax.random as jr

    from sdekit.data import CIFAR10, make_pipeline
    from sdekit.objectives import ConstrainedDSM, UniformTime
    from sdekit.sampling import ReflectedPC, sample
    from sdekit.train import fit, make_optimizer, maybe_initialize_distributed

    maybe_initialize_distributed()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        source, size = synthetic_images(256, 16, seed=args.seed), 16
    else:
        source, size = CIFAR10("train", root=args.data_root), 32
    overrides = {"image_size": size}
    if args.smoke:  # the reference's conditioning: Fourier features of log sigma, x -> 2x - 1
        overrides.update(embedding_type="fourier", fourier_scale=16.0, center_input=True)
    if args.dropout is not None:
        overrides["dropout"] = args.dropout
    if args.bf16:
        overrides["compute_dtype"] = "bfloat16"
    cfg = {"net": args.net, "net_overrides": overrides, "image_size": size,
           **{k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    process = _process(cfg)

    n_dev = jax.device_count()
    if args.batch_size % n_dev:
        raise SystemExit(f"error: argument --batch-size: got {args.batch_size}, expected a "
                         f"multiple of the {n_dev} devices.")
    data = make_pipeline(source, batch_size=args.batch_size // jax.process_count(),
                         seed=args.seed, value_range="[0,1]",
                         augment=None if args.no_flip else "flip",
                         process_index=jax.process_index(), process_count=jax.process_count())
    model = _model(cfg, process, jr.key(args.seed))
    objective = ConstrainedDSM(process, weighting=args.weighting, reduce=args.reduce,
                               time_sampler=UniformTime(args.t_eps, 1.0))
    optimizer = make_optimizer("adam", lr=args.lr, warmup_steps=args.warmup,
                               clip_norm=args.clip, accumulate=args.accumulate)
    grid_sampler = ReflectedPC(num_steps=args.sample_steps)

    def sample_fn(key, net):
        res = sample(key, process, net, (args.num_grid, size, size, 3), method=grid_sampler,
                     prediction="score")
        return 2.0 * res.samples - 1.0  # the grid writer's [-1, 1]

    t0 = time.time()
    state = fit(
        objective, model, data, optimizer=optimizer, num_steps=args.steps,
        key=jr.key(args.seed + 1), ema_decays=(args.ema,), ema_warmup=True,
        batch_size=args.batch_size, data_key="image", checkpoint_dir=out / "checkpoints",
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep, sample_fn=sample_fn,
        sample_every=args.sample_every, sample_dir=out / "samples",
        metrics_path=out / "metrics.jsonl", log_every=args.log_every,
        progress=not args.no_progress, config=cfg,
    )
    print(f"trained to step {int(state.step)} in {time.time() - t0:.1f} s; run directory {out}")
    return 0


def _restore(args):
    import jax.random as jr

    from sdekit.train import (
        init_state,
        latest_checkpoint,
        make_optimizer,
        read_header,
        restore_checkpoint,
    )

    out = pathlib.Path(args.out)
    ckpt = pathlib.Path(args.checkpoint) if args.checkpoint else latest_checkpoint(
        out / "checkpoints")
    if ckpt is None or not ckpt.exists():
        raise SystemExit(f"error: no checkpoint found in {out / 'checkpoints'}; train first or "
                         "pass --checkpoint.")
    header = read_header(ckpt)
    cfg = header["config"]
    process = _process(cfg)
    like = init_state(_model(cfg, process, jr.key(0)),
                      make_optimizer("adam", accumulate=cfg.get("accumulate", 1)), key=jr.key(0),
                      ema_decays=tuple(header.get("ema_decays", (cfg["ema"],))), ema_warmup=True)
    state = restore_checkpoint(ckpt, like)
    model = state.model if args.no_ema else state.ema_model()
    return out, ckpt, header, cfg, process, model


def sample_cmd(args: argparse.Namespace) -> int:
    import jax
    import jax.random as jr

    from sdekit.sampling import sample
    from sdekit.train import save_image_grid

    out, ckpt, header, cfg, process, model = _restore(args)
    size = int(cfg["image_size"])
    method = _sampler(args)
    run = jax.jit(lambda k: sample(k, process, model, (args.batch, size, size, 3), method=method,
                                   prediction="score", jit=False))
    images, nfes = [], []
    key = jr.key(args.seed)
    t0 = time.time()
    while sum(len(x) for x in images) < args.num:
        key, sub = jr.split(key)
        res = run(sub)
        x = np.asarray(res.samples)
        if x.min() < 0 or x.max() > 1:  # the samplers guarantee this; say so loudly if not
            raise SystemExit(f"error: samples left [0, 1]: range [{x.min()}, {x.max()}]")
        images.append(_to_uint8(x))
        nfes.append(int(res.nfe))
    imgs = np.concatenate(images)[: args.num]
    tag = f"{args.method}_{args.steps if args.method == 'pc' else args.tol}"
    np.savez_compressed(out / f"samples_{tag}.npz", images=imgs)
    save_image_grid(imgs.astype(np.float32) / 255.0, out / f"samples_{tag}.png",
                    value_range=(0.0, 1.0))
    summary = {"checkpoint": str(ckpt), "step": header.get("step"), "method": args.method,
               "num": int(len(imgs)), "mean_nfe": float(np.mean(nfes)),
               "seconds": round(time.time() - t0, 2)}
    print(json.dumps(summary))
    with open(out / "sampling.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")
    return 0


def bpd_cmd(args: argparse.Namespace) -> int:
    import jax.numpy as jnp
    import jax.random as jr

    from sdekit.data import CIFAR10
    from sdekit.sampling import bits_per_dim, dequantize, log_likelihood

    out, ckpt, header, cfg, process, model = _restore(args)
    size = int(cfg["image_size"])
    if args.smoke:
        data = synthetic_images(args.num, size, seed=args.seed + 1)
    else:
        src = CIFAR10("test", root=args.data_root)
        data = np.stack([np.asarray(src[i]["image"]) for i in range(min(args.num, len(src)))])
    dims = size * size * 3
    key = jr.key(args.seed)
    values, nfes = [], []
    t0 = time.time()
    for rep in range(args.repeats):
        for i in range(0, len(data), args.batch):
            key, kq, kl = jr.split(key, 3)
            x = dequantize(kq, jnp.asarray(data[i:i + args.batch]), interval=(0.0, 1.0))
            r = log_likelihood(kl, process, model, x, prediction="score",
                               divergence=args.divergence, probe=args.probe, rtol=args.tol,
                               atol=args.tol)
            values.append(np.asarray(bits_per_dim(r.log_prob, dims, num_bits=8,
                                                  interval=(0.0, 1.0))))
            nfes.append(int(r.nfe))
            print(f"repeat {rep} images {i + len(x)}/{len(data)}: running bpd "
                  f"{np.concatenate(values).mean():.4f}", flush=True)
    bpd = np.concatenate(values)
    summary = {"checkpoint": str(ckpt), "step": header.get("step"), "num": int(len(data)),
               "repeats": args.repeats, "bpd": float(bpd.mean()),
               "bpd_stderr": float(bpd.std(ddof=1) / np.sqrt(len(bpd))) if len(bpd) > 1 else None,
               "mean_nfe": float(np.mean(nfes)), "divergence": args.divergence,
               "seconds": round(time.time() - t0, 2)}
    print(json.dumps(summary))
    with open(out / "bpd.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("subcommands: train (default), sample, bpd; `reflected_cifar10.py <subcommand> "
              "--help` lists every flag.\n")
        _train_parser().print_help()
        return 0
    command = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else "train"
    parser = {"train": _train_parser, "sample": _sample_parser, "bpd": _bpd_parser}[command]()
    args = parser.parse_args(argv)
    if args.smoke:
        _smoke_overrides(args, command)
        if command == "train":
            rc = train(args)
            for method in ("pc", "ode"):
                sargs = _sample_parser().parse_args(["--smoke", "--out", args.out,
                                                     "--method", method])
                _smoke_overrides(sargs, "sample")
                rc = rc or sample_cmd(sargs)
            bargs = _bpd_parser().parse_args(["--smoke", "--out", args.out])
            _smoke_overrides(bargs, "bpd")
            return rc or bpd_cmd(bargs)
    return {"train": train, "sample": sample_cmd, "bpd": bpd_cmd}[command](args)


if __name__ == "__main__":
    raise SystemExit(main())
