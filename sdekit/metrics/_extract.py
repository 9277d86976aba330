"""Protocol feature extractors: images -> a tool's Inception or VGG-16 features."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np

from ._features import AbstractStagedFunction, extract_features
from ._inception import InceptionV3, load_inception
from ._protocols import Protocol, check_unit_range, get_protocol
from ._vgg import VGG16, VGG16Features, load_vgg16


class InceptionFeatures(AbstractStagedFunction):
    """A protocol's path from pixel values to Inception features.

    Called on float32 pixel values in [0, 255] (``(N, H, W, 1 or 3)``, any size; what
    `Protocol.pixels` returns), it applies the protocol's resize to ``net.resize`` (299, as in
    every tool; other sides only for quick tests) and scaling (`Protocol.network_input`) and
    the network, and returns ``(pool3, logits)``: the 2048-d
    features of FID, KID and precision/recall, and the bias-free 1008-way logits of the
    Inception Score. Use it with `extract_features` (``preprocess=protocol.pixels``), or through
    `inception_features`.

    Args:
        net: the network, from `load_inception` with the same protocol (or random, for tests).
        protocol: a `Protocol` or its name.
    """

    net: InceptionV3
    protocol: Protocol = eqx.field(static=True)

    def __init__(self, net: InceptionV3, protocol: Protocol | str = "pytorch-fid"):
        self.net = net
        self.protocol = get_protocol(protocol)

    def __check_init__(self):
        if not isinstance(self.net, InceptionV3):
            raise ValueError(f"argument `net`: got {type(self.net).__name__}, expected an "
                             "InceptionV3 (sdekit.metrics.load_inception).")
        fmt = self.net.weight_format
        if fmt not in ("random", self.protocol.weight_format):
            raise ValueError(
                f"argument `net`: weights read from a {fmt!r} file, but protocol "
                f"{self.protocol.name!r} runs the network of a {self.protocol.weight_format!r} "
                f"file; load it with load_inception(path, protocol={self.protocol.name!r}).")

    def stages(self) -> tuple[eqx.Module, eqx.Module]:
        """The two halves `extract_features` compiles separately: the protocol's resize and
        scaling, then the network (the same compiled network for every protocol)."""
        return _NetworkInput(self.protocol, self.net.resize), _Trunk(self.net)


class _NetworkInput(eqx.Module):
    protocol: Protocol = eqx.field(static=True)
    size: int = eqx.field(static=True)

    def __call__(self, pixels):
        return self.protocol.network_input(pixels, self.size)


class _Trunk(eqx.Module):
    net: InceptionV3

    def __init__(self, net: InceptionV3):
        # the weight file's name is a static field: drop it so that one compiled network serves
        # every protocol
        self.net = InceptionV3(None, resize=net.resize,
                               _params=(net.convs, net.fc_weight, net.fc_bias, "random"))

    def __call__(self, x):
        return self.net.trunk(x)


def _checked(images: Any, name: str) -> np.ndarray:
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        raise ValueError(f"argument `{name}`: got shape {a.shape}, expected NHWC images with 1 "
                         "or 3 channels.")
    if a.shape[0] == 0:
        raise ValueError(f"argument `{name}`: no images.")
    if np.issubdtype(a.dtype, np.floating):
        check_unit_range(a, name)
    elif a.dtype != np.uint8:
        raise ValueError(f"argument `{name}`: got dtype {a.dtype}, expected uint8 or float in "
                         "[-1, 1].")
    return a


def inception_features(
    images: Any,
    *,
    protocol: Protocol | str = "pytorch-fid",
    net: InceptionV3 | None = None,
    weights: Any = None,
    quantize: str | None = None,
    batch_size: int = 200,
    devices: Any = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A protocol's Inception features of an image set: ``(pool3 (n, 2048), logits (n, 1008))``.

    Args:
        images: NHWC uint8, or float in [-1, 1]; 1 or 3 channels; one size per call.
        protocol: a `Protocol` or its name.
        net: the network (default: `load_inception` of ``weights`` for the protocol).
        weights: the weight file for ``load_inception`` (default: its default path).
        quantize: how float images become pixel values (see `Protocol.pixels`).
        batch_size: images per batch, split over ``devices``.
        devices: devices to shard each batch over (default all).
        progress: show a progress bar.

    Returns:
        numpy ``pool3`` and bias-free ``logits``.
    """
    proto = get_protocol(protocol)
    imgs = _checked(images, "images")
    fn = InceptionFeatures(load_inception(weights, protocol=proto) if net is None else net, proto)
    return extract_features(fn, imgs, batch_size=batch_size, devices=devices, progress=progress,
                            desc=f"Inception ({proto.name})",
                            preprocess=lambda b: proto.pixels(b, quantize=quantize))


def vgg16_features(
    images: Any,
    *,
    net: VGG16 | None = None,
    weights: Any = None,
    quantize: str = "round",
    batch_size: int = 100,
    devices: Any = None,
    progress: bool = True,
) -> np.ndarray:
    """The VGG-16 ``fc2_relu`` features of torch-fidelity's precision/recall, ``(n, 4096)``.

    Images reach the network as torch-fidelity takes them: uint8 (float images in [-1, 1] are
    quantised first, ``round`` by default), then `VGG16Features`.

    Args:
        images: NHWC uint8, or float in [-1, 1]; 1 or 3 channels.
        net: the network (default: `load_vgg16` of ``weights``).
        weights: torchvision's ``vgg16-397923af.pth`` (default: its default path).
        quantize: ``"round"`` or ``"truncate"`` for float images (see `Protocol.pixels`).
        batch_size: images per batch.
        devices: devices to shard each batch over (default all).
        progress: show a progress bar.

    Returns:
        numpy ``(n, 4096)``.
    """
    proto = get_protocol("torch-fidelity")  # uint8 pixels, as torch-fidelity feeds VGG-16
    imgs = _checked(images, "images")
    fn = VGG16Features(load_vgg16(weights) if net is None else net)
    _, relu = extract_features(fn, imgs, batch_size=batch_size, devices=devices,
                               progress=progress, desc="VGG-16",
                               preprocess=lambda b: proto.pixels(b, quantize=quantize))
    return relu
