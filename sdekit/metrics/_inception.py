"""The FID Inception-v3 network (the TensorFlow 2015-12-05 graph) in equinox, read from
pytorch-fid's weight file or from the TorchScript file clean-fid runs.

The architecture is torchvision's Inception-v3 with pytorch-fid's patches: the ``Mixed_5*``
(A) and ``Mixed_6b..e`` (C) blocks and ``Mixed_7b`` (E, first) average-pool *without* counting
the zero padding (TensorFlow's convention), ``Mixed_7c`` (E, second) max-pools in its pool
branch, and the classifier has 1008 outputs. Parameter names are the PyTorch state-dict names,
so the standard weight file ``pt_inception-2015-12-05-6726825d.pth`` loads directly (see
`load_inception`); torch-fidelity reads the same file. clean-fid runs NVIDIA's TorchScript port
of the same graph (``inception-2015-12-05.pt``: the same units, named ``layers.conv``,
``layers.mixed_9.tower_mixed_conv``..., batch norms without a scale, and an ``output`` layer);
`load_inception` maps its tensors onto the same module. Computation is NHWC. Called directly,
the network takes images in [-1, 1], bilinearly resized to 299 x 299 (``align_corners=False``,
no antialiasing, like ``F.interpolate``); the metric protocols (`sdekit.metrics.Protocol`) feed
`InceptionV3.trunk` their own resize and scaling instead.
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

from ..io import TorchObject, WeightFileError, load_torch

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME
)
WEIGHTS_ENV = "SDEKIT_FID_WEIGHTS"
#: The TorchScript Inception of stylegan2-ada-pytorch, which clean-fid downloads and runs.
NVIDIA_WEIGHTS_NAME = "inception-2015-12-05.pt"
NVIDIA_WEIGHTS_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
    + NVIDIA_WEIGHTS_NAME
)
NVIDIA_WEIGHTS_ENV = "SDEKIT_NVIDIA_INCEPTION"
#: The two weight files (and module layouts) the network is read from.
WEIGHT_FORMATS = ("pytorch-fid", "nvidia-torchscript")
BN_EPS = 1e-3
NUM_CLASSES = 1008
FEATURE_DIM = 2048


def _conv_specs() -> list[tuple[str, int, int, tuple[int, int], int, tuple[int, int]]]:
    """(name, in, out, kernel, stride, padding) of every conv+BN+ReLU unit, torch names."""
    s: list = []

    def add(name, cin, cout, k, stride=1, pad=0):
        k = (k, k) if isinstance(k, int) else k
        pad = (pad, pad) if isinstance(pad, int) else pad
        s.append((name, cin, cout, k, stride, pad))

    add("Conv2d_1a_3x3", 3, 32, 3, 2)
    add("Conv2d_2a_3x3", 32, 32, 3)
    add("Conv2d_2b_3x3", 32, 64, 3, 1, 1)
    add("Conv2d_3b_1x1", 64, 80, 1)
    add("Conv2d_4a_3x3", 80, 192, 3)
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        add(f"{name}.branch1x1", cin, 64, 1)
        add(f"{name}.branch5x5_1", cin, 48, 1)
        add(f"{name}.branch5x5_2", 48, 64, 5, 1, 2)
        add(f"{name}.branch3x3dbl_1", cin, 64, 1)
        add(f"{name}.branch3x3dbl_2", 64, 96, 3, 1, 1)
        add(f"{name}.branch3x3dbl_3", 96, 96, 3, 1, 1)
        add(f"{name}.branch_pool", cin, pool, 1)
    add("Mixed_6a.branch3x3", 288, 384, 3, 2)
    add("Mixed_6a.branch3x3dbl_1", 288, 64, 1)
    add("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 1, 1)
    add("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 2)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        add(f"{name}.branch1x1", 768, 192, 1)
        add(f"{name}.branch7x7_1", 768, c7, 1)
        add(f"{name}.branch7x7_2", c7, c7, (1, 7), 1, (0, 3))
        add(f"{name}.branch7x7_3", c7, 192, (7, 1), 1, (3, 0))
        add(f"{name}.branch7x7dbl_1", 768, c7, 1)
        add(f"{name}.branch7x7dbl_2", c7, c7, (7, 1), 1, (3, 0))
        add(f"{name}.branch7x7dbl_3", c7, c7, (1, 7), 1, (0, 3))
        add(f"{name}.branch7x7dbl_4", c7, c7, (7, 1), 1, (3, 0))
        add(f"{name}.branch7x7dbl_5", c7, 192, (1, 7), 1, (0, 3))
        add(f"{name}.branch_pool", 768, 192, 1)
    add("Mixed_7a.branch3x3_1", 768, 192, 1)
    add("Mixed_7a.branch3x3_2", 192, 320, 3, 2)
    add("Mixed_7a.branch7x7x3_1", 768, 192, 1)
    add("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3))
    add("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0))
    add("Mixed_7a.branch7x7x3_4", 192, 192, 3, 2)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        add(f"{name}.branch1x1", cin, 320, 1)
        add(f"{name}.branch3x3_1", cin, 384, 1)
        add(f"{name}.branch3x3_2a", 384, 384, (1, 3), 1, (0, 1))
        add(f"{name}.branch3x3_2b", 384, 384, (3, 1), 1, (1, 0))
        add(f"{name}.branch3x3dbl_1", cin, 448, 1)
        add(f"{name}.branch3x3dbl_2", 448, 384, 3, 1, 1)
        add(f"{name}.branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1))
        add(f"{name}.branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0))
        add(f"{name}.branch_pool", cin, 192, 1)
    return s


CONV_SPECS = _conv_specs()


class BasicConv2d(eqx.Module):
    """Convolution without bias, batch norm (inference statistics, eps 1e-3), ReLU."""

    weight: jax.Array  # (out, in, kh, kw), PyTorch layout
    bn_weight: jax.Array
    bn_bias: jax.Array
    running_mean: jax.Array
    running_var: jax.Array
    stride: int = eqx.field(static=True)
    padding: tuple[int, int] = eqx.field(static=True)

    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        y = lax.conv_general_dilated(
            x, self.weight.astype(x.dtype), (self.stride, self.stride), ((ph, ph), (pw, pw)),
            dimension_numbers=("NHWC", "OIHW", "NHWC"),
        )
        scale = self.bn_weight * lax.rsqrt(self.running_var + BN_EPS)
        y = y * scale + (self.bn_bias - self.running_mean * scale)
        return jax.nn.relu(y)


def _max_pool(x: jax.Array, stride: int, pad: int = 0) -> jax.Array:
    padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), padding)


def _avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
    """3x3, stride 1, padding 1, averaging only over the pixels inside the image."""
    padding = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), padding)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = lax.reduce_window(ones, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), padding)
    return total / count


class InceptionV3(eqx.Module):
    """The FID Inception-v3 (pytorch-fid's ``fid_inception_v3``) as an equinox module.

    Called on a batch of NHWC images in [-1, 1] (1 or 3 channels, any size; resized to
    ``resize`` x ``resize`` bilinearly), it returns ``(pool3, logits)``: the 2048-d final
    average-pool features used by FID, KID and precision/recall, and the 1008-way logits
    ``pool3 @ fc.weight.T`` *without* the bias, as in the original Inception Score code.

    Build it randomly with ``InceptionV3(key)`` (for tests) or from a weight file with
    `load_inception`. `trunk` is the network without the input resize and scaling, which the
    metric protocols do their own way (`sdekit.metrics.InceptionFeatures`).

    Args:
        key: PRNG key for the random initialisation.
        resize: the side the inputs are resized to (299 is the standard protocol; smaller sizes,
            at least 75, only make sense for tests).
    """

    convs: dict[str, BasicConv2d]
    fc_weight: jax.Array
    fc_bias: jax.Array
    resize: int = eqx.field(static=True)
    #: which file the weights came from: "pytorch-fid" (also torch-fidelity's) or
    #: "nvidia-torchscript" (clean-fid's); "random" for ``InceptionV3(key)``.
    weight_format: str = eqx.field(static=True)

    def __init__(self, key: jax.Array | None, *, resize: int = 299, _params: Any = None):
        if not (isinstance(resize, int) and resize >= 75):
            raise ValueError(f"argument `resize`: got {resize!r}, expected an int >= 75.")
        self.resize = resize
        if _params is not None:
            self.convs, self.fc_weight, self.fc_bias, self.weight_format = _params
            return
        self.weight_format = "random"
        if key is None:
            raise ValueError("argument `key`: got None, expected a PRNG key.")
        # numpy draws seeded from the key: one host RNG instead of ~500 small compiled ops.
        seed = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                          else key).astype(np.uint32).ravel()
        rng = np.random.default_rng(seed.tolist())
        convs = {}
        for name, cin, cout, ks, stride, pad in CONV_SPECS:
            fan_in = cin * ks[0] * ks[1]
            f32 = np.float32
            convs[name] = BasicConv2d(
                weight=jnp.asarray((rng.standard_normal((cout, cin) + ks) * (2.0 / fan_in) ** 0.5
                                    ).astype(f32)),
                bn_weight=jnp.asarray((1.0 + 0.1 * rng.standard_normal(cout)).astype(f32)),
                bn_bias=jnp.asarray((0.1 * rng.standard_normal(cout)).astype(f32)),
                running_mean=jnp.asarray((0.1 * rng.standard_normal(cout)).astype(f32)),
                running_var=jnp.asarray(rng.uniform(0.5, 1.5, cout).astype(f32)),
                stride=stride,
                padding=pad,
            )
        self.convs = convs
        self.fc_weight = jnp.asarray(
            (rng.standard_normal((NUM_CLASSES, FEATURE_DIM)) * 0.02).astype(np.float32))
        self.fc_bias = jnp.zeros((NUM_CLASSES,), jnp.float32)

    def _c(self, name: str, x: jax.Array) -> jax.Array:
        return self.convs[name](x)

    def _block_a(self, n: str, x: jax.Array) -> jax.Array:
        b1 = self._c(f"{n}.branch1x1", x)
        b5 = self._c(f"{n}.branch5x5_2", self._c(f"{n}.branch5x5_1", x))
        b3 = self._c(f"{n}.branch3x3dbl_1", x)
        b3 = self._c(f"{n}.branch3x3dbl_3", self._c(f"{n}.branch3x3dbl_2", b3))
        bp = self._c(f"{n}.branch_pool", _avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)

    def _block_b(self, n: str, x: jax.Array) -> jax.Array:
        b3 = self._c(f"{n}.branch3x3", x)
        bd = self._c(f"{n}.branch3x3dbl_1", x)
        bd = self._c(f"{n}.branch3x3dbl_3", self._c(f"{n}.branch3x3dbl_2", bd))
        return jnp.concatenate([b3, bd, _max_pool(x, 2)], axis=-1)

    def _block_c(self, n: str, x: jax.Array) -> jax.Array:
        b1 = self._c(f"{n}.branch1x1", x)
        b7 = x
        for i in (1, 2, 3):
            b7 = self._c(f"{n}.branch7x7_{i}", b7)
        bd = x
        for i in (1, 2, 3, 4, 5):
            bd = self._c(f"{n}.branch7x7dbl_{i}", bd)
        bp = self._c(f"{n}.branch_pool", _avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)

    def _block_d(self, n: str, x: jax.Array) -> jax.Array:
        b3 = self._c(f"{n}.branch3x3_2", self._c(f"{n}.branch3x3_1", x))
        b7 = x
        for i in (1, 2, 3, 4):
            b7 = self._c(f"{n}.branch7x7x3_{i}", b7)
        return jnp.concatenate([b3, b7, _max_pool(x, 2)], axis=-1)

    def _block_e(self, n: str, x: jax.Array, max_pool: bool) -> jax.Array:
        b1 = self._c(f"{n}.branch1x1", x)
        b3 = self._c(f"{n}.branch3x3_1", x)
        b3 = jnp.concatenate(
            [self._c(f"{n}.branch3x3_2a", b3), self._c(f"{n}.branch3x3_2b", b3)], axis=-1
        )
        bd = self._c(f"{n}.branch3x3dbl_2", self._c(f"{n}.branch3x3dbl_1", x))
        bd = jnp.concatenate(
            [self._c(f"{n}.branch3x3dbl_3a", bd), self._c(f"{n}.branch3x3dbl_3b", bd)], axis=-1
        )
        pooled = _max_pool(x, 1, 1) if max_pool else _avg_pool_exclude_pad(x)
        bp = self._c(f"{n}.branch_pool", pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)

    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(pool3 (N, 2048), logits (N, 1008))`` for NHWC images in [-1, 1]."""
        x = jnp.asarray(images, jnp.float32)
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(
                f"argument `images`: got shape {x.shape}, expected NHWC with 1 or 3 channels."
            )
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        n = x.shape[0]
        if x.shape[1:3] != (self.resize, self.resize):
            x = jax.image.resize(x, (n, self.resize, self.resize, 3), "bilinear", antialias=False)
        return self.trunk(x)

    def trunk(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The network from its first convolution on: ``(pool3, logits without bias)``.

        Args:
            x: ``(N, H, W, 3)`` float32, already resized and scaled the way the weights expect
                (the protocols give ``299 x 299`` and values near [-1, 1]).

        Returns:
            ``pool3`` ``(N, 2048)`` (the final average pool) and ``pool3 @ fc_weight.T``
            ``(N, 1008)`` (add ``fc_bias`` for the biased logits).
        """
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = self._c(name, x)
        x = _max_pool(x, 2)
        x = _max_pool(self._c("Conv2d_4a_3x3", self._c("Conv2d_3b_1x1", x)), 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            x = self._block_a(name, x)
        x = self._block_b("Mixed_6a", x)
        for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = self._block_c(name, x)
        x = self._block_d("Mixed_7a", x)
        x = self._block_e("Mixed_7b", x, max_pool=False)
        x = self._block_e("Mixed_7c", x, max_pool=True)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = pool3 @ self.fc_weight.T
        return pool3, logits


_BN_FIELDS = (
    ("bn.weight", "bn_weight"),
    ("bn.bias", "bn_bias"),
    ("bn.running_mean", "running_mean"),
    ("bn.running_var", "running_var"),
)


def inception_state_dict(net: InceptionV3) -> dict[str, np.ndarray]:
    """The network's parameters as a PyTorch-named state dict of float32 numpy arrays.

    Args:
        net: the network.

    Returns:
        ``{"Conv2d_1a_3x3.conv.weight": ..., ..., "fc.weight": ..., "fc.bias": ...}``, the names
        and layouts of pytorch-fid's ``fid_inception_v3().state_dict()`` (without the
        ``num_batches_tracked`` counters).
    """
    out: dict[str, np.ndarray] = {}
    for name, _cin, _cout, _k, _s, _p in CONV_SPECS:
        conv = net.convs[name]
        out[f"{name}.conv.weight"] = np.asarray(conv.weight, np.float32)
        for torch_name, field in _BN_FIELDS:
            out[f"{name}.{torch_name}"] = np.asarray(getattr(conv, field), np.float32)
    out["fc.weight"] = np.asarray(net.fc_weight, np.float32)
    out["fc.bias"] = np.asarray(net.fc_bias, np.float32)
    return out


def _check_state(state: Any, expected: dict[str, tuple[int, ...]], what: str, kind: str,
                 ignore: tuple[str, ...] = ()) -> None:
    """Raise naming the first missing (in network order) or mis-shaped tensor of ``state``."""
    if not isinstance(state, dict):
        raise ValueError(f"{what}: holds a {type(state).__name__}, expected a state dict of "
                         f"{kind}.")
    names = [k for k in state if not k.endswith(ignore)] if ignore else list(state)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in names if k not in expected]
    if missing or unexpected:
        held = ", ".join(repr(k) for k in names[:3]) + (" ..." if len(names) > 3 else "")
        first = (f"tensor {missing[0]!r} is missing ({len(missing)} of {len(expected)} missing)"
                 if missing else f"unexpected tensor {unexpected[0]!r}")
        raise ValueError(
            f"{what}: not {kind}: {first}; {len(unexpected)} tensors are not of this network "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
            f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}); it holds {held}."
        )
    for k, shape in expected.items():
        if tuple(np.shape(state[k])) != tuple(shape):
            raise ValueError(
                f"{what}: entry {k!r} has shape {tuple(np.shape(state[k]))}, expected {shape} "
                f"(not {kind})."
            )


def inception_from_state_dict(
    state: dict[str, Any], *, resize: int = 299, _what: str = "argument `state`"
) -> InceptionV3:
    """Build `InceptionV3` from pytorch-fid's state dict (numpy arrays, PyTorch names).

    Args:
        state: names to arrays, as returned by [`sdekit.io.load_torch`][sdekit.io.load_torch] on the
            weight file ``pt_inception-2015-12-05-6726825d.pth`` (the ``num_batches_tracked``
            counters are ignored).
        resize: the input side (299 for the standard protocol).

    Returns:
        The network. Raises ``ValueError`` naming the first missing (in network order),
        unexpected or mis-shaped tensor.
    """
    _check_state(state, _expected_shapes(), _what, "the pytorch-fid Inception weights",
                 ignore=("num_batches_tracked",))

    def arr(k):
        return jnp.asarray(np.asarray(state[k], np.float32))

    convs = {}
    for name, _cin, _cout, _k, stride, pad in CONV_SPECS:
        convs[name] = BasicConv2d(
            weight=arr(f"{name}.conv.weight"),
            bn_weight=arr(f"{name}.bn.weight"),
            bn_bias=arr(f"{name}.bn.bias"),
            running_mean=arr(f"{name}.bn.running_mean"),
            running_var=arr(f"{name}.bn.running_var"),
            stride=stride,
            padding=pad,
        )
    return InceptionV3(None, resize=resize,
                       _params=(convs, arr("fc.weight"), arr("fc.bias"), "pytorch-fid"))


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, k, _s, _p in CONV_SPECS:
        out[f"{name}.conv.weight"] = (cout, cin) + tuple(k)
        for torch_name, _field in _BN_FIELDS:
            out[f"{name}.{torch_name}"] = (cout,)
    out["fc.weight"] = (NUM_CLASSES, FEATURE_DIM)
    out["fc.bias"] = (NUM_CLASSES,)
    return out


# ------------------------------------------------------- NVIDIA's TorchScript (clean-fid)


def nvidia_module_paths() -> dict[str, str]:
    """Where each conv unit of `InceptionV3` lives in NVIDIA's TorchScript Inception.

    Returns:
        torchvision unit name (``"Mixed_7b.branch3x3_2a"``) -> TorchScript module path
        (``"layers.mixed_9.tower_mixed_conv"``). In that file ``layers`` holds ``conv``,
        ``conv_1``, ``conv_2``, ``pool0``, ``conv_3``, ``conv_4``, ``pool1``, then the eleven
        mixed blocks ``mixed`` .. ``mixed_10`` and ``pool2``; inside a block the branches are
        ``conv`` (the 1x1 branch, or the stride-2 3x3 of ``mixed_3``), ``tower``, ``tower_1``
        and ``tower_2`` (sequences ``conv``, ``conv_1``, ...; ``tower_2`` is the pooling
        branch), and in the last two blocks flat names (``tower_conv``, ``tower_mixed_conv``,
        ``tower_mixed_conv_1``, ``tower_1_conv``, ``tower_1_conv_1``, ``tower_1_mixed_conv``,
        ``tower_1_mixed_conv_1``, ``tower_2_conv``).
    """
    stem = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
    out = {n: "layers.conv" + (f"_{i}" if i else "") for i, n in enumerate(stem)}
    mixed = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
             "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
    block = {b: "layers.mixed" + (f"_{i}" if i else "") for i, b in enumerate(mixed)}

    def seq(i: int) -> str:
        return "conv" + (f"_{i}" if i else "")

    towers = {  # branch prefix -> (tower, first index of the name's own numbering)
        "branch5x5_": "tower", "branch3x3dbl_": "tower_1", "branch7x7_": "tower",
        "branch7x7dbl_": "tower_1", "branch7x7x3_": "tower_1",
    }
    flat_e = {"branch1x1": "conv", "branch3x3_1": "tower_conv",
              "branch3x3_2a": "tower_mixed_conv", "branch3x3_2b": "tower_mixed_conv_1",
              "branch3x3dbl_1": "tower_1_conv", "branch3x3dbl_2": "tower_1_conv_1",
              "branch3x3dbl_3a": "tower_1_mixed_conv", "branch3x3dbl_3b": "tower_1_mixed_conv_1",
              "branch_pool": "tower_2_conv"}
    for name, *_ in CONV_SPECS:
        if "." not in name:
            continue
        blk, branch = name.split(".")
        p = block[blk]
        if blk in ("Mixed_7b", "Mixed_7c"):
            out[name] = f"{p}.{flat_e[branch]}"
        elif branch == "branch1x1" or (blk == "Mixed_6a" and branch == "branch3x3"):
            out[name] = f"{p}.conv"
        elif branch == "branch_pool":
            out[name] = f"{p}.tower_2.conv"
        elif blk == "Mixed_6a":  # branch3x3dbl_1..3 -> tower.conv..conv_2
            out[name] = f"{p}.tower.{seq(int(branch[-1]) - 1)}"
        elif blk == "Mixed_7a" and branch.startswith("branch3x3_"):
            out[name] = f"{p}.tower.{seq(int(branch[-1]) - 1)}"
        else:
            prefix = branch.rstrip("0123456789")
            out[name] = f"{p}.{towers[prefix]}.{seq(int(branch[len(prefix):]) - 1)}"
    return out


def _nvidia_expected() -> dict[str, tuple[int, ...]]:
    paths = nvidia_module_paths()
    out: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, k, _s, _p in CONV_SPECS:
        p = paths[name]
        out[f"{p}.weight"] = (cout, cin) + tuple(k)
        for field in ("beta", "mean", "var"):
            out[f"{p}.{field}"] = (cout,)
    out["output.weight"] = (NUM_CLASSES, FEATURE_DIM)
    out["output.bias"] = (NUM_CLASSES,)
    return out


def torchscript_tensors(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Every array in a TorchScript module record, by dotted attribute path.

    Args:
        obj: what [`sdekit.io.load_torch`][sdekit.io.load_torch] returns with ``objects=True``
            for a TorchScript archive (nested [`TorchObject`][sdekit.io.TorchObject] records).
        prefix: prepended to every name.

    Returns:
        ``{"layers.conv.weight": array, ...}`` (the archive's ``state_dict()`` names).
    """
    out: dict[str, np.ndarray] = {}
    state = obj.state if isinstance(obj, TorchObject) else obj
    if not isinstance(state, dict):
        return out
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            out[prefix + str(k)] = v
        elif isinstance(v, (TorchObject, dict)):
            out.update(torchscript_tensors(v, f"{prefix}{k}."))
    return out


def inception_from_nvidia_state(
    state: dict[str, Any], *, resize: int = 299, _what: str = "argument `state`"
) -> InceptionV3:
    """Build `InceptionV3` from the tensors of NVIDIA's TorchScript Inception (clean-fid's).

    Each unit's batch norm has no scale there (``beta``, ``mean``, ``var``); it becomes
    ``bn_weight = 1``. ``output.weight`` / ``output.bias`` become ``fc_weight`` / ``fc_bias``.

    Args:
        state: names to arrays, e.g. ``torchscript_tensors(load_torch(path, objects=True))``.
        resize: the input side (299 for the standard protocol).

    Returns:
        The network. Raises ``ValueError`` naming the first missing or mis-shaped tensor.
    """
    _check_state(state, _nvidia_expected(), _what,
                 "the TorchScript Inception (inception-2015-12-05.pt) clean-fid runs")
    paths = nvidia_module_paths()

    def arr(k):
        return jnp.asarray(np.asarray(state[k], np.float32))

    convs = {}
    for name, _cin, cout, _k, stride, pad in CONV_SPECS:
        p = paths[name]
        convs[name] = BasicConv2d(
            weight=arr(f"{p}.weight"),
            bn_weight=jnp.ones((cout,), jnp.float32),
            bn_bias=arr(f"{p}.beta"),
            running_mean=arr(f"{p}.mean"),
            running_var=arr(f"{p}.var"),
            stride=stride,
            padding=pad,
        )
    return InceptionV3(None, resize=resize, _params=(convs, arr("output.weight"),
                                                     arr("output.bias"), "nvidia-torchscript"))


# ------------------------------------------------------------------------------ loading


def default_weights_path(weight_format: str = "pytorch-fid") -> pathlib.Path:
    """Where a weight file is looked for when no path is given.

    pytorch-fid's file (also torch-fidelity's): ``$SDEKIT_FID_WEIGHTS`` if set, else
    ``<cache>/pt_inception-2015-12-05-6726825d.pth``. NVIDIA's TorchScript file (clean-fid's):
    ``$SDEKIT_NVIDIA_INCEPTION`` if set, else ``<cache>/inception-2015-12-05.pt``. ``<cache>``
    is ``$SDEKIT_DATA`` or ``~/.cache/sdekit``.

    Args:
        weight_format: ``"pytorch-fid"`` or ``"nvidia-torchscript"``.
    """
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"argument `weight_format`: got {weight_format!r}, expected one of "
                         f"{WEIGHT_FORMATS}.")
    env_name, file = ((WEIGHTS_ENV, FID_WEIGHTS_NAME) if weight_format == "pytorch-fid"
                      else (NVIDIA_WEIGHTS_ENV, NVIDIA_WEIGHTS_NAME))
    env = os.environ.get(env_name)
    if env:
        return pathlib.Path(env).expanduser()
    cache = os.environ.get("SDEKIT_DATA") or os.path.join("~", ".cache", "sdekit")
    return pathlib.Path(cache).expanduser() / file


def load_inception(
    path: str | os.PathLike | None = None, *, protocol: Any = "pytorch-fid", resize: int = 299
) -> InceptionV3:
    """The FID Inception-v3 with the weights a protocol's tool uses, read without torch.

    ``"pytorch-fid"`` and ``"torch-fidelity"`` read pytorch-fid's state dict
    ``pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity's
    ``weights-inception-2015-12-05-6726825d.pth`` is the same file); ``"clean-fid"`` and
    ``"clean-fid-legacy-tf"`` read NVIDIA's TorchScript archive ``inception-2015-12-05.pt`` as
    inert records (nothing in it runs).

    Args:
        path: the weight file; default `default_weights_path` of the protocol's format.
        protocol: a `sdekit.metrics.Protocol` or its name.
        resize: the input side for `InceptionV3.__call__` (299 for the standard protocol).

    Returns:
        The network, ready for `sdekit.metrics.InceptionFeatures` or `extract_features`.
    """
    from ._protocols import get_protocol

    proto = get_protocol(protocol)
    fmt = proto.weight_format
    p = pathlib.Path(path).expanduser() if path is not None else default_weights_path(fmt)
    name, url, env = ((FID_WEIGHTS_NAME, FID_WEIGHTS_URL, WEIGHTS_ENV) if fmt == "pytorch-fid"
                      else (NVIDIA_WEIGHTS_NAME, NVIDIA_WEIGHTS_URL, NVIDIA_WEIGHTS_ENV))
    if not p.is_file():
        raise FileNotFoundError(
            f"Inception weights for protocol {proto.name!r} not found at {str(p)!r}. sdekit "
            f"does not download them: get {name} from {url} and either put it at "
            f"{str(default_weights_path(fmt))!r}, set ${env} to its path, or pass its path "
            "(`--weights` on the command line)."
        )
    what = f"{p}"
    if fmt == "pytorch-fid":
        try:
            state = load_torch(p)
        except WeightFileError as e:
            if "__torch__" in str(e):
                raise ValueError(
                    f"{p}: a TorchScript archive (NVIDIA's Inception, which clean-fid runs?), "
                    f"but protocol {proto.name!r} reads pytorch-fid's state dict {name}; use "
                    "protocol='clean-fid' or 'clean-fid-legacy-tf' for this file."
                ) from None
            raise
        return inception_from_state_dict(state, resize=resize, _what=what)
    obj = load_torch(p, objects=True)
    if not isinstance(obj, TorchObject):
        raise ValueError(
            f"{p}: a plain state dict, but protocol {proto.name!r} reads NVIDIA's TorchScript "
            f"archive {name} (use protocol='pytorch-fid' or 'torch-fidelity' for pytorch-fid's "
            "state dict)."
        )
    return inception_from_nvidia_state(torchscript_tensors(obj), resize=resize, _what=what)
