"""Data pipelines on grain: CIFAR-10, MNIST, image folders, arrays, 2-D toy sets, transforms.

The grain pipelines (``make_pipeline``, ``make_dataset``, ``toy_source``) are imported on first
use: ``import sdekit`` does not import grain (seconds of start-up).
"""

from typing import TYPE_CHECKING

from ._download import (
    ChecksumError as ChecksumError,
)
from ._download import (
    cache_dir as cache_dir,
)
from ._download import (
    download as download,
)
from ._download import (
    fetch as fetch,
)
from ._download import (
    md5sum as md5sum,
)
from ._sources import (
    CIFAR10 as CIFAR10,
)
from ._sources import (
    CIFAR10_MD5 as CIFAR10_MD5,
)
from ._sources import (
    CIFAR10_URL as CIFAR10_URL,
)
from ._sources import (
    MNIST as MNIST,
)
from ._sources import (
    MNIST_FILES as MNIST_FILES,
)
from ._sources import (
    MNIST_URL as MNIST_URL,
)
from ._sources import (
    ArraySource as ArraySource,
)
from ._sources import (
    ImageFolder as ImageFolder,
)
from ._sources import (
    load_cifar10 as load_cifar10,
)
from ._sources import (
    load_mnist as load_mnist,
)
from ._sources import (
    read_idx as read_idx,
)
from ._toy import TOY_DATASETS as TOY_DATASETS
from ._toy import toy_data as toy_data
from ._transforms import (
    dequantize as dequantize,
)
from ._transforms import (
    random_c4 as random_c4,
)
from ._transforms import (
    random_d4 as random_d4,
)
from ._transforms import (
    random_flip as random_flip,
)
from ._transforms import (
    scale as scale,
)

__all__ = [
    "CIFAR10",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "MNIST",
    "MNIST_FILES",
    "MNIST_URL",
    "TOY_DATASETS",
    "ArraySource",
    "ChecksumError",
    "ImageFolder",
    "cache_dir",
    "dequantize",
    "download",
    "fetch",
    "load_cifar10",
    "load_mnist",
    "make_dataset",
    "make_pipeline",
    "md5sum",
    "random_c4",
    "random_d4",
    "random_flip",
    "read_idx",
    "scale",
    "toy_data",
    "toy_source",
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
