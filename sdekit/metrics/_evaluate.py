"""One call from samples (and a reference) to the metrics of a protocol: `evaluate`."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from ._protocols import Protocol, get_protocol

METRICS = ("fid", "kid", "is", "pr", "pr_inception")


def _images(source: Any, name: str, max_images: int | None) -> np.ndarray:
    from ._features import read_images

    if isinstance(source, (str, os.PathLike)):
        return read_images(source, max_images=max_images)
    a = np.asarray(source)
    return a if max_images is None else a[:max_images]


def _is_stats_file(ref: Any) -> bool:
    if not isinstance(ref, (str, os.PathLike)):
        return False
    p = pathlib.Path(ref)
    if p.suffix == ".pt":
        return True
    if p.suffix != ".npz" or not p.is_file():
        return False
    with np.load(p) as z:
        files = set(z.files)
    return bool({"mu", "sigma"} <= files or "feats" in files)


def evaluate(
    samples: Any,
    *,
    ref: Any = None,
    metrics: tuple[str, ...] | list[str] = ("fid",),
    protocol: Protocol | str = "pytorch-fid",
    weights: Any = None,
    vgg_weights: Any = None,
    net: Any = None,
    vgg_net: Any = None,
    quantize: str | None = None,
    batch_size: int = 200,
    max_images: int | None = None,
    fid_method: str = "tool",
    kid_subsets: int | None = None,
    kid_subset_size: int | None = None,
    is_splits: int | None = None,
    pr_k: int = 3,
    progress: bool = True,
) -> dict:
    """Sample-quality metrics of a protocol in one call.

    The examples' ``eval`` subcommands call it as
    ``sdekit.metrics.evaluate(samples, ref=ref, metrics=("fid", "is"), protocol=PAPER_PROTOCOL)``.

    Args:
        samples: NHWC images (uint8, or float in [-1, 1]) or a path `read_images` reads
            (``.npz`` with ``images``, a folder, the CIFAR-10 tarball).
        ref: the reference: a statistics file (`load_reference`: sdekit's, pytorch-fid's,
            clean-fid's or torch-fidelity's; it must be of ``protocol``), or images / a path to
            images. Needed for every metric but ``"is"``.
        metrics: any of ``"fid"``, ``"kid"``, ``"is"``, ``"pr"`` (precision/recall on VGG-16
            features, Kynkäänniemi et al.'s) and ``"pr_inception"`` (on the protocol's pool3
            features).
        protocol: a `Protocol` or its name.
        weights: the protocol's Inception weight file (default: `default_weights_path`).
        vgg_weights: torchvision's ``vgg16-397923af.pth`` for ``"pr"``.
        net: an already loaded Inception (instead of ``weights``).
        vgg_net: an already loaded `VGG16` (instead of ``vgg_weights``).
        quantize: how float images become pixel values (`Protocol.pixels`).
        batch_size: images per batch.
        max_images: use only the first this many images of each set.
        fid_method: ``"tool"`` or ``"fast"`` (`Protocol.fid`).
        kid_subsets: override the protocol's KID subsets.
        kid_subset_size: override the protocol's KID subset size.
        is_splits: override the protocol's IS splits.
        pr_k: precision/recall neighbourhood size.
        progress: show progress bars.

    Returns:
        ``{"protocol": name, "n": samples, "fid": ..., "kid": ..., "kid_std": ...,
        "inception_score": ..., "inception_score_std": ..., "precision": ..., "recall": ...,
        "precision_inception": ..., "recall_inception": ...}`` for the metrics asked for.
    """
    from ._extract import inception_features, vgg16_features
    from ._inception import load_inception
    from ._reference import load_reference
    from ._stats import precision_recall
    from ._vgg import load_vgg16

    proto = get_protocol(protocol)
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"argument `metrics`: got {metrics!r}, expected some of {METRICS}.")
    if fid_method not in ("tool", "fast"):
        raise ValueError(f"argument `fid_method`: got {fid_method!r}, expected 'tool' or 'fast'.")
    if "kid" in metrics and proto.kid is None:
        proto.kernel_inception_distance(np.zeros((2, 1)), np.zeros((2, 1)))  # raises, naming
    if "is" in metrics and proto.inception_score is None:
        proto.inception_score_of(np.zeros((2, 2)))  # raises, naming the protocols with IS
    needs_ref = [m for m in metrics if m != "is"]
    if needs_ref and ref is None:
        raise ValueError(f"argument `ref`: metrics {needs_ref} need a reference (statistics file "
                         "or images).")
    reference: dict[str, Any] = {}
    ref_is_stats = bool(needs_ref) and _is_stats_file(ref)
    if ref_is_stats:  # first: a reference of another protocol is refused before any work
        reference = load_reference(ref, protocol=proto)
    imgs = _images(samples, "samples", max_images)
    out: dict[str, Any] = {"protocol": proto.name, "n": int(imgs.shape[0])}
    need_inception = any(m in metrics for m in ("fid", "kid", "is", "pr_inception"))
    if need_inception and net is None:
        net = load_inception(weights, protocol=proto)
    if "pr" in metrics and vgg_net is None:
        vgg_net = load_vgg16(vgg_weights)
    kw = dict(batch_size=batch_size, progress=progress, quantize=quantize)
    pool = logits = None
    if need_inception:
        pool, logits = inception_features(imgs, protocol=proto, net=net, **kw)

    if needs_ref:
        if not ref_is_stats:
            ref_imgs = _images(ref, "ref", max_images)
            if any(m in metrics for m in ("fid", "kid", "pr_inception")):
                f, _ = inception_features(ref_imgs, protocol=proto, net=net, **kw)
                mu, sigma = proto.statistics(f)
                reference = {"mu": mu, "sigma": sigma, "features": f}
            if "pr" in metrics:
                reference["vgg16_features"] = vgg16_features(
                    ref_imgs, net=vgg_net, batch_size=batch_size, progress=progress,
                    quantize=quantize or "round")

    def need(key: str, what: str):
        if key not in reference:
            raise ValueError(f"argument `ref`: {ref!s} has no {key!r} ({what}); rebuild it with "
                             "`python -m sdekit.metrics stats ... --features"
                             f"{' --vgg16' if key == 'vgg16_features' else ''}`, or pass the "
                             "reference images.")
        return reference[key]

    if "fid" in metrics:
        if fid_method == "fast" and "features" in reference:
            out["fid"] = proto.fid(pool, reference["features"], method="fast")
        else:
            mu, sigma = proto.statistics(pool)
            out["fid"] = proto.frechet_distance(
                mu, sigma, reference["mu"], reference["sigma"],
                method="tool" if fid_method == "tool" else "eigh")
    if "kid" in metrics:
        mean, std = proto.kernel_inception_distance(
            pool, need("features", "pool3 features for KID"), subsets=kid_subsets,
            subset_size=kid_subset_size)
        out["kid"] = mean
        if std is not None:
            out["kid_std"] = std
    if "is" in metrics:
        mean, std = proto.inception_score_of(logits, splits=is_splits)
        out.update(inception_score=mean, inception_score_std=std)
    if "pr_inception" in metrics:
        p, r = precision_recall(need("features", "pool3 features"), pool, k=pr_k)
        out.update(precision_inception=p, recall_inception=r)
    if "pr" in metrics:
        fake = vgg16_features(imgs, net=vgg_net, batch_size=batch_size, progress=progress,
                              quantize=quantize or "round")
        p, r = precision_recall(need("vgg16_features", "VGG-16 features"), fake, k=pr_k)
        out.update(precision=p, recall=r)
    return out
