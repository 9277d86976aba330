"""``from_torch`` / ``to_torch_state_dict`` and the registry of archs."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np

from ..._validate import arg_error
from ._arch import AbstractTorchArch
from ._source import match_state, read_source

TORCH_ARCHS: dict[str, AbstractTorchArch] = {}
"""The registered archs by name (see [`register_torch_arch`][sdekit.nets.register_torch_arch])."""


def register_torch_arch(arch: AbstractTorchArch, *, replace: bool = False) -> AbstractTorchArch:
    """Register ``arch`` under ``arch.name`` for [`from_torch`][sdekit.nets.from_torch] and
    [`to_torch_state_dict`][sdekit.nets.to_torch_state_dict].

    Args:
        arch: an instance of a concrete subclass of
            [`AbstractTorchArch`][sdekit.nets.AbstractTorchArch].
        replace: allow replacing an arch already registered under that name.

    Returns:
        ``arch``.
    """
    if not isinstance(arch, AbstractTorchArch):
        raise arg_error("arch", type(arch).__name__, "an AbstractTorchArch instance")
    name = type(arch).__dict__.get("name") or next(
        (c.__dict__["name"] for c in type(arch).__mro__ if "name" in c.__dict__), None)
    if not isinstance(name, str) or not name:
        raise arg_error("arch.name", name, "a non-empty string")
    if name in TORCH_ARCHS and not replace and TORCH_ARCHS[name] is not arch:
        raise arg_error("arch", name, "a name not registered yet (or replace=True)")
    TORCH_ARCHS[name] = arch
    return arch


def get_torch_arch(arch: str | AbstractTorchArch) -> AbstractTorchArch:
    """The registered arch named ``arch`` (an arch instance is returned as is)."""
    if isinstance(arch, AbstractTorchArch):
        return arch
    if arch not in TORCH_ARCHS:
        raise arg_error("arch", arch, "one of " + ", ".join(repr(k) for k in sorted(TORCH_ARCHS)))
    return TORCH_ARCHS[arch]


def load_torch_weights(
    source: Any,
    arch: str | AbstractTorchArch,
    *,
    ema: bool | None = None,
    preset: str | None = None,
    **config: Any,
) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """The checked original state dict of ``source`` for ``arch``: ``(state, configuration,
    description of what was read)``; see [`from_torch`][sdekit.nets.from_torch]."""
    a = get_torch_arch(arch)
    cfg = a.config(preset, **config)
    obj, where = read_source(source)
    state, taken = a.checkpoint_weights(obj, ema=ema, config=cfg)
    what = f"{taken} in {where}"
    return match_state(state, a.names_and_shapes(cfg), arch=a.name, what=what), cfg, what


def from_torch(
    source: Any,
    arch: str | AbstractTorchArch,
    *,
    ema: bool | None = None,
    preset: str | None = None,
    **config: Any,
) -> eqx.Module:
    """Load an original PyTorch network's weights into the matching sdekit network.

    Nothing in a file is executed: PyTorch files are read with sdekit's restricted unpickler,
    safetensors files as raw bytes. The match is strict: every tensor of the state dict is
    used and every parameter of the sdekit network is filled, otherwise the error lists the
    unmatched names with their shapes (the first few and a count); a checkpoint of another
    architecture or configuration fails with the first mismatched name and both shapes.

    Args:
        source: a path to a PyTorch file (``.pth``, ``.pt``, ``.ckpt``, ``.bin``; zip or
            legacy format) or a ``.safetensors`` file, or a mapping of names to arrays (a state
            dict, or a loaded training checkpoint).
        arch: a registered arch name (``sdekit.nets.TORCH_ARCHS``, e.g. ``"psld_ncsnpp"``,
            ``"reflected_ncsnpp"``, ``"vdpm_unet"``) or an arch instance.
        ema: for training checkpoints that keep raw and EMA weights (PSLD's Lightning
            ``.ckpt``, score_sde-style ``{'model', 'ema'}``, SiT's ``{'model', 'ema'}``):
            ``True`` takes the EMA weights, ``False`` the raw ones; ``None`` (default) takes
            the EMA weights when the file has them, else its only set.
        preset: a released configuration of the arch (``TORCH_ARCHS[arch].presets``).
        **config: configuration keywords of the arch (``TORCH_ARCHS[arch].defaults``),
            overriding the preset's.

    Returns:
        The sdekit network (an equinox Module) computing the original's function.
    """
    a = get_torch_arch(arch)
    state, cfg, _ = load_torch_weights(source, a, ema=ema, preset=preset, **config)
    return a.to_sdekit(state, cfg)


def from_torch_both(
    source: Any,
    arch: str | AbstractTorchArch,
    *,
    preset: str | None = None,
    **config: Any,
) -> tuple[eqx.Module, eqx.Module | None, dict[str, Any]]:
    """``(raw network, EMA network or None, configuration)`` from one read of ``source``: both
    networks when it is a training checkpoint keeping raw and EMA weights, else its only
    network and ``None``. Arguments as for [`from_torch`][sdekit.nets.from_torch]."""
    a = get_torch_arch(arch)
    cfg = a.config(preset, **config)
    obj, where = read_source(source)
    specs = a.names_and_shapes(cfg)
    try:
        raw, taken = a.checkpoint_weights(obj, ema=False, config=cfg)
    except ValueError as e:
        if "argument `ema`" not in str(e):
            raise
        single, taken = a.checkpoint_weights(obj, ema=None, config=cfg)
        state = match_state(single, specs, arch=a.name, what=f"{taken} in {where}")
        return a.to_sdekit(state, cfg), None, cfg
    raw_net = a.to_sdekit(match_state(raw, specs, arch=a.name, what=f"{taken} in {where}"), cfg)
    del raw
    ema, taken = a.checkpoint_weights(obj, ema=True, config=cfg)
    del obj
    ema_net = a.to_sdekit(match_state(ema, specs, arch=a.name, what=f"{taken} in {where}"), cfg)
    return raw_net, ema_net, cfg


def to_torch_state_dict(
    net: eqx.Module, arch: str | AbstractTorchArch, **config: Any
) -> dict[str, np.ndarray]:
    """The original PyTorch state dict of an sdekit network (inverse of
    [`from_torch`][sdekit.nets.from_torch], bit for bit).

    Write it with ``sdekit.io.save_torch(path, state)`` (readable by ``torch.load``) and load
    it into the original module with ``module.load_state_dict(torch.load(path))``.

    Args:
        net: an sdekit network of the arch's family (as built by ``from_torch`` or by the
            arch's named configuration).
        arch: a registered arch name or an arch instance.
        **config: values for configuration keys the sdekit network cannot know (e.g. the
            noise schedule of a buffer the original keeps); the rest comes from ``net``.

    Returns:
        ``{name: numpy array}`` in the original's ``state_dict()`` order and layout.
    """
    a = get_torch_arch(arch)
    cfg = a.config_of(net)
    unknown = sorted(k for k in config if k not in a.defaults)
    if unknown:
        raise arg_error("config", unknown,
                        f"configuration keys of arch {a.name!r}: {', '.join(sorted(a.defaults))}")
    cfg.update(config)
    a.check_config(cfg)
    out = a.from_sdekit(net, cfg)
    return match_state(out, a.names_and_shapes(cfg), arch=a.name,
                       what="the state dict made from `net`")


__all__ = [
    "TORCH_ARCHS",
    "from_torch",
    "from_torch_both",
    "get_torch_arch",
    "load_torch_weights",
    "register_torch_arch",
    "to_torch_state_dict",
]
