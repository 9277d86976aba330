"""Finite groups of the square pixel grid (C2, C4, D2, D4, single flips) and their exact actions.

Every element is a pair ``(m, r)``: "flip left-right ``m`` times (0 or 1), then rotate by ``r``
quarter turns" (``numpy.rot90(., k=r)`` on the ``(H, W)`` axes, counter-clockwise as displayed).
This is escnn's convention for ``rot2dOnR2`` / ``flipRot2dOnR2``. The composition table and
the inverses are *not* written by hand: they are read off by
acting with every pair of elements on a probe array, so one code path serves every group.

Two actions are provided:

- on images and scalar fields, ``(..., H, W, C)``: the pixel permutation ``T_g``;
- on regular fields, ``(..., H, W, C * |G|)`` with channel ``c * |G| + h`` holding group element
  ``h`` of field ``c`` (field-major, as escnn): ``(g . f)[h] = T_g( f[g^{-1} h] )``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..._validate import arg_error

#: Group name -> elements ``(m, r)`` (identity first).
GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "trivial": ((0, 0),),
    "C2": ((0, 0), (0, 2)),
    "C4": ((0, 0), (0, 1), (0, 2), (0, 3)),
    "flipH": ((0, 0), (1, 0)),  # left-right mirror (the paper's "H")
    "flipV": ((0, 0), (1, 2)),  # up-down mirror (the paper's "V") = flip left-right, rotate 180
    "D2": ((0, 0), (0, 2), (1, 0), (1, 2)),
    "D4": ((0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)),
}


def _spatial_np(x: np.ndarray, m: int, r: int, axes: tuple[int, int]) -> np.ndarray:
    if m:
        x = np.flip(x, axis=axes[1])
    return np.rot90(x, k=r, axes=axes)


def _spatial(x: Any, m: int, r: int, axes: tuple[int, int]) -> Any:
    if m:
        x = jnp.flip(x, axis=axes[1])
    return jnp.rot90(x, k=r, axes=axes) if r % 4 else x


class Group:
    """A finite group acting on the square pixel grid, by name (see ``GROUPS``).

    **Attributes:** ``name``; ``elements`` (tuple of ``(m, r)``, identity first); ``order``
    (``|G|``); ``table`` (``table[i, j]`` = index of ``g_i g_j``, i.e. apply ``g_j`` first);
    ``inverse`` (``inverse[i]`` = index of ``g_i^{-1}``). Instances are cached per name and
    hashable, so they can sit in static fields of equinox modules.
    """

    def __init__(self, name: str):
        if name not in GROUPS:
            raise arg_error("group", name, "one of " + ", ".join(repr(k) for k in GROUPS))
        self.name = name
        self.elements = GROUPS[name]
        self.order = len(self.elements)
        probe = np.arange(5 * 5).reshape(5, 5)  # no symmetry at all: every element acts differently
        images = [_spatial_np(probe, m, r, (0, 1)) for m, r in self.elements]
        keys = {im.tobytes(): i for i, im in enumerate(images)}
        if len(keys) != self.order:
            raise AssertionError(f"group {name}: elements act identically on the probe")
        table = np.zeros((self.order, self.order), np.int32)
        for i, (mi, ri) in enumerate(self.elements):
            for j in range(self.order):
                composed = _spatial_np(images[j], mi, ri, (0, 1)).tobytes()
                if composed not in keys:
                    raise AssertionError(f"group {name} is not closed under composition")
                table[i, j] = keys[composed]
        self.table = table
        self.inverse = np.array([int(np.flatnonzero(table[i] == 0)[0]) for i in range(self.order)])
        self.table.setflags(write=False)
        self.inverse.setflags(write=False)

    def __repr__(self) -> str:
        return f"Group({self.name!r})"

    def __hash__(self) -> int:
        return hash(("sdekit.Group", self.name))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and other.name == self.name

    def __reduce__(self):
        return (get_group, (self.name,))

    # -- actions -------------------------------------------------------------------------------
    def act(self, g: int, x: Any, *, axes: tuple[int, int] = (-3, -2)) -> Any:
        """``T_g x``: the pixel permutation of element ``g`` (an index) on the ``axes`` (default:
        the ``H, W`` axes of an NHWC array). Works on numpy and JAX arrays."""
        m, r = self.elements[self._index(g)]
        if isinstance(x, np.ndarray):
            return _spatial_np(x, m, r, axes)
        return _spatial(x, m, r, axes)

    def act_regular(self, g: int, f: Any, *, axes: tuple[int, int] = (-3, -2)) -> Any:
        """``(g . f)[h] = T_g(f[g^{-1} h])`` on regular fields ``(..., H, W, C * |G|)``."""
        g = self._index(g)
        n = self.order
        if f.shape[-1] % n:
            raise arg_error("f", f"{f.shape[-1]} channels", f"a multiple of |G| = {n}")
        perm = self.table[self.inverse[g]]  # new[h] = old[g^{-1} h]
        lead = f.shape[:-1]
        fr = f.reshape(*lead, f.shape[-1] // n, n)[..., perm]
        return self.act(g, fr.reshape(f.shape), axes=axes)

    def act_kernel(self, g: int, w: Any) -> Any:
        """``T_g`` on the spatial axes ``(0, 1)`` of an HWIO kernel (rotation about its centre)."""
        return self.act(g, w, axes=(0, 1))

    def _index(self, g: int) -> int:
        g = int(g)
        if not 0 <= g < self.order:
            raise arg_error("g", g, f"an element index in [0, {self.order})")
        return g

    def compose(self, a: int, b: int) -> int:
        """Index of ``g_a g_b`` (apply ``g_b`` first)."""
        return int(self.table[self._index(a), self._index(b)])

    def inv(self, g: int) -> int:
        """Index of ``g^{-1}``."""
        return int(self.inverse[self._index(g)])

    def orbit(self, x: Any, *, regular: bool = False) -> list:
        """``[g . x for g in G]`` (images, or regular fields with ``regular=True``)."""
        fn = self.act_regular if regular else self.act
        return [fn(g, x) for g in range(self.order)]

    def permutation_matrix(self, g: int) -> np.ndarray:
        """The regular representation of ``g``: ``P[g h, h] = 1``."""
        g = self._index(g)
        p = np.zeros((self.order, self.order))
        for h in range(self.order):
            p[self.table[g, h], h] = 1.0
        return p


@functools.lru_cache(maxsize=None)
def get_group(group: str | Group) -> Group:
    """The cached `Group` called ``group`` (``"trivial"``, ``"C2"``, ``"C4"``, ``"flipH"``,
    ``"flipV"``, ``"D2"``, ``"D4"``); a `Group` is returned as it is."""
    if isinstance(group, Group):
        return group
    if not isinstance(group, str):
        raise arg_error("group", group, "a group name (" + ", ".join(GROUPS) + ") or a Group")
    return Group(group)


__all__ = ["GROUPS", "Group", "get_group"]


def act_time(group: Group, g: int, t: Any, x: Any) -> Any:
    """Transform a time array with the images: per-pixel maps rotate, per-example times don't."""
    if t.ndim >= 3 and t.shape[1] == x.shape[1] and t.shape[2] == x.shape[2] and x.shape[1] > 1:
        return group.act(g, t, axes=(1, 2))
    return t
