"""Atomic single-file checkpoints: a JSON header line followed by equinox-serialised leaves.

Format version 2: the header carries the sha256 and byte length of the array data that follows
it, and [`restore_checkpoint`][sdekit.train.restore_checkpoint] verifies both before using a
single byte of it. Version 1 files (no hash) are still read.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pathlib
import re
import tempfile
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._state import TrainState

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "restore_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "read_header",
    "clean_orphan_tmp_files",
]

FORMAT = "sdekit-train-checkpoint"
VERSION = 3
_NAME = re.compile(r"^ckpt_(\d+)\.eqx$")
_TMP = re.compile(r"^\.ckpt_\d+\.eqx\..*\.tmp$")


class CheckpointError(ValueError):
    """A checkpoint file is damaged: bad header, truncated, or its data fails the sha256 check.

    Attributes:
        path: the checkpoint file.
    """

    def __init__(self, path: pathlib.Path, reason: str):
        self.path = pathlib.Path(path)
        super().__init__(f"checkpoint {path} is damaged: {reason}")


def _checkpoint_name(step: int) -> str:
    return f"ckpt_{step:09d}.eqx"


def list_checkpoints(directory: str | os.PathLike) -> list[pathlib.Path]:
    """Checkpoint files in ``directory`` (``ckpt_<step>.eqx``), oldest step first."""
    d = pathlib.Path(directory)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> pathlib.Path | None:
    """The checkpoint with the highest step in ``directory``, or ``None`` if there is none."""
    ckpts = list_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def clean_orphan_tmp_files(directory: str | os.PathLike) -> list[pathlib.Path]:
    """Delete the temporary files (``.ckpt_<step>.eqx.*.tmp``) a killed write left behind.

    Only files matching the temporary-name pattern of
    [`save_checkpoint`][sdekit.train.save_checkpoint] are touched; finished checkpoints never.

    Args:
        directory: checkpoint directory (missing is fine).

    Returns:
        The paths removed.
    """
    d = pathlib.Path(directory)
    if not d.is_dir() or jax.process_index() != 0:
        return []
    removed = []
    for p in d.iterdir():
        if _TMP.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _to_host(x: Any) -> Any:
    """A host copy of a (possibly multi-host sharded) array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return x


def _is_sharded(x: Any) -> bool:
    return isinstance(x, jax.Array) and not x.is_fully_replicated and x.ndim > 0


def _index_bounds(index: tuple, shape: tuple) -> list[list[int]]:
    return [list(sl.indices(n)[:2]) for sl, n in zip(index, shape, strict=True)]


def _split_shards(tree: Any) -> tuple[Any, list[dict], list[bytes]]:
    """Replace every sharded array leaf by an empty placeholder and collect this process's
    unique shards (``replica_id == 0``) as raw bytes: nothing is gathered across devices or
    hosts. Returns ``(tree, shard_table, blobs)``."""
    leaves, treedef = jax.tree.flatten(tree)
    table, blobs = [], []
    for i, x in enumerate(leaves):
        if not _is_sharded(x):
            continue
        pieces = []
        for shard in x.addressable_shards:
            if shard.replica_id != 0:
                continue
            data = np.ascontiguousarray(np.asarray(shard.data))
            pieces.append({"index": _index_bounds(shard.index, x.shape), "nbytes": data.nbytes})
            blobs.append(data.tobytes())
        table.append({"leaf": i, "shape": list(x.shape), "dtype": str(x.dtype), "pieces": pieces})
        leaves[i] = np.zeros((0,), x.dtype)
    return jax.tree.unflatten(treedef, leaves), table, blobs


def _assemble(entry: dict, pieces: list[tuple[list[list[int]], np.ndarray]], like: Any) -> Any:
    """A sharded leaf rebuilt from its pieces, placed like ``like`` (read per device shard: each
    device gets only the region it holds)."""
    shape, dtype = tuple(entry["shape"]), np.dtype(entry["dtype"])

    def region(index: tuple) -> np.ndarray:
        bounds = [sl.indices(n)[:2] for sl, n in zip(index, shape, strict=True)]
        out = np.empty([b - a for a, b in bounds], dtype)
        filled = 0
        for pb, arr in pieces:
            lo = [max(a, p0) for (a, _), (p0, _) in zip(bounds, pb, strict=True)]
            hi = [min(b, p1) for (_, b), (_, p1) in zip(bounds, pb, strict=True)]
            if any(h <= low for low, h in zip(lo, hi, strict=True)):
                continue
            dst = tuple(slice(low - a, h - a)
                        for low, h, (a, _) in zip(lo, hi, bounds, strict=True))
            src = tuple(slice(low - p0, h - p0) for low, h, (p0, _) in zip(lo, hi, pb, strict=True))
            out[dst] = arr[src]
            filled += int(np.prod([h - low for low, h in zip(lo, hi, strict=True)]))
        if filled < out.size:
            raise ValueError(f"the stored shards of a {shape} array do not cover {bounds}")
        return out

    if isinstance(like, jax.Array) and tuple(like.shape) == shape:
        return jax.make_array_from_callback(shape, like.sharding, region)
    return region(tuple(slice(0, n) for n in shape))


def _serialisable(state: TrainState) -> tuple:
    # a tuple keeps this order on disk: the model first, so the weights can be read alone; the
    # objective's auxiliary state last (nothing when it is None, as in version 2 files)
    return (state.model, state.ema, state.step, jr.key_data(state.key), state.opt_state,
            state.aux)


def _serialisable_v1(state: TrainState) -> dict:
    return {
        "model": state.model,
        "ema": state.ema,
        "opt_state": state.opt_state,
        "step": state.step,
        "key": jr.key_data(state.key),
    }


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (the single place checkpoint bytes hit the disk)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def save_checkpoint(
    directory: str | os.PathLike,
    state: TrainState,
    *,
    config: dict | None = None,
    keep: int | None = 3,
    run: dict | None = None,
) -> pathlib.Path:
    """Write ``state`` atomically to ``directory/ckpt_<step>.eqx`` and keep the last ``keep`` files.

    The file is written under a temporary name in the same directory, flushed and ``fsync``-ed,
    then renamed over the final name with ``os.replace``, so a crash never leaves a partial
    checkpoint under a checkpoint name. It holds the parameters, EMA copies, optimiser state,
    step, RNG key (as ``jr.key_data``), the data-iterator state and ``config`` (both JSON, in the
    header line), and the sha256 of the array data, checked on every load. In a multi-process run
    only process 0 writes. A full disk raises ``OSError(ENOSPC)`` saying "no space left on device
    while writing <path>" and leaves no temporary file behind.

    Args:
        directory: checkpoint directory (created if missing).
        state: the training state.
        config: JSON-able run configuration stored in the header.
        keep: number of most recent checkpoints to keep (``None`` keeps all).
        run: JSON-able facts about the run compared on resume (e.g. the global batch size).

    Returns:
        The path of the checkpoint.
    """
    if keep is not None and not (
        isinstance(keep, int) and not isinstance(keep, bool) and keep >= 1
    ):
        raise ValueError(f"argument `keep`: got {keep!r}, expected None or an int >= 1.")
    if not isinstance(state, TrainState):
        raise ValueError(f"argument `state`: got {type(state).__name__}, expected a TrainState.")
    d = pathlib.Path(directory)
    if d.exists() and not d.is_dir():
        raise ValueError(f"argument `directory`: {str(d)!r} exists and is not a directory.")
    step = int(state.step)
    path = d / _checkpoint_name(step)
    tree, shards, blobs = _split_shards(_serialisable(state))
    tree = jax.tree.map(_to_host, tree)
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    tree_bytes = buf.tell()
    offset = tree_bytes
    for entry in shards:
        for piece in entry["pieces"]:
            piece["offset"] = offset
            offset += piece["nbytes"]
    for blob in blobs:
        buf.write(blob)
    payload = buf.getbuffer()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "ema_decays": list(state.ema_decays),
        "ema_warmup": bool(state.ema_warmup),
        "data_state": state.data_state,
        "config": config,
        "run": run,
        "nbytes": len(payload),
        "process": jax.process_index(),
        "process_count": jax.process_count(),
        "shards": shards,
    }
    proc = jax.process_index()
    if proc != 0 and not shards:
        return path
    target = path if proc == 0 else _sidecar(path, proc)
    if proc != 0:  # only the shards this process holds; process 0 writes everything else
        header.update(config=None, data_state=None)
    try:
        header["sha256_all"] = _digest(header, payload)
        header_line = json.dumps(header)
    except TypeError as e:
        raise ValueError(
            f"argument `config` / `run` / `state.data_state`: not JSON-serialisable ({e})."
        ) from e
    d.mkdir(parents=True, exist_ok=True)
    _write_file(target, header_line, payload)
    if jax.process_count() > 1 and any(e["pieces"] for e in shards):
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"sdekit checkpoint {path.name}")
    if proc != 0:
        return path
    if keep is not None:
        for old in list_checkpoints(d)[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)
                for side in d.glob(old.name + ".p*"):
                    side.unlink(missing_ok=True)
    return path


def _sidecar(path: pathlib.Path, process: int) -> pathlib.Path:
    return path.with_name(f"{path.name}.p{process}")


def _write_file(path: pathlib.Path, header_line: str, payload: Any) -> None:
    d = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=d)
    try:
        try:
            _write_all(fd, (header_line + "\n").encode())
            _write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if e.errno == errno.ENOSPC:
            raise OSError(
                errno.ENOSPC, f"no space left on device while writing {path}"
            ) from e
        raise OSError(e.errno, f"{e.strerror or e} while writing {path}") from e
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint file (step, data state, config, EMA rates, sha256)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"argument `path`: checkpoint {str(path)!r} does not exist.")
    with open(path, "rb") as f:
        line = f.readline(1 << 24)
    try:
        header = json.loads(line.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"not an sdekit checkpoint (bad header line: {e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(path, f"not an sdekit checkpoint (header format {header!r})")
    return header


def _verified_payload(path: pathlib.Path, header: dict) -> io.BytesIO:
    with open(path, "rb") as f:
        f.readline(1 << 24)
        payload = f.read()
    version = header.get("version", 1)
    if version != 1 and len(payload) != header.get("nbytes"):
        raise CheckpointError(
            path, f"{len(payload)} bytes of array data, the header says {header.get('nbytes')}"
        )
    if "sha256_all" in header or (isinstance(version, int) and version >= 3):
        # version 3: one digest over the header (everything a resumed run reads from it) and
        # the array data
        if header.get("sha256_all") != _digest(header, payload):
            raise CheckpointError(path, "the sha256 of the header and the array data does not "
                                  "match the one stored (the file was changed or damaged)")
    elif version == 2:
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise CheckpointError(path, "the sha256 of the array data does not match the header")
    elif version != 1:
        raise CheckpointError(path, f"unknown checkpoint version {version!r}")
    return io.BytesIO(payload)


def _digest(header: dict, payload: Any) -> str:
    """sha256 of the canonical JSON of the header (without the digest itself) and the data."""
    fields = {k: v for k, v in header.items() if k not in ("sha256_all", "sha256")}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\n")
    h.update(payload)
    return h.hexdigest()


def verify_checkpoint(path: str | os.PathLike) -> dict:
    """Check a checkpoint's header and the sha256 of its data; return the header.

    Raises [`CheckpointError`][sdekit.train.CheckpointError] when the file is damaged.
    """
    path = pathlib.Path(path)
    header = read_header(path)
    _verified_payload(path, header)
    return header


def _deserialise(path: pathlib.Path, header: dict, stream: io.BytesIO, like: Any) -> Any:
    """The stored tree in the structure of ``like``, with sharded leaves rebuilt from their
    pieces (of this file and of the other processes' ``<name>.p<k>`` files)."""
    leaves, treedef = jax.tree.flatten(like)
    # ``like`` may be a prefix of the stored tree (load_model reads only the weights)
    shards = [e for e in header.get("shards") or [] if e["leaf"] < len(leaves)]
    if not shards:
        return eqx.tree_deserialise_leaves(stream, like)
    targets = {}
    for e in shards:
        targets[e["leaf"]] = leaves[e["leaf"]]
        leaves[e["leaf"]] = np.zeros((0,), np.dtype(e["dtype"]))
    tree = eqx.tree_deserialise_leaves(stream, jax.tree.unflatten(treedef, leaves))
    pieces: dict[int, list] = {e["leaf"]: [] for e in shards}

    def collect(table: list, raw: memoryview) -> None:
        for e in table:
            if e["leaf"] not in pieces:
                continue
            dtype = np.dtype(e["dtype"])
            for pc in e["pieces"]:
                shape = [b - a for a, b in pc["index"]]
                buf = raw[pc["offset"] : pc["offset"] + pc["nbytes"]]
                pieces[e["leaf"]].append((pc["index"], np.frombuffer(buf, dtype).reshape(shape)))

    collect(shards, stream.getbuffer())
    for proc in range(1, int(header.get("process_count", 1))):
        side = _sidecar(path, proc)
        if not side.is_file():
            continue  # that process held no unique shard
        side_header = read_header(side)
        collect(side_header.get("shards") or [], _verified_payload(side, side_header).getbuffer())
    out, treedef = jax.tree.flatten(tree)
    for e in shards:
        out[e["leaf"]] = _assemble(e, pieces[e["leaf"]], targets[e["leaf"]])
    return jax.tree.unflatten(treedef, out)


def restore_checkpoint(path: str | os.PathLike, like_state: TrainState) -> TrainState:
    """Load a checkpoint into the structure of ``like_state``.

    ``like_state`` is a state with the same model architecture, optimiser and EMA rates, e.g. a
    fresh [`init_state`][sdekit.train.init_state]; its values are replaced by the stored ones.
    The sha256 of the data is verified first: a damaged file raises
    [`CheckpointError`][sdekit.train.CheckpointError] (a `ValueError`) naming it.

    Args:
        path: a checkpoint file written by [`save_checkpoint`][sdekit.train.save_checkpoint].
        like_state: the template state.

    Returns:
        The restored state, with ``data_state`` from the checkpoint.
    """
    path = pathlib.Path(path)
    header = read_header(path)
    if not isinstance(like_state, TrainState):
        raise ValueError(
            f"argument `like_state`: got {type(like_state).__name__}, expected a TrainState."
        )
    stream = _verified_payload(path, header)
    if tuple(header["ema_decays"]) != tuple(like_state.ema_decays):
        raise ValueError(
            f"checkpoint {path} keeps EMA rates {header['ema_decays']}, but `like_state` has "
            f"{list(like_state.ema_decays)}; pass the same `ema_decays`."
        )
    v1 = header.get("version", 1) < 2
    like = _serialisable_v1(like_state) if v1 else _serialisable(like_state)
    if not v1 and header.get("version", 1) < 3:
        like = like[:5]
    try:
        tree = _deserialise(path, header, stream, like)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"checkpoint {path} does not match the structure of `like_state` (different model, "
            f"optimiser or EMA set-up?): {e}"
        ) from e
    aux = like_state.aux
    if v1:
        model, ema, step, key, opt_state = (
            tree["model"], tree["ema"], tree["step"], tree["key"], tree["opt_state"]
        )
    elif len(tree) == 5:
        model, ema, step, key, opt_state = tree
    else:
        model, ema, step, key, opt_state, aux = tree
    return TrainState(
        model=model,
        ema=tuple(ema),
        opt_state=opt_state,
        step=jnp.asarray(step, jnp.int32),
        key=jr.wrap_key_data(key, impl=jr.key_impl(like_state.key)),
        ema_decays=like_state.ema_decays,
        ema_warmup=bool(header.get("ema_warmup", like_state.ema_warmup)),
        data_state=header.get("data_state"),
        aux=aux,
    )


def restore_latest_good(
    directory: str | os.PathLike, like_state: TrainState
) -> tuple[TrainState, pathlib.Path] | None:
    """Restore the newest checkpoint in ``directory`` that passes verification.

    A damaged checkpoint (bad header, truncated, sha256 mismatch) is skipped with a warning
    naming it, renamed to ``<name>.damaged`` (kept for inspection, never deleted, and no longer
    in the way of the step that will be written again), and the previous one is tried.

    Args:
        directory: checkpoint directory.
        like_state: the template state (as for
            [`restore_checkpoint`][sdekit.train.restore_checkpoint]).

    Returns:
        ``(state, path)``, or ``None`` when there is no usable checkpoint.
    """
    for path in reversed(list_checkpoints(directory)):
        try:
            verify_checkpoint(path)
        except CheckpointError as e:
            kept = path.with_name(path.name + ".damaged")
            if jax.process_index() == 0:
                os.replace(path, kept)
            warnings.warn(
                f"sdekit.train: skipping damaged checkpoint {path} ({e}); kept as {kept}; "
                "falling back to the previous one.",
                stacklevel=2,
            )
            continue
        return restore_checkpoint(path, like_state), path
    return None
