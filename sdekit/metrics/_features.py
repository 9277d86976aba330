"""Batched feature extraction sharded over devices, and image-set readers for the metrics CLI."""

from __future__ import annotations

import abc
import os
import pathlib
from collections.abc import Callable
from typing import Any

import equinox as eqx
import numpy as np


def to_unit_range(images: Any, name: str = "images") -> np.ndarray:
    """NHWC images as float32 in [-1, 1]: uint8 are mapped by ``x / 127.5 - 1``; floats must
    already be in [-1, 1] (checked, with a small tolerance)."""
    from ._protocols import check_unit_range

    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        raise ValueError(f"argument `{name}`: got shape {a.shape}, expected NHWC, 1 or 3 "
                         "channels.")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 127.5 - 1.0
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"argument `{name}`: got dtype {a.dtype}, expected uint8 or float.")
    check_unit_range(a, name)
    return np.clip(a.astype(np.float32), -1.0, 1.0)


class AbstractStagedFunction(eqx.Module):
    """A function `extract_features` compiles in stages (each stage on its own, the
    intermediate kept on the devices), e.g. a protocol's resize and then the network, so the
    network compiles once for every resize. Calling it runs the stages in order.
    """

    @abc.abstractmethod
    def stages(self) -> tuple[Callable[[Any], Any], ...]:
        """The stages, in order: equinox modules (or functions) of one argument."""

    def __call__(self, x: Any) -> Any:
        for stage in self.stages():
            x = stage(x)
        return x


def _apply_impl(fn, x):
    return fn(x)


_apply_cache: list = []


def _apply(fn, x):
    if not _apply_cache:
        import equinox as eqx

        _apply_cache.append(eqx.filter_jit(_apply_impl))
    return _apply_cache[0](fn, x)


def extract_features(
    fn: Callable[[Any], Any],
    images: Any,
    *,
    batch_size: int = 200,
    devices: Any = None,
    progress: bool = True,
    desc: str = "features",
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Any:
    """Apply ``fn`` to ``images`` in batches, each batch split over ``devices``.

    Each batch (padded to a multiple of the device count) is placed with a
    ``jax.sharding.NamedSharding`` over a one-axis mesh of ``devices`` and ``fn`` is jit-compiled
    once, so the batch runs data-parallel; results come back to the host as numpy.

    Args:
        fn: maps a float32 ``(b, H, W, C)`` batch (as ``preprocess`` returns it) to an array or
            a tuple of arrays with leading axis ``b`` (e.g. `InceptionV3`, which returns
            ``(pool3, logits)``, or `InceptionFeatures`).
        images: NHWC uint8 or float in [-1, 1] (numpy; converted per batch).
        batch_size: global batch (rounded up to a multiple of the device count).
        devices: devices to shard over (default all of ``jax.devices()``).
        progress: show a tqdm bar.
        desc: the bar's label.
        preprocess: the host-side conversion of each numpy batch (default `to_unit_range`,
            float32 in [-1, 1]; `InceptionFeatures` uses its protocol's pixel values).

    Returns:
        What ``fn`` returns, concatenated over batches (numpy).
    """
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from tqdm.auto import tqdm

    imgs = np.asarray(images)
    if imgs.ndim != 4:
        raise ValueError(f"argument `images`: got shape {imgs.shape}, expected NHWC.")
    prep = to_unit_range if preprocess is None else preprocess
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"argument `batch_size`: got {batch_size!r}, expected an int >= 1.")
    devs = list(jax.devices() if devices is None else devices)
    nd = len(devs)
    bs = -(-batch_size // nd) * nd
    mesh = Mesh(np.array(devs), ("batch",))
    data_sharding = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())

    import equinox as eqx

    # A function may come in stages (`InceptionFeatures`: the protocol's resize, then the
    # network), each compiled on its own, so the network compiles once for every protocol and
    # input size; the intermediate stays on the devices.
    stages = []
    for stage in (fn.stages() if isinstance(fn, AbstractStagedFunction) else (fn,)):
        arrays, static = eqx.partition(stage, eqx.is_array)
        stages.append(eqx.combine(jax.device_put(arrays, replicated), static))

    outs: list = []
    n = imgs.shape[0]
    for i in tqdm(range(0, n, bs), desc=desc, disable=not progress, unit="batch"):
        chunk = prep(imgs[i:i + bs])
        m = chunk.shape[0]
        if m < bs:
            chunk = np.concatenate([chunk, np.zeros((bs - m,) + chunk.shape[1:], chunk.dtype)])
        x = jax.device_put(chunk, data_sharding)
        for stage in stages:
            x = _apply(stage, x)
        res = jax.tree.map(lambda a, m=m: np.asarray(a)[:m], x)
        outs.append(res)
    if not outs:
        raise ValueError("argument `images`: empty.")
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def read_images(source: str | os.PathLike, *, max_images: int | None = None) -> np.ndarray:
    """Read an image set for the metrics: an ``.npz`` (key ``images``, or its only array; NHWC
    uint8 or float in [-1, 1]), the CIFAR-10 python tarball ``cifar-10-python.tar.gz`` (train
    split), or a folder of images (read with `sdekit.data.ImageFolder`).

    Args:
        source: the path.
        max_images: keep at most this many (the first ones).

    Returns:
        NHWC array (uint8 or float).
    """
    p = pathlib.Path(source).expanduser()
    if p.is_dir():
        from ..data import ImageFolder

        folder = ImageFolder(p)
        n = len(folder) if max_images is None else min(max_images, len(folder))
        return np.stack([folder[i]["image"] for i in range(n)])
    if not p.is_file():
        raise FileNotFoundError(f"argument `source`: no file or folder at {str(p)!r}.")
    if p.name.endswith((".tar.gz", ".tgz")):
        from ..data import load_cifar10

        if p.name != "cifar-10-python.tar.gz":
            raise ValueError(
                f"argument `source`: {p.name!r}: the only tarball understood is CIFAR-10's "
                "'cifar-10-python.tar.gz'."
            )
        imgs, _ = load_cifar10("train", root=p.parent, download=False, md5=None)
    elif p.suffix == ".npz":
        with np.load(p) as z:
            if "images" in z.files:
                imgs = z["images"]
            elif len(z.files) == 1:
                imgs = z[z.files[0]]
            else:
                raise ValueError(
                    f"argument `source`: {str(p)!r} holds {z.files}; expected an array 'images'."
                )
    elif p.suffix == ".npy":
        imgs = np.load(p)
    else:
        raise ValueError(
            f"argument `source`: {str(p)!r} is not an .npz/.npy, a folder or the CIFAR-10 tarball."
        )
    if imgs.ndim != 4 or imgs.shape[-1] not in (1, 3):
        raise ValueError(
            f"argument `source`: images of shape {imgs.shape}, expected NHWC with 1 or 3 channels."
        )
    return imgs if max_images is None else imgs[:max_images]
