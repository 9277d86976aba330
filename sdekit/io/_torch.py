"""Read and write PyTorch's ``torch.save`` files without torch, and without running code.

Two on-disk formats are read:

- the **zip** format (torch >= 1.6; also ``.ckpt`` files of PyTorch Lightning and TorchScript
  archives): ``<name>/data.pkl`` (the pickled object, whose tensors point at storages through
  pickle *persistent ids*) plus one raw file per storage, ``<name>/data/<key>``;
- the **legacy** format (torch < 1.6; e.g. pytorch-fid's Inception weights): five pickles in a
  row (a magic number, the protocol version 1001, system information, the object, the list of
  storage keys) followed by each storage as an int64 element count and its raw bytes.

**Nothing in a file is executed.** The unpickler resolves no real Python object: a global is
either one of a few stand-ins written here (the tensor-rebuilding functions, the storage types,
``OrderedDict``, numpy scalars and arrays, harmless builtins such as ``set``), an *inert record*
([`TorchObject`][sdekit.io.TorchObject]) for the classes of a few known-harmless namespaces when
``objects=True``, or an error naming it.

**Nothing is read outside a buffer.** Every storage's size is checked against the bytes the file
holds, and every tensor's offset, sizes and strides against its storage, in exact integer
arithmetic, before any view is made.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._errors import WeightFileError, fail

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_MAX_DIMS = 64
#: A tensor may hold at most this many times its storage's elements (stride-0, expanded views).
_MAX_EXPANSION = 64


def _bfloat16() -> np.dtype:
    import ml_dtypes  # installed with jax

    return np.dtype(ml_dtypes.bfloat16)


#: torch storage class name -> numpy dtype (little-endian in the file).
_STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
}
#: torch dtype attribute (``torch.float32``, written as a global) -> its name.
_TORCH_DTYPE_NAMES = frozenset({
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long",
    "int32", "int", "int16", "short", "int8", "uint8", "bool", "complex64", "complex128",
})


def _storage_dtype(name: str) -> np.dtype:
    d = _STORAGE_DTYPES[name]
    return _bfloat16() if d == "bfloat16" else np.dtype(d)


class TorchObject:
    """An inert record of an object of a class that is not a tensor or a container.

    Read only with ``objects=True`` (TorchScript modules, Lightning hyper-parameters, paths):
    nothing of the class is imported or run. ``torch_class`` is the class's qualified name,
    ``args`` what it was constructed with, ``state`` what was restored into it (often a dict of
    attributes), and ``items`` / ``elements`` what was stored in it as a mapping / sequence.
    """

    torch_class: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any):
        self = object.__new__(cls)
        self.args = args
        self.kwargs = kwargs
        self.state = None
        self.items = {}
        self.elements = []
        return self

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def __repr__(self) -> str:
        return f"TorchObject({self.torch_class})"


#: Namespaces whose classes become inert records with ``objects=True``.
_INERT_PREFIXES = ("__torch__.", "omegaconf.", "pathlib.", "lightning.", "pytorch_lightning.",
                   "lightning_fabric.", "argparse.", "typing.", "enum.", "ml_collections.")
_INERT_TYPES: dict[str, type] = {}


def _inert_class(qualname: str) -> type:
    cls = _INERT_TYPES.get(qualname)
    if cls is None:
        cls = type("TorchObject", (TorchObject,), {"torch_class": qualname})
        _INERT_TYPES[qualname] = cls
    return cls


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _storage_dtype(name)


class _Storage:
    """A storage: its dtype, its element count as the pickle declares it, and (once read) its
    elements as a 1-D array."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array: np.ndarray | None = None


def _int(value: Any, what: str, *, lo: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise pickle.UnpicklingError(f"{what}: got {value!r}, expected an integer")
    v = int(value)
    if v < lo:
        raise pickle.UnpicklingError(f"{what}: got {v}, expected an integer >= {lo}")
    return v


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise pickle.UnpicklingError(f"{what}: got {type(value).__name__}, expected a tuple")
    if len(value) > _MAX_DIMS:
        raise pickle.UnpicklingError(f"{what}: {len(value)} dimensions, at most {_MAX_DIMS}")
    return tuple(_int(v, what) for v in value)


class _TensorRef:
    """A tensor as the pickle describes it; checked, then read by `materialise`."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor was rebuilt without a storage")
        self.storage = storage
        self.offset = _int(offset, "tensor storage offset")
        self.size = _int_tuple(size, "tensor size")
        self.stride = _int_tuple(stride, "tensor stride")
        if len(self.size) != len(self.stride):
            raise pickle.UnpicklingError(
                f"tensor size {self.size} and stride {self.stride} differ in length")

    def materialise(self) -> np.ndarray:
        st = self.storage
        base = st.array
        if base is None:
            raise pickle.UnpicklingError(
                f"a tensor refers to storage {st.key!r}, which the file does not hold")
        numel = int(base.shape[0])
        count = 1
        for s in self.size:
            count *= s
        if count == 0:
            if self.offset > numel:
                raise pickle.UnpicklingError(
                    f"empty tensor at offset {self.offset} beyond its storage of {numel} elements")
            return np.zeros(self.size, st.dtype)
        last = self.offset + sum((s - 1) * t for s, t in zip(self.size, self.stride, strict=True))
        if last >= numel:  # strides and offset are >= 0: the first element is at `offset`
            raise pickle.UnpicklingError(
                f"tensor of size {self.size}, stride {self.stride} at offset {self.offset} "
                f"reads element {last} of a storage of {numel} elements")
        if count > _MAX_EXPANSION * max(numel, 1024):
            raise pickle.UnpicklingError(
                f"tensor of size {self.size} has {count} elements from a storage of {numel}")
        if self.offset == 0 and count == numel and self.stride == _c_strides(self.size):
            return base.reshape(self.size)  # the whole storage, in order: no copy
        item = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=tuple(t * item for t in self.stride),
            writeable=False)
        return np.array(view, copy=True)


def _c_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for s in reversed(size):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError("a parameter was rebuilt from something other than a tensor")
    return data


def _identity_list(values):
    return list(values)


def _restore_type_tag(value, type_str=None):
    return value


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in (
            "latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError("_codecs.encode is only read for latin-1 byte strings")
    return text.encode("latin-1")


class _NumpyDtype:
    """``numpy.dtype(...)`` as pickled: the type string, then the byte order from its state."""

    def __init__(self, spec, align=False, copy=False):
        if not isinstance(spec, str) or len(spec) > 8:
            raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not a plain numeric type")
        self.spec, self.order = spec, "="

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]

    def dtype(self) -> np.dtype:
        try:
            d = np.dtype(self.spec)
        except TypeError:
            raise pickle.UnpicklingError(f"unknown numpy dtype {self.spec!r}") from None
        if d.kind not in "biufc":
            raise pickle.UnpicklingError(f"numpy dtype {self.spec!r} is not numeric")
        return d.newbyteorder(self.order) if self.order in "<>" else d


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("a numpy scalar needs a numeric dtype and its bytes")
    d = dtype.dtype()
    if len(data) != d.itemsize:
        raise pickle.UnpicklingError(
            f"a numpy {d} scalar needs {d.itemsize} bytes, got {len(data)}")
    return np.frombuffer(bytes(data), d)[0].astype(d.newbyteorder("="))


class _NumpyArray:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` followed by its state
    ``(version, shape, dtype, fortran, raw bytes)``."""

    def __init__(self, *args):
        self.array: np.ndarray | None = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("a numpy array's state is not (version, shape, dtype, "
                                         "fortran, data)")
        _version, shape, dtype, fortran, raw = state
        shape = _int_tuple(shape, "numpy array shape")
        if not isinstance(dtype, _NumpyDtype) or not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("a numpy array needs a numeric dtype and raw bytes")
        d = dtype.dtype()
        count = 1
        for s in shape:
            count *= s
        if count * d.itemsize != len(raw):
            raise pickle.UnpicklingError(
                f"a numpy array of shape {shape} and dtype {d} needs {count * d.itemsize} bytes, "
                f"got {len(raw)}")
        flat = np.frombuffer(bytes(raw), d).astype(d.newbyteorder("="))
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _numpy_reconstruct(cls, shape, dtype_code):
    return _NumpyArray()


_BUILTINS = {"set": set, "frozenset": frozenset, "complex": complex, "slice": slice,
             "bytearray": bytearray, "range": range}

_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): lambda *a: {},
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("torch", "device"): lambda *a: ":".join(str(v) for v in a),
    ("torch.jit._pickle", "build_intlist"): _identity_list,
    ("torch.jit._pickle", "build_doublelist"): _identity_list,
    ("torch.jit._pickle", "build_boollist"): _identity_list,
    ("torch.jit._pickle", "build_tensorlist"): _identity_list,
    ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): _NumpyDtype,
    ("numpy", "ndarray"): _NumpyArray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}
_ALLOWED.update({("builtins", k): v for k, v in _BUILTINS.items()})
_ALLOWED.update({("__builtin__", k): v for k, v in _BUILTINS.items()})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, storage_loader, objects: bool):
        super().__init__(f, encoding="latin1")
        self._storage_loader = storage_loader
        self._objects = objects

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return f"torch.{name}"
        qual = f"{module}.{name}"
        if self._objects and qual.startswith(_INERT_PREFIXES):
            return _inert_class(qual)
        hint = ("" if self._objects else
                "; objects=True reads the classes of TorchScript, Lightning, omegaconf and "
                "pathlib as inert records")
        raise pickle.UnpicklingError(
            f"refusing to load the global {qual}: only tensors, numbers, strings and containers "
            f"of them are read from a weight file (nothing in it is executed){hint}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        return self._storage_loader(pid[1:])


def _declared_storage(info: tuple, storages: dict[str, _Storage]) -> _Storage:
    storage_type, key, _location, numel = info[:4]
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError(f"unknown storage type {storage_type!r:.80}")
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise pickle.UnpicklingError(f"storage key {key!r:.80} is not a string")
    key = str(key)
    numel = _int(numel, f"element count of storage {key!r}")
    st = storages.get(key)
    if st is None:
        st = storages[key] = _Storage(key, storage_type.dtype, numel)
    elif st.dtype != storage_type.dtype or st.numel != numel:
        raise pickle.UnpicklingError(f"storage {key!r} is declared twice with different types "
                                     "or sizes")
    return st


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.materialise()
    if isinstance(obj, _NumpyArray):
        if obj.array is None:
            raise pickle.UnpicklingError("a numpy array without its data")
        return obj.array
    if isinstance(obj, _NumpyDtype):
        return obj.dtype()
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[_materialise(k)] = _materialise(v)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_materialise(v) for v in obj)
    if isinstance(obj, TorchObject):
        obj.args = tuple(_materialise(a) for a in obj.args)
        obj.kwargs = {k: _materialise(v) for k, v in obj.kwargs.items()}
        obj.state = _materialise(obj.state)
        obj.items = {_materialise(k): _materialise(v) for k, v in obj.items.items()}
        obj.elements = [_materialise(v) for v in obj.elements]
        return obj
    return obj


def _finish(source: Any, obj: Any) -> Any:
    try:
        return _materialise(obj)
    except RecursionError:
        raise fail(source, "the pickled object is nested too deeply") from None
    except pickle.UnpicklingError as e:
        raise fail(source, str(e)) from None


def _frombuffer(raw: bytes | bytearray, dtype: np.dtype, big_endian: bool) -> np.ndarray:
    """The elements of ``raw`` (a writable ``bytearray`` is used in place when its byte order
    is the machine's)."""
    order = ">" if big_endian else "<"
    native = (order == "<") == (np.little_endian)
    if dtype == _bfloat16():
        # bfloat16 has no byte-order variant: read as uint16 and reinterpret
        u = np.frombuffer(raw, dtype=np.dtype(np.uint16).newbyteorder(order))
        return (u if native and isinstance(raw, bytearray) else u.astype(np.uint16)).view(dtype)
    if dtype.itemsize == 1 or native:
        a = np.frombuffer(raw, dtype=dtype)
        return a if isinstance(raw, bytearray) else a.copy()
    return np.frombuffer(raw, dtype=dtype.newbyteorder(order)).astype(dtype)


def _read_member(zf: zipfile.ZipFile, member: str, nbytes: int) -> bytearray:
    """A stored zip member read straight into a buffer of its (checked) size."""
    buf = bytearray(nbytes)
    view = memoryview(buf)
    with zf.open(member) as fh:
        got = 0
        while got < nbytes:
            n = fh.readinto(view[got:])
            if not n:
                raise pickle.UnpicklingError(f"{member} is truncated")
            got += n
    return buf


def _load_zip(source: Any, zf: zipfile.ZipFile, objects: bool) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
    if len(pkl) != 1:
        raise fail(source, f"a zip weight file holds exactly one <name>/data.pkl, found {len(pkl)}")
    prefix = pkl[0][: -len("data.pkl")]
    big_endian = False
    if f"{prefix}byteorder" in names:
        order = zf.read(f"{prefix}byteorder").strip()
        if order not in (b"little", b"big"):
            raise fail(source, f"unknown byte order {order[:20]!r}")
        big_endian = order == b"big"
    storages: dict[str, _Storage] = {}

    def load_storage(info):
        st = _declared_storage(info, storages)
        if st.array is None:
            member = f"{prefix}data/{st.key}"
            try:
                zinfo = zf.getinfo(member)
            except KeyError:
                raise pickle.UnpicklingError(f"storage {st.key!r} is missing ({member})") from None
            want = st.numel * st.dtype.itemsize
            if zinfo.compress_type != zipfile.ZIP_STORED:
                raise pickle.UnpicklingError(f"storage {st.key!r} is compressed in the zip; "
                                             "torch writes storages uncompressed")
            if zinfo.file_size != want:
                raise pickle.UnpicklingError(
                    f"storage {st.key!r} declares {st.numel} elements of {st.dtype} ({want} "
                    f"bytes) but holds {zinfo.file_size} bytes")
            st.array = _frombuffer(_read_member(zf, member, want), st.dtype, big_endian)
        return st

    raw = zf.read(pkl[0])
    obj = _RestrictedUnpickler(io.BytesIO(raw), load_storage, objects).load()
    return _finish(source, obj)


def _load_legacy(source: Any, f: Any, size: int, objects: bool) -> Any:
    def unpickle(loader):
        return _RestrictedUnpickler(f, loader, objects).load()

    magic = unpickle(_no_storage)
    if magic != LEGACY_MAGIC:
        raise fail(source, "not a PyTorch weight file (neither a zip archive nor the legacy "
                   "format's magic number)")
    version = unpickle(_no_storage)
    if version != LEGACY_PROTOCOL:
        raise fail(source, f"unsupported legacy protocol version {version!r:.40}")
    info = unpickle(_no_storage)
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise fail(source, "big-endian legacy files are not supported")
    storages: dict[str, _Storage] = {}

    def load_storage(info):
        if len(info) > 4 and info[4] is not None:
            raise pickle.UnpicklingError("storage views (torch < 0.4 files) are not supported")
        return _declared_storage(info, storages)

    obj = unpickle(load_storage)
    keys = unpickle(_no_storage)
    if not isinstance(keys, list):
        raise fail(source, "the legacy storage key list is missing")
    for key in keys:
        st = storages.get(str(key))
        if st is None:
            raise fail(source, f"storage {key!r:.40} is listed but no tensor uses it")
        head = f.read(8)
        if len(head) != 8:
            raise fail(source, f"truncated before storage {st.key!r}")
        (numel,) = struct.unpack("<q", head)
        if numel != st.numel:
            raise fail(source, f"storage {st.key!r} holds {numel} elements, the pickle declares "
                       f"{st.numel}")
        nbytes = numel * st.dtype.itemsize
        if nbytes > size - f.tell():
            raise fail(source, f"truncated storage {st.key!r}: needs {nbytes} bytes, "
                       f"{size - f.tell()} left")
        st.array = _frombuffer(f.read(nbytes), st.dtype, False)
    return _finish(source, obj)


def _no_storage(info):
    raise pickle.UnpicklingError("unexpected storage reference")


def load_torch(source: str | os.PathLike | bytes, *, objects: bool = False) -> Any:
    """Read a file written by ``torch.save`` (``.pth``, ``.pt``, ``.ckpt``, or a TorchScript
    archive), without torch and without executing anything from the file.

    Both the zip format (torch >= 1.6) and the legacy format are read. Tensors come back as
    numpy arrays (``bfloat16`` as ``ml_dtypes.bfloat16``), with every offset, size and stride
    checked against the storage first; numbers, strings, lists, tuples, dicts and numpy scalars
    as themselves.

    Args:
        source: the file's path, or its bytes.
        objects: also read the objects of a few known-harmless namespaces (TorchScript modules
            ``__torch__.*``, PyTorch Lightning, ``omegaconf``, ``pathlib``, ``argparse``) as
            inert [`TorchObject`][sdekit.io.TorchObject] records instead of refusing them.
            Nothing of those classes is imported or run either way.

    Returns:
        The file's object with every tensor replaced by a numpy array (for a state dict, an
        ``OrderedDict`` of name to array).

    Raises:
        WeightFileError: the file is truncated or malformed, a tensor does not fit its storage,
            or the file holds a global that is not read (the message names it).
    """
    if isinstance(objects, bool) is False:
        raise ValueError(f"argument `objects`: got {objects!r}, expected True or False.")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _load(source, io.BytesIO(data), len(data), objects)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"argument `source`: got {type(source).__name__}, expected a path or "
                         "bytes.")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"argument `source`: no file at {path!r}")
    with open(path, "rb") as f:
        return _load(path, f, os.fstat(f.fileno()).st_size, objects)


def _load(source: Any, f: Any, size: int, objects: bool) -> Any:
    try:
        if zipfile.is_zipfile(f):
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                return _load_zip(source, zf, objects)
        f.seek(0)
        return _load_legacy(source, f, size, objects)
    except WeightFileError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile,
            struct.error, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        msg = str(e) or type(e).__name__
        if isinstance(e, EOFError):
            msg = "truncated (the pickle ends early)"
        raise fail(source, f"not a readable PyTorch weight file: {msg}") from None


# ------------------------------------------------------------------------------------- writing
_DTYPE_STORAGE = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage", np.dtype(np.complex64): "ComplexFloatStorage",
    np.dtype(np.complex128): "ComplexDoubleStorage",
}


class _PickleWriter:
    """Emits protocol-2 pickle opcodes for containers of numbers, strings and arrays, with
    tensors as torch writes them (globals by name: nothing of torch is needed)."""

    def __init__(self):
        self.out = io.BytesIO()
        self.storages: list[tuple[str, np.ndarray]] = []

    def w(self, b: bytes) -> None:
        self.out.write(b)

    def global_(self, module: str, name: str) -> None:
        self.w(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def str_(self, s: str) -> None:
        b = s.encode("utf-8")
        self.w(b"X" + struct.pack("<I", len(b)) + b)

    def int_(self, v: int) -> None:
        if -(2**31) <= v < 2**31:
            self.w(b"J" + struct.pack("<i", v))
        else:
            b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            if len(b) > 255:
                raise ValueError(f"argument `state`: integer {v} is too large to write")
            self.w(b"\x8a" + bytes([len(b)]) + b)

    def ordered_dict(self) -> None:
        self.global_("collections", "OrderedDict")
        self.w(b")R")  # EMPTY_TUPLE, REDUCE

    def obj(self, v: Any, where: str) -> None:
        if v is None:
            self.w(b"N")
        elif isinstance(v, (bool, np.bool_)):
            self.w(b"\x88" if v else b"\x89")
        elif isinstance(v, (int, np.integer)):
            self.int_(int(v))
        elif isinstance(v, (float, np.floating)) and np.ndim(v) == 0:
            self.w(b"G" + struct.pack(">d", float(v)))
        elif isinstance(v, str):
            self.str_(v)
        elif isinstance(v, Mapping):
            if isinstance(v, collections.OrderedDict):
                self.ordered_dict()
            else:
                self.w(b"}")
            if v:
                self.w(b"(")
                for k, item in v.items():
                    if not isinstance(k, (str, int)) or isinstance(k, bool):
                        raise ValueError(f"argument `state`: key {k!r} at {where or 'the top'} "
                                         "is not a string or an integer")
                    self.obj(k, where)
                    self.obj(item, f"{where}.{k}" if where else str(k))
                self.w(b"u")  # SETITEMS
        elif isinstance(v, list):
            self.w(b"]")
            if v:
                self.w(b"(")
                for i, item in enumerate(v):
                    self.obj(item, f"{where}[{i}]")
                self.w(b"e")  # APPENDS
        elif isinstance(v, tuple):
            self.w(b"(")
            for i, item in enumerate(v):
                self.obj(item, f"{where}[{i}]")
            self.w(b"t")
        else:
            a = np.asarray(v) if not isinstance(v, (bytes, set, frozenset)) else None
            if a is None or (a.dtype.kind not in "biufc" and a.dtype != _bfloat16()):
                raise ValueError(f"argument `state`: {where or 'the object'} is a "
                                 f"{type(v).__name__}; only arrays, numbers, strings, None and "
                                 "dicts/lists/tuples of them can be written")
            self.tensor(a, where)

    def tensor(self, a: np.ndarray, where: str) -> None:
        if a.dtype == _bfloat16():
            storage = "BFloat16Storage"
            flat = np.ascontiguousarray(a).reshape(-1).view(np.uint16).astype("<u2")
        elif a.dtype in _DTYPE_STORAGE:
            storage = _DTYPE_STORAGE[a.dtype]
            flat = np.ascontiguousarray(a).reshape(-1).astype(a.dtype.newbyteorder("<"))
        else:
            raise ValueError(f"argument `state`: array {where!r} has dtype {a.dtype}, which "
                             "torch has no storage for")
        key = str(len(self.storages))
        self.storages.append((key, flat))
        stride, acc = [], 1
        for s in reversed(a.shape):
            stride.append(acc)
            acc *= int(s)
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.w(b"(")
        self.w(b"(")  # the persistent id tuple
        self.str_("storage")
        self.global_("torch", storage)
        self.str_(key)
        self.str_("cpu")
        self.int_(int(a.size))
        self.w(b"tQ")  # TUPLE, BINPERSID
        self.int_(0)
        self.obj(tuple(int(s) for s in a.shape), where)
        self.obj(tuple(reversed(stride)), where)
        self.w(b"\x89")  # requires_grad=False
        self.ordered_dict()  # backward hooks
        self.w(b"tR")  # TUPLE, REDUCE


def _aligned_info(zf: zipfile.ZipFile, name: str, align: int = 64) -> zipfile.ZipInfo:
    """A stored entry whose data starts at a multiple of ``align`` bytes (as torch writes)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    header = 30 + len(name.encode()) + 4  # local header, name, the padding field's own header
    pad = (-(zf.fp.tell() + header)) % align
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
    return info


def save_torch(path: str | os.PathLike, state: Any, *, archive_name: str = "archive") -> None:
    """Write ``state`` in ``torch.save``'s zip format, without torch.

    The file is what ``torch.save(state, path)`` writes for the same tensors (read by
    ``torch.load(path, weights_only=True)`` and by [`load_torch`][sdekit.io.load_torch]):
    arrays become tensors, and dicts (``OrderedDict`` kept), lists, tuples, numbers, strings
    and ``None`` are written as themselves.

    Args:
        path: the file to write (replaced if it exists).
        state: the object, typically a state dict ``{name: array}``.
        archive_name: the archive's top-level folder (torch uses the file's stem or
            ``archive``).
    """
    if not isinstance(archive_name, str) or not archive_name or "/" in archive_name:
        raise ValueError(f"argument `archive_name`: got {archive_name!r}, expected a non-empty "
                         "name without '/'.")
    pw = _PickleWriter()
    pw.w(b"\x80\x02")  # PROTO 2
    pw.obj(state, "")
    pw.w(b".")
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(_aligned_info(zf, f"{archive_name}/data.pkl"), pw.out.getvalue())
            zf.writestr(_aligned_info(zf, f"{archive_name}/byteorder"), b"little")
            for key, flat in pw.storages:
                zf.writestr(_aligned_info(zf, f"{archive_name}/data/{key}"), flat.tobytes())
            zf.writestr(_aligned_info(zf, f"{archive_name}/version"), b"3\n")
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, f"writing {path!r}: {e.strerror}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


__all__ = ["TorchObject", "WeightFileError", "load_torch", "save_torch"]
