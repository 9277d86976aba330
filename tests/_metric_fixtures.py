"""Deterministic inputs shared by `tools/make_metric_fixtures.py` (run with torch and the three
metric tools) and `tests/test_metrics_protocols.py` (run without torch).

Both sides build the same image sets and the same random network weights from fixed seeds, so
the large weight files never need to be committed: the tool writes each network in its own
tool's file format with torch, and stores that file's *skeleton* (every byte except the tensor
payloads) plus the list of payloads in order; the test regenerates the payloads and splices them
back, byte for byte, and checks the SHA-256 the tool recorded. sdekit then reads a file that
torch itself wrote.

Only numpy and the standard library are used here (this module is imported by both sides).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import zlib

import numpy as np

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "metrics")

#: (group name, kind, number of images, side, seed). ``kind`` is ``u8-rgb`` / ``u8-grey`` (uint8)
#: or ``f32-rgb`` / ``f32-grey`` (float32 in [-1, 1]).
IMAGE_GROUPS = (
    ("u8_rgb_32", "u8-rgb", 2, 32, 11),
    ("u8_grey_28", "u8-grey", 2, 28, 12),
    ("f32_rgb_32", "f32-rgb", 2, 32, 13),
    ("u8_rgb_64", "u8-rgb", 2, 64, 14),
)
#: The two sets the final numbers (FID, KID, IS, precision/recall) are computed on: the
#: features of these groups, concatenated in this order.
SET1 = ("u8_rgb_32", "u8_grey_28")
SET2 = ("f32_rgb_32", "u8_rgb_64")
#: Small-sample settings of the statistics (the sets have 4 images each).
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS, PR_K = 3, 3, 2, 3
#: Width of the synthetic feature sets for the statistics at the tools' default settings, and
#: the number of KID subsets there (the first 10 of the default 100: same seed, same draws).
SYNTH_DIM, DEFAULT_KID_SUBSETS = 16, 10
#: numpy's global seed set before clean-fid's `kernel_distance` (which draws from the global
#: RandomState); sdekit's clean-fid protocol draws from ``RandomState(seed)``.
CLEANFID_KID_SEED = 0
WEIGHT_SEED = {"fid-inception": 1, "nvidia-inception": 2, "vgg16": 3}


def make_images(kind: str, n: int, side: int, seed: int) -> np.ndarray:
    """``n`` NHWC images: blocky low-frequency colour fields plus pixel noise."""
    channels = 1 if kind.endswith("grey") else 3
    rng = np.random.default_rng([seed, side, n, channels])
    coarse = rng.uniform(0.0, 255.0, (n, 4, 4, channels))
    rep = -(-side // 4)
    field = np.repeat(np.repeat(coarse, rep, axis=1), rep, axis=2)[:, :side, :side]
    img = field + rng.normal(0.0, 40.0, (n, side, side, channels))
    if kind.startswith("u8"):
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return (np.clip(img, 0.0, 255.0) / 127.5 - 1.0).astype(np.float32)


def image_group(name: str) -> np.ndarray:
    for g, kind, n, side, seed in IMAGE_GROUPS:
        if g == name:
            return make_images(kind, n, side, seed)
    raise KeyError(name)


def quantize_round(images: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 by ``round((x + 1) * 127.5)`` (sdekit's ``quantize="round"``)."""
    x = (images.astype(np.float64) + 1.0) * 127.5
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------- random weights


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _normal(seed, name, shape, std):
    return (_rng(seed, name).standard_normal(shape, dtype=np.float32) * np.float32(std))


def _conv_bn(out, seed, prefix, cin, cout, k, names, gamma: bool):
    """One conv (no bias) + batch norm, He-normal conv weights, mild random BN statistics."""
    kh, kw = k
    out[f"{prefix}{names[0]}"] = _normal(seed, prefix + "w", (cout, cin, kh, kw),
                                         (2.0 / (cin * kh * kw)) ** 0.5)
    if gamma:
        out[f"{prefix}{names[1]}"] = 1.0 + _normal(seed, prefix + "g", (cout,), 0.1)
    out[f"{prefix}{names[2]}"] = _normal(seed, prefix + "b", (cout,), 0.1)
    out[f"{prefix}{names[3]}"] = _normal(seed, prefix + "m", (cout,), 0.1)
    var = _rng(seed, prefix + "v").uniform(0.5, 1.5, cout).astype(np.float32)
    out[f"{prefix}{names[4]}"] = var


#: The conv units that have stride 2 (all others have stride 1).
STRIDE2 = frozenset({"Conv2d_1a_3x3", "Mixed_6a.branch3x3", "Mixed_6a.branch3x3dbl_3",
                     "Mixed_7a.branch3x3_2", "Mixed_7a.branch7x7x3_4"})


def fid_inception_convs():
    """(torchvision name, in, out, kernel, stride, padding) of pytorch-fid's / torch-fidelity's
    Inception: stride-2 units and ``Conv2d_2a_3x3`` / ``Conv2d_4a_3x3`` are unpadded, all others
    keep the size ("SAME")."""
    s = []

    def add(name, cin, cout, k):
        k = (k, k) if isinstance(k, int) else k
        stride = 2 if name in STRIDE2 else 1
        valid = stride == 2 or name in ("Conv2d_2a_3x3", "Conv2d_4a_3x3")
        pad = (0, 0) if valid else ((k[0] - 1) // 2, (k[1] - 1) // 2)
        s.append((name, cin, cout, k, stride, pad))

    add("Conv2d_1a_3x3", 3, 32, 3)
    add("Conv2d_2a_3x3", 32, 32, 3)
    add("Conv2d_2b_3x3", 32, 64, 3)
    add("Conv2d_3b_1x1", 64, 80, 1)
    add("Conv2d_4a_3x3", 80, 192, 3)
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        add(f"{name}.branch1x1", cin, 64, 1)
        add(f"{name}.branch5x5_1", cin, 48, 1)
        add(f"{name}.branch5x5_2", 48, 64, 5)
        add(f"{name}.branch3x3dbl_1", cin, 64, 1)
        add(f"{name}.branch3x3dbl_2", 64, 96, 3)
        add(f"{name}.branch3x3dbl_3", 96, 96, 3)
        add(f"{name}.branch_pool", cin, pool, 1)
    add("Mixed_6a.branch3x3", 288, 384, 3)
    add("Mixed_6a.branch3x3dbl_1", 288, 64, 1)
    add("Mixed_6a.branch3x3dbl_2", 64, 96, 3)
    add("Mixed_6a.branch3x3dbl_3", 96, 96, 3)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        add(f"{name}.branch1x1", 768, 192, 1)
        add(f"{name}.branch7x7_1", 768, c7, 1)
        add(f"{name}.branch7x7_2", c7, c7, (1, 7))
        add(f"{name}.branch7x7_3", c7, 192, (7, 1))
        add(f"{name}.branch7x7dbl_1", 768, c7, 1)
        add(f"{name}.branch7x7dbl_2", c7, c7, (7, 1))
        add(f"{name}.branch7x7dbl_3", c7, c7, (1, 7))
        add(f"{name}.branch7x7dbl_4", c7, c7, (7, 1))
        add(f"{name}.branch7x7dbl_5", c7, 192, (1, 7))
        add(f"{name}.branch_pool", 768, 192, 1)
    add("Mixed_7a.branch3x3_1", 768, 192, 1)
    add("Mixed_7a.branch3x3_2", 192, 320, 3)
    add("Mixed_7a.branch7x7x3_1", 768, 192, 1)
    add("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7))
    add("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1))
    add("Mixed_7a.branch7x7x3_4", 192, 192, 3)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        add(f"{name}.branch1x1", cin, 320, 1)
        add(f"{name}.branch3x3_1", cin, 384, 1)
        add(f"{name}.branch3x3_2a", 384, 384, (1, 3))
        add(f"{name}.branch3x3_2b", 384, 384, (3, 1))
        add(f"{name}.branch3x3dbl_1", cin, 448, 1)
        add(f"{name}.branch3x3dbl_2", 448, 384, 3)
        add(f"{name}.branch3x3dbl_3a", 384, 384, (1, 3))
        add(f"{name}.branch3x3dbl_3b", 384, 384, (3, 1))
        add(f"{name}.branch_pool", cin, 192, 1)
    return s


def fid_inception_weights(seed: int) -> collections.OrderedDict:
    """A random state dict of pytorch-fid's ``fid_inception_v3`` (= torch-fidelity's
    ``FeatureExtractorInceptionV3``): torchvision names, BN ``weight``/``bias``/running stats,
    ``num_batches_tracked``, and ``fc`` with 1008 classes."""
    out: collections.OrderedDict = collections.OrderedDict()
    for name, cin, cout, k, _s, _p in fid_inception_convs():
        _conv_bn(out, seed, name + ".", cin, cout, k,
                 ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"),
                 gamma=True)
        out[f"{name}.bn.num_batches_tracked"] = np.array(0, np.int64)
    out["fc.weight"] = _normal(seed, "fc.weight", (1008, 2048), 0.05)
    out["fc.bias"] = _normal(seed, "fc.bias", (1008,), 0.5)
    return out


def nvidia_name_map() -> dict[str, str]:
    """torchvision conv-unit name -> module path in the TorchScript Inception clean-fid reads
    (``layers.conv``, ``layers.mixed_3.tower.conv_1``, ``layers.mixed_9.tower_mixed_conv``...)."""
    m = {"Conv2d_1a_3x3": "layers.conv", "Conv2d_2a_3x3": "layers.conv_1",
         "Conv2d_2b_3x3": "layers.conv_2", "Conv2d_3b_1x1": "layers.conv_3",
         "Conv2d_4a_3x3": "layers.conv_4"}
    seq = lambda n: ["conv"] + [f"conv_{i}" for i in range(1, n)]
    for blk, mixed in zip(("Mixed_5b", "Mixed_5c", "Mixed_5d"), ("mixed", "mixed_1", "mixed_2"),
                          strict=True):
        p = f"layers.{mixed}"
        m[f"{blk}.branch1x1"] = f"{p}.conv"
        for a, b in zip(("branch5x5_1", "branch5x5_2"), seq(2), strict=True):
            m[f"{blk}.{a}"] = f"{p}.tower.{b}"
        for a, b in zip(("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), seq(3),
                        strict=True):
            m[f"{blk}.{a}"] = f"{p}.tower_1.{b}"
        m[f"{blk}.branch_pool"] = f"{p}.tower_2.conv"
    m["Mixed_6a.branch3x3"] = "layers.mixed_3.conv"
    for i, b in zip((1, 2, 3), seq(3), strict=True):
        m[f"Mixed_6a.branch3x3dbl_{i}"] = f"layers.mixed_3.tower.{b}"
    for blk, mixed in zip(("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
                          ("mixed_4", "mixed_5", "mixed_6", "mixed_7"), strict=True):
        p = f"layers.{mixed}"
        m[f"{blk}.branch1x1"] = f"{p}.conv"
        for i, b in zip((1, 2, 3), seq(3), strict=True):
            m[f"{blk}.branch7x7_{i}"] = f"{p}.tower.{b}"
        for i, b in zip((1, 2, 3, 4, 5), seq(5), strict=True):
            m[f"{blk}.branch7x7dbl_{i}"] = f"{p}.tower_1.{b}"
        m[f"{blk}.branch_pool"] = f"{p}.tower_2.conv"
    for i, b in zip((1, 2), seq(2), strict=True):
        m[f"Mixed_7a.branch3x3_{i}"] = f"layers.mixed_8.tower.{b}"
    for i, b in zip((1, 2, 3, 4), seq(4), strict=True):
        m[f"Mixed_7a.branch7x7x3_{i}"] = f"layers.mixed_8.tower_1.{b}"
    for blk, mixed in (("Mixed_7b", "mixed_9"), ("Mixed_7c", "mixed_10")):
        p = f"layers.{mixed}"
        for a, b in (("branch1x1", "conv"), ("branch3x3_1", "tower_conv"),
                     ("branch3x3_2a", "tower_mixed_conv"), ("branch3x3_2b", "tower_mixed_conv_1"),
                     ("branch3x3dbl_1", "tower_1_conv"), ("branch3x3dbl_2", "tower_1_conv_1"),
                     ("branch3x3dbl_3a", "tower_1_mixed_conv"),
                     ("branch3x3dbl_3b", "tower_1_mixed_conv_1"), ("branch_pool", "tower_2_conv")):
            m[f"{blk}.{a}"] = f"{p}.{b}"
    return m


def nvidia_inception_weights(seed: int) -> collections.OrderedDict:
    """A random state of the TorchScript Inception clean-fid reads: per conv unit ``<p>.weight``,
    ``<p>.beta``, ``<p>.mean``, ``<p>.var`` (no BN scale), and ``output.weight`` / ``.bias``."""
    name_map = nvidia_name_map()
    out: collections.OrderedDict = collections.OrderedDict()
    for name, cin, cout, k, _s, _p in fid_inception_convs():
        _conv_bn(out, seed, name_map[name] + ".", cin, cout, k,
                 ("weight", None, "beta", "mean", "var"), gamma=False)
    out["output.weight"] = _normal(seed, "output.weight", (1008, 2048), 0.05)
    out["output.bias"] = _normal(seed, "output.bias", (1008,), 0.5)
    return out


VGG16_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256),
               (12, 256, 256), (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512),
               (24, 512, 512), (26, 512, 512), (28, 512, 512))


def vgg16_weights(seed: int) -> collections.OrderedDict:
    """A random state dict of ``torchvision.models.vgg16()`` (He-normal weights, small biases).
    The 102.8 M-entry ``classifier.0.weight`` is drawn as 64 rows repeated (cheap to make, still
    a generic matrix for the features of a few dozen images)."""
    out: collections.OrderedDict = collections.OrderedDict()
    for i, cin, cout in VGG16_CONVS:
        out[f"features.{i}.weight"] = _normal(seed, f"f{i}w", (cout, cin, 3, 3),
                                              (2.0 / (cin * 9)) ** 0.5)
        out[f"features.{i}.bias"] = _normal(seed, f"f{i}b", (cout,), 0.05)
    rows = _normal(seed, "c0w", (64, 25088), (2.0 / 25088) ** 0.5)
    fc1 = rows[_rng(seed, "c0p").integers(0, 64, 4096)]
    np.multiply(fc1, 1.0 + _normal(seed, "c0s", (4096, 1), 0.2), out=fc1)
    out["classifier.0.weight"] = fc1
    out["classifier.0.bias"] = _normal(seed, "c0b", (4096,), 0.05)
    out["classifier.3.weight"] = _normal(seed, "c3w", (4096, 4096), (2.0 / 4096) ** 0.5)
    out["classifier.3.bias"] = _normal(seed, "c3b", (4096,), 0.05)
    out["classifier.6.weight"] = _normal(seed, "c6w", (1000, 4096), (1.0 / 4096) ** 0.5)
    out["classifier.6.bias"] = _normal(seed, "c6b", (1000,), 0.05)
    return out


# ------------------------------------------------------------------------ skeletons of files


def payload_bytes(array: np.ndarray):
    """The tensor's bytes as torch stores them (C order, little-endian), without a copy when
    the array already is."""
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return memoryview(a.reshape(-1)).cast("B")


def make_skeleton(path: str, payload_spans: list[tuple[int, int, str]]) -> dict:
    """The file at ``path`` minus the byte ranges ``(offset, length, tensor name)``.

    Returns a dict (written with `save_skeleton`): ``literal`` (the remaining bytes, concatenated),
    ``layout`` (JSON: alternating literal lengths and tensor names) and ``sha256`` of the file.
    """
    data = open(path, "rb").read()
    spans = sorted(payload_spans)
    lit, layout, pos = io.BytesIO(), [], 0
    for off, length, name in spans:
        if off < pos:
            raise ValueError(f"overlapping payloads at {off}")
        lit.write(data[pos:off])
        layout.append(["lit", off - pos])
        layout.append(["tensor", name, length])
        pos = off + length
    lit.write(data[pos:])
    layout.append(["lit", len(data) - pos])
    return {"literal": lit.getvalue(), "layout": layout,
            "sha256": hashlib.sha256(data).hexdigest()}


def save_skeleton(path: str, skel: dict) -> None:
    np.savez_compressed(path, literal=np.frombuffer(skel["literal"], np.uint8),
                        layout=np.array(json.dumps(skel["layout"])),
                        sha256=np.array(skel["sha256"]))


def write_from_skeleton(skeleton_path: str, weights: dict, out_path: str) -> str:
    """Rebuild the file a skeleton was made from, taking each tensor payload from ``weights``;
    checks the SHA-256 of the result and returns ``out_path``."""
    with np.load(skeleton_path) as z:
        literal = z["literal"].tobytes()
        layout = json.loads(str(z["layout"]))
        sha = str(z["sha256"])
    h = hashlib.sha256()
    pos = 0
    with open(out_path, "wb") as f:
        for item in layout:
            if item[0] == "lit":
                chunk = literal[pos:pos + item[1]]
                pos += item[1]
            else:
                chunk = payload_bytes(weights[item[1]])
                if chunk.nbytes != item[2]:
                    raise ValueError(f"{skeleton_path}: tensor {item[1]!r} has {chunk.nbytes} "
                                     f"bytes, the file held {item[2]}")
            f.write(chunk)
            h.update(chunk)
    if h.hexdigest() != sha:
        raise ValueError(f"{skeleton_path}: the rebuilt file differs from the one the tool wrote "
                         "(the seeded weight generator changed?)")
    return out_path


# -------------------------------------------------------------- synthetic feature sets


def synthetic_features(seed: int, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """Correlated, non-negative float32 features (like pool3 activations) for the statistics
    conformance tests."""
    rng = np.random.default_rng([seed, n, d])
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    z = rng.standard_normal((n, d)) @ mix + shift
    return np.abs(z).astype(np.float32)
