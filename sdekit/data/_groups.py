"""Group-transformed image sets for structure-preserving diffusion: C4/D4-rotated MNIST built
on the fly from the official idx files, and group augmentation for any image set."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..nets.equivariant._groups import get_group
from ._sources import ArraySource, load_mnist

__all__ = ["GroupAugment", "transform_once", "load_rotated_mnist", "RotatedMNIST"]


class GroupAugment:
    """Per-example transform ``(image, rng) -> g . image`` with ``g`` uniform on ``group``
    (any of ``sdekit.nets.equivariant.GROUPS``: ``C2``, ``C4``, ``D2``, ``D4``, ``flipH``,
    ``flipV``); images are HWC. Pass it in ``transforms=`` of
    [`make_pipeline`][sdekit.data.make_pipeline]. Augmentation makes the *data law*
    invariant; it does not make a network equivariant."""

    def __init__(self, group: str):
        self.group = get_group(group).name

    def __call__(self, image: Any, rng: np.random.Generator) -> np.ndarray:
        grp = get_group(self.group)
        g = int(rng.integers(grp.order))
        return np.ascontiguousarray(grp.act(g, np.asarray(image), axes=(0, 1)))

    def __repr__(self) -> str:
        return f"GroupAugment({self.group!r})"


def transform_once(images: Any, group: str, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Transform each image of ``(N, H, W, C)`` once by a uniformly random element of ``group``
    (seeded); returns ``(images, elements)``. This is how the paper's C4-MNIST is made: the
    empirical law is invariant in expectation, with no duplication."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(
            f"argument `images`: got shape {images.shape}, expected square NHWC images "
            "(N, H, H, C)."
        )
    grp = get_group(group)
    g = np.random.default_rng(seed).integers(grp.order, size=images.shape[0])
    out = np.empty_like(images)
    for e in range(grp.order):
        sel = g == e
        out[sel] = grp.act(e, images[sel], axes=(1, 2))
    return out, g.astype(np.int32)


def load_rotated_mnist(
    split: str = "train",
    *,
    group: str = "C4",
    num: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = True,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST with every image rotated (C4) or rotated and flipped (D4, or any grid group) once by
    a random element, built on the fly from the official idx files
    ([`load_mnist`][sdekit.data.load_mnist]).

    Args:
        split: ``"train"`` or ``"test"``.
        group: the group (``"C4"`` as in the paper's benchmark; ``"D4"``, ...).
        num: keep the first ``num`` images (the paper's subsets: 600 / 3000 / 6000).
        seed: seed of the random elements.
        root: cache directory, as in ``load_mnist``.
        download: download missing files, as in ``load_mnist``.
        **kwargs: passed to ``load_mnist`` (e.g. ``base_url``, ``md5s``).

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28, 1)`` and int32 ``(N,)``.
    """
    images, labels = load_mnist(split, root=root, download=download, **kwargs)
    if num is not None:
        if not (isinstance(num, int) and 1 <= num <= images.shape[0]):
            raise ValueError(
                f"argument `num`: got {num!r}, expected an int in [1, {images.shape[0]}]."
            )
        images, labels = images[:num], labels[:num]
    out, _ = transform_once(images, group, seed=seed)
    return out, labels


class RotatedMNIST(ArraySource):
    """[`load_rotated_mnist`][sdekit.data.load_rotated_mnist] as a source (uint8 28x28x1)."""

    def __init__(self, split: str = "train", *, group: str = "C4", num: int | None = None,
                 seed: int = 0, root: str | os.PathLike | None = None, download: bool = True,
                 **kwargs: Any):
        super().__init__(*load_rotated_mnist(split, group=group, num=num, seed=seed, root=root,
                                             download=download, **kwargs))
