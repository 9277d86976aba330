"""How an original PyTorch network maps onto an sdekit network: the interface every arch
implements, rule-based mapping helpers, and the NCHW/OIHW <-> NHWC/HWIO layout conversions.

An *arch* (one per original network family) is a stateless object registered under a name
(``"psld_ncsnpp"``, ``"vdpm_unet"``, ...). It knows

- the configurations of the papers' released runs (``presets``) and the accepted configuration
  keys with their defaults (``defaults``);
- the full state dict of the original module for a configuration: every name, its shape in the
  original's (PyTorch) layout and whether it is a trainable parameter, a frozen parameter or a
  buffer (``names_and_shapes``), in the original's ``state_dict()`` order;
- how to build the matching sdekit network (``build``), fill it from a state dict that has
  exactly those names and shapes (``to_sdekit``), and write one back (``from_sdekit``);
- where a training checkpoint of the original code keeps its raw and EMA weights
  (``checkpoint_weights``; the default understands the common layouts).

The generic code in ``_api.py`` does everything else: reading files, strict name/shape
matching with clear errors, checking that every sdekit parameter was filled.

Most archs are written as a list of [`TorchRule`][sdekit.nets.TorchRule]s (one per group of
original tensors that becomes one group of sdekit leaves) by subclassing
[`AbstractRuleArch`][sdekit.nets.AbstractRuleArch]; then ``names_and_shapes``, ``to_sdekit``
and ``from_sdekit`` come for free and the two directions are inverse by construction.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..._validate import arg_error

KINDS: tuple[str, ...] = ("param", "frozen", "buffer")
"""What a state-dict entry is in the original module: a trainable parameter (``param``; in
``model.parameters()`` with ``requires_grad``, so in EMA shadow lists), a frozen parameter
(``frozen``: a parameter with ``requires_grad=False``, e.g. score_sde's Fourier matrix) or a
registered buffer (``buffer``)."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One entry of an original state dict: its name, shape (original layout) and kind (one of
    ``KINDS``)."""

    name: str
    shape: tuple[int, ...]
    kind: str = "param"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise arg_error("kind", self.kind, "one of " + ", ".join(map(repr, KINDS)))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))


# ----------------------------------------------------------------------------------------------
# Layout conversions (all exact: transposes and reshapes, no arithmetic).


def conv_to_hwio(w: np.ndarray) -> np.ndarray:
    """A PyTorch convolution kernel ``(O, I, kh, kw)`` as an sdekit ``(kh, kw, I, O)`` one."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise arg_error("w", f"shape {w.shape}", "a 4-D (O, I, kh, kw) convolution kernel")
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def conv_to_oihw(w: np.ndarray) -> np.ndarray:
    """An sdekit ``(kh, kw, I, O)`` kernel as a PyTorch ``(O, I, kh, kw)`` one."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise arg_error("w", f"shape {w.shape}", "a 4-D (kh, kw, I, O) convolution kernel")
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def linear_to_io(w: np.ndarray) -> np.ndarray:
    """A ``torch.nn.Linear`` weight ``(out, in)`` as an sdekit ``(in, out)`` matrix; also
    accepts a ``1 x 1`` convolution kernel ``(out, in, 1, 1)`` or ``(out, in, 1)``."""
    w = np.asarray(w)
    if w.ndim > 2:
        if any(s != 1 for s in w.shape[2:]):
            raise arg_error("w", f"shape {w.shape}", "(out, in) or a 1 x 1 kernel (out, in, 1, 1)")
        w = w.reshape(w.shape[:2])
    if w.ndim != 2:
        raise arg_error("w", f"shape {w.shape}", "a 2-D (out, in) weight")
    return np.ascontiguousarray(w.T)


def linear_to_oi(w: np.ndarray, torch_shape: Sequence[int] | None = None) -> np.ndarray:
    """An sdekit ``(in, out)`` matrix as a ``torch.nn.Linear`` weight ``(out, in)`` (or, with
    ``torch_shape``, reshaped to it, e.g. ``(out, in, 1, 1)`` for a ``1 x 1`` convolution)."""
    w = np.ascontiguousarray(np.asarray(w).T)
    return w if torch_shape is None else w.reshape(tuple(torch_shape))


def identity(w: np.ndarray) -> np.ndarray:
    """The same array (contiguous); for entries stored identically on both sides."""
    return np.ascontiguousarray(np.asarray(w))


_LAYOUTS: dict[str, tuple[Callable, Callable]] = {
    "conv": (conv_to_hwio, conv_to_oihw),
    "linear": (linear_to_io, linear_to_oi),
    "copy": (identity, identity),
}


# ----------------------------------------------------------------------------------------------
# Rules.


@dataclasses.dataclass(frozen=True)
class TorchRule:
    """How a group of original tensors becomes a group of sdekit leaves and back.

    - ``names``: the original state-dict names (with ``shapes``, their shapes in the original
      layout, and ``kinds``, one of ``KINDS`` each).
    - ``leaves``: ``net -> tuple of array leaves`` of the sdekit network (used with
      ``eqx.tree_at``, so it must select leaves, e.g. ``lambda n: (n.conv_in.weight,)``); an
      empty tuple for entries with no sdekit counterpart (a buffer the original recomputes
      from its configuration: then ``to_torch`` must produce it from nothing).
    - ``to_sdekit``: ``(*original arrays) -> tuple of sdekit arrays`` (numpy in, numpy out).
    - ``to_torch``: ``(*sdekit arrays) -> tuple of original arrays``.

    The one-to-one case is built with [`TorchRule.one`][sdekit.nets.TorchRule.one].
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    leaves: Callable[[Any], tuple]
    to_sdekit: Callable[..., tuple]
    to_torch: Callable[..., tuple]
    kinds: tuple[str, ...] = ()

    def __post_init__(self):
        names = tuple(self.names)
        shapes = tuple(tuple(int(s) for s in sh) for sh in self.shapes)
        kinds = tuple(self.kinds) if self.kinds else ("param",) * len(names)
        if not (len(names) == len(shapes) == len(kinds)):
            raise arg_error("shapes", shapes, f"one shape and one kind per name of {names}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "kinds", kinds)

    @classmethod
    def one(
        cls,
        name: str,
        shape: Sequence[int],
        leaf: Callable[[Any], Any],
        layout: str = "copy",
        kind: str = "param",
    ) -> TorchRule:
        """One original tensor <-> one sdekit leaf, with a layout: ``"conv"`` (OIHW <-> HWIO),
        ``"linear"`` ((out, in) <-> (in, out); ``1 x 1`` convolution kernels too) or
        ``"copy"``.

        Args:
            name: the original state-dict name.
            shape: its shape in the original layout.
            leaf: ``net -> the sdekit array leaf``.
            layout: ``"conv"``, ``"linear"`` or ``"copy"``.
            kind: one of ``KINDS``.
        """
        if layout not in _LAYOUTS:
            raise arg_error("layout", layout, "one of " + ", ".join(map(repr, _LAYOUTS)))
        fwd, bwd = _LAYOUTS[layout]
        shape = tuple(int(s) for s in shape)
        if layout == "linear":
            return cls((name,), (shape,), lambda n: (leaf(n),),
                       lambda a: (fwd(a),), lambda a: (bwd(a, shape),), (kind,))
        return cls((name,), (shape,), lambda n: (leaf(n),),
                   lambda a: (fwd(a),), lambda a: (bwd(a),), (kind,))

    @property
    def specs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(n, s, k) for n, s, k in
                     zip(self.names, self.shapes, self.kinds, strict=True))


# ----------------------------------------------------------------------------------------------
# The interface.


class AbstractTorchArch(abc.ABC):
    """One original network family: its released configurations and its mapping onto sdekit.

    Subclasses set ``name`` (the registry key), ``defaults`` (every accepted configuration key
    with its default value) and ``presets`` (the papers' released configurations, each a dict
    of overrides of ``defaults``), and implement the abstract methods. Register an instance
    with [`register_torch_arch`][sdekit.nets.register_torch_arch].

    A *configuration* is a plain dict (JSON-able values) with exactly the keys of
    ``defaults``; [`config`][sdekit.nets.AbstractTorchArch.config] makes one.
    """

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    description: ClassVar[str] = ""

    # -- configuration ----------------------------------------------------------------------

    def config(self, preset: str | None = None, **overrides: Any) -> dict[str, Any]:
        """The configuration ``defaults <- presets[preset] <- overrides``, checked.

        Args:
            preset: a key of ``presets`` (a released configuration) or ``None``.
            **overrides: configuration values replacing the preset's.

        Returns:
            A dict with exactly the keys of ``defaults``.
        """
        if preset is not None and preset not in self.presets:
            raise arg_error(
                "preset", preset,
                f"None or one of {sorted(self.presets)} (the released configurations of "
                f"arch {self.name!r})",
            )
        unknown = sorted(k for k in overrides if k not in self.defaults)
        if unknown:
            raise arg_error(
                "config", unknown,
                f"configuration keys of arch {self.name!r}: {', '.join(sorted(self.defaults))}",
            )
        cfg = dict(self.defaults)
        if preset is not None:
            cfg.update(self.presets[preset])
        cfg.update(overrides)
        self.check_config(cfg)
        return cfg

    def check_config(self, config: dict[str, Any]) -> None:
        """Validate a configuration (raise a ``ValueError`` naming the key). Default: nothing
        beyond what ``build`` checks."""
        return None

    # -- the mapping --------------------------------------------------------------------------

    @abc.abstractmethod
    def build(self, config: dict[str, Any], key: Any) -> eqx.Module:
        """The sdekit network for ``config``, initialised with ``key`` (called under
        ``eqx.filter_eval_shape`` by the converters, so it must not need concrete values)."""

    @abc.abstractmethod
    def names_and_shapes(self, config: dict[str, Any]) -> list[TensorSpec]:
        """Every entry of the original module's ``state_dict()`` for ``config``, in its order,
        with its shape in the original layout and its kind."""

    @abc.abstractmethod
    def to_sdekit(self, state: dict[str, np.ndarray], config: dict[str, Any]) -> eqx.Module:
        """The sdekit network holding the weights of ``state``. ``state`` has exactly the names
        and shapes of ``names_and_shapes(config)`` (already checked), float arrays in the
        original layout; entries may be removed from it as they are used (to save memory)."""

    @abc.abstractmethod
    def from_sdekit(self, net: eqx.Module, config: dict[str, Any]) -> dict[str, np.ndarray]:
        """The original state dict (numpy arrays in the original layout, ``state_dict()``
        order) of an sdekit network built by this arch; ``config`` is ``config_of(net)``
        (updated with what the caller passed for keys the network cannot know)."""

    @abc.abstractmethod
    def config_of(self, net: eqx.Module) -> dict[str, Any]:
        """The configuration that builds a network like ``net`` (its inverse of ``build``).
        Keys the sdekit network cannot know (e.g. a buffer's schedule) take their defaults."""

    @abc.abstractmethod
    def net_spec(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(name, kwargs)`` such that ``sdekit.nets.named_net(name, key=key, **kwargs)``
        builds the network of ``config`` (JSON-able kwargs; this is what sdekit checkpoints
        store to rebuild it)."""

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint_weights(
        self, obj: Any, *, ema: bool | None, config: dict[str, Any]
    ) -> tuple[dict[str, np.ndarray], str]:
        """The flat state dict of the raw (``ema=False``) or EMA (``ema=True``) weights in a
        loaded file ``obj``; ``ema=None`` picks the EMA weights when the file has both, else its
        only set. Returns ``(state, description of what was taken)``.

        The default understands: a flat ``{name: array}`` state dict (optionally under
        ``"state_dict"``, ``"model"`` or ``"module"``, names optionally prefixed ``module.``);
        score_sde-style ``{"model", "ema": {"shadow_params": [...]}, ...}`` (the EMA list in
        ``model.parameters()`` order: the ``param`` entries of ``names_and_shapes``); ``{"model",
        "ema"}`` with two state dicts (SiT/DiT training checkpoints); and the prefixes in
        ``checkpoint_prefixes`` (e.g. a Lightning ``state_dict`` keeping both networks).
        """
        from ._source import default_checkpoint_weights

        return default_checkpoint_weights(self, obj, ema=ema, config=config)

    checkpoint_prefixes: ClassVar[tuple[str, str] | None] = None
    """``(raw prefix, EMA prefix)`` of a state dict that keeps both networks (PSLD's Lightning
    checkpoints: ``("score_fn.", "ema_score_fn.")``); ``None`` when the original has none."""


class AbstractRuleArch(AbstractTorchArch):
    """An arch written as a list of [`TorchRule`][sdekit.nets.TorchRule]s: implement
    ``rules(config)`` (plus ``build``, ``config_of`` and ``net_spec``) and get
    ``names_and_shapes``, ``to_sdekit`` and ``from_sdekit``.

    The rules must list the original names in ``state_dict()`` order and cover every inexact
    array leaf of the sdekit network exactly once (checked on every conversion).
    """

    @abc.abstractmethod
    def rules(self, config: dict[str, Any]) -> list[TorchRule]:
        """The mapping for ``config``."""

    def names_and_shapes(self, config: dict[str, Any]) -> list[TensorSpec]:
        return [spec for rule in self.rules(config) for spec in rule.specs]

    def to_sdekit(self, state: dict[str, np.ndarray], config: dict[str, Any]) -> eqx.Module:
        like = eqx.filter_eval_shape(lambda k: self.build(config, k), jax.random.key(0))
        getters, values = [], []
        for rule in self.rules(config):
            arrays = [state.pop(n) for n in rule.names]
            new = tuple(rule.to_sdekit(*arrays))
            del arrays
            old = rule.leaves(like)
            if len(new) != len(old):
                raise ValueError(
                    f"arch {self.name!r}: the rule for {list(rule.names)} made {len(new)} arrays "
                    f"for {len(old)} sdekit leaves"
                )
            for i, (a, o) in enumerate(zip(new, old, strict=True)):
                a = np.asarray(a)
                if tuple(a.shape) != tuple(o.shape):
                    raise ValueError(
                        f"arch {self.name!r}: the rule for {list(rule.names)} made shape "
                        f"{tuple(a.shape)} for an sdekit leaf of shape {tuple(o.shape)}"
                    )
                getters.append(_nth(rule.leaves, i))
                values.append(jnp.asarray(a.astype(o.dtype, copy=False)))
        return _replace_leaves(like, getters, values, self.name)

    def from_sdekit(self, net: eqx.Module, config: dict[str, Any]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for rule in self.rules(config):
            arrays = tuple(np.asarray(a) for a in rule.leaves(net))
            for n, a, s in zip(rule.names, rule.to_torch(*arrays), rule.shapes, strict=True):
                a = np.asarray(a)
                if tuple(a.shape) != s:
                    raise ValueError(
                        f"arch {self.name!r}: the rule for {n!r} made shape {tuple(a.shape)}, "
                        f"expected {s}"
                    )
                out[n] = a
        return out


def _nth(leaves: Callable, i: int) -> Callable:
    return lambda n: leaves(n)[i]


def _replace_leaves(like: Any, getters: list, values: list, arch: str) -> Any:
    """``like`` (a shape-only network) with the leaves selected by ``getters`` replaced by
    ``values``; every inexact array leaf must be replaced exactly once."""
    ids = [id(g(like)) for g in getters]
    if len(set(ids)) != len(ids):
        raise ValueError(f"arch {arch!r}: an sdekit leaf is filled by two rules")
    net = eqx.tree_at(lambda n: [g(n) for g in getters], like, values,
                      is_leaf=lambda x: x is None)
    missing = [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_leaves_with_path(net)
        if isinstance(leaf, jax.ShapeDtypeStruct)
    ]
    if missing:
        raise ValueError(
            f"arch {arch!r}: {len(missing)} sdekit parameters were not filled by any rule: "
            + ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        )
    return net


__all__ = [
    "KINDS",
    "AbstractRuleArch",
    "AbstractTorchArch",
    "TensorSpec",
    "TorchRule",
    "conv_to_hwio",
    "conv_to_oihw",
    "identity",
    "linear_to_io",
    "linear_to_oi",
]
