"""Reading a ``source`` (file or mapping), picking the raw or EMA weights of a training
checkpoint, and strict matching of a state dict against an arch's names and shapes."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from ..._validate import arg_error

if TYPE_CHECKING:
    from ._arch import AbstractTorchArch, TensorSpec

_SHOW = 5  # names listed in an error before "... and N more"
_WRAPPERS = ("module.", "_orig_mod.")  # DistributedDataParallel / torch.compile name prefixes
_SINGLE_KEYS = ("state_dict", "model", "module", "net", "model_state_dict")


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, jax.Array))


def _is_state(x: Any) -> bool:
    """A non-empty mapping of string names to arrays."""
    return (
        isinstance(x, Mapping)
        and len(x) > 0
        and all(isinstance(k, str) for k in x)
        and all(_is_array(v) for v in x.values())
    )


def read_source(source: Any) -> tuple[Any, str]:
    """``(loaded object, description)`` for a path (``.safetensors``, or a PyTorch file in the
    zip or legacy format: ``.pth``, ``.pt``, ``.ckpt``, ``.bin``) or a mapping (used as is)."""
    if isinstance(source, Mapping):
        return source, "the given mapping"
    if not isinstance(source, (str, os.PathLike)):
        raise arg_error(
            "source", type(source).__name__,
            "a path to a .pth/.pt/.ckpt/.bin/.safetensors file or a mapping of names to arrays",
        )
    path = pathlib.Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"argument `source`: no file {str(path)!r}")
    from ... import io as _io

    if path.suffix == ".safetensors":
        return _io.load_safetensors(path), f"safetensors file {str(path)!r}"
    return _io.load_torch(path, objects=True), f"PyTorch file {str(path)!r}"


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _unwrap(state: Mapping[str, Any]) -> dict[str, Any]:
    """Remove a ``module.`` / ``_orig_mod.`` prefix carried by every name."""
    state = dict(state)
    changed = True
    while changed and state:
        changed = False
        for p in _WRAPPERS:
            if all(k.startswith(p) for k in state):
                state = _strip(state, p)
                changed = True
    return state


def _ema_from_list(
    shadow: Sequence[Any], raw: Mapping[str, Any], specs: list[TensorSpec], where: str
) -> dict[str, Any]:
    """score_sde's ``ExponentialMovingAverage``: ``shadow_params`` is a list in
    ``model.parameters()`` order over the parameters with ``requires_grad`` (kind ``param``);
    frozen parameters and buffers come from the raw state dict."""
    trainable = [s.name for s in specs if s.kind == "param"]
    if len(shadow) != len(trainable):
        raise ValueError(
            f"argument `source`: {where} holds an EMA list of {len(shadow)} tensors, but the "
            f"network has {len(trainable)} trainable parameters: the checkpoint is of another "
            "architecture or configuration"
        )
    out: dict[str, Any] = {}
    it = iter(shadow)
    for s in specs:
        if s.kind == "param":
            out[s.name] = next(it)
        elif s.name in raw:
            out[s.name] = raw[s.name]
    return out


def default_checkpoint_weights(
    arch: AbstractTorchArch, obj: Any, *, ema: bool | None, config: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """See ``AbstractTorchArch.checkpoint_weights``."""
    if ema not in (None, True, False):
        raise arg_error("ema", ema, "None (EMA weights when stored, else the only ones), True "
                                    "or False")
    if not isinstance(obj, Mapping):
        raise arg_error("source", f"a file holding a {type(obj).__name__}",
                        "a state dict or a training checkpoint (a dict)")
    raw: dict[str, Any] | None = None
    emaw: dict[str, Any] | None = None
    what = ""
    prefixes = arch.checkpoint_prefixes
    # 1. one state dict holding both networks under two prefixes (PSLD's Lightning checkpoints)
    if prefixes is not None:
        for cand, where in ((obj, "the state dict"), (obj.get("state_dict"), "'state_dict'")):
            if _is_state(cand) and any(k.startswith(prefixes[0]) for k in cand):
                raw = _unwrap(_strip(cand, prefixes[0]))
                e = _strip(cand, prefixes[1])
                emaw = _unwrap(e) if e else None
                what = f"{where} with prefixes {prefixes[0]!r} / {prefixes[1]!r}"
                break
    # 2. {"model": state, "ema": ...}: score_sde's shadow list, or a second state dict (SiT)
    if raw is None and _is_state(obj.get("model")) and "ema" in obj:
        raw = _unwrap(obj["model"])
        e = obj["ema"]
        if isinstance(e, Mapping) and isinstance(e.get("shadow_params"), (list, tuple)):
            specs = arch.names_and_shapes(config)
            emaw = _ema_from_list(e["shadow_params"], raw, specs, "'ema'.'shadow_params'")
            what = "a training checkpoint {'model', 'ema': {'shadow_params'}}"
        elif isinstance(e, Mapping) and _is_state(e.get("shadow")):
            # VDPM's EMA: {'shadow': {name: tensor} over the trainable parameters, ...}
            emaw = {**raw, **_unwrap(e["shadow"])}
            what = "a training checkpoint {'model', 'ema': {'shadow'}}"
        elif _is_state(e):
            emaw = _unwrap(e)
            what = "a training checkpoint {'model', 'ema'}"
        else:
            raise arg_error("source", "a checkpoint whose 'ema' entry is "
                            f"a {type(e).__name__}",
                            "'ema' as a state dict or as {'shadow_params': [...]}")
    # 3. a single state dict, possibly wrapped
    if raw is None:
        if _is_state(obj):
            raw, what = _unwrap(obj), "a state dict"
        else:
            for k in _SINGLE_KEYS:
                if _is_state(obj.get(k)):
                    raw, what = _unwrap(obj[k]), f"the state dict under {k!r}"
                    break
    if raw is None:
        keys = [repr(k) for k in list(obj)[:8]]
        raise arg_error(
            "source", "a dict with keys " + ", ".join(keys),
            "a state dict of arrays, a score_sde/Lightning/SiT training checkpoint, or a dict "
            "holding a state dict under one of " + ", ".join(map(repr, _SINGLE_KEYS)),
        )
    if emaw is None:
        if ema is not None:
            raise arg_error(
                "ema", ema,
                f"None: the source holds one set of weights ({what}), not a training "
                "checkpoint with separate raw and EMA weights",
            )
        return raw, what
    if ema is False:
        return raw, f"raw weights of {what}"
    return emaw, f"EMA weights of {what}"


def _fmt(name: str, shape: Any) -> str:
    return f"{name!r} {tuple(shape)}"


def _listing(items: list[tuple[str, Any]]) -> str:
    head = ", ".join(_fmt(n, s) for n, s in items[:_SHOW])
    more = len(items) - _SHOW
    return head + (f", ... and {more} more" if more > 0 else "")


def match_state(
    state: Mapping[str, Any], specs: list[TensorSpec], *, arch: str, what: str
) -> dict[str, np.ndarray]:
    """Check that ``state`` has exactly the names and shapes of ``specs`` (floating-point
    arrays) and return it as ``{name: numpy array}`` in ``specs`` order."""
    want = {s.name: s for s in specs}
    unexpected = [(k, np.shape(v)) for k, v in state.items() if k not in want]
    missing = [(s.name, s.shape) for s in specs if s.name not in state]
    wrong = [
        (s.name, tuple(np.shape(state[s.name])), s.shape)
        for s in specs
        if s.name in state and tuple(np.shape(state[s.name])) != s.shape
    ]
    if unexpected or missing:
        parts = [f"argument `source`: {what} does not match arch {arch!r} for this configuration"]
        if unexpected:
            parts.append(f"{len(unexpected)} tensors are not used by it: {_listing(unexpected)}")
        if missing:
            parts.append(f"{len(missing)} of its tensors are missing: {_listing(missing)}")
        if wrong:
            n, got, exp = wrong[0]
            parts.append(f"first shape mismatch: {n!r} has shape {got}, expected {exp}")
        parts.append("check `arch`, `preset` and the configuration keywords")
        raise ValueError("; ".join(parts) + ".")
    if wrong:
        n, got, exp = wrong[0]
        raise ValueError(
            f"argument `source`: {what} is of another architecture or configuration than arch "
            f"{arch!r} with this configuration: tensor {n!r} has shape {got} in the source, "
            f"expected {exp} ({len(wrong)} tensors differ in shape); check `preset` and the "
            "configuration keywords"
        )
    out: dict[str, np.ndarray] = {}
    for s in specs:
        a = np.asarray(state[s.name])
        if not np.issubdtype(a.dtype, np.floating) and a.dtype.kind != "V":
            if s.kind != "buffer":
                raise ValueError(
                    f"argument `source`: tensor {s.name!r} has dtype {a.dtype}, expected a "
                    "floating-point parameter"
                )
        out[s.name] = a
    return out


__all__ = ["default_checkpoint_weights", "match_state", "read_source"]
