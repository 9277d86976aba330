"""Atomic single-file checkpoints: a JSON header line followed by equinox-serialised leaves."""

from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._state import TrainState

__all__ = [
    "save_checkpoint",
    "restore_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "read_header",
]

FORMAT = "sdekit-train-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt_(\d+)\.eqx$")


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


def _to_host(x: Any) -> Any:
    """A host copy of a (possibly multi-host sharded) array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return x


def _serialisable(state: TrainState) -> dict:
    return {
        "model": state.model,
        "ema": state.ema,
        "opt_state": state.opt_state,
        "step": state.step,
        "key": jr.key_data(state.key),
    }


def save_checkpoint(
    directory: str | os.PathLike,
    state: TrainState,
    *,
    config: dict | None = None,
    keep: int | None = 3,
) -> pathlib.Path:
    """Write ``state`` atomically to ``directory/ckpt_<step>.eqx`` and keep the last ``keep`` files.

    The file is written under a temporary name in the same directory, flushed and ``fsync``-ed,
    then renamed over the final name with ``os.replace``, so a crash never leaves a partial
    checkpoint under a checkpoint name. It holds the parameters, EMA copies, optimiser state,
    step, RNG key (as ``jr.key_data``), the data-iterator state and ``config`` (both JSON, in the
    header line). In a multi-process run only process 0 writes.

    Args:
        directory: checkpoint directory (created if missing).
        state: the training state.
        config: JSON-able run configuration stored in the header.
        keep: number of most recent checkpoints to keep (``None`` keeps all).

    Returns:
        The path of the checkpoint.
    """
    if keep is not None and not (isinstance(keep, int) and keep >= 1):
        raise ValueError(f"argument `keep`: got {keep!r}, expected None or an int >= 1.")
    d = pathlib.Path(directory)
    step = int(state.step)
    path = d / _checkpoint_name(step)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "ema_decays": list(state.ema_decays),
        "ema_warmup": bool(state.ema_warmup),
        "data_state": state.data_state,
        "config": config,
    }
    try:
        header_line = json.dumps(header)
    except TypeError as e:
        raise ValueError(
            f"argument `config` / `state.data_state`: not JSON-serialisable ({e})."
        ) from e
    tree = jax.tree.map(_to_host, _serialisable(state))
    if jax.process_index() != 0:
        return path
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write((header_line + "\n").encode())
            eqx.tree_serialise_leaves(f, tree)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
    if keep is not None:
        for old in list_checkpoints(d)[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint file (step, data state, config, EMA rates)."""
    with open(path, "rb") as f:
        line = f.readline()
    try:
        header = json.loads(line.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not an sdekit checkpoint (bad header line: {e}).") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an sdekit checkpoint (header format {header!r}).")
    return header


def restore_checkpoint(path: str | os.PathLike, like_state: TrainState) -> TrainState:
    """Load a checkpoint into the structure of ``like_state``.

    ``like_state`` is a state with the same model architecture, optimiser and EMA rates, e.g. a
    fresh [`init_state`][sdekit.train.init_state]; its values are replaced by the stored ones.

    Args:
        path: a checkpoint file written by [`save_checkpoint`][sdekit.train.save_checkpoint].
        like_state: the template state.

    Returns:
        The restored state, with ``data_state`` from the checkpoint.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"argument `path`: checkpoint {str(path)!r} does not exist.")
    if not isinstance(like_state, TrainState):
        raise ValueError(
            f"argument `like_state`: got {type(like_state).__name__}, expected a TrainState."
        )
    header = read_header(path)
    if tuple(header["ema_decays"]) != tuple(like_state.ema_decays):
        raise ValueError(
            f"checkpoint {path} keeps EMA rates {header['ema_decays']}, but `like_state` has "
            f"{list(like_state.ema_decays)}; pass the same `ema_decays`."
        )
    like = _serialisable(like_state)
    with open(path, "rb") as f:
        f.readline()
        try:
            tree = eqx.tree_deserialise_leaves(f, like)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"checkpoint {path} does not match the structure of `like_state` (different model, "
                f"optimiser or EMA set-up?): {e}"
            ) from e
    return TrainState(
        model=tree["model"],
        ema=tuple(tree["ema"]),
        opt_state=tree["opt_state"],
        step=jnp.asarray(tree["step"], jnp.int32),
        key=jr.wrap_key_data(tree["key"], impl=jr.key_impl(like_state.key)),
        ema_decays=like_state.ema_decays,
        ema_warmup=bool(header.get("ema_warmup", like_state.ema_warmup)),
        data_state=header.get("data_state"),
    )
