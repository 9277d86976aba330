"""SiT vs ComboStoc on small images, and asynchronous generation (inpainting).

Trains one small DiT per time mode on the same data with the same budget: the SiT baseline
(one time per example, plain velocity target) and ComboStoc modes (per-channel, per-position
or per-element time, half-mixed and blended, with the compensated velocity target). Each model
then (1) samples images with the probability-flow ODE and (2) inpaints the right half of
held-out images given the left half, with every pixel on its own schedule
(`sdekit.sampling.AsyncGeneration`: the left half is held fixed, the right half runs from noise).

    python examples/combostoc.py --out runs/combostoc                 # MNIST (idx files)
    python examples/combostoc.py --modes baseline,all --steps 20000
    python examples/combostoc.py --smoke                              # built-in data, CPU, ~1 min

Writes, per mode, ``<out>/<mode>/metrics.jsonl`` (training), ``samples.png`` (ODE samples),
``inpaint.png`` (rows: masked input, inpainted, truth) and one line per mode in
``<out>/summary.jsonl`` (final loss, inpainting MSE on the generated half, seconds).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

MODES = ("baseline", "none", "channel", "position", "all")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="combostoc.py",
        description="Train a small DiT with the SiT baseline and ComboStoc time modes on MNIST "
                    "(or built-in images with --smoke), sample, and inpaint half of each image "
                    "with asynchronous per-pixel schedules.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = ap.add_argument_group("run")
    g.add_argument("--out", default="runs/combostoc",
                   help="run directory: one folder per mode and summary.jsonl")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--smoke", action="store_true",
                   help="built-in 16x16 images, a tiny DiT, a few steps, modes baseline and all: "
                        "checks the whole pipeline on CPU in about a minute")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    g = ap.add_argument_group("data")
    g.add_argument("--data", choices=["mnist", "synthetic"], default="mnist",
                   help="MNIST from its official idx files (downloaded with checksums if missing) "
                        "or built-in synthetic shapes")
    g.add_argument("--data-root", default=None,
                   help="directory holding the MNIST idx files (default: $SDEKIT_DATA or "
                        "~/.cache/sdekit)")
    g.add_argument("--num-train", type=int, default=None,
                   help="use only the first N training images (default: all)")
    g = ap.add_argument_group("model and objective")
    g.add_argument("--modes", default="baseline,all",
                   help="comma-separated time modes to compare: baseline (SiT: one time per "
                        "example) and the ComboStoc modes none, channel, position, all")
    g.add_argument("--path", choices=["linear", "gvp", "vp"], default="linear",
                   help="interpolant path")
    g.add_argument("--no-compensate", action="store_true",
                   help="ComboStoc modes without the compensated velocity target")
    g.add_argument("--no-halfmix", action="store_true",
                   help="unsynchronised times for the whole batch, not only its first half")
    g.add_argument("--no-blend", action="store_true",
                   help="do not blend the unsynchronised times with the per-example time")
    g.add_argument("--patch-size", type=int, default=4, help="DiT patch size")
    g.add_argument("--width", type=int, default=128, help="DiT width")
    g.add_argument("--depth", type=int, default=4, help="DiT blocks")
    g.add_argument("--heads", type=int, default=4, help="DiT attention heads")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=5000, help="training steps per mode")
    g.add_argument("--batch-size", type=int, default=128, help="batch size")
    g.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate")
    g.add_argument("--ema", type=float, default=0.999, help="EMA decay per step")
    g.add_argument("--log-every", type=int, default=100, help="steps between metric lines")
    g = ap.add_argument_group("sampling")
    g.add_argument("--sample-steps", type=int, default=50,
                   help="Heun steps of the probability-flow ODE and of the inpainting clock")
    g.add_argument("--num-grid", type=int, default=64, help="images in each PNG grid")
    return ap


def _smoke_overrides(args: argparse.Namespace) -> None:
    """Settings of the --smoke run (small enough for a CPU, same code path)."""
    args.out = args.out if args.out != "runs/combostoc" else "runs/combostoc_smoke"
    args.data, args.num_train = "synthetic", 512
    args.modes = "baseline,all"
    args.patch_size, args.width, args.depth, args.heads = 2, 32, 1, 2
    args.steps, args.batch_size, args.lr, args.ema, args.log_every = 30, 16, 1e-3, 0.9, 10
    args.sample_steps, args.num_grid = 6, 8


def synthetic_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Built-in data: ``n`` uint8 grey ``(size, size, 1)`` images of one bright square or disc
    on a dark gradient (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = np.empty((n, size, size, 1), np.uint8)
    for i in range(n):
        img = 0.2 * rng.uniform() * yy
        cy, cx = rng.uniform(0.3, 0.7, 2)
        r = rng.uniform(0.15, 0.3)
        if rng.random() < 0.5:
            mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[mask] = rng.uniform(0.7, 1.0)
        out[i, ..., 0] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def parse_modes(text: str) -> list[str]:
    """The comma-separated ``--modes`` value as a list, checked against `MODES`."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise SystemExit(f"error: argument --modes: got {text!r}, expected a comma-separated "
                         f"list of {', '.join(MODES)}.")
    return modes


def _objective(args, process, mode):
    from sdekit.objectives import ComboStoc, InterpolantLoss

    if mode == "baseline":
        return InterpolantLoss(process, "velocity")
    times = ComboStoc(mode, halfmix=not args.no_halfmix, blend=not args.no_blend)
    return InterpolantLoss(process, "velocity", time_sampler=times,
                           compensate=not args.no_compensate)


def _to_unit(x):
    return np.clip(np.asarray(x, np.float32), -1.0, 1.0)


def run_mode(args, mode, images, held_out, out) -> dict:
    import jax.numpy as jnp
    import jax.random as jr

    import sdekit as sk
    from sdekit.data import make_pipeline
    from sdekit.nets import DiT
    from sdekit.sampling import ODE, AsyncGeneration, sample
    from sdekit.train import fit, make_optimizer, save_image_grid

    out.mkdir(parents=True, exist_ok=True)
    process = sk.Interpolant(args.path)
    size, channels = images.shape[1], images.shape[-1]
    net = DiT(channels, key=jr.key(args.seed), patch_size=args.patch_size, width=args.width,
              depth=args.depth, num_heads=args.heads, element_time=True, time_scale=1.0)
    data = make_pipeline(images, batch_size=args.batch_size, seed=args.seed)
    t0 = time.time()
    losses = []
    state = fit(_objective(args, process, mode), net, data,
                optimizer=make_optimizer("adam", lr=args.lr, clip_norm=1.0),
                num_steps=args.steps, key=jr.key(args.seed + 1), ema_decays=(args.ema,),
                batch_size=args.batch_size, metrics_path=out / "metrics.jsonl",
                log_every=args.log_every, progress=not args.no_progress,
                callback=lambda s, m: losses.append(float(m["loss"])))
    model = state.ema_model()
    n = args.num_grid
    res = sample(jr.key(args.seed + 2), process, model, (n, size, size, channels),
                 method=ODE(num_steps=args.sample_steps, solver="heun"), prediction="velocity",
                 denoise="none")
    save_image_grid(_to_unit(res.samples), out / "samples.png")
    # asynchronous generation: keep the left half of each held-out image, generate the right
    truth = jnp.asarray(held_out[:n])
    keep = jnp.zeros(truth.shape, bool).at[:, :, : size // 2].set(True)
    inp = sample(jr.key(args.seed + 3), process, model, truth.shape, prediction="velocity",
                 method=ODE(num_steps=args.sample_steps, solver="heun"),
                 condition=AsyncGeneration(truth, keep=keep))
    gen = np.asarray(inp.samples)
    masked = np.where(np.asarray(keep), np.asarray(truth), -1.0)
    save_image_grid(_to_unit(np.concatenate([masked, gen, np.asarray(truth)])),
                    out / "inpaint.png", nrow=n)
    free = ~np.asarray(keep)
    mse = float(np.mean((gen[free] - np.asarray(truth)[free]) ** 2))
    tail = losses[-max(1, len(losses) // 5):]
    return {"mode": mode, "path": args.path, "steps": args.steps,
            "final_loss": float(np.mean(tail)), "inpaint_mse": mse,
            "sample_nfe": int(res.nfe), "inpaint_nfe": int(inp.nfe),
            "held_fixed_exactly": bool(np.array_equal(gen[~free], np.asarray(truth)[~free])),
            "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        _smoke_overrides(args)
    modes = parse_modes(args.modes)
    for name in ("steps", "batch_size", "sample_steps", "num_grid", "patch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: argument --{name.replace('_', '-')}: got "
                             f"{getattr(args, name)}, expected an integer >= 1.")
    if args.data == "synthetic":
        images = synthetic_images(args.num_train or 2048, 16, seed=args.seed)
        held = synthetic_images(max(args.num_grid, 8), 16, seed=args.seed + 1000)
    else:
        from sdekit.data import load_mnist

        images, _ = load_mnist("train", root=args.data_root)
        held, _ = load_mnist("test", root=args.data_root)
        if args.num_train:
            images = images[: args.num_train]
    if images.shape[1] % args.patch_size:
        raise SystemExit(f"error: argument --patch-size: got {args.patch_size}, expected a "
                         f"divisor of the image size {images.shape[1]}.")
    held = held.astype(np.float32) / 127.5 - 1.0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(vars(args), indent=2))
    for mode in modes:
        summary = run_mode(args, mode, images, held, out / mode)
        print(json.dumps(summary))
        with open(out / "summary.jsonl", "a") as f:
            f.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
