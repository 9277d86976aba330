"""One-call loading of trained weights for inference."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import equinox as eqx
import jax.random as jr

from ._checkpoint import (
    CheckpointError,
    _deserialise,
    _verified_payload,
    latest_checkpoint,
    read_header,
)

__all__ = ["load_model", "model_config"]


def model_config(name: str, **kwargs: Any) -> dict:
    """The ``"model"`` entry of a run configuration that lets
    [`load_model`][sdekit.train.load_model] rebuild the network: a
    [`named_net`][sdekit.nets.named_net] name and its keyword overrides (JSON-able).

    Store it as ``config={"model": model_config("tiny", image_size=16, ...), ...}`` in
    [`fit`][sdekit.train.fit].
    """
    if not isinstance(name, str):
        raise ValueError(f"argument `name`: got {name!r}, expected a network name (str).")
    return {"net": name, "kwargs": dict(kwargs)}


def load_model(
    path: str | os.PathLike,
    *,
    ema: bool | float = True,
    like: Any = None,
) -> Any:
    """Load a trained network from a checkpoint (or the newest one in a directory) in one call.

    The network is rebuilt from the ``"model"`` entry of the configuration stored in the
    checkpoint (see [`model_config`][sdekit.train.model_config]); pass ``like`` (a network of
    the same architecture, e.g. freshly initialised) for networks built another way. Only the
    weights are read (no optimiser set-up needed); the file's sha256 is verified first.

    Args:
        path: a checkpoint file, or a checkpoint directory (its newest checkpoint).
        ema: ``True`` for the first EMA copy, a decay rate for that EMA copy, ``False`` for
            the raw (last-step) weights.
        like: template network; default: rebuilt from the stored configuration.

    Returns:
        The network (an equinox Module) with the stored weights.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(
                f"argument `path`: no checkpoint (ckpt_*.eqx) in {str(path)!r}."
            )
        path = found
    header = read_header(path)
    if like is None:
        cfg = (header.get("config") or {}).get("model")
        if not (isinstance(cfg, dict) and isinstance(cfg.get("net"), str)):
            raise ValueError(
                f"argument `like`: required, because checkpoint {path} stores no 'model' entry in "
                "its config (write one with sdekit.train.model_config(...) in fit's `config`)."
            )
        from ..nets import named_net

        # shapes only (no initialisation, nothing compiled): the values come from the file
        like = eqx.filter_eval_shape(
            lambda k: named_net(cfg["net"], key=k, **cfg.get("kwargs", {})), jr.key(0)
        )
    decays = list(header.get("ema_decays", []))
    if ema is False or not decays:
        if ema is not False and ema is not True:
            raise ValueError(f"argument `ema`: got {ema!r}, but checkpoint {path} keeps no EMA.")
        index = None
    elif ema is True:
        index = 0
    else:
        if ema not in decays:
            raise ValueError(
                f"argument `ema`: got {ema!r}, expected True, False or one of {decays}."
            )
        index = decays.index(ema)
    stream = _verified_payload(path, header)
    if header.get("version", 1) < 2:
        raise CheckpointError(path, "format version 1: load it with restore_checkpoint")
    try:
        # the file starts with (model, ema, ...): reading this prefix reads only the weights
        model, ema_models = _deserialise(path, header, stream, (like, (like,) * len(decays)))
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"checkpoint {path} does not match the network `like` / its stored config: {e}"
        ) from e
    return model if index is None else ema_models[index]
