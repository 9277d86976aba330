"""sdekit.io: torch-free readers and writers of ``.pth`` and ``.safetensors``, fuzzed.

The fuzz tests generate files (random tensor views, random headers, random truncations and
byte flips) and hold the readers to one property: either the result is exactly what an
independent reference computes from the file's bytes, or a `WeightFileError` naming the file;
never a read outside the buffer, another exception, or a crash.
"""

import collections
import io
import json
import os
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sdekit.io import (
    TorchObject,
    WeightFileError,
    load_safetensors,
    load_torch,
    save_safetensors,
    save_torch,
)

from ._torch_writer import save_legacy, save_view, save_zip

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8,
          np.bool_, ml_dtypes.bfloat16]


def _make(dtype, shape, seed):
    values = np.random.default_rng(seed).standard_normal(shape) * 50
    return np.asarray(values.astype(np.dtype(dtype)))


def _arrays():
    return st.builds(_make, st.sampled_from(DTYPES),
                     hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
                     st.integers(0, 2**16))


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.reshape(-1).view(np.uint8) if a.dtype.kind == "V" else a,
                                  b.reshape(-1).view(np.uint8) if b.dtype.kind == "V" else b)


# ------------------------------------------------------------------------------- round trips
@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=8), _arrays(), max_size=4))
def test_torch_round_trip(tmp_path, state):
    path = tmp_path / "s.pth"
    state = collections.OrderedDict(state)
    save_torch(path, state)
    out = load_torch(path)
    assert isinstance(out, collections.OrderedDict) and list(out) == list(state)
    for k in state:
        _same(out[k], state[k])


@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda s: s != "__metadata__"),
                       _arrays(), max_size=4))
def test_safetensors_round_trip(tmp_path, state):
    path = tmp_path / "s.safetensors"
    save_safetensors(path, state, metadata={"format": "np"})
    out, meta = load_safetensors(path, with_metadata=True)
    assert meta == {"format": "np"} and list(out) == list(state)
    for k in state:
        _same(out[k], state[k])
    assert load_safetensors(path.read_bytes()).keys() == out.keys()


def test_torch_nested_objects(tmp_path):
    obj = {"model": collections.OrderedDict(w=np.ones((2, 3), np.float32)), "step": 7,
           "ema": {"decay": 0.999, "shadow_params": [np.zeros(3, np.float32)]},
           "names": ("a", None, True, 2**40)}
    save_torch(tmp_path / "c.pth", obj)
    out = load_torch(tmp_path / "c.pth")
    assert out["step"] == 7 and out["ema"]["decay"] == 0.999 and out["names"] == obj["names"]
    _same(out["ema"]["shadow_params"][0], obj["ema"]["shadow_params"][0])


@pytest.mark.parametrize("writer", [save_zip, save_legacy])
@pytest.mark.parametrize("transpose", [False, True])
def test_torch_file_roundtrip(tmp_path, writer, transpose):
    rng = np.random.default_rng(0)
    state = collections.OrderedDict(
        w=rng.standard_normal((3, 5)).astype(np.float32),
        b=rng.standard_normal(4),
        n=np.array(7, dtype=np.int64),
        k=rng.standard_normal((2, 3, 1, 7)).astype(np.float32),
    )
    writer(tmp_path / "s.pth", state, transpose_some=transpose)
    out = load_torch(tmp_path / "s.pth")
    assert list(out) == list(state)
    for k, v in state.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape
        np.testing.assert_array_equal(out[k], v)


# ------------------------------------------------------------------------- bounds of a view
def _reference_view(storage, offset, size, stride):
    """The view's elements by explicit index arithmetic, or None if any index is outside the
    storage (the reader must then refuse the file)."""
    if offset < 0 or any(s < 0 for s in size) or any(t < 0 for t in stride):
        return None
    if len(size) != len(stride):
        return None
    idx = np.full(tuple(size), offset, dtype=object)
    for axis, (s, t) in enumerate(zip(size, stride, strict=True)):
        shape = [1] * len(size)
        shape[axis] = s
        idx = idx + (np.arange(s, dtype=object) * t).reshape(shape)
    if idx.size == 0:
        return np.zeros(tuple(size), storage.dtype) if offset <= storage.size else None
    if min(idx.flat) < 0 or max(idx.flat) >= storage.size:
        return None
    return storage[np.asarray(idx, dtype=np.int64)]


_views = st.tuples(
    st.integers(0, 12),  # storage elements
    st.integers(-20, 20),  # offset
    st.lists(st.integers(-3, 6), min_size=0, max_size=3),  # size
    st.lists(st.integers(-7, 9), min_size=0, max_size=3),  # stride
    st.sampled_from([np.float32, np.int64]),
    st.booleans(),  # legacy
)


@FUZZ
@given(_views)
def test_torch_view_bounds(tmp_path, case):
    n, offset, size, stride, dtype, legacy = case
    storage = np.arange(n).astype(dtype)
    path = tmp_path / "v.pth"
    save_view(path, storage, offset, size, stride, legacy=legacy)
    want = _reference_view(storage, offset, size, stride)
    if want is None:
        with pytest.raises(WeightFileError, match="v.pth"):
            load_torch(path)
    else:
        _same(load_torch(path)["t"], want)


@FUZZ
@given(st.integers(0, 8), st.integers(-4, 40), st.booleans())
def test_torch_declared_size_mismatch(tmp_path, n, declared, legacy):
    path = tmp_path / "d.pth"
    storage = np.arange(n, dtype=np.float32)
    save_view(path, storage, 0, (n,), (1,), declared=declared, legacy=legacy)
    if declared == n:
        _same(load_torch(path)["t"], storage)
    else:
        with pytest.raises(WeightFileError, match="d.pth"):
            load_torch(path)


def test_negative_stride_cannot_leak_memory(tmp_path):
    """The crafted files of the reliability report: negative strides and offsets that an
    overrun check on the last element alone lets through."""
    storage = np.arange(4, dtype=np.float32)
    for offset, size, stride in [(0, (1000,), (-1,)), (-2**20, (4,), (1,)),
                                 (3, (2**20,), (-1,)), (0, (2, 2), (2**62, 1))]:
        path = tmp_path / "leak.pth"
        save_view(path, storage, offset, size, stride)
        with pytest.raises(WeightFileError):
            load_torch(path)


# --------------------------------------------------------------- damaged and hostile files
def _valid_files(tmp_path):
    state = collections.OrderedDict(a=np.arange(6, dtype=np.float32).reshape(2, 3),
                                    b=np.arange(3, dtype=np.int64))
    save_torch(tmp_path / "z.pth", state)
    save_legacy(tmp_path / "l.pth", state)
    save_safetensors(tmp_path / "s.safetensors", dict(state))
    return {k: (tmp_path / f).read_bytes() for k, f in
            (("zip", "z.pth"), ("legacy", "l.pth"), ("safetensors", "s.safetensors"))}


@FUZZ
@given(kind=st.sampled_from(["zip", "legacy", "safetensors"]), data=st.data())
def test_damaged_files_error_or_read(tmp_path, kind, data):
    blob = bytearray(_valid_files(tmp_path)[kind])
    how = data.draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if how == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = (blob[i] ^ (1 << data.draw(st.integers(0, 7)))) if how == "flip" else \
                data.draw(st.integers(0, 255))
    path = tmp_path / f"bad.{kind}"
    path.write_bytes(bytes(blob))
    load = load_safetensors if kind == "safetensors" else load_torch
    try:
        out = load(path)
    except WeightFileError as e:
        assert str(path) in str(e)
        return
    # a flip inside tensor bytes still reads: then the shapes are the file's own
    assert all(isinstance(v, np.ndarray) for v in out.values())


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_code_payload_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Payload(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if legacy:
        buf = io.BytesIO()
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(obj, buf, protocol=2)
        buf.write(payload)
        path.write_bytes(buf.getvalue())
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", payload)
    for objects in (False, True):
        with pytest.raises(WeightFileError, match=r"evil\.pth.*refusing to load the global"):
            load_torch(path, objects=objects)
    assert not marker.exists()


def test_torch_objects_are_inert_records(tmp_path):
    """``objects=True`` reads TorchScript/Lightning classes as records; strict mode names them."""
    body = (b"\x80\x02c__torch__.torch.nn.modules.conv\nConv2d\n)\x81}X\x01\x00\x00\x00k"
            b"J\x03\x00\x00\x00sb.")
    with zipfile.ZipFile(tmp_path / "ts.pt", "w") as zf:
        zf.writestr("ts/data.pkl", body)
    with pytest.raises(WeightFileError, match="__torch__.torch.nn.modules.conv.Conv2d"):
        load_torch(tmp_path / "ts.pt")
    obj = load_torch(tmp_path / "ts.pt", objects=True)
    assert isinstance(obj, TorchObject)
    assert obj.torch_class == "__torch__.torch.nn.modules.conv.Conv2d" and obj.state == {"k": 3}


# ------------------------------------------------------------------- safetensors headers
_specs = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "X9", 7]),
    "shape": st.one_of(st.lists(st.integers(-2, 5), max_size=3), st.just("x")),
    "data_offsets": st.one_of(st.lists(st.integers(-4, 64), min_size=0, max_size=3),
                              st.just(None)),
})


@FUZZ
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), _specs, max_size=3),
       st.integers(0, 64), st.integers(-3, 3))
def test_safetensors_random_headers(tmp_path, header, buffer_size, header_len_delta):
    raw = json.dumps(header).encode()
    buffer = bytes(range(256))[:buffer_size]
    blob = struct.pack("<Q", max(0, len(raw) + header_len_delta)) + raw + buffer
    try:
        out = load_safetensors(blob)
    except WeightFileError:
        return
    # accepted: the tensors must tile the buffer exactly and hold its bytes
    assert header_len_delta == 0
    pos = 0
    for name, spec in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = spec["data_offsets"]
        assert begin == pos and end <= buffer_size
        assert out[name].tobytes() == buffer[begin:end]
        pos = end
    assert pos == buffer_size


def test_errors_name_the_file(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightFileError, match="empty.pth"):
        load_torch(tmp_path / "empty.pth")
    (tmp_path / "x.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(WeightFileError, match="x.safetensors.*header length"):
        load_safetensors(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_torch(tmp_path / "nothing.pth")
    with pytest.raises(ValueError, match="argument `state`"):
        save_torch(tmp_path / "o.pth", {"f": object()})
