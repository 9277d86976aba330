"""Data pipelines on grain: CIFAR-10, MNIST, image folders, arrays, 2-D toy sets, transforms.

The grain pipelines (``make_pipeline``, ``make_dataset``, ``toy_source``) are imported on first
use: ``import sdekit`` does not import grain (seconds of start-up).
"""

from typing import TYPE_CHECKING

from ._download import ChecksumError, cache_dir, download, fetch, md5sum
from ._groups import GroupAugment, RotatedMNIST, load_rotated_mnist, transform_once
from ._sources import (
    CIFAR10,
    CIFAR10_MD5,
    CIFAR10_URL,
    MNIST,
    MNIST_FILES,
    MNIST_URL,
    ArraySource,
    ImageFolder,
    load_cifar10,
    load_mnist,
    read_idx,
)
from ._toy import TOY_DATASETS, toy_data
from ._transforms import dequantize, random_c4, random_d4, random_flip, scale

__all__ = [
    "CIFAR10", "CIFAR10_MD5", "CIFAR10_URL", "MNIST", "MNIST_FILES", "MNIST_URL",
    "TOY_DATASETS", "ArraySource", "ChecksumError", "GroupAugment", "ImageFolder",
    "RotatedMNIST", "cache_dir", "dequantize", "download", "fetch", "load_cifar10",
    "load_mnist", "load_rotated_mnist", "make_dataset", "make_pipeline", "md5sum",
    "random_c4", "random_d4", "random_flip", "read_idx", "scale", "toy_data", "toy_source",
    "transform_once",
]
if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._pipeline import make_dataset as make_dataset
    from ._pipeline import make_pipeline as make_pipeline
    from ._pipeline import toy_source as toy_source

_LAZY = {"make_dataset", "make_pipeline", "toy_source"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import _pipeline

        return getattr(_pipeline, name)
    raise AttributeError(f"module 'sdekit.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY)
