"""Read and write the ``.safetensors`` format (Hugging Face) with numpy.

Layout: an unsigned little-endian 64-bit header length ``n``, ``n`` bytes of JSON mapping each
tensor's name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the byte
buffer that follows; an optional ``"__metadata__"`` maps strings to strings), then the buffer.
The reader checks the header length against the file, every shape and offset pair against the
buffer in exact integer arithmetic, and that the tensors tile the buffer without overlaps or
holes (as the format requires), before it reads anything.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from ._errors import WeightFileError, fail
from ._torch import _bfloat16

#: The format's limit on the JSON header (100 MB).
MAX_HEADER = 100_000_000

_DTYPES: dict[str, Any] = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16",
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}


def _dtype(code: str) -> np.dtype:
    d = _DTYPES[code]
    return _bfloat16() if d == "bfloat16" else np.dtype(d)


def _code(dtype: np.dtype) -> str:
    for code in _DTYPES:
        if _dtype(code) == dtype:
            return code
    raise KeyError(dtype)


def _read_exact(f: Any, n: int, source: Any, what: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise fail(source, f"truncated {what}: needs {n} bytes, got {len(b)}")
    return b


def _parse_header(source: Any, raw: bytes, buffer_size: int) -> tuple[dict, dict]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise fail(source, f"the safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise fail(source, "the safetensors header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise fail(source, "__metadata__ must map strings to strings")
    spans = []
    for name, spec in header.items():
        if not isinstance(spec, dict) or set(spec) - {"dtype", "shape", "data_offsets"}:
            raise fail(source, f"tensor {name!r}: expected dtype, shape and data_offsets")
        code = spec.get("dtype")
        if code not in _DTYPES:
            raise fail(source, f"tensor {name!r}: dtype {code!r:.20} is not one of "
                       + ", ".join(_DTYPES))
        shape = spec.get("shape")
        offsets = spec.get("data_offsets")
        ok_shape = isinstance(shape, list) and len(shape) <= 64 and all(
            type(s) is int and s >= 0 for s in shape)
        ok_off = isinstance(offsets, list) and len(offsets) == 2 and all(
            type(o) is int and o >= 0 for o in offsets)
        if not ok_shape:
            raise fail(source, f"tensor {name!r}: shape {shape!r:.60} is not a list of "
                       "integers >= 0")
        if not ok_off:
            raise fail(source, f"tensor {name!r}: data_offsets {offsets!r:.60} is not "
                       "[begin, end] with integers >= 0")
        begin, end = offsets
        count = 1
        for s in shape:
            count *= s
        nbytes = count * _dtype(code).itemsize
        if end < begin or end - begin != nbytes:
            raise fail(source, f"tensor {name!r}: shape {shape} of {code} needs {nbytes} bytes, "
                       f"data_offsets {offsets} give {end - begin}")
        if end > buffer_size:
            raise fail(source, f"tensor {name!r}: data_offsets {offsets} run past the "
                       f"{buffer_size}-byte buffer (truncated file?)")
        spans.append((begin, end, name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else "leaves a hole before it"
            raise fail(source, f"tensor {name!r} at bytes {begin}..{end} {what}")
        pos = end
    if pos != buffer_size:
        raise fail(source, f"the tensors cover {pos} of the buffer's {buffer_size} bytes")
    return header, meta


def load_safetensors(source: str | os.PathLike | bytes, *,
                     with_metadata: bool = False) -> Any:
    """Read a ``.safetensors`` file into a dict of numpy arrays (in the file's order).

    Args:
        source: the file's path, or its bytes.
        with_metadata: also return the header's ``__metadata__`` (a dict of strings).

    Returns:
        ``{name: array}``, or ``({name: array}, metadata)`` with ``with_metadata=True``.

    Raises:
        WeightFileError: a truncated or malformed file (the message names the file and the
            first bad entry).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _load(source, _Bytes(data), len(data), with_metadata)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"argument `source`: got {type(source).__name__}, expected a path or "
                         "bytes.")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"argument `source`: no file at {path!r}")
    with open(path, "rb") as f:
        return _load(path, f, os.fstat(f.fileno()).st_size, with_metadata)


class _Bytes:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int) -> bytes:
        b = self.data[self.pos:self.pos + n]
        self.pos += len(b)
        return b


def _load(source: Any, f: Any, size: int, with_metadata: bool) -> Any:
    if size < 8:
        raise fail(source, f"not a safetensors file: {size} bytes, the header length alone "
                   "takes 8")
    (n,) = struct.unpack("<Q", _read_exact(f, 8, source, "header length"))
    if n > MAX_HEADER or n > size - 8:
        raise fail(source, f"header length {n} exceeds the file ({size} bytes) or the format's "
                   f"limit of {MAX_HEADER} bytes")
    header, meta = _parse_header(source, _read_exact(f, n, source, "header"), size - 8 - n)
    out: dict[str, np.ndarray] = {}
    for name, spec in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = spec["data_offsets"]
        dtype = _dtype(spec["dtype"])
        raw = _read_exact(f, end - begin, source, f"tensor {name!r}")
        if dtype == _bfloat16():
            arr = np.frombuffer(raw, "<u2").astype(np.uint16).view(dtype)
        else:
            arr = np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype)
        out[name] = arr.reshape(spec["shape"])
    ordered = {k: out[k] for k in header}
    return (ordered, meta) if with_metadata else ordered


def save_safetensors(path: str | os.PathLike, tensors: dict[str, Any], *,
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``{name: array}`` as a ``.safetensors`` file (header padded to 8 bytes).

    Args:
        path: the file to write (replaced if it exists).
        tensors: names to arrays (numpy, JAX or anything ``np.asarray`` reads).
        metadata: optional ``__metadata__`` strings.
    """
    if not isinstance(tensors, dict):
        raise ValueError(f"argument `tensors`: got {type(tensors).__name__}, expected a dict of "
                         "name -> array.")
    if metadata is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("argument `metadata`: expected a dict of strings to strings.")
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    arrays, pos = [], 0
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"argument `tensors`: key {name!r} is not a tensor name.")
        a = np.asarray(value)
        try:
            code = _code(a.dtype)
        except KeyError:
            raise ValueError(f"argument `tensors`: {name!r} has dtype {a.dtype}, which "
                             "safetensors cannot store.") from None
        flat = a.reshape(-1)
        raw = (flat.view(np.uint16).astype("<u2") if code == "BF16"
               else flat.astype(a.dtype.newbyteorder("<"))).tobytes()
        header[name] = {"dtype": code, "shape": [int(s) for s in a.shape],
                        "data_offsets": [pos, pos + len(raw)]}
        arrays.append(raw)
        pos += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for raw in arrays:
                f.write(raw)
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, f"writing {path!r}: {e.strerror}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


__all__ = ["MAX_HEADER", "WeightFileError", "load_safetensors", "save_safetensors"]
