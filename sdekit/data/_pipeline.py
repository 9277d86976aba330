"""grain pipelines: shuffling per epoch, transforms, batching, per-process sharding, state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import grain
import jax
import numpy as np

from . import _transforms as T
from ._sources import ArraySource


@runtime_checkable
class RandomAccess(Protocol):
    """A random-access data source: ``len(source)`` and ``source[i]`` (a dict with ``image`` and
    optionally ``label``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...

__all__ = ["make_pipeline", "make_dataset"]

_GROUPS = (None, "flip", "C4", "D4")


class _Prepare:
    """Per-example random work: geometric augmentation, then scaling or dequantisation."""

    def __init__(
        self,
        group: str | None,
        value_range: str | None,
        dequantize: bool,
        extra: Sequence[Callable],
        input_range: tuple[float, float] = (0.0, 255.0),
        input_kind: str = "u",
    ):
        self.group = group
        self.value_range = value_range
        self.dequantize = dequantize
        self.extra = tuple(extra)
        self.input_range = input_range
        self.input_kind = input_kind

    def _map(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if x.dtype.kind != self.input_kind and not (
            x.dtype.kind in "ui" and self.input_kind in "ui"
        ):
            raise ValueError(
                f"argument `source`: an example has dtype {x.dtype}, but the pipeline was built "
                f"for {'integer' if self.input_kind in 'ui' else 'float'} images (the first "
                "example's dtype); every example must have the same kind of values."
            )
        lo, hi = self.input_range
        x = x.astype(np.float32)
        if self.dequantize:  # integer levels lo..hi: bins of width 1
            u = (x - lo + rng.random(x.shape, dtype=np.float32)) / (hi - lo + 1.0)
        else:
            u = (x - lo) / (hi - lo)
        return 2.0 * u - 1.0 if self.value_range == "[-1,1]" else u

    def __call__(self, example: dict, rng: np.random.Generator) -> dict:
        x = np.asarray(example["image"])
        if self.group == "flip":
            x = T.random_flip(x, rng)
        elif self.group == "C4":
            x = T.random_c4(x, rng)
        elif self.group == "D4":
            x = T.random_d4(x, rng)
        if self.value_range is not None:
            x = self._map(x, rng)
        else:
            x = x.astype(np.float32)
        for fn in self.extra:
            x = np.asarray(fn(x, rng), np.float32)
        return {"image": x, "label": np.int32(example.get("label", 0))}


def make_dataset(
    source: Any,
    *,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    value_range: str | None = "[-1,1]",
    dequantize: bool = False,
    augment: str | None = None,
    transforms: Sequence[Callable] = (),
    drop_remainder: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
    input_range: tuple[float, float] | None = None,
) -> grain.MapDataset:
    """The ``grain.MapDataset`` behind [`make_pipeline`][sdekit.data.make_pipeline] (same
    arguments)."""
    if isinstance(source, np.ndarray):
        source = ArraySource(source)
    if not isinstance(source, RandomAccess):
        raise ValueError(
            f"argument `source`: got {type(source).__name__}, expected a random-access source "
            "(__len__ and __getitem__ returning {'image', 'label'} dicts) or a numpy array."
        )
    if augment not in _GROUPS:
        raise ValueError(f"argument `augment`: got {augment!r}, expected one of {_GROUPS}.")
    if value_range is not None and value_range not in T.RANGES:
        raise ValueError(
            f"argument `value_range`: got {value_range!r}, expected None or one of {T.RANGES}."
        )
    if dequantize and value_range is None:
        raise ValueError(
            "argument `dequantize`: True needs a `value_range` ('[-1,1]' or '[0,1]'), got None."
        )
    if num_epochs is not None and not (isinstance(num_epochs, int) and num_epochs >= 1):
        raise ValueError(
            f"argument `num_epochs`: got {num_epochs!r}, expected None (forever) or an int >= 1."
        )
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"argument `seed`: got {seed!r}, expected an int.")
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if not (isinstance(pc, int) and pc >= 1 and isinstance(pi, int) and 0 <= pi < pc):
        raise ValueError(
            f"arguments `process_index`/`process_count`: got {pi!r}/{pc!r}, expected 0 <= index < "
            "count."
        )
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(
            f"argument `batch_size`: got {batch_size!r}, expected a positive int (the global "
            "batch)."
        )
    if batch_size % pc:
        raise ValueError(
            f"argument `batch_size`: got a global batch of {batch_size}, expected a multiple of "
            "the "
            f"number of processes ({pc}); each process loads batch_size / {pc} examples."
        )
    local_batch = int(batch_size) // pc
    prepare = _Prepare(augment, value_range, dequantize, transforms,
                       *_input_range(source, input_range, value_range, dequantize))
    ds = grain.MapDataset.source(source)
    if pc > 1:
        ds = ds[pi::pc]  # this process's shard of the examples
    if len(ds) < local_batch and drop_remainder:
        raise ValueError(
            f"argument `batch_size`: got {batch_size}, but this process's shard has only {len(ds)} "
            f"examples (< {local_batch} per process)."
        )
    ds = ds.seed(int(seed))
    if shuffle:
        ds = ds.shuffle()  # a new permutation every epoch
    ds = ds.repeat(num_epochs)
    ds = ds.random_map(prepare)
    return ds.batch(local_batch, drop_remainder=drop_remainder)


def make_pipeline(
    source: Any,
    *,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    value_range: str | None = "[-1,1]",
    dequantize: bool = False,
    augment: str | None = None,
    transforms: Sequence[Callable] = (),
    drop_remainder: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
    num_workers: int = 0,
    input_range: tuple[float, float] | None = None,
) -> grain.DatasetIterator:
    """A grain iterator of batches ``{"image": float32 (B, ...), "label": int32 (B,)}``.

    Steps: take this process's shard of ``source`` (examples ``process_index::process_count``),
    shuffle with ``seed`` (a fresh permutation every epoch), repeat ``num_epochs`` times
    (``None``: forever), augment (``augment`` = ``"flip"`` for random horizontal flips, ``"C4"`` /
    ``"D4"`` for random rotations / rotations and flips), map the values from ``input_range`` to
    ``value_range`` (``"[-1,1]"`` or ``"[0,1]"``; ``dequantize=True`` adds uniform noise to the
    integer levels first; ``None`` keeps the values, e.g. for 2-D toy points), apply
    ``transforms`` (callables ``(image, rng) -> image``), and batch. Batches may span epoch
    boundaries.

    The input range is never guessed from nothing: uint8 sources (CIFAR-10, MNIST, image
    folders) are ``(0, 255)``; any other dtype needs an explicit ``input_range`` (e.g.
    ``(-1, 1)`` for float images already scaled, ``(0, 16)`` for 0-16 digits) or
    ``value_range=None``, and an ``input_range`` the first example's values fall outside of is
    refused.

    The iterator has ``get_state()`` / ``set_state(state)`` (JSON-able dicts), which
    [`sdekit.train.fit`][sdekit.train.fit] stores in checkpoints. Loading stays in-process by
    default; ``num_workers > 0`` uses grain's multiprocess prefetch (close the iterator with
    ``close()`` when done). A saved state resumes a pipeline built with the same arguments,
    including ``num_workers`` (the state's layout depends on it).

    Args:
        source: a random-access source (``CIFAR10``, ``MNIST``, ``ImageFolder``, ``ArraySource``) or
            a numpy array of examples.
        batch_size: the **global** batch size; each process yields ``batch_size / process_count``.
        seed: shuffling and augmentation seed.
        shuffle: shuffle every epoch.
        num_epochs: number of passes (``None`` repeats forever).
        value_range: ``"[-1,1]"``, ``"[0,1]"`` or ``None``.
        dequantize: uniform dequantisation.
        augment: ``None``, ``"flip"``, ``"C4"`` or ``"D4"``.
        transforms: extra per-example callables ``(image, rng) -> image``.
        drop_remainder: drop a last incomplete batch (only matters with finite ``num_epochs``).
        process_index: this process (default ``jax.process_index()``).
        process_count: number of processes (default ``jax.process_count()``).
        num_workers: grain worker processes (0: in-process).
        input_range: ``(low, high)`` of the source's values (default: ``(0, 255)`` for uint8
            sources, required otherwise when ``value_range`` is set).

    Returns:
        A ``grain.DatasetIterator``.
    """
    ds = make_dataset(
        source,
        batch_size=batch_size,
        seed=seed,
        shuffle=shuffle,
        num_epochs=num_epochs,
        value_range=value_range,
        dequantize=dequantize,
        augment=augment,
        transforms=transforms,
        drop_remainder=drop_remainder,
        process_index=process_index,
        process_count=process_count,
        input_range=input_range,
    )
    if not (isinstance(num_workers, int) and num_workers >= 0):
        raise ValueError(f"argument `num_workers`: got {num_workers!r}, expected an int >= 0.")
    it_ds = ds.to_iter_dataset()
    if num_workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return iter(it_ds)


def _first_image(source: Any) -> np.ndarray:
    if isinstance(source, ArraySource):  # no decoding needed
        return source.images[:256]
    return np.asarray(source[0]["image"])


def _input_range(
    source: Any, input_range: Any, value_range: str | None, dequantize: bool
) -> tuple[tuple[float, float], str]:
    if len(source) == 0:
        raise ValueError("argument `source`: got an empty source, expected at least one example.")
    x = _first_image(source)
    kind = x.dtype.kind
    if input_range is None:
        if value_range is None:
            return (0.0, 1.0), kind
        if x.dtype != np.uint8:
            raise ValueError(
                f"argument `input_range`: the source gives {x.dtype} images (values "
                f"{float(x.min()):.4g}..{float(x.max()):.4g}), and mapping them to value_range "
                f"{value_range!r} needs their range; pass input_range=(low, high) (e.g. (-1, 1) "
                "for images already scaled, (0, 16) for 0-16 digits) or value_range=None to keep "
                "the values. Only uint8 sources default to (0, 255)."
            )
        return (0.0, 255.0), kind
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"argument `input_range`: got {input_range!r}, expected (low, high) numbers."
        ) from e
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"argument `input_range`: got {input_range!r}, expected low < high.")
    if value_range is None:
        raise ValueError("argument `input_range`: given with value_range=None (nothing to map).")
    if x.size and (float(x.min()) < lo or float(x.max()) > hi):
        raise ValueError(
            f"argument `input_range`: got {input_range!r}, but the source's {x.dtype} values "
            f"span {float(x.min()):.4g}..{float(x.max()):.4g}."
        )
    if dequantize and kind not in "ui":
        raise ValueError(
            f"argument `dequantize`: True needs integer pixel levels, but the source gives "
            f"{x.dtype} images."
        )
    return (lo, hi), kind


def toy_source(points: Any) -> ArraySource:
    """Wrap ``(N, d)`` float points (e.g. from [`toy_data`][sdekit.data.toy_data]) as a source."""
    return ArraySource(np.asarray(points, np.float32))
