"""Command line: reference statistics and FID / IS / KID / precision-recall of sample sets.

    python -m sdekit.metrics stats cifar-10-python.tar.gz --out cifar10_train.npz
    python -m sdekit.metrics fid samples.npz --ref cifar10_train.npz
    python -m sdekit.metrics is samples.npz
    python -m sdekit.metrics kid samples.npz --ref cifar10_train.npz   (needs --features stats)
    python -m sdekit.metrics pr samples.npz --ref cifar10_train.npz    (needs --features stats)

Results are printed as one JSON line (and appended to ``--jsonl`` if given).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

from ._features import extract_features, read_images
from ._inception import FID_WEIGHTS_NAME, FID_WEIGHTS_URL, WEIGHTS_ENV, load_inception
from ._stats import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_stats,
    precision_recall,
    save_stats,
)

SOURCE_HELP = ("an .npz of NHWC images (key 'images'; uint8, or float in [-1, 1]), the CIFAR-10 "
               "tarball cifar-10-python.tar.gz (train split) or a folder of images")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sdekit.metrics",
        description="Sample-quality metrics with the FID Inception-v3 (pytorch-fid weights, read "
                    f"without torch). Get {FID_WEIGHTS_NAME} from {FID_WEIGHTS_URL}.",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--weights", default=None,
                       help=f"the weight file {FID_WEIGHTS_NAME} (default ${WEIGHTS_ENV}, else "
                            "~/.cache/sdekit/" + FID_WEIGHTS_NAME + ")")
        p.add_argument("--batch-size", type=int, default=200,
                       help="images per batch, split over all devices (default %(default)s)")
        p.add_argument("--max-images", type=int, default=None,
                       help="use only the first N images of each set (default: all)")
        p.add_argument("--resize", type=int, default=299,
                       help="Inception input side; 299 is the standard protocol (default "
                            "%(default)s)")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        p.add_argument("--jsonl", default=None, help="also append the result to this JSONL file")

    p = sub.add_parser("stats", help="write reference statistics (mu, sigma) of an image set")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--out", required=True, help="output .npz (keys mu, sigma[, features])")
    p.add_argument("--features", action="store_true",
                   help="also store the pool3 features (needed as --ref for kid and pr)")
    common(p)
    for name, what in (("fid", "Fréchet Inception Distance"),
                       ("kid", "Kernel Inception Distance (mean, std over subsets)"),
                       ("pr", "improved precision and recall (k-NN radii)")):
        p = sub.add_parser(name, help=what)
        p.add_argument("samples", help=SOURCE_HELP)
        p.add_argument("--ref", required=True,
                       help="reference: a stats .npz from `stats` (with --features for kid/pr), "
                            "TTUR's fid_stats_*.npz (fid only), or an image set (" + SOURCE_HELP
                            + ")")
        if name == "kid":
            p.add_argument("--subsets", type=int, default=100, help="rounds (default %(default)s)")
            p.add_argument("--subset-size", type=int, default=1000,
                           help="rows per round (default %(default)s)")
        if name == "pr":
            p.add_argument("--k", type=int, default=3, help="neighbourhood size (default 3)")
        if name == "fid":
            p.add_argument("--eps", type=float, default=1e-6,
                           help="diagonal offset if the covariance product is singular "
                                "(default %(default)s)")
            p.add_argument("--fid-method", choices=["sqrtm", "eigh"], default="sqrtm",
                           help="matrix square root as pytorch-fid (sqrtm) or via two symmetric "
                                "eigendecompositions, faster, same value to round-off (default "
                                "%(default)s)")
        common(p)
    p = sub.add_parser("is", help="Inception Score (mean, std over splits)")
    p.add_argument("samples", help=SOURCE_HELP)
    p.add_argument("--splits", type=int, default=10, help="splits (default %(default)s)")
    common(p)
    return ap


def _features(args, net, source: str, desc: str):
    imgs = read_images(source, max_images=args.max_images)
    return extract_features(net, imgs, batch_size=args.batch_size,
                            progress=not args.no_progress, desc=desc)


def _ref(args, net, need_features: bool) -> dict:
    p = pathlib.Path(args.ref)
    if p.suffix == ".npz":
        with np.load(p) as z:
            files = set(z.files)
        if {"mu", "sigma"} <= files:
            ref = load_stats(p)
            if need_features and "features" not in ref:
                raise SystemExit(f"{p}: no 'features' array; rebuild it with `stats --features`.")
            return ref
    pool, _ = _features(args, net, args.ref, "reference")
    mu, sigma = feature_statistics(pool)
    return {"mu": mu, "sigma": sigma, "features": pool}


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    t0 = time.time()
    try:
        net = load_inception(args.weights, resize=args.resize)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    result: dict = {"command": args.command}
    if args.command == "stats":
        pool, _ = _features(args, net, args.source, "stats")
        mu, sigma = feature_statistics(pool)
        extra = {"features": pool.astype(np.float32)} if args.features else {}
        save_stats(args.out, mu, sigma, **extra)
        result.update(out=str(args.out), n=int(pool.shape[0]))
    elif args.command == "is":
        _, logits = _features(args, net, args.samples, "samples")
        mean, std = inception_score(logits, splits=args.splits)
        result.update(inception_score=mean, inception_score_std=std, n=int(logits.shape[0]))
    else:
        ref = _ref(args, net, need_features=args.command != "fid")
        pool, _ = _features(args, net, args.samples, "samples")
        result["n"] = int(pool.shape[0])
        if args.command == "fid":
            mu, sigma = feature_statistics(pool)
            result["fid"] = frechet_distance(mu, sigma, ref["mu"], ref["sigma"], eps=args.eps,
                                             method=args.fid_method)
        elif args.command == "kid":
            mean, std = kernel_inception_distance(
                pool, ref["features"], subsets=args.subsets, subset_size=args.subset_size
            )
            result.update(kid=mean, kid_std=std)
        else:
            prec, rec = precision_recall(ref["features"], pool, k=args.k)
            result.update(precision=prec, recall=rec)
    result["seconds"] = round(time.time() - t0, 2)
    line = json.dumps(result)
    print(line)
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(line + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
