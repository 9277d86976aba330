"""PSLD on CIFAR-10: the complete recipe of Pandey & Mandt (ICCV 2023), end to end.

Train (defaults are the paper's CIFAR-10 recipe; the global batch is sharded over all devices):

    python examples/psld_cifar10.py train --out runs/psld_cifar10

Sample from the EMA weights (PNG grid + .npz of uint8 images for FID):

    python examples/psld_cifar10.py sample --out runs/psld_cifar10 --method em --steps 1000
    python examples/psld_cifar10.py sample --out runs/psld_cifar10 --method ode --tol 1e-5

Smoke test of the whole pipeline on small built-in data (small network, 8x8 images, 500 steps,
CPU; it learns the look of the data: compare data.png with the sample grids):

    python examples/psld_cifar10.py --smoke

A killed run resumes from its last checkpoint when started again with the same --out.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

SUBCOMMANDS = ("train", "sample")
DEFAULT_OUT = "runs/psld_cifar10"
PROCESS_FLAGS = ("--beta-min", "--beta-max", "--gamma", "--nu", "--kappa", "--decomp-mode",
                 "--numerical-eps")
NET_NAMES = ("psld_cifar10", "psld_celeba64", "reflected_ddpmpp_cifar10", "vdpm_cifar10",
             "mnist_small", "tiny", "dit_tiny")  # sdekit.nets.NET_CONFIGS (checked in the tests)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" once, and not for flags without a default value."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}, expected an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"got {value}, expected an integer >= {minimum}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def _float_in(lo: float, hi: float, *, lo_open: bool = True, hi_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}, expected a number") from None
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
        if not (math.isfinite(value) and ok):
            interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
            raise argparse.ArgumentTypeError(f"got {text}, expected a number in {interval}")
        return value

    parse.__name__ = "float"
    return parse


POS_INT, NONNEG_INT = _int_at_least(1), _int_at_least(0)
POS_FLOAT = _float_in(0.0, math.inf, hi_open=True)


def _add_run(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("run")
    g.add_argument("--out", default=DEFAULT_OUT,
                   help="run directory: checkpoints, metrics.jsonl, samples (with --smoke: "
                        "runs/psld_smoke unless given)")
    g.add_argument("--seed", type=NONNEG_INT, default=0, help="random seed")
    g.add_argument("--smoke", action="store_true",
                   help="small network, built-in synthetic 8x8 images and 500 steps: checks the "
                        "whole pipeline on CPU and shows learning (compare data.png with the "
                        "sample grids); flags given explicitly are kept")
    from sdekit.perf import add_compilation_cache_flag
    add_compilation_cache_flag(g)  # --no-compile-cache, --compile-cache-dir


def _add_process(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("process (PSLD, the paper's CIFAR-10 values)")
    g.add_argument("--beta-min", type=POS_FLOAT, default=8.0, help="beta at t = 0")
    g.add_argument("--beta-max", type=POS_FLOAT, default=8.0, help="beta at t = 1")
    g.add_argument("--gamma", type=POS_FLOAT, default=0.01,
                   help="the paper's capital Gamma: noise on x")
    g.add_argument("--nu", type=POS_FLOAT, default=4.01, help="noise on m")
    g.add_argument("--kappa", type=POS_FLOAT, default=0.04,
                   help="initial momentum variance factor, p(m0) = N(0, kappa M)")
    g.add_argument("--decomp-mode", choices=["lower", "upper"], default="lower",
                   help="factor of the kernel covariance")
    g.add_argument("--numerical-eps", type=POS_FLOAT, default=1e-9,
                   help="added to the kernel covariance diagonal")


def _train_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="psld_cifar10.py [train]",
        description="Train PSLD with hybrid score matching on CIFAR-10 (the paper's recipe by "
                    "default). Resumes from the latest good checkpoint in --out; resuming with "
                    "run-changing flags (lr, process, batch size, ...) is refused unless "
                    "--allow-config-change.",
        formatter_class=_Formatter,
    )
    _add_run(ap)
    ap._action_groups[-1].add_argument(
        "--allow-config-change", action="store_true",
        help="resume even if run-changing flags differ from the checkpoint's")
    _add_process(ap)
    g = ap.add_argument_group("data")
    g.add_argument("--data-root", default=None,
                   help="directory holding cifar-10-python.tar.gz or an extracted "
                        "cifar-10-batches-py/ (default: $SDEKIT_DATA or ~/.cache/sdekit; the "
                        "tarball is downloaded with checksum verification if missing)")
    g.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    g = ap.add_argument_group("network (NCSN++ of the paper by default)")
    g.add_argument("--net", default="psld_cifar10", choices=NET_NAMES,
                   help="named network config from sdekit.nets.NET_CONFIGS")
    g.add_argument("--dropout", type=_float_in(0.0, 1.0, lo_open=False, hi_open=True),
                   default=None, help="override the config's dropout")
    g.add_argument("--bf16", action="store_true", help="bfloat16 compute, float32 parameters")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=POS_INT, default=975_000, help="training steps")
    g.add_argument("--batch-size", type=POS_INT, default=128,
                   help="global batch size, split over all devices")
    g.add_argument("--lr", type=POS_FLOAT, default=2e-4, help="Adam learning rate")
    g.add_argument("--warmup", type=NONNEG_INT, default=5000,
                   help="linear warm-up steps (from lr 0)")
    g.add_argument("--clip", type=POS_FLOAT, default=1.0, help="gradient global-norm clip")
    g.add_argument("--ema", type=_float_in(0.0, 1.0, lo_open=False, hi_open=True),
                   default=0.9999, help="EMA decay per step")
    g.add_argument("--no-ema-warmup", action="store_true",
                   help="plain EMA from the first step as in the paper (default: the warm-up "
                        "min(decay, (1 + n) / (10 + n)), so a young EMA is not the initial "
                        "weights)")
    g.add_argument("--accumulate", type=POS_INT, default=1, help="gradient accumulation steps")
    g.add_argument("--t-eps", type=_float_in(0.0, 1.0, hi_open=True), default=1e-5,
                   help="training times t ~ U(t_eps, 1)")
    g = ap.add_argument_group("logging")
    g.add_argument("--checkpoint-every", type=POS_INT, default=10_000,
                   help="steps between checkpoints")
    g.add_argument("--keep", type=POS_INT, default=3, help="checkpoints kept")
    g.add_argument("--sample-every", type=POS_INT, default=50_000,
                   help="steps between sample grids")
    g.add_argument("--sample-method", choices=["em", "sscs"], default="em",
                   help="sampler of the periodic grids")
    g.add_argument("--sample-steps", type=_int_at_least(2), default=100,
                   help="network evaluations of the sampler of the periodic grids")
    g.add_argument("--num-grid", type=POS_INT, default=64, help="images in periodic grids")
    g.add_argument("--log-every", type=POS_INT, default=100, help="steps between metric lines")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return ap


def _sample_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="psld_cifar10.py sample",
        description="Sample a trained PSLD model (EMA weights by default) and write a PNG grid "
                    "and an .npz of uint8 images (key 'images', NHWC) for FID tools. The process "
                    "and network come from the configuration stored in the checkpoint (process "
                    "flags are refused here).",
        formatter_class=_Formatter,
    )
    _add_run(ap)
    g = ap.add_argument_group("sampling")
    g.add_argument("--method", choices=["em", "sscs", "ode"], default="em",
                   help="Euler-Maruyama, symmetric splitting, or the adaptive probability-flow ODE")
    g.add_argument("--steps", type=_int_at_least(2), default=1000,
                   help="em/sscs: network evaluations n, as counted in the paper: n - 1 solver "
                        "steps (the sampler's num_steps) + 1 denoising step")
    g.add_argument("--grid", choices=["uniform", "quadratic"], default="uniform",
                   help="em/sscs grid")
    g.add_argument("--tol", type=_float_in(0.0, 1.0), default=1e-5, help="ode: rtol = atol")
    g.add_argument("--t-end", type=_float_in(0.0, 1.0, hi_open=True), default=1e-3,
                   help="solver end time in (0, 1) (PSLD's eps_eval), then one denoising step")
    g.add_argument("--num", type=POS_INT, default=64, help="number of images")
    g.add_argument("--batch", type=POS_INT, default=64, help="images per sampling call")
    g.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    g.add_argument("--checkpoint", default=None, help="checkpoint file (default: latest in --out)")
    return ap


#: --smoke settings; each applies only when that flag is not given explicitly.
SMOKE_TRAIN = dict(net="tiny", steps=500, batch_size=32, warmup=20, checkpoint_every=250,
                   sample_every=500, sample_method="sscs", sample_steps=100, num_grid=16,
                   log_every=25, ema=0.99, lr=2e-3)
SMOKE_NET = dict(ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), dropout=0.0)
SMOKE_SAMPLE = dict(method="sscs", num=16, batch=16, steps=100, tol=1e-3)
SMOKE_SIZE = 8  # 8x8 synthetic images: small enough to learn their look in 500 steps on a CPU


def _explicit(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the flags given on the command line."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _smoke_overrides(args: argparse.Namespace, command: str, explicit: set[str]) -> None:
    """Apply the --smoke settings to the flags not given explicitly, and say which."""
    if "out" not in explicit:
        args.out = "runs/psld_smoke"
    used = []
    for name, value in (SMOKE_TRAIN if command == "train" else SMOKE_SAMPLE).items():
        if name not in explicit:
            setattr(args, name, value)
            used.append(f"--{name.replace('_', '-')} {value}")
    kept = sorted(f"--{n.replace('_', '-')}" for n in explicit - {"smoke", "out"})
    print(f"smoke {command}: {' '.join(used)}" + (f" (kept: {' '.join(kept)})" if kept else ""))


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


def _process(cfg: dict):
    import sdekit as sk

    return sk.PSLD(beta_min=cfg["beta_min"], beta_max=cfg["beta_max"], gamma=cfg["gamma"],
                   nu=cfg["nu"], kappa=cfg["kappa"], decomp_mode=cfg["decomp_mode"],
                   numerical_eps=cfg["numerical_eps"])


def _sampler(method: str, steps: int, grid: str, tol: float):
    """The paper's n-NFE samplers: n - 1 solver steps, then one drift-only denoising step."""
    from sdekit.sampling import SSCS, AdaptiveODE, EulerMaruyama

    if method == "em":
        return EulerMaruyama(steps - 1, grid=grid), "euler"
    if method == "sscs":
        return SSCS(steps - 1, grid=grid), "euler"
    return AdaptiveODE(rtol=tol, atol=tol), "euler"


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(255 * (np.asarray(x) / 2 + 0.5)), 0, 255).astype(np.uint8)


def _out_dir(args: argparse.Namespace) -> pathlib.Path:
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: argument --out: {out} is a file, expected a directory.")
    return out


def _load_source(args: argparse.Namespace):
    """The training images, or one clear line naming --data-root when CIFAR-10 is missing."""
    if args.smoke:
        return synthetic_images(512, SMOKE_SIZE, seed=args.seed), SMOKE_SIZE
    from sdekit.data import CIFAR10, ChecksumError, cache_dir

    root = cache_dir(args.data_root)
    try:
        return CIFAR10("train", root=args.data_root), 32
    except (FileNotFoundError, RuntimeError, ChecksumError) as e:
        raise SystemExit(
            f"error: CIFAR-10 is not available: expected {root / 'cifar-10-python.tar.gz'} "
            f"(or an extracted {root / 'cifar-10-batches-py'}/), and it could not be downloaded "
            f"({str(e.__cause__ or e).splitlines()[0][:120]}); put the file there or pass "
            "--data-root DIR."
        ) from None


def train(args: argparse.Namespace) -> int:
    import jax
    import jax.random as jr

    from sdekit.data import make_pipeline
    from sdekit.nets import named_net
    from sdekit.objectives import HSM, UniformTime
    from sdekit.sampling import sample
    from sdekit.train import (
        ConfigMismatchError,
        fit,
        make_optimizer,
        maybe_initialize_distributed,
        model_config,
        save_image_grid,
    )

    maybe_initialize_distributed()
    out = _out_dir(args)
    n_dev = jax.device_count()
    if args.batch_size % n_dev:
        raise SystemExit(f"error: argument --batch-size: got {args.batch_size}, expected a "
                         f"multiple of the {n_dev} devices.")
    source, size = _load_source(args)  # before creating --out: no empty run folder on failure
    flags = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
    process = _process(flags)
    net_kwargs = {"image_size": size, **(SMOKE_NET if args.smoke and args.net == "tiny" else {})}
    if args.dropout is not None:
        net_kwargs["dropout"] = args.dropout
    if args.bf16:
        net_kwargs["compute_dtype"] = "bfloat16"
    state_channels = process.state_shape((1, 1, 1, 3))[-1]
    net_kwargs["in_channels"] = state_channels
    net_kwargs["out_channels"] = process.prediction_shape((1, 1, 1, state_channels))[-1]
    cfg = {**flags, "image_size": size, "model": model_config(args.net, **net_kwargs)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    local_batch = args.batch_size // jax.process_count()
    data = make_pipeline(source, batch_size=local_batch, seed=args.seed,
                         augment=None if args.no_flip else "flip",
                         process_index=jax.process_index(), process_count=jax.process_count())
    if jax.process_index() == 0:  # what the samples should look like, beside them
        n = min(args.num_grid, len(source))
        preview = (source[:n] if isinstance(source, np.ndarray)
                   else np.stack([source[i]["image"] for i in range(n)]))
        save_image_grid(preview.astype(np.float32) / 127.5 - 1.0, out / "data.png")
    model = named_net(args.net, key=jr.key(args.seed), **net_kwargs)
    objective = HSM(process, time_sampler=UniformTime(args.t_eps, 1.0))
    optimizer = make_optimizer("adam", lr=args.lr, warmup_steps=args.warmup, clip_norm=args.clip,
                               accumulate=args.accumulate)
    sampler, denoise = _sampler(args.sample_method, args.sample_steps, "uniform", 1e-3)

    def sample_fn(key, net):
        res = sample(key, process, net, (args.num_grid, size, size, 3), method=sampler,
                     t_end=1e-3, denoise=denoise)
        return res.samples

    t0 = time.time()
    try:
        state = fit(
            objective, model, data, optimizer=optimizer, num_steps=args.steps,
            key=jr.key(args.seed + 1), ema_decays=(args.ema,),
            ema_warmup=not args.no_ema_warmup, batch_size=args.batch_size, data_key="image",
            checkpoint_dir=out / "checkpoints", checkpoint_every=args.checkpoint_every,
            keep_checkpoints=args.keep, sample_fn=sample_fn, sample_every=args.sample_every,
            sample_dir=out / "samples", metrics_path=out / "metrics.jsonl",
            log_every=args.log_every, progress=not args.no_progress, config=cfg,
            allow_config_change=args.allow_config_change,
        )
    except ConfigMismatchError as e:
        msg = str(e).replace("allow_config_change=True", "--allow-config-change")
        raise SystemExit(f"error: {msg}") from None
    print(f"trained to step {int(state.step)} in {time.time() - t0:.1f} s; run directory {out} "
          f"(data.png shows training images, samples/samples_*.png the model's)")
    return 0


def sample_cmd(args: argparse.Namespace) -> int:
    import jax
    import jax.random as jr
    from tqdm.auto import tqdm

    from sdekit.sampling import sample
    from sdekit.train import latest_checkpoint, load_model, read_header, save_image_grid

    out = _out_dir(args)
    ckpt = (pathlib.Path(args.checkpoint) if args.checkpoint
            else latest_checkpoint(out / "checkpoints"))
    if ckpt is None or not ckpt.is_file():
        raise SystemExit(f"error: no checkpoint found in {out / 'checkpoints'}; train first or "
                         "pass --checkpoint.")
    cfg = read_header(ckpt)["config"]
    process = _process(cfg)
    net = load_model(ckpt, ema=not args.no_ema)  # the network is rebuilt from cfg["model"]
    size = int(cfg["image_size"])
    if not process.t0 < args.t_end < process.t1:
        raise SystemExit(f"error: argument --t-end: got {args.t_end}, expected a time in "
                         f"({process.t0}, {process.t1}).")
    method, denoise = _sampler(args.method, args.steps, args.grid, args.tol)
    run = jax.jit(lambda k: sample(k, process, net, (args.batch, size, size, 3), method=method,
                                   t_end=args.t_end, denoise=denoise, jit=False))
    images, nfes = [], []
    key = jr.key(args.seed)
    t0 = time.time()
    bar = tqdm(total=args.num, desc=f"sample {args.method} (compiling...)", unit="img",
               dynamic_ncols=True)
    while sum(len(x) for x in images) < args.num:
        key, sub = jr.split(key)
        res = run(sub)
        images.append(_to_uint8(res.samples))
        nfes.append(int(res.nfe))
        bar.set_description(f"sample {args.method}")
        bar.update(min(args.batch, args.num - bar.n))
    bar.close()
    imgs = np.concatenate(images)[: args.num]
    tag = f"{args.method}_{args.steps if args.method != 'ode' else args.tol}"
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / f"samples_{tag}.npz", images=imgs)
    save_image_grid(imgs.astype(np.float32) / 127.5 - 1.0, out / f"samples_{tag}.png")
    summary = {"checkpoint": str(ckpt), "step": read_header(ckpt).get("step"),
               "method": args.method, "num": int(len(imgs)), "mean_nfe": float(np.mean(nfes)),
               "seconds": round(time.time() - t0, 2), "png": str(out / f"samples_{tag}.png")}
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
    build = _train_parser if command == "train" else _sample_parser
    if command == "sample":
        given = [a.split("=")[0] for a in argv if a.split("=")[0] in PROCESS_FLAGS]
        if given:
            build().error(f"argument {given[0]}: the process parameters come from the "
                          "checkpoint's stored configuration; sample does not take them (train a "
                          "run with other values instead).")
    args = build().parse_args(argv)
    from sdekit.perf import compilation_cache_from_args
    compilation_cache_from_args(args)  # on unless --no-compile-cache
    if args.smoke:
        _smoke_overrides(args, command, _explicit(build(), argv))
        if command == "train":
            rc = train(args)
            sargs = _sample_parser().parse_args(["--smoke", "--out", args.out])
            _smoke_overrides(sargs, "sample", {"smoke", "out"})
            return rc or sample_cmd(sargs)
    return train(args) if command == "train" else sample_cmd(args)


if __name__ == "__main__":
    raise SystemExit(main())
