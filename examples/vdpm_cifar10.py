"""VDPM (v-diffusion, tqch/v-diffusion-torch) end to end: train, sample, evaluate.

Variance-preserving diffusion in log-SNR (cosine schedule truncated to [-20, 20]), a DDPM-style
UNet, reweighted MSE (or the variational bound), AdamW with warm-up, clipping and EMA, DDIM or
ancestral sampling (three variances) with classifier-free guidance, and FID / IS with the
standard Inception protocol. Presets are the HEAD configs of the reference (spec vdpm.md §9):

    python examples/vdpm_cifar10.py train --preset cifar10_cond --out runs/vdpm_cond
    python examples/vdpm_cifar10.py sample --out runs/vdpm_cond --method ddim --steps 1024 \\
        --w-guide 0.1 --num 50000
    python -m sdekit.metrics stats cifar-10-python.tar.gz --out cifar10_train.npz
    python examples/vdpm_cifar10.py eval --out runs/vdpm_cond --ref cifar10_train.npz

Smoke test of the whole pipeline on built-in synthetic data (tiny network, CPU, about a minute):

    python examples/vdpm_cifar10.py --smoke

A killed run resumes from its last checkpoint when started again with the same --out.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import sys
import time

import numpy as np

SUBCOMMANDS = ("train", "sample", "eval")

#: CelebA's crop window (top, left, height, width) before the resize to 64x64 (spec §9).
CELEBA_CROP = (40, 15, 148, 148)

# HEAD configs/*.json of the reference (spec §9). `net` names an sdekit.nets.NET_CONFIGS entry;
# `net_overrides` adapt it. Classes are 0..K-1 with the null label K (the reference's 1..K / 0).
PRESETS: dict[str, dict] = {
    "cifar10_uncond": dict(
        dataset="cifar10", image_size=32, channels=3, num_classes=None,
        schedule="cosine", logsnr_min=-20.0, logsnr_max=20.0, train_timesteps=0,
        sample_timesteps=256, model_out_type="x0", model_var_type="fixed_large", intp_frac=0.0,
        reweight_type="snr_trunc", loss_type="mse", use_cfg=False, w_guide=0.0, p_uncond=0.0,
        lr=2e-4, beta1=0.9, beta2=0.999, weight_decay=1e-3, batch_size=128, grad_norm=1.0,
        warmup=1000, epochs=5120, ema_decay=0.9999, seed=1234,
        net="vdpm_cifar10", net_overrides={"num_classes": None}, flip=True,
    ),
    "cifar10_cond": dict(
        dataset="cifar10", image_size=32, channels=3, num_classes=10,
        schedule="cosine", logsnr_min=-20.0, logsnr_max=20.0, train_timesteps=0,
        sample_timesteps=256, model_out_type="v", model_var_type="fixed_medium", intp_frac=0.3,
        reweight_type="snr_trunc", loss_type="mse", use_cfg=True, w_guide=0.1, p_uncond=0.1,
        lr=2e-4, beta1=0.9, beta2=0.999, weight_decay=1e-3, batch_size=128, grad_norm=1.0,
        warmup=10000, epochs=5120, ema_decay=0.9999, seed=1234,
        net="vdpm_cifar10", net_overrides={}, flip=True,
    ),
    # CelebA 64x64, `both` output: each aligned 178x218 image is cropped to the window `crop`
    # (top 40, left 15, 148x148; spec §9) and resized to 64x64 (`crop_resize`). sdekit's UNet
    # embeds one class index, not CelebA's 40 binary tags, so this preset trains
    # unconditionally (the reference conditions on the tags).
    "celeba": dict(
        dataset="celeba", image_size=64, channels=3, num_classes=None, crop=CELEBA_CROP,
        schedule="cosine", logsnr_min=-20.0, logsnr_max=20.0, train_timesteps=0,
        sample_timesteps=256, model_out_type="both", model_var_type="fixed_large", intp_frac=0.0,
        reweight_type="snr_trunc", loss_type="mse", use_cfg=False, w_guide=0.0, p_uncond=0.0,
        lr=3e-4, beta1=0.9, beta2=0.999, weight_decay=0.0, batch_size=128, grad_norm=1.0,
        warmup=1000, epochs=1024, ema_decay=0.9999, seed=1234,
        net="vdpm_cifar10",
        net_overrides={"nf": 192, "ch_mult": (1, 2, 3, 4), "attn_resolutions": (32, 16, 8),
                       "image_size": 64, "dropout": 0.1, "num_heads": 3, "num_classes": None},
        flip=True,
    ),
    # The reference has no MNIST config; the spec's suggestion: cifar10_uncond with 1 channel,
    # MNIST resized to 32x32 (here with the class-conditional head and CFG, as for CIFAR-10).
    "mnist": dict(
        dataset="mnist", image_size=32, channels=1, num_classes=10,
        schedule="cosine", logsnr_min=-20.0, logsnr_max=20.0, train_timesteps=0,
        sample_timesteps=256, model_out_type="x0", model_var_type="fixed_large", intp_frac=0.0,
        reweight_type="snr_trunc", loss_type="mse", use_cfg=True, w_guide=0.1, p_uncond=0.1,
        lr=2e-4, beta1=0.9, beta2=0.999, weight_decay=1e-3, batch_size=128, grad_norm=1.0,
        warmup=1000, epochs=100, ema_decay=0.9999, seed=1234,
        net="mnist_small", net_overrides={"num_classes": 10}, flip=False,
    ),
}

# --reweight-type -> (target compared after converting the prediction, weighting): the stated
# x0-space weights 1, SNR, max(1, SNR), 1 + SNR for every output type (spec §4.1, quirk 1 fixed).
REWEIGHT = {
    "constant": ("x0", "constant"),
    "snr": ("eps", "constant"),
    "snr_trunc": ("x0", "truncated_snr"),
    "snr_1plus": ("v", "constant"),
}

NOT_NEEDED = """\
reference options without a flag here, and why:
  --num-workers        data loading is in-process grain (fast enough for 32x32 uint8)
  --train-device, --eval-device, --distributed
                       JAX uses every visible device; the global batch is sharded over all of
                       them, and multi-host runs start with jax.distributed (see sdekit.train)
  --image-dir, --image-intv, --num-save-images, --sample-bsz
                       sample grids go to <out>/samples every --sample-every steps
                       (--num-grid images)
  --config-dir, --config-path, --default-config-path
                       configs are the named --preset entries; every key has a flag that
                       overrides it, and the resolved config is saved in <out>/config.json
  --chkpt-dir, --chkpt-name, --chkpt-intv, --max-ckpts-kept, --from-ckpt, --resume
                       checkpoints go to <out>/checkpoints every --checkpoint-every steps
                       (--keep of them); a run always resumes from the latest one there
  --use-ema            EMA is always kept (--ema-decay); sampling uses it unless --no-ema
  --eval, --eval-intv  FID is a separate step: `sample` then `eval` (or python -m sdekit.metrics)
  --allow-rescale, --x0eps-coef
                       reparameterisations with identical samples (the second is buggy with
                       DDIM in the reference, spec §12)
  --save-rng-state     checkpoints always hold the PRNG key and the data iterator state
  --cudnn-benchmark, --allow-tf32, --use-xformers
                       CUDA/PyTorch switches; XLA picks kernels itself (--bf16 for bfloat16)
"""


# ------------------------------------------------------------------------------- argument parsing


def _add_common(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("run")
    g.add_argument("--out", default="runs/vdpm",
                   help="run directory: checkpoints, config.json, metrics.jsonl, samples")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's, "
                   "1234)")
    g.add_argument("--smoke", action="store_true",
                   help="tiny network on built-in synthetic 16x16 images, a few steps: checks "
                        "train, sample and eval end to end on CPU in about a minute")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def _train_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vdpm_cifar10.py [train]",
        description="Train VDPM (a preset of the reference's HEAD configs; every flag left unset "
                    "keeps the preset's value). Resumes from the latest checkpoint in --out.",
        epilog=NOT_NEEDED, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(ap)
    g = ap.add_argument_group("data")
    g.add_argument("--preset", choices=sorted(PRESETS), default="cifar10_cond",
                   help="configuration (reference configs/*.json; also picks the dataset): "
                        "%(choices)s (default %(default)s)")
    g.add_argument("--data-root", default=None,
                   help="cifar10/mnist: directory with the official archives (default "
                        "$SDEKIT_DATA or ~/.cache/sdekit; downloaded with checksums if "
                        "missing). celeba: a folder of the aligned 178x218 face images "
                        "(img_align_celeba), cropped to 148x148 at top 40, left 15 and resized "
                        "to 64x64 (bilinear)")
    g.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    g = ap.add_argument_group("diffusion (spec §1-§5)")
    g.add_argument("--logsnr-schedule", choices=["linear", "sigmoid", "cosine", "legacy"],
                   default=None, help="log-SNR schedule (preset: cosine)")
    g.add_argument("--logsnr-min", type=float, default=None, help="lambda at t = 1 (-20)")
    g.add_argument("--logsnr-max", type=float, default=None, help="lambda at t = 0 (20)")
    g.add_argument("--train-timesteps", type=int, default=None,
                   help="0: continuous t ~ U[0, 1); T > 0: t in {1/T, ..., 1}")
    g.add_argument("--sample-timesteps", type=int, default=None,
                   help="steps of the periodic sample grids, and the grid of --loss-type kl")
    g.add_argument("--model-out-type", choices=["x0", "eps", "both", "v", "x_0"], default=None,
                   help="what the network predicts ('both': x0 and eps heads blended by SNR; "
                        "the reference's spelling x_0 is accepted)")
    g.add_argument("--model-var-type", choices=["fixed_small", "fixed_large", "fixed_medium"],
                   default=None, help="ancestral variance (also the model variance of kl)")
    g.add_argument("--intp-frac", type=float, default=None,
                   help="fixed_medium: log var = (1 - f) log small + f log large")
    g.add_argument("--reweight-type", choices=sorted(REWEIGHT) + ["truncated_snr", "alpha2"],
                   default=None, help="MSE weight in x0 space: constant 1, snr, snr_trunc "
                   "max(1, snr), snr_1plus 1 + snr (README-era names truncated_snr, alpha2)")
    g.add_argument("--loss-type", choices=["mse", "kl"], default=None,
                   help="reweighted MSE, or one sampled term of the variational bound (bits/dim)")
    g = ap.add_argument_group("guidance")
    g.add_argument("--use-cfg", action=argparse.BooleanOptionalAction, default=None,
                   help="class-conditional model trained with label dropout")
    g.add_argument("--p-uncond", type=float, default=None, help="label-drop probability")
    g.add_argument("--w-guide", type=float, default=None,
                   help="guidance of the periodic sample grids (0 = plain conditional)")
    g = ap.add_argument_group("network")
    g.add_argument("--net", default=None, help="named config from sdekit.nets.NET_CONFIGS")
    g.add_argument("--dropout", type=float, default=None, help="override the config's dropout")
    g.add_argument("--bf16", action="store_true", help="bfloat16 compute, float32 parameters")
    g = ap.add_argument_group("optimisation (AdamW, linear warm-up, clipping, EMA)")
    g.add_argument("--epochs", type=int, default=None, help="epochs (sets --steps)")
    g.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides --epochs)")
    g.add_argument("--batch-size", type=int, default=None, help="global batch, over all devices")
    g.add_argument("--num-accum", type=int, default=1, help="gradient-accumulation micro-batches")
    g.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    g.add_argument("--beta1", type=float, default=None, help="Adam beta1")
    g.add_argument("--beta2", type=float, default=None, help="Adam beta2")
    g.add_argument("--weight-decay", type=float, default=None, help="decoupled weight decay")
    g.add_argument("--warmup", type=int, default=None, help="linear warm-up steps")
    g.add_argument("--grad-norm", type=float, default=None, help="global-norm gradient clip")
    g.add_argument("--ema-decay", type=float, default=None,
                   help="EMA decay, with the reference's warm-up min(decay, (1+n)/(10+n))")
    g = ap.add_argument_group("logging")
    g.add_argument("--checkpoint-every", type=int, default=10_000, help="steps between checkpoints")
    g.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    g.add_argument("--sample-every", type=int, default=20_000, help="steps between sample grids")
    g.add_argument("--num-grid", type=int, default=64, help="images in the periodic grids")
    g.add_argument("--use-ddim", action="store_true",
                   help="periodic grids with DDIM instead of ancestral sampling")
    g.add_argument("--log-every", type=int, default=100, help="steps between metric lines")
    return ap


def _sample_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vdpm_cifar10.py sample",
        description="Sample a trained model (EMA weights) like the reference's generate.py; "
                    "writes <out>/samples_<tag>.npz (uint8 NHWC, key 'images', read by "
                    "python -m sdekit.metrics) and a PNG grid.",
    )
    _add_common(ap)
    g = ap.add_argument_group("sampling (spec §6)")
    g.add_argument("--method", choices=["ddim", "ancestral"], default="ancestral",
                   help="DDIM (eta 0) or ancestral sampling (default %(default)s)")
    g.add_argument("--steps", type=int, default=1024,
                   help="sampling steps T_s = network evaluations (default %(default)s)")
    g.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default %(default)s)")
    g.add_argument("--variance", choices=["fixed_small", "fixed_large", "fixed_medium"],
                   default=None, help="ancestral variance (default: the trained config's)")
    g.add_argument("--intp-frac", type=float, default=None, help="fixed_medium fraction")
    g.add_argument("--w-guide", type=float, default=None,
                   help="guidance w, 0 = plain conditional (default: the config's)")
    g.add_argument("--uncond", action="store_true", help="sample with the null label only")
    g.add_argument("--num", type=int, default=64, help="number of images (default 64)")
    g.add_argument("--batch", type=int, default=64, help="images per sampling call")
    g.add_argument("--no-ema", action="store_true", help="use the raw weights")
    g.add_argument("--checkpoint", default=None, help="checkpoint file (default: latest)")
    return ap


def _eval_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vdpm_cifar10.py eval",
        description="Score a samples .npz: FID and IS with the Inception weights and reference "
                    "statistics (KID and precision/recall too when --ref holds features); "
                    "without --ref, weight-free metrics against the training data (pixels). "
                    "Results are appended to <out>/eval.jsonl.",
    )
    _add_common(ap)
    ap.add_argument("--samples", default=None,
                    help="samples .npz (default: the newest <out>/samples_*.npz)")
    ap.add_argument("--ref", default=None,
                    help="reference statistics from `python -m sdekit.metrics stats` (or TTUR's "
                         "fid_stats_cifar10_train.npz)")
    ap.add_argument("--weights", default=None,
                    help="pt_inception-2015-12-05-6726825d.pth (default $SDEKIT_FID_WEIGHTS or "
                         "~/.cache/sdekit/)")
    ap.add_argument("--batch-size", type=int, default=200, help="Inception batch")
    return ap


# ------------------------------------------------------------------------------- configuration


def resolve_config(args: argparse.Namespace) -> dict:
    """The preset overridden by every flag that was given."""
    cfg = json.loads(json.dumps(PRESETS[args.preset]))
    cfg["preset"] = args.preset
    names = ("logsnr_schedule:schedule logsnr_min logsnr_max train_timesteps sample_timesteps "
             "model_out_type model_var_type intp_frac reweight_type loss_type use_cfg p_uncond "
             "w_guide net epochs batch_size lr beta1 beta2 weight_decay warmup grad_norm "
             "ema_decay seed").split()
    for item in names:
        flag, _, key = item.partition(":")
        value = getattr(args, flag, None)
        if value is not None:
            cfg[key or flag] = value
    cfg["model_out_type"] = {"x_0": "x0"}.get(cfg["model_out_type"], cfg["model_out_type"])
    cfg["reweight_type"] = {"truncated_snr": "snr_trunc", "alpha2": "snr_1plus"}.get(
        cfg["reweight_type"], cfg["reweight_type"])
    if args.dropout is not None:
        cfg["net_overrides"]["dropout"] = args.dropout
    if args.bf16:
        cfg["net_overrides"]["compute_dtype"] = "bfloat16"
    if args.no_flip:
        cfg["flip"] = False
    if not cfg["use_cfg"]:
        cfg["num_classes"], cfg["p_uncond"], cfg["w_guide"] = None, 0.0, 0.0
        cfg["net_overrides"]["num_classes"] = None
    elif cfg["num_classes"] is None:
        raise SystemExit(f"error: --use-cfg needs class labels; preset {args.preset!r} has none.")
    cfg["num_accum"] = args.num_accum
    return cfg


def make_process(cfg: dict):
    import sdekit as sk

    return sk.LogSNR(schedule=cfg["schedule"], logsnr_min=float(cfg["logsnr_min"]),
                     logsnr_max=float(cfg["logsnr_max"]))


def make_model(cfg: dict, key):
    """The network, wrapped so that it outputs its `prediction` (for `both`: x0, blended)."""
    from sdekit.nets import named_net

    over = dict(cfg["net_overrides"])
    over.setdefault("image_size", cfg["image_size"])
    for k in ("ch_mult", "attn_resolutions"):
        if k in over:
            over[k] = tuple(over[k])
    c = cfg["channels"]
    out_c = 2 * c if cfg["model_out_type"] == "both" else c
    net = named_net(cfg["net"], key=key, in_channels=c, out_channels=out_c, **over)
    if cfg["model_out_type"] == "both":
        return BothHeads(net, make_process(cfg))
    return net


def prediction_of(cfg: dict) -> str:
    return "x0" if cfg["model_out_type"] == "both" else cfg["model_out_type"]


@functools.cache
def _both_heads_cls():
    import equinox as eqx

    from sdekit._model import call_model
    from sdekit._validate import broadcast_time

    class BothHeads(eqx.Module):
        """Salimans & Ho's "x & eps" output: ``x0 = sigma^2 x0_head + alpha^2 x0(eps_head)``."""

        net: eqx.Module
        process: eqx.Module

        def __call__(self, x, t, cond=None, *, key=None):
            out = call_model(self.net, x, t, cond, key)
            c = x.shape[-1]
            x0_head, eps_head = out[..., :c], out[..., c:]
            tb = broadcast_time(t, x)
            a, s = self.process.alpha(tb), self.process.sigma(tb)
            x0_eps = (x - s * eps_head) / a
            return s**2 * x0_head + a**2 * x0_eps

    return BothHeads


def BothHeads(net, process):  # noqa: N802 - a constructor
    return _both_heads_cls()(net, process)


# ------------------------------------------------------------------------------- objectives


def vlb_terms(process, x0, x_t, x0_hat, t, s, variance="fixed_large", intp_frac=0.0):
    """The variational bound's terms (``sdekit.objectives.vlb_terms``)."""
    from sdekit.objectives import vlb_terms as terms

    return terms(process, x0, x_t, x0_hat, t, s, variance, intp_frac)


def _objective_classes():
    from sdekit.objectives import VLB, DiscreteTime, LabelDropout

    return DiscreteTime, VLB, LabelDropout


def make_objective(cfg: dict, process):
    from sdekit.objectives import DSM, UniformTime

    DiscreteTime, VLBLoss, LabelDropout = _objective_classes()
    pred = prediction_of(cfg)
    times = (UniformTime(0.0, 1.0) if int(cfg["train_timesteps"]) == 0
             else DiscreteTime(int(cfg["train_timesteps"])))
    if cfg["loss_type"] == "kl":
        obj = VLBLoss(process, pred, int(cfg["sample_timesteps"]), cfg["model_var_type"],
                      float(cfg["intp_frac"]), times)
    else:
        target, weighting = REWEIGHT[cfg["reweight_type"]]
        obj = DSM(process, prediction=pred, target=target, weighting=weighting,
                  time_sampler=times)
    if cfg["use_cfg"]:
        obj = LabelDropout(obj, float(cfg["p_uncond"]), int(cfg["num_classes"]))
    return obj


# ------------------------------------------------------------------------------- sampling


def make_sampler(cfg: dict, method: str, steps: int, *, variance=None, intp_frac=None,
                 eta: float = 0.0, guided: bool = False):
    """DDIM (eta) or ancestral sampling on the uniform grid ``t_i = i / T_s`` with VDPM's rules:
    x0 clipped to [-1, 1] and the last step returning the clipped x0. With guidance the clip is
    done per branch inside the guidance wrapper (see `guided_model`)."""
    from sdekit.sampling import DDIM, Ancestral

    clip = None if guided else 1.0
    if method == "ddim":
        return DDIM(steps, eta=eta, clip_x0=clip, final_x0=True)
    return Ancestral(steps, variance=variance or cfg["model_var_type"],
                     intp_frac=float(cfg["intp_frac"] if intp_frac is None else intp_frac),
                     clip_x0=clip, final_x0=True)


def guided_model(cfg: dict, process, net, w: float):
    """VDPM's guidance: each branch's x0 is clipped, then ``(1 + w) x0_c - w x0_u`` (the same as
    guiding the posterior means); the null label is ``num_classes``."""
    from sdekit.wrappers import ClassifierFreeGuidance

    return ClassifierFreeGuidance(net, w=float(w), null_label=int(cfg["num_classes"]),
                                  process=process, prediction=prediction_of(cfg), clip_x0=1.0)


def reverse_step(cfg, process, x_t, x0_raw, t, s, *, method, noise=None, x0_raw_uncond=None,
                 w=0.0, variance=None, intp_frac=None, eta=0.0, final=False):
    """One step of the recipe's sampler written out (what `make_sampler` + `guided_model` do per
    step): clip x0 (per branch), guide, then DDIM or the ancestral posterior; the final step
    returns the (guided) clipped x0."""
    import jax.numpy as jnp

    from sdekit.sampling import ancestral_step, ddim_step

    x0 = jnp.clip(x0_raw, -1.0, 1.0)
    if x0_raw_uncond is not None:
        x0 = (1.0 + w) * x0 - w * jnp.clip(x0_raw_uncond, -1.0, 1.0)
    if final:
        return x0
    if method == "ddim":
        return ddim_step(process, x_t, x0, t, s, eta, noise)
    return ancestral_step(process, x_t, x0, t, s, noise,
                          variance=variance or cfg["model_var_type"],
                          intp_frac=float(cfg["intp_frac"] if intp_frac is None else intp_frac))


def _to_uint8(x) -> np.ndarray:
    return np.clip(np.round(np.asarray(x) * 127.5 + 127.5), 0, 255).astype(np.uint8)


def synthetic_images(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Built-in smoke data: uint8 RGB squares/discs on a gradient, label = hue bin (10 classes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    imgs = np.empty((n, size, size, 3), np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int32)
    for i in range(n):
        img = rng.uniform(0, 0.4, 3)[None, None] * (0.5 + 0.5 * yy[..., None])
        cy, cx = rng.uniform(0.3, 0.7, 2)
        r = rng.uniform(0.15, 0.3)
        hue = labels[i] / 10.0
        colour = 0.5 + 0.5 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))
        mask = ((np.abs(yy - cy) < r) & (np.abs(xx - cx) < r) if labels[i] % 2
                else (yy - cy) ** 2 + (xx - cx) ** 2 < r**2)
        img[mask] = colour
        imgs[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return imgs, labels


def _source(cfg: dict, data_root, smoke: bool, seed: int):
    from sdekit.data import CIFAR10, MNIST, ArraySource, ImageFolder

    if smoke:
        return ArraySource(*synthetic_images(512, cfg["image_size"], seed))
    if cfg["dataset"] == "cifar10":
        return CIFAR10("train", root=data_root)
    if cfg["dataset"] == "mnist":
        src = MNIST("train", root=data_root)
        return ArraySource(_resize_uint8(src.images, 32), src.labels)
    if data_root is None:
        raise SystemExit("error: --preset celeba needs --data-root (a folder of face images).")
    crop = cfg.get("crop")
    if crop is None:
        return ImageFolder(data_root, size=(cfg["image_size"],) * 2)
    return Transformed(ImageFolder(data_root),
                       functools.partial(crop_resize, crop=tuple(crop), size=cfg["image_size"]))


def crop_resize(image: np.ndarray, crop: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The window ``crop = (top, left, height, width)`` of an ``(H, W, C)`` uint8 image, resized
    to ``(size, size)`` (bilinear, as torchvision's ``Resize`` on a PIL image; no resize when the
    window already has that size). CelebA: ``crop=CELEBA_CROP``, ``size=64`` (spec §9)."""
    from PIL import Image

    top, left, height, width = (int(v) for v in crop)
    h, w = image.shape[:2]
    if min(top, left) < 0 or min(height, width) < 1 or top + height > h or left + width > w:
        raise ValueError(
            f"crop window (top {top}, left {left}, {height}x{width}) does not fit an image of "
            f"{h}x{w}; the celeba preset expects the aligned 178x218 CelebA images.")
    out = image[top:top + height, left:left + width]
    if (height, width) != (size, size):
        im = Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out)
        out = np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), np.uint8)
        out = out.reshape(size, size, image.shape[-1])
    return out


class Transformed:
    """A data source whose images pass through ``transform`` (an ``(H, W, C)`` uint8 image to
    another), read lazily like the wrapped source."""

    def __init__(self, source, transform):
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.source[i])
        item["image"] = self.transform(item["image"])
        return item


def _resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = [np.asarray(Image.fromarray(im[..., 0]).resize((size, size), Image.Resampling.BILINEAR))
           for im in images]
    return np.stack(out)[..., None]


# ------------------------------------------------------------------------------- subcommands


def train(args: argparse.Namespace) -> int:
    import jax
    import jax.random as jr

    from sdekit.data import make_pipeline
    from sdekit.sampling import sample
    from sdekit.train import fit, make_optimizer, maybe_initialize_distributed

    maybe_initialize_distributed()
    cfg = resolve_config(args)
    if args.smoke:
        cfg.update(net="tiny", image_size=16, batch_size=16, warmup=10, lr=1e-3,
                   ema_decay=0.99, sample_timesteps=8, dataset="synthetic",
                   net_overrides={"num_classes": cfg["num_classes"], "dropout": 0.0})
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = _source(cfg, args.data_root, args.smoke, cfg["seed"])
    steps = args.steps if args.steps is not None else cfg["epochs"] * math.ceil(
        len(source) / cfg["batch_size"])
    cfg["steps"] = steps
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    n_dev = jax.device_count()
    if cfg["batch_size"] % n_dev:
        raise SystemExit(f"error: argument --batch-size: got {cfg['batch_size']}, expected a "
                         f"multiple of the {n_dev} devices.")
    data = make_pipeline(source, batch_size=cfg["batch_size"] // jax.process_count(),
                         seed=cfg["seed"], augment="flip" if cfg["flip"] else None,
                         process_index=jax.process_index(), process_count=jax.process_count())
    process = make_process(cfg)
    model = make_model(cfg, jr.key(cfg["seed"]))
    objective = make_objective(cfg, process)
    optimizer = make_optimizer("adamw", lr=cfg["lr"], warmup_steps=cfg["warmup"],
                               clip_norm=cfg["grad_norm"], b1=cfg["beta1"], b2=cfg["beta2"],
                               weight_decay=cfg["weight_decay"], accumulate=cfg["num_accum"])
    size, ch, k = cfg["image_size"], cfg["channels"], cfg["num_classes"]
    guided = k is not None and cfg["w_guide"] > 0
    sampler = make_sampler(cfg, "ddim" if args.use_ddim else "ancestral",
                           int(cfg["sample_timesteps"]), guided=guided)

    def sample_fn(key, net):
        cond = None if k is None else jr.randint(jr.fold_in(key, 1), (args.num_grid,), 0, k)
        m = guided_model(cfg, process, net, cfg["w_guide"]) if guided else net
        return sample(key, process, m, (args.num_grid, size, size, ch), method=sampler,
                      prediction=prediction_of(cfg), cond=cond, t_end=0.0).samples

    t0 = time.time()
    state = fit(
        objective, model, data, optimizer=optimizer, num_steps=steps, key=jr.key(cfg["seed"] + 1),
        ema_decays=(cfg["ema_decay"],), ema_warmup=True, batch_size=cfg["batch_size"],
        data_key="image", cond_key="label" if k is not None else None,
        checkpoint_dir=out / "checkpoints", checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep, sample_fn=sample_fn, sample_every=args.sample_every,
        sample_dir=out / "samples", metrics_path=out / "metrics.jsonl", log_every=args.log_every,
        progress=not args.no_progress, config=cfg,
    )
    print(f"trained to step {int(state.step)} in {time.time() - t0:.1f} s; run directory {out}")
    return 0


def _restore(out: pathlib.Path, checkpoint, no_ema: bool):
    import jax.random as jr

    from sdekit.train import (
        init_state,
        latest_checkpoint,
        make_optimizer,
        read_header,
        restore_checkpoint,
    )

    ckpt = pathlib.Path(checkpoint) if checkpoint else latest_checkpoint(out / "checkpoints")
    if ckpt is None or not ckpt.exists():
        raise SystemExit(f"error: no checkpoint in {out / 'checkpoints'}; train first or pass "
                         "--checkpoint.")
    header = read_header(ckpt)
    cfg = header["config"]
    opt = make_optimizer("adamw", weight_decay=cfg["weight_decay"], accumulate=cfg["num_accum"])
    like = init_state(make_model(cfg, jr.key(0)), opt, key=jr.key(0),
                      ema_decays=tuple(header.get("ema_decays", (cfg["ema_decay"],))))
    state = restore_checkpoint(ckpt, like)
    return cfg, (state.model if no_ema else state.ema_model()), ckpt, header


def sample_cmd(args: argparse.Namespace) -> int:
    import jax
    import jax.random as jr

    from sdekit.sampling import sample
    from sdekit.train import save_image_grid

    out = pathlib.Path(args.out)
    cfg, net, ckpt, header = _restore(out, args.checkpoint, args.no_ema)
    process = make_process(cfg)
    k = cfg["num_classes"]
    w = cfg["w_guide"] if args.w_guide is None else args.w_guide
    guided = k is not None and w > 0 and not args.uncond
    sampler = make_sampler(cfg, args.method, args.steps, variance=args.variance,
                           intp_frac=args.intp_frac, eta=args.eta, guided=guided)
    model = guided_model(cfg, process, net, w) if guided else net
    size, ch = cfg["image_size"], cfg["channels"]

    def one(key):
        k_lab, k_s = jr.split(key)
        cond = None
        if k is not None:
            cond = (jax.numpy.full((args.batch,), k, jax.numpy.int32) if args.uncond
                    else jr.randint(k_lab, (args.batch,), 0, k))
        res = sample(k_s, process, model, (args.batch, size, size, ch), method=sampler,
                     prediction=prediction_of(cfg), cond=cond, t_end=0.0, jit=False)
        return res.samples, cond if cond is not None else jax.numpy.zeros((args.batch,), int)

    run = jax.jit(one)
    images, labels = [], []
    key = jr.key(cfg["seed"] if args.seed is None else args.seed)
    t0 = time.time()
    from tqdm.auto import tqdm

    n_calls = -(-args.num // args.batch)
    for _ in tqdm(range(n_calls), desc="sampling", disable=args.no_progress):
        key, sub = jr.split(key)
        x, y = run(sub)
        images.append(_to_uint8(x))
        labels.append(np.asarray(y))
    imgs = np.concatenate(images)[: args.num]
    labs = np.concatenate(labels)[: args.num]
    tag = f"{args.method}{args.steps}" + (f"_w{w:g}" if guided else "") + (
        "_uncond" if args.uncond else "")
    np.savez_compressed(out / f"samples_{tag}.npz", images=imgs, labels=labs)
    save_image_grid(imgs[:256].astype(np.float32) / 127.5 - 1.0, out / f"samples_{tag}.png")
    summary = {"checkpoint": str(ckpt), "step": header.get("step"), "method": args.method,
               "steps": args.steps, "w_guide": w if guided else None, "num": int(len(imgs)),
               "file": str(out / f"samples_{tag}.npz"), "seconds": round(time.time() - t0, 2)}
    print(json.dumps(summary))
    with open(out / "sampling.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")
    return 0


def eval_cmd(args: argparse.Namespace) -> int:
    import jax

    import sdekit.metrics as skm

    out = pathlib.Path(args.out)
    path = pathlib.Path(args.samples) if args.samples else max(
        out.glob("samples_*.npz"), key=lambda p: p.stat().st_mtime, default=None)
    if path is None:
        raise SystemExit(f"error: no samples_*.npz in {out}; run `sample` first.")
    imgs = skm.read_images(path)
    result: dict = {"samples": str(path), "n": int(len(imgs))}
    t0 = time.time()
    if args.ref:
        try:
            net = skm.load_inception(args.weights)
        except FileNotFoundError as e:
            raise SystemExit(str(e)) from None
        pool, logits = skm.extract_features(net, imgs, batch_size=args.batch_size,
                                            progress=not args.no_progress)
        ref = skm.load_stats(args.ref)
        mu, sigma = skm.feature_statistics(pool)
        result["fid"] = skm.frechet_distance(mu, sigma, ref["mu"], ref["sigma"])
        result["inception_score"], result["inception_score_std"] = skm.inception_score(logits)
        if "features" in ref:
            result["kid"], _ = skm.kernel_inception_distance(pool, ref["features"])
            result["precision"], result["recall"] = skm.precision_recall(ref["features"], pool)
    else:
        cfg = json.loads((out / "config.json").read_text())
        real = _source(cfg, cfg.get("data_root"), cfg["dataset"] == "synthetic", cfg["seed"] + 7)
        n = min(len(imgs), len(real), 2000)
        real_imgs = np.stack([real[i]["image"] for i in range(n)]).astype(np.float32) / 127.5 - 1
        fake = imgs[:n].astype(np.float32) / 127.5 - 1
        result["pixel_frechet"] = skm.frechet_feature_distance(None, fake, real_imgs)
        result["sliced_wasserstein"] = skm.sliced_wasserstein(jax.random.key(0), fake, real_imgs)
        result["mmd"] = skm.mmd(fake, real_imgs)
    result["seconds"] = round(time.time() - t0, 2)
    print(json.dumps(result))
    with open(out / "eval.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("subcommands: train (default), sample, eval; `vdpm_cifar10.py <subcommand> --help` "
              "lists every flag.\n")
        _train_parser().print_help()
        return 0
    command = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else "train"
    parser = {"train": _train_parser, "sample": _sample_parser, "eval": _eval_parser}[command]()
    args = parser.parse_args(argv)
    if args.smoke and args.out == "runs/vdpm":
        args.out = "runs/vdpm_smoke"
    if args.smoke and command == "train":
        t0 = time.time()
        args.steps = args.steps or 40
        args.checkpoint_every, args.sample_every, args.num_grid, args.log_every = 40, 40, 16, 10
        rc = train(args)
        common = ["--smoke", "--out", args.out] + (["--no-progress"] if args.no_progress else [])
        for extra in (["--method", "ddim", "--w-guide", "0.1"], ["--method", "ancestral"]):
            rc = rc or sample_cmd(_sample_parser().parse_args(
                common + ["--steps", "8", "--num", "32", "--batch", "16"] + extra))
        rc = rc or eval_cmd(_eval_parser().parse_args(common))
        print(f"smoke run finished in {time.time() - t0:.1f} s")
        return rc
    if command == "train":
        return train(args)
    return sample_cmd(args) if command == "sample" else eval_cmd(args)


if __name__ == "__main__":
    raise SystemExit(main())
