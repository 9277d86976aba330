"""Random-access data sources: CIFAR-10, MNIST, image folders and in-memory arrays.

Every source has ``__len__`` and ``__getitem__(i) -> {"image": array, "label": int}`` so it can
feed ``grain.MapDataset.source``. Image sources return uint8 HWC arrays.
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import pickle
import struct
import tarfile
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._download import fetch

__all__ = [
    "ArraySource",
    "load_cifar10",
    "load_mnist",
    "read_idx",
    "CIFAR10",
    "MNIST",
    "ImageFolder",
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "MNIST_URL",
    "MNIST_FILES",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
#: ``(split, kind) -> (file name, md5)`` of the official MNIST idx files.
MNIST_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train", "labels"): ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("test", "images"): ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"argument `split`: got {split!r}, expected 'train' or 'test'.")


class ArraySource:
    """In-memory examples: ``images[i]`` (any shape, any dtype) and optional integer ``labels``.

    Args:
        images: array ``(N, ...)`` (uint8 images, float points...).
        labels: optional array ``(N,)``; 0 for every example when omitted.
    """

    def __init__(self, images: Any, labels: Any = None):
        images = np.asarray(images)
        if images.ndim < 1 or images.shape[0] == 0:
            raise ValueError(
                f"argument `images`: got shape {images.shape}, expected (N, ...) with N > 0."
            )
        if labels is None:
            labels = np.zeros((images.shape[0],), np.int32)
        labels = np.asarray(labels)
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"argument `labels`: got shape {labels.shape}, expected ({images.shape[0]},) to "
                "match `images`."
            )
        self.images = images
        self.labels = labels.astype(np.int32)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i]}

    def __repr__(self) -> str:
        shape, dtype = self.images.shape[1:], self.images.dtype
        return f"{type(self).__name__}(n={len(self)}, shape={shape}, dtype={dtype})"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what the official CIFAR-10 batches contain: dicts, lists, bytes, ints and
    numpy arrays (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``, and
    ``_codecs.encode`` for bytes written by Python 3).
    Any other global (``os.system``, ``builtins.eval``, ...) is refused, so a crafted file cannot
    run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load the global {module}.{name}: a CIFAR-10 batch holds only dicts, "
            "lists, bytes and numpy arrays"
        )


def _read_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    if not (isinstance(batch, dict) and b"data" in batch and b"labels" in batch):
        raise ValueError(f"{where}: not a CIFAR-10 batch (expected a dict with data and labels).")
    data, labels = batch[b"data"], batch[b"labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8):
        raise ValueError(
            f"{where}: data is {type(data).__name__} "
            f"{data.dtype if isinstance(data, np.ndarray) else ''}, expected a "
            "uint8 array."
        )
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{where}: data of shape {data.shape}, expected (N, 3072).")
    if not (isinstance(labels, (list, np.ndarray)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < 10
        for v in labels
    )):
        raise ValueError(f"{where}: labels are not a list of ints in 0..9.")
    labels = np.asarray(labels, dtype=np.int32)
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"{where}: {data.shape[0]} images but {labels.shape[0]} labels; the file is damaged."
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    url: str = CIFAR10_URL,
    md5: str | None = CIFAR10_MD5,
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the official python-version tarball ``cifar-10-python.tar.gz``.

    The tarball is fetched into the cache directory (checked against its MD5) and the pickled
    batches ``cifar-10-batches-py/data_batch_1..5`` (train) or ``test_batch`` (test) are read
    straight from it. An already extracted ``root/cifar-10-batches-py/`` directory is used
    instead when there is no tarball. Each batch holds ``b"data"`` (``N x 3072`` uint8: the red,
    green, blue planes of 1024 pixels each, row-major) and ``b"labels"``. The batches are read
    with a restricted unpickler that accepts only dicts, lists, bytes, ints and numpy arrays, so
    a crafted file cannot execute code even with ``md5=None``.

    Args:
        split: ``"train"`` (50 000 images) or ``"test"`` (10 000).
        root: cache directory (default ``$SDEKIT_DATA`` or ``~/.cache/sdekit``).
        download: download the tarball if it is missing.
        url: download URL.
        md5: expected MD5 of the tarball (``None`` skips the check; not recommended).

    Returns:
        ``(images, labels)``: uint8 ``(N, 32, 32, 3)`` NHWC and int32 ``(N,)``, in file order.
    """
    _check_split(split)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    from ._download import cache_dir

    extracted = cache_dir(root) / "cifar-10-batches-py"
    tarball = cache_dir(root) / "cifar-10-python.tar.gz"
    images, labels = [], []
    if extracted.is_dir() and not tarball.is_file():
        for name in names:
            f = extracted / name
            if not f.is_file():
                raise FileNotFoundError(
                    f"{f} is missing: {extracted} is not a complete CIFAR-10 python directory."
                )
            try:
                x, y = _read_batch(f.read_bytes(), str(f))
            except (pickle.UnpicklingError, EOFError, ValueError) as e:
                raise ValueError(f"{f}: cannot read the CIFAR-10 batch ({e}).") from e
            images.append(x)
            labels.append(y)
        return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
    path = fetch("cifar-10-python.tar.gz", url, md5, root=root, download_ok=download)
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in names:
                member = f"cifar-10-batches-py/{name}"
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise ValueError(
                        f"{path}: member {member!r} is missing; not the CIFAR-10 python tarball."
                    )
                x, y = _read_batch(f.read(), f"{path}: {member}")
                images.append(x)
                labels.append(y)
    except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise ValueError(
            f"{path}: cannot read the CIFAR-10 tarball ({e}); delete it and download again."
        ) from e
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an (optionally gzipped) idx file as used by MNIST: magic ``0x0000TTDD``, big-endian
    dims."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an idx file.")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes:
        raise ValueError(f"{path}: bad idx magic number {raw[:4].hex()}.")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dt = np.dtype(dtypes[dtype_code])
    count = int(np.prod(dims)) if dims else 1
    body = raw[4 + 4 * ndim :]
    if len(body) != count * dt.itemsize:
        raise ValueError(
            f"{path}: idx body has {len(body)} bytes, expected {count * dt.itemsize} for dims "
            f"{dims}."
        )
    return np.frombuffer(body, dtype=dt).reshape(dims).astype(dt.newbyteorder("="))


def load_mnist(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str = MNIST_URL,
    md5s: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST from the official gzipped idx files (``train-images-idx3-ubyte.gz`` etc.).

    Args:
        split: ``"train"`` (60 000) or ``"test"`` (10 000).
        root: cache directory (default ``$SDEKIT_DATA`` or ``~/.cache/sdekit``).
        download: download missing files from ``base_url``.
        base_url: mirror URL ending in ``/``.
        md5s: expected MD5 per file name, overriding the official ones of ``MNIST_FILES``
            (a value ``None`` skips the check for that file).

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28, 1)`` and int32 ``(N,)``.
    """
    _check_split(split)
    out = {}
    for kind in ("images", "labels"):
        name, md5 = MNIST_FILES[(split, kind)]
        if md5s is not None and name in md5s:
            md5 = md5s[name]
        path = fetch(name, base_url + name, md5, root=root, download_ok=download)
        out[kind] = read_idx(path)
    images, labels = out["images"], out["labels"]
    for kind, arr in out.items():
        if arr.dtype != np.uint8:
            raise ValueError(
                f"MNIST {split} {kind}: the idx file holds {arr.dtype} values, expected uint8 "
                "(type code 0x08); not an official MNIST file."
            )
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST {split}: images {images.shape} and labels {labels.shape} do not match."
        )
    return np.ascontiguousarray(images[..., None].astype(np.uint8)), labels.astype(np.int32)


class CIFAR10(ArraySource):
    """CIFAR-10 as a source (uint8 32x32x3 images, labels 0-9); see
    [`load_cifar10`][sdekit.data.load_cifar10]."""

    classes = CIFAR10_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        root: str | os.PathLike | None = None,
        download: bool = True,
        **kw,
    ):
        super().__init__(*load_cifar10(split, root=root, download=download, **kw))


class MNIST(ArraySource):
    """MNIST as a source (uint8 28x28x1 images, labels 0-9); see
    [`load_mnist`][sdekit.data.load_mnist]."""

    def __init__(
        self,
        split: str = "train",
        *,
        root: str | os.PathLike | None = None,
        download: bool = True,
        **kw,
    ):
        super().__init__(*load_mnist(split, root=root, download=download, **kw))


def _is_image(path: pathlib.Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class ImageFolder:
    """Images in a directory, read lazily with pillow.

    With class subfolders (``root/<class>/<image>``) the label is the index of the class name in
    sorted order; images directly in ``root`` get label 0 when there are no subfolders. Images
    are converted to ``mode`` (``"RGB"`` or ``"L"``) and optionally resized (bicubic) to
    ``size``.

    Every file is checked up front (pillow ``verify``): corrupt or non-image files are skipped
    with one warning that counts them (``self.skipped`` lists them), so training never fails
    mid-run on a bad file. Symbolic links whose target lies outside ``root`` are refused.

    Args:
        root: the directory.
        mode: pillow mode, ``"RGB"`` (3 channels) or ``"L"`` (1 channel).
        size: ``(height, width)`` to resize to, or ``None``.
        extensions: file suffixes counted as images.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        mode: str = "RGB",
        size: tuple[int, int] | None = None,
        extensions: Sequence[str] = _IMAGE_EXTS,
    ):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise ValueError(f"argument `root`: {str(self.root)!r} is not a directory.")
        if mode not in ("RGB", "L"):
            raise ValueError(f"argument `mode`: got {mode!r}, expected 'RGB' or 'L'.")
        if size is not None and not (
            len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)
        ):
            raise ValueError(
                f"argument `size`: got {size!r}, expected None or (height, width) positive ints."
            )
        exts = tuple(e.lower() for e in extensions)
        real_root = self.root.resolve()
        for p in self.root.rglob("*"):
            if p.is_symlink() and not p.resolve().is_relative_to(real_root):
                raise ValueError(
                    f"argument `root`: {str(p)!r} is a symbolic link to {str(p.resolve())!r}, "
                    f"outside {str(self.root)!r}; copy the file in or remove the link."
                )
        subdirs = sorted(
            p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        self.classes = tuple(p.name for p in subdirs)
        files: list[tuple[pathlib.Path, int]] = []
        if subdirs:
            for label, d in enumerate(subdirs):
                files += [
                    (p, label)
                    for p in sorted(d.rglob("*"))
                    if p.suffix.lower() in exts and p.is_file()
                ]
        else:
            files = [
                (p, 0)
                for p in sorted(self.root.iterdir())
                if p.suffix.lower() in exts and p.is_file()
            ]
        good, self.skipped = [], []
        for p, label in files:
            if _is_image(p):
                good.append((p, label))
            else:
                self.skipped.append(p)
        if self.skipped:
            shown = ", ".join(str(p) for p in self.skipped[:3])
            warnings.warn(
                f"ImageFolder: skipped {len(self.skipped)} of {len(files)} files under "
                f"{str(self.root)!r} that are not readable images ({shown}"
                f"{', ...' if len(self.skipped) > 3 else ''}).",
                stacklevel=2,
            )
        files = good
        if not files:
            raise ValueError(
                f"argument `root`: no images with suffixes {exts} found under {str(self.root)!r}."
            )
        self.files = files
        self.mode = mode
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        path, label = self.files[i]
        with Image.open(path) as im:
            im = im.convert(self.mode)
            if self.size is not None and im.size != (self.size[1], self.size[0]):
                im = im.resize((self.size[1], self.size[0]), Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[..., None]
        return {"image": arr, "label": np.int32(label)}
