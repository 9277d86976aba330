"""Convert an original PyTorch checkpoint once into sdekit's own checkpoint format."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax.numpy as jnp
import jax.random as jr

from ._checkpoint import save_checkpoint
from ._load import model_config
from ._state import TrainState

__all__ = ["convert_torch_checkpoint"]


def convert_torch_checkpoint(
    source: Any,
    arch: str,
    directory: str | os.PathLike,
    *,
    preset: str | None = None,
    run_config: dict | None = None,
    ema_decay: float = 0.9999,
    **config: Any,
) -> pathlib.Path:
    """Convert an original network's weights (PyTorch or safetensors file, or a mapping) into
    an sdekit checkpoint that [`load_model`][sdekit.train.load_model] reads, in one call.

    The weights go through [`from_torch`][sdekit.nets.from_torch] (strict, nothing executed).
    A training checkpoint keeping raw and EMA weights becomes a checkpoint with both (the raw
    network as the model, the EMA network as its EMA copy with rate ``ema_decay``), so
    ``load_model(path)`` returns the EMA network and ``load_model(path, ema=False)`` the raw
    one; a file with one set of weights becomes a checkpoint with no EMA. The header's config
    holds ``"model"`` (the [`named_net`][sdekit.nets.named_net] name and arguments that rebuild
    the network), ``"from_torch"`` (the source, arch and arch configuration) and whatever
    ``run_config`` adds (e.g. the process settings a script reads back). The checkpoint holds
    no optimiser state: to fine-tune, pass the loaded network to ``fit``.

    Args:
        source: the original file (``.pth``/``.pt``/``.ckpt``/``.bin``/``.safetensors``) or a
            mapping of names to arrays.
        arch: a ``sdekit.nets.TORCH_ARCHS`` name (e.g. ``"psld_ncsnpp"``).
        directory: where to write ``ckpt_0.eqx`` (created if missing).
        preset: a released configuration of the arch.
        run_config: JSON-able entries added to the checkpoint's config.
        ema_decay: the EMA rate recorded for the EMA copy (the originals use 0.9999).
        **config: configuration keywords of the arch, overriding the preset's.

    Returns:
        The path of the checkpoint written.
    """
    from ..nets import _torch

    a = _torch.get_torch_arch(arch)
    raw, ema, cfg = _torch.from_torch_both(source, a, preset=preset, **config)
    name, kwargs = a.net_spec(cfg)
    header_cfg = dict(run_config or {})
    if "image_size" in cfg:
        header_cfg.setdefault("image_size", int(cfg["image_size"]))
    src = str(source) if isinstance(source, (str, os.PathLike)) else "<mapping>"
    header_cfg["model"] = model_config(name, **kwargs)
    header_cfg["from_torch"] = {"source": src, "arch": a.name, "preset": preset,
                                "config": _jsonable(cfg), "ema": ema is not None}
    state = TrainState(
        model=raw,
        ema=() if ema is None else (ema,),
        opt_state=None,
        step=jnp.asarray(0, jnp.int32),
        key=jr.key(0),
        ema_decays=() if ema is None else (float(ema_decay),),
        ema_warmup=False,
    )
    return save_checkpoint(directory, state, config=header_cfg, keep=None)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
