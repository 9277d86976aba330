"""PSLD on CIFAR-10: the complete recipe of Pandey & Mandt (ICCV 2023), end to end.

Train (defaults are the paper's CIFAR-10 recipe; the global batch is sharded over all devices):

    python examples/psld_cifar10.py train --out runs/psld_cifar10

Sample from the EMA weights (PNG grid + .npz of uint8 images for FID):

    python examples/psld_cifar10.py sample --out runs/psld_cifar10 --method em --steps 1000
    python examples/psld_cifar10.py sample --out runs/psld_cifar10 --method ode --tol 1e-5

Smoke test of the whole pipeline on small built-in data (tiny network, a few steps, CPU):

    python examples/psld_cifar10.py --smoke

A killed run resumes from its last checkpoint when started again with the same --out.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

SUBCOMMANDS = ("train", "sample")


def _add_common(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("run")
    g.add_argument("--out", default="runs/psld_cifar10",
                   help="run directory: checkpoints, metrics.jsonl, samples (default %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    g.add_argument("--smoke", action="store_true",
                   help="tiny network, built-in synthetic 16x16 images and a few steps: checks the "
                        "whole pipeline on CPU in a minute or two")
    g = ap.add_argument_group("process (PSLD; spec psld.md section 8)")
    g.add_argument("--beta-min", type=float, default=8.0, help="beta(0) (default %(default)s)")
    g.add_argument("--beta-max", type=float, default=8.0, help="beta(1) (default %(default)s)")
    g.add_argument("--gamma", type=float, default=0.01,
                   help="the paper's capital Gamma: noise on x (default %(default)s)")
    g.add_argument("--nu", type=float, default=4.01, help="noise on m (default %(default)s)")
    g.add_argument("--kappa", type=float, default=0.04,
                   help="initial momentum variance factor, p(m0) = N(0, kappa M) "
                        "(default %(default)s)")
    g.add_argument("--decomp-mode", choices=["lower", "upper"], default="lower",
                   help="factor of the kernel covariance (default %(default)s)")
    g.add_argument("--numerical-eps", type=float, default=1e-9,
                   help="added to the kernel covariance diagonal (default %(default)s)")


def _train_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="psld_cifar10.py [train]",
        description="Train PSLD with hybrid score matching on CIFAR-10 (the paper's recipe by "
                    "default). Resumes from the latest checkpoint in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(ap)
    g = ap.add_argument_group("data")
    g.add_argument("--data-root", default=None,
                   help="directory holding cifar-10-python.tar.gz (default: $SDEKIT_DATA or "
                        "~/.cache/sdekit; downloaded with checksum verification if missing)")
    g.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    g = ap.add_argument_group("network (NCSN++; spec psld.md section 7)")
    g.add_argument("--net", default="psld_cifar10",
                   help="named network config from sdekit.nets.NET_CONFIGS")
    g.add_argument("--dropout", type=float, default=None, help="override the config's dropout")
    g.add_argument("--bf16", action="store_true", help="bfloat16 compute, float32 parameters")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=975_000, help="training steps")
    g.add_argument("--batch-size", type=int, default=128,
                   help="global batch size, split over all devices")
    g.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate")
    g.add_argument("--warmup", type=int, default=5000, help="linear warm-up steps (from lr 0)")
    g.add_argument("--clip", type=float, default=1.0, help="gradient global-norm clip")
    g.add_argument("--ema", type=float, default=0.9999, help="EMA decay per step")
    g.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    g.add_argument("--t-eps", type=float, default=1e-5, help="training times t ~ U(t_eps, 1)")
    g = ap.add_argument_group("logging")
    g.add_argument("--checkpoint-every", type=int, default=10_000, help="steps between checkpoints")
    g.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    g.add_argument("--sample-every", type=int, default=50_000, help="steps between sample grids")
    g.add_argument("--sample-steps", type=int, default=100,
                   help="Euler-Maruyama steps for the periodic grids")
    g.add_argument("--num-grid", type=int, default=64, help="images in periodic grids")
    g.add_argument("--log-every", type=int, default=100, help="steps between metric lines")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return ap


def _sample_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="psld_cifar10.py sample",
        description="Sample a trained PSLD model (EMA weights by default) and write a PNG grid "
                    "and an .npz of uint8 images (key 'images', NHWC) for FID tools.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(ap)
    g = ap.add_argument_group("sampling")
    g.add_argument("--method", choices=["em", "sscs", "ode"], default="em",
                   help="Euler-Maruyama, symmetric splitting, or the adaptive probability-flow ODE")
    g.add_argument("--steps", type=int, default=1000,
                   help="em/sscs: network evaluations n (n - 1 solver steps + 1 denoising step)")
    g.add_argument("--grid", choices=["uniform", "quadratic"], default="uniform", help="em/sscs grid")
    g.add_argument("--tol", type=float, default=1e-5, help="ode: rtol = atol")
    g.add_argument("--t-end", type=float, default=1e-3, help="solver end time (eps_eval)")
    g.add_argument("--num", type=int, default=64, help="number of images")
    g.add_argument("--batch", type=int, default=64, help="images per sampling call")
    g.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    g.add_argument("--checkpoint", default=None, help="checkpoint file (default: latest in --out)")
    return ap


def _smoke_overrides(args: argparse.Namespace, command: str) -> None:
    """Settings of the --smoke run (small enough for a CPU, same code path)."""
    args.out = args.out if args.out != "runs/psld_cifar10" else "runs/psld_smoke"
    if command == "train":
        args.net, args.steps, args.batch_size = "tiny", 40, 16
        args.warmup, args.checkpoint_every, args.sample_every = 10, 20, 20
        args.sample_steps, args.num_grid, args.log_every, args.ema = 10, 16, 5, 0.99
        args.lr = 1e-3
    else:
        args.num, args.batch = 16, 16
        args.steps = min(args.steps, 20)
        args.tol = max(args.tol, 1e-3)


def synthetic_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Built-in data for smoke runs: ``n`` uint8 RGB images of coloured squares and discs on
    a gradient background (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        bg = rng.uniform(0, 1, 3)[None, None] * (0.5 + 0.5 * yy[..., None])
        img = bg.copy()
        cy, cx = rng.uniform(0.25, 0.75, 2)
        r = rng.uniform(0.12, 0.3)
        colour = rng.uniform(0, 1, 3)
        if rng.random() < 0.5:
            mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[mask] = colour
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def _process(args):
    import sdekit as sk

    return sk.PSLD(beta_min=args.beta_min, beta_max=args.beta_max, gamma=args.gamma, nu=args.nu,
                   kappa=args.kappa, decomp_mode=args.decomp_mode,
                   numerical_eps=args.numerical_eps)


def _network(cfg: dict, process, key):
    from sdekit.nets import named_net

    overrides = dict(cfg.get("net_overrides", {}))
    state_channels = process.state_shape((1, 1, 1, 3))[-1]
    out_channels = process.prediction_shape((1, 1, 1, state_channels))[-1]
    return named_net(cfg["net"], key=key, in_channels=state_channels, out_channels=out_channels,
                     **overrides)


def _sampler(method: str, steps: int, grid: str, tol: float):
    from sdekit.sampling import SSCS, AdaptiveODE, EulerMaruyama

    if method == "em":
        return EulerMaruyama(max(steps - 1, 1), grid=grid), "euler"
    if method == "sscs":
        return SSCS(max(steps - 1, 1), grid=grid), "euler"
    return AdaptiveODE(rtol=tol, atol=tol), "euler"


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(255 * (np.asarray(x) / 2 + 0.5)), 0, 255).astype(np.uint8)


def train(args: argparse.Namespace) -> int:
    import jax
    import jax.random as jr

    from sdekit.data import CIFAR10, make_pipeline
    from sdekit.objectives import HSM, UniformTime
    from sdekit.sampling import sample
    from sdekit.train import fit, make_optimizer, maybe_initialize_distributed

    maybe_initialize_distributed()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    process = _process(args)
    if args.smoke:
        source, size = synthetic_images(256, 16, seed=args.seed), 16
    else:
        source, size = CIFAR10("train", root=args.data_root), 32
    net_overrides = {"image_size": size}
    if args.dropout is not None:
        net_overrides["dropout"] = args.dropout
    if args.bf16:
        net_overrides["compute_dtype"] = "bfloat16"
    cfg = {"net": args.net, "net_overrides": net_overrides, "image_size": size,
           **{k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))

    n_dev = jax.device_count()
    if args.batch_size % n_dev:
        raise SystemExit(f"error: argument --batch-size: got {args.batch_size}, expected a "
                         f"multiple of the {n_dev} devices.")
    local_batch = args.batch_size // jax.process_count()
    data = make_pipeline(source, batch_size=local_batch, seed=args.seed,
                         augment=None if args.no_flip else "flip",
                         process_index=jax.process_index(), process_count=jax.process_count())
    model = _network(cfg, process, jr.key(args.seed))
    objective = HSM(process, time_sampler=UniformTime(args.t_eps, 1.0))
    optimizer = make_optimizer("adam", lr=args.lr, warmup_steps=args.warmup, clip_norm=args.clip,
                               accumulate=args.accumulate)
    sampler, denoise = _sampler("em", args.sample_steps, "uniform", 1e-3)

    def sample_fn(key, net):
        res = sample(key, process, net, (args.num_grid, size, size, 3), method=sampler,
                     t_end=1e-3, denoise=denoise)
        return res.samples

    t0 = time.time()
    state = fit(
        objective, model, data, optimizer=optimizer, num_steps=args.steps,
        key=jr.key(args.seed + 1), ema_decays=(args.ema,), batch_size=args.batch_size,
        data_key="image", checkpoint_dir=out / "checkpoints", checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep, sample_fn=sample_fn, sample_every=args.sample_every,
        sample_dir=out / "samples", metrics_path=out / "metrics.jsonl", log_every=args.log_every,
        progress=not args.no_progress, config=cfg,
    )
    print(f"trained to step {int(state.step)} in {time.time() - t0:.1f} s; run directory {out}")
    return 0


def sample_cmd(args: argparse.Namespace) -> int:
    import jax
    import jax.random as jr

    from sdekit.sampling import sample
    from sdekit.train import (
        init_state,
        latest_checkpoint,
        make_optimizer,
        read_header,
        restore_checkpoint,
        save_image_grid,
    )

    out = pathlib.Path(args.out)
    ckpt = pathlib.Path(args.checkpoint) if args.checkpoint else latest_checkpoint(out / "checkpoints")
    if ckpt is None or not ckpt.exists():
        raise SystemExit(f"error: no checkpoint found in {out / 'checkpoints'}; train first or "
                         "pass --checkpoint.")
    header = read_header(ckpt)
    cfg = header["config"]
    for name in ("beta_min", "beta_max", "gamma", "nu", "kappa", "decomp_mode", "numerical_eps"):
        setattr(args, name, cfg[name])
    process = _process(args)
    like = init_state(_network(cfg, process, jr.key(0)), make_optimizer("adam", accumulate=cfg.get(
        "accumulate", 1)), key=jr.key(0), ema_decays=tuple(header.get("ema_decays", (cfg["ema"],))))
    state = restore_checkpoint(ckpt, like)
    net = state.model if args.no_ema else state.ema_model()
    size = int(cfg["image_size"])
    method, denoise = _sampler(args.method, args.steps, args.grid, args.tol)
    run = jax.jit(lambda k: sample(k, process, net, (args.batch, size, size, 3), method=method,
                                   t_end=args.t_end, denoise=denoise, jit=False))
    images, nfes = [], []
    key = jr.key(args.seed)
    t0 = time.time()
    while sum(len(x) for x in images) < args.num:
        key, sub = jr.split(key)
        res = run(sub)
        images.append(_to_uint8(res.samples))
        nfes.append(int(res.nfe))
    imgs = np.concatenate(images)[: args.num]
    tag = f"{args.method}_{args.steps if args.method != 'ode' else args.tol}"
    np.savez_compressed(out / f"samples_{tag}.npz", images=imgs)
    save_image_grid(imgs.astype(np.float32) / 127.5 - 1.0, out / f"samples_{tag}.png")
    summary = {"checkpoint": str(ckpt), "step": header.get("step"), "method": args.method,
               "num": int(len(imgs)), "mean_nfe": float(np.mean(nfes)),
               "seconds": round(time.time() - t0, 2)}
    print(json.dumps(summary))
    with open(out / "sampling.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("subcommands: train (default), sample; `psld_cifar10.py train --help` and "
              "`psld_cifar10.py sample --help` list every flag.\n")
        _train_parser().print_help()
        return 0
    command = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else "train"
    args = (_train_parser() if command == "train" else _sample_parser()).parse_args(argv)
    if args.smoke:
        _smoke_overrides(args, command)
        if command == "train":
            rc = train(args)
            sargs = _sample_parser().parse_args(["--smoke", "--out", args.out, "--method", "em"])
            _smoke_overrides(sargs, "sample")
            rc = rc or sample_cmd(sargs)
            sargs.method = "ode"
            return rc or sample_cmd(sargs)
    return train(args) if command == "train" else sample_cmd(args)


if __name__ == "__main__":
    raise SystemExit(main())
