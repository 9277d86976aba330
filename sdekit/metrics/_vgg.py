"""VGG-16 (torchvision's layout) for improved precision and recall (Kynkäänniemi et al. 2019).

The reference implementation (NVlabs) describes images by the 4096-d output of VGG-16's second
fully connected layer ("fc2"); torch-fidelity's ``prc`` metric, a PyTorch port of it, takes the
same layer after its ReLU (``"fc2_relu"``) from torchvision's ImageNet VGG-16 weights
``vgg16-397923af.pth``, with uint8 images resized to 224 x 224 by the TensorFlow-1 bilinear
resize and normalised with the ImageNet mean and std. This module reproduces that path.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..io import WeightFileError, load_torch
from ._features import AbstractStagedFunction

VGG16_WEIGHTS_NAME = "vgg16-397923af.pth"
VGG16_WEIGHTS_URL = "https://download.pytorch.org/models/" + VGG16_WEIGHTS_NAME
VGG16_WEIGHTS_ENV = "SDEKIT_VGG16_WEIGHTS"
#: (index in torchvision's ``features``, in, out) of the 13 convolutions; a 2x2 max pool follows
#: the 2nd, 4th, 7th, 10th and 13th.
VGG16_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256),
               (12, 256, 256), (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512),
               (24, 512, 512), (26, 512, 512), (28, 512, 512))
_POOL_AFTER = frozenset({1, 3, 6, 9, 12})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16(eqx.Module):
    """torchvision's VGG-16 up to the second fully connected layer.

    Called on ``(N, 224, 224, 3)`` normalised images, it returns the pre-activation ``fc2``
    ``(N, 4096)``. Build it from a weight file with `load_vgg16`.
    """

    conv_weights: list[jax.Array]  # (out, in, 3, 3), PyTorch layout
    conv_biases: list[jax.Array]
    fc1_weight: jax.Array  # (4096, 25088), input flattened in (C, H, W) order
    fc1_bias: jax.Array
    fc2_weight: jax.Array
    fc2_bias: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[1:] != (224, 224, 3):
            raise ValueError(f"argument `x`: got shape {x.shape}, expected (N, 224, 224, 3).")
        for i, (w, b) in enumerate(zip(self.conv_weights, self.conv_biases, strict=True)):
            x = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "OIHW", "NHWC"))
            x = jax.nn.relu(x + b)
            if i in _POOL_AFTER:
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        flat = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        h = jax.nn.relu(flat @ self.fc1_weight.T + self.fc1_bias)
        return h @ self.fc2_weight.T + self.fc2_bias


def _vgg_expected() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for i, cin, cout in VGG16_CONVS:
        out[f"features.{i}.weight"] = (cout, cin, 3, 3)
        out[f"features.{i}.bias"] = (cout,)
    out["classifier.0.weight"] = (4096, 25088)
    out["classifier.0.bias"] = (4096,)
    out["classifier.3.weight"] = (4096, 4096)
    out["classifier.3.bias"] = (4096,)
    return out


def vgg16_from_state_dict(state: dict[str, Any], *, _what: str = "argument `state`") -> VGG16:
    """Build `VGG16` from torchvision's ``vgg16`` state dict (numpy arrays).

    Args:
        state: names to arrays, e.g. [`sdekit.io.load_torch`][sdekit.io.load_torch] of
            ``vgg16-397923af.pth``; the last classifier layer (``classifier.6``) is not used.

    Returns:
        The network. Raises ``ValueError`` naming the first missing or mis-shaped tensor.
    """
    from ._inception import _check_state

    if isinstance(state, dict):
        state = {k: v for k, v in state.items() if not k.startswith("classifier.6.")}
    _check_state(state, _vgg_expected(), _what, "torchvision's VGG-16 weights")

    def arr(k):
        return jnp.asarray(np.asarray(state[k], np.float32))

    return VGG16(
        conv_weights=[arr(f"features.{i}.weight") for i, _, _ in VGG16_CONVS],
        conv_biases=[arr(f"features.{i}.bias") for i, _, _ in VGG16_CONVS],
        fc1_weight=arr("classifier.0.weight"), fc1_bias=arr("classifier.0.bias"),
        fc2_weight=arr("classifier.3.weight"), fc2_bias=arr("classifier.3.bias"),
    )


def default_vgg16_path() -> pathlib.Path:
    """``$SDEKIT_VGG16_WEIGHTS`` if set, else ``<cache>/vgg16-397923af.pth`` (``<cache>`` is
    ``$SDEKIT_DATA`` or ``~/.cache/sdekit``)."""
    env = os.environ.get(VGG16_WEIGHTS_ENV)
    if env:
        return pathlib.Path(env).expanduser()
    cache = os.environ.get("SDEKIT_DATA") or os.path.join("~", ".cache", "sdekit")
    return pathlib.Path(cache).expanduser() / VGG16_WEIGHTS_NAME


def load_vgg16(path: str | os.PathLike | None = None) -> VGG16:
    """torchvision's ImageNet VGG-16 (``vgg16-397923af.pth``), read without torch.

    Args:
        path: the weight file; default `default_vgg16_path`.

    Returns:
        The network (up to ``fc2``).
    """
    p = pathlib.Path(path).expanduser() if path is not None else default_vgg16_path()
    if not p.is_file():
        raise FileNotFoundError(
            f"VGG-16 weights not found at {str(p)!r}. sdekit does not download them: get "
            f"{VGG16_WEIGHTS_NAME} from {VGG16_WEIGHTS_URL} and put it at "
            f"{str(default_vgg16_path())!r}, set ${VGG16_WEIGHTS_ENV}, or pass its path "
            "(`--vgg-weights` on the command line).")
    try:
        state = load_torch(p)
    except WeightFileError as e:
        if "__torch__" in str(e):
            raise ValueError(f"{p}: a TorchScript archive, not torchvision's VGG-16 state dict "
                             f"{VGG16_WEIGHTS_NAME}.") from None
        raise
    return vgg16_from_state_dict(state, _what=str(p))


class VGG16Features(AbstractStagedFunction):
    """torch-fidelity's VGG-16 feature path for precision/recall.

    Called on float32 pixel values in [0, 255] (``(N, H, W, 1 or 3)``, any size), it resizes to
    224 x 224 with the TensorFlow-1 bilinear resize, normalises with the ImageNet mean and std
    (scaled by 255), and returns ``(fc2, fc2_relu)``, each ``(N, 4096)``; precision/recall uses
    ``fc2_relu``.

    Args:
        net: the `VGG16`.
    """

    net: VGG16

    def stages(self) -> tuple[eqx.Module, eqx.Module]:
        """The resize and normalisation, then the network (compiled separately by
        `extract_features`, so the network compiles once for every input size)."""
        return _VGGInput(), _VGGHead(self.net)


def _vgg_input(pixels: jax.Array) -> jax.Array:
    from ._resize import resize_images

    x = jnp.asarray(pixels, jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = resize_images(x, "tf1-bilinear", 224)
    mean = jnp.asarray(np.array([255 * m for m in IMAGENET_MEAN], np.float32))
    std = jnp.asarray(np.array([255 * s for s in IMAGENET_STD], np.float32))
    return (x - mean) / std


def _vgg_head(net: VGG16, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    fc2 = net(x)
    return fc2, jax.nn.relu(fc2)


class _VGGInput(eqx.Module):
    def __call__(self, pixels):
        return _vgg_input(pixels)


class _VGGHead(eqx.Module):
    net: VGG16

    def __call__(self, x):
        return _vgg_head(self.net, x)
