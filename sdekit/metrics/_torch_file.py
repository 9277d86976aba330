"""Read PyTorch ``.pth`` state dicts without torch, and without running code from the file.

Two on-disk formats exist. Both are read here:

- the **zip** format (torch >= 1.6): a zip archive ``<name>/data.pkl`` (the pickled object,
  whose tensors point at storages through pickle *persistent ids*) plus one raw little-endian
  file per storage, ``<name>/data/<key>``;
- the **legacy** format (torch < 1.6; the pytorch-fid Inception weights are in it): five pickles
  in a row (a magic number, the protocol version 1001, system info, the object, the list of
  storage keys) followed by each storage as an int64 element count and its raw bytes.

The unpickler is restricted: ``find_class`` resolves only ``collections.OrderedDict``, the two
tensor-rebuilding functions of ``torch._utils`` (replaced by our own numpy versions) and the
storage classes (replaced by dtype markers). Any other global raises ``pickle.UnpicklingError``,
so a malicious file cannot make this loader import or call anything else.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage whose bytes are filled in later (legacy format) or read from the zip."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype = dtype
        self.numel = numel
        self.array: np.ndarray | None = None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialise(self) -> np.ndarray:
        base = self.storage.array
        if base is None:
            raise pickle.UnpicklingError("a tensor refers to a storage that the file does not hold")
        size = tuple(int(s) for s in self.size)
        stride = tuple(int(s) for s in self.stride)
        n_needed = self.offset + (
            sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1 if all(size) else 0
        )
        if n_needed > base.size:
            raise pickle.UnpicklingError(
                f"tensor of size {size} / stride {stride} at offset {self.offset} overruns its "
                f"storage of {base.size} elements"
            )
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=size, strides=tuple(s * item for s in stride)
        )
        return np.array(view, copy=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *args):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, storage_loader):
        super().__init__(f, encoding="utf-8")
        self._storage_loader = storage_loader

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"refusing to load the global {module}.{name}: only tensors and (ordered) dicts of "
            "them can be read from a weight file"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        return self._storage_loader(pid[1:])


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialise(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{path}: a zip weight file must hold exactly one data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}

        def load_storage(info):
            storage_type, key, _location, numel = info[:4]
            if not isinstance(storage_type, _StorageType):
                raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
            key = str(key)
            if key not in storages:
                st = _Storage(storage_type.dtype, int(numel))
                raw = zf.read(f"{prefix}data/{key}")
                st.array = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<")).astype(st.dtype)
                storages[key] = st
            return storages[key]

        obj = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), load_storage).load()
    return _materialise(obj)


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        magic = _RestrictedUnpickler(f, _no_storage).load()
        if magic != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a PyTorch weight file (bad magic number)")
        version = _RestrictedUnpickler(f, _no_storage).load()
        if version != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy protocol version {version!r}")
        _RestrictedUnpickler(f, _no_storage).load()  # sys info
        storages: dict[str, _Storage] = {}

        def load_storage(info):
            storage_type, key, _location, numel = info[:4]
            view = info[4] if len(info) > 4 else None
            if not isinstance(storage_type, _StorageType):
                raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
            key = str(key)
            if key not in storages:
                storages[key] = _Storage(storage_type.dtype, int(numel))
            if view is not None:
                raise pickle.UnpicklingError("storage views (torch < 0.4 files) are not supported")
            return storages[key]

        obj = _RestrictedUnpickler(f, load_storage).load()
        keys = _RestrictedUnpickler(f, _no_storage).load()
        for key in keys:
            st = storages.get(str(key))
            if st is None:
                raise ValueError(f"{path}: storage {key!r} listed but never used")
            (numel,) = struct.unpack("<q", f.read(8))
            raw = f.read(numel * st.dtype.itemsize)
            if len(raw) != numel * st.dtype.itemsize:
                raise ValueError(f"{path}: truncated storage {key!r}")
            st.array = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<")).astype(st.dtype)
    return _materialise(obj)


def _no_storage(info):
    raise pickle.UnpicklingError("unexpected storage reference")


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch ``.pth`` file of tensors into a dict of numpy arrays, without torch.

    Both the zip format (torch >= 1.6) and the legacy format are supported. Only tensors,
    parameters and (ordered) dicts/lists of them can be rebuilt; any other pickled global makes
    this raise ``pickle.UnpicklingError`` (nothing from the file is executed).

    Args:
        path: the ``.pth`` file.

    Returns:
        The file's object with every tensor replaced by a numpy array (for a state dict, an
        ``OrderedDict`` of name to array).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"argument `path`: no file at {path!r}")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)
