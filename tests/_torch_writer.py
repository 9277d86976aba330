"""A tiny writer of PyTorch's ``.pth`` formats (zip and legacy) for tests; torch is not needed.

It emits exactly what ``torch.save`` emits for a dict of tensors: the pickle references the
globals ``torch._utils._rebuild_tensor_v2``, ``collections.OrderedDict`` and ``torch.<T>Storage``
and points at storages through persistent ids. Fake ``torch`` modules are put in ``sys.modules``
only while pickling, so the globals are written by name.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
          np.dtype(np.int64): "LongStorage", np.dtype(np.float16): "HalfStorage"}


@contextlib.contextmanager
def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in _NAMES.values():
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, torch, storage: _Storage, shape, stride, offset=0):
        self.torch, self.storage, self.shape, self.stride, self.offset = (
            torch, storage, shape, stride, offset)

    def __reduce__(self):
        return (self.torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, tuple(self.shape), tuple(self.stride), False,
                 collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def __init__(self, f, torch, legacy):
        super().__init__(f, protocol=2)
        self.torch, self.legacy = torch, legacy

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            st = getattr(self.torch, _NAMES[obj.array.dtype])
            pid = ("storage", st, obj.key, "cpu", getattr(obj, "declared", obj.array.size))
            return pid + (None,) if self.legacy else pid
        return None


def _tensors(torch, state: dict, transpose_some: bool):
    storages, out = [], collections.OrderedDict()
    for i, (name, arr) in enumerate(state.items()):
        arr = np.asarray(arr)
        if arr.dtype not in _NAMES:
            arr = arr.astype(np.float32)
        if transpose_some and arr.ndim == 2:
            # store the transpose and describe the tensor with swapped strides (non-contiguous)
            st = _Storage(str(i), np.ascontiguousarray(arr.T).reshape(-1))
            tensor = _Tensor(torch, st, arr.shape, (1, arr.shape[0]))
        else:
            st = _Storage(str(i), np.ascontiguousarray(arr).reshape(-1))
            strides = [int(np.prod(arr.shape[j + 1:], dtype=np.int64)) for j in range(arr.ndim)]
            tensor = _Tensor(torch, st, arr.shape, strides)
        storages.append(st)
        out[name] = tensor
    return storages, out


def save_zip(path, state: dict, *, transpose_some: bool = False) -> None:
    """``torch.save(state, path)`` in the zip format (torch >= 1.6)."""
    with _fake_torch() as torch:
        storages, obj = _tensors(torch, state, transpose_some)
        buf = io.BytesIO()
        _Pickler(buf, torch, legacy=False).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/version", "3\n")
        for st in storages:
            raw = st.array.astype(st.array.dtype.newbyteorder("<")).tobytes()
            zf.writestr(f"archive/data/{st.key}", raw)


def save_legacy(path, state: dict, *, transpose_some: bool = False) -> None:
    """``torch.save(state, path, _use_new_zipfile_serialization=False)``."""
    with _fake_torch() as torch:
        storages, obj = _tensors(torch, state, transpose_some)
        with open(path, "wb") as f:
            pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
            pickle.dump(1001, f, protocol=2)
            pickle.dump({"protocol_version": 1001, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
            _Pickler(f, torch, legacy=True).dump(obj)
            pickle.dump([st.key for st in storages], f, protocol=2)
            for st in storages:
                f.write(struct.pack("<q", st.array.size))
                f.write(st.array.tobytes())


def save_view(path, storage: np.ndarray, offset: int, size, stride, *, declared=None,
              legacy: bool = False) -> None:
    """A file holding one tensor ``t`` that views ``storage`` with any (possibly invalid)
    ``offset``, ``size`` and ``stride``; ``declared`` overrides the storage's element count in
    the pickle. For fuzzing the reader's bounds checks."""
    storage = np.ascontiguousarray(storage).reshape(-1)
    with _fake_torch() as torch:
        st = _Storage("0", storage)
        if declared is not None:
            st.declared = declared
        obj = collections.OrderedDict(t=_Tensor(torch, st, tuple(size), tuple(stride), offset))
        buf = io.BytesIO()
        pickler = _Pickler(buf, torch, legacy=legacy)
        pickler.dump(obj)
    if legacy:
        with open(path, "wb") as f:
            for head in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                pickle.dump(head, f, protocol=2)
            f.write(buf.getvalue())
            pickle.dump(["0"], f, protocol=2)
            f.write(struct.pack("<q", getattr(st, "declared", storage.size)))
            f.write(storage.tobytes())
        return
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/data/0", storage.tobytes())
