"""Command line: reference statistics and FID / KID / IS / precision-recall under a protocol.

    python -m sdekit.metrics stats cifar-10-python.tar.gz --protocol torch-fidelity \\
        --out cifar10_train_torch-fidelity.npz --features
    python -m sdekit.metrics fid samples.npz --ref cifar10_train_torch-fidelity.npz \\
        --protocol torch-fidelity
    python -m sdekit.metrics is samples.npz --protocol torch-fidelity
    python -m sdekit.metrics kid samples.npz --ref cifar10_train_torch-fidelity.npz \\
        --protocol torch-fidelity
    python -m sdekit.metrics pr samples.npz --ref cifar10_train.npz --on vgg16
    python -m sdekit.metrics eval samples.npz --ref stats.npz --metrics fid,is --protocol ...

Results are printed as one JSON line (and appended to ``--jsonl`` if given).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ._inception import FID_WEIGHTS_NAME, NVIDIA_WEIGHTS_NAME
from ._protocols import PROTOCOLS
from ._vgg import VGG16_WEIGHTS_NAME

SOURCE_HELP = ("an .npz of NHWC images (key 'images'; uint8, or float in [-1, 1]), the CIFAR-10 "
               "tarball cifar-10-python.tar.gz (train split) or a folder of images")
REF_HELP = ("reference: a statistics file (sdekit's from `stats`, pytorch-fid's or TTUR's .npz, "
            "clean-fid's <name>_<mode>_<split>_<res>.npz, torch-fidelity's "
            "<input>-inception-v3-compat-stat-fid-2048.pt cache), made under the same protocol, "
            "or an image set (" + SOURCE_HELP + ")")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sdekit.metrics",
        description="Sample-quality metrics exactly as pytorch-fid, torch-fidelity or clean-fid "
                    "compute them, with their Inception weights read without torch.",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--protocol", default="pytorch-fid", choices=list(PROTOCOLS),
                       help="the tool whose computation is reproduced (default %(default)s)")
        p.add_argument("--weights", default=None,
                       help=f"Inception weights: {FID_WEIGHTS_NAME} for pytorch-fid and "
                            f"torch-fidelity, {NVIDIA_WEIGHTS_NAME} for the clean-fid protocols "
                            "(default $SDEKIT_FID_WEIGHTS / $SDEKIT_NVIDIA_INCEPTION, else "
                            "~/.cache/sdekit/<name>)")
        p.add_argument("--quantize", default=None, choices=["round", "truncate", "none"],
                       help="how float samples become pixel values (default: the tool's own: "
                            "round for torch-fidelity, which only takes uint8, else none)")
        p.add_argument("--resize", type=int, default=299,
                       help="Inception input side; 299 in every protocol, smaller only for "
                            "quick tests (default %(default)s)")
        p.add_argument("--batch-size", type=int, default=200,
                       help="images per batch, split over all devices (default %(default)s)")
        p.add_argument("--max-images", type=int, default=None,
                       help="use only the first N images of each set (default: all)")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        p.add_argument("--jsonl", default=None, help="also append the result to this JSONL file")

    def vgg(p):
        p.add_argument("--vgg-weights", default=None,
                       help=f"torchvision's {VGG16_WEIGHTS_NAME} (default $SDEKIT_VGG16_WEIGHTS, "
                            "else ~/.cache/sdekit/<name>)")

    p = sub.add_parser("stats", help="write reference statistics of an image set")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--out", required=True,
                   help="output .npz (mu, sigma, protocol, n[, features][, vgg16_features])")
    p.add_argument("--features", action="store_true",
                   help="also store the pool3 features (needed as --ref for kid and pr --on "
                        "inception)")
    p.add_argument("--vgg16", action="store_true",
                   help="also store VGG-16 features (needed as --ref for pr --on vgg16)")
    common(p)
    vgg(p)

    def fid_opts(p):
        p.add_argument("--fid-method", choices=["tool", "fast"], default="tool",
                       help="the tool's matrix square root (scipy sqrtm / eigvals, minutes on a "
                            "small CPU) or a symmetric eigendecomposition giving the same value "
                            "(default %(default)s)")

    def kid_opts(p):
        p.add_argument("--subsets", type=int, default=None,
                       help="KID subsets (default: the tool's, 100)")
        p.add_argument("--subset-size", type=int, default=None,
                       help="KID rows per subset (default: the tool's, 1000)")

    for name, what in (("fid", "Fréchet Inception Distance"),
                       ("kid", "Kernel Inception Distance"),
                       ("pr", "improved precision and recall (Kynkäänniemi et al., k-NN)")):
        p = sub.add_parser(name, help=what)
        p.add_argument("samples", help=SOURCE_HELP)
        p.add_argument("--ref", required=True, help=REF_HELP)
        if name == "fid":
            fid_opts(p)
        if name == "kid":
            kid_opts(p)
        if name == "pr":
            p.add_argument("--on", choices=["vgg16", "inception"], default="vgg16",
                           help="VGG-16 fc2 features (the paper's) or the protocol's Inception "
                                "pool3 (default %(default)s)")
            p.add_argument("--k", type=int, default=3, help="neighbourhood size (default 3)")
            vgg(p)
        common(p)
    p = sub.add_parser("is", help="Inception Score (mean, std over splits)")
    p.add_argument("samples", help=SOURCE_HELP)
    p.add_argument("--splits", type=int, default=None, help="splits (default: the tool's, 10)")
    common(p)
    p = sub.add_parser("eval", help="several metrics in one pass over the samples")
    p.add_argument("samples", help=SOURCE_HELP)
    p.add_argument("--ref", default=None, help=REF_HELP)
    p.add_argument("--metrics", default="fid",
                   help="comma-separated: fid, kid, is, pr, pr_inception (default %(default)s)")
    p.add_argument("--splits", type=int, default=None, help="IS splits (default: the tool's)")
    p.add_argument("--k", type=int, default=3, help="precision/recall neighbourhood size")
    fid_opts(p)
    kid_opts(p)
    common(p)
    vgg(p)
    return ap


def _stats(args) -> dict:
    from ._evaluate import _images
    from ._extract import inception_features, vgg16_features
    from ._inception import load_inception
    from ._reference import save_reference

    imgs = _images(args.source, "source", args.max_images)
    kw = dict(batch_size=args.batch_size, progress=not args.no_progress)
    pool, _ = inception_features(
        imgs, protocol=args.protocol,
        net=load_inception(args.weights, protocol=args.protocol, resize=args.resize),
        quantize=args.quantize, **kw)
    vgg = (vgg16_features(imgs, weights=args.vgg_weights, quantize=args.quantize or "round", **kw)
           if args.vgg16 else None)
    save_reference(args.out, pool, protocol=args.protocol, keep_features=args.features,
                   vgg16_features=vgg)
    return {"out": str(args.out), "n": int(pool.shape[0])}


def main(argv: list[str] | None = None) -> dict:
    """Run the command line (``argv`` as after ``python -m sdekit.metrics``) and return the
    result dict that is printed."""
    from ._evaluate import evaluate
    from ._inception import load_inception

    args = _parser().parse_args(argv)
    opt = vars(args)  # the options a subcommand does not define are absent
    t0 = time.time()
    result: dict = {"command": args.command, "protocol": args.protocol}
    try:
        if args.command == "stats":
            result.update(_stats(args))
        else:
            metrics = {"fid": ("fid",), "kid": ("kid",), "is": ("is",),
                       "pr": ("pr",) if opt.get("on", "") == "vgg16" else ("pr_inception",),
                       "eval": tuple(m.strip() for m in opt.get("metrics", "").split(",")
                                     if m.strip())}[args.command]
            needs_net = any(m != "pr" for m in metrics)
            net = (load_inception(args.weights, protocol=args.protocol, resize=args.resize)
                   if needs_net else None)
            res = evaluate(
                args.samples, ref=opt.get("ref", None), metrics=metrics,
                protocol=args.protocol, net=net,
                vgg_weights=opt.get("vgg_weights", None), quantize=args.quantize,
                batch_size=args.batch_size, max_images=args.max_images,
                fid_method=opt.get("fid_method", "tool"),
                kid_subsets=opt.get("subsets", None),
                kid_subset_size=opt.get("subset_size", None),
                is_splits=opt.get("splits", None), pr_k=opt.get("k", 3),
                progress=not args.no_progress)
            result.update(res)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    result["seconds"] = round(time.time() - t0, 2)
    line = json.dumps(result)
    print(line)
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(line + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
