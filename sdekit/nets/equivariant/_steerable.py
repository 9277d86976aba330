"""Steerable convolutions from a stored kernel basis (escnn-style), without importing escnn.

A steerable basis for a pair of field types is an orthonormal basis ``B[d]`` of the space of
filters that satisfy the equivariance constraint ``F[g a, g b] = T_g F[a, b]`` (``a`` indexes the
output representation, ``b`` the input one; ``T_g`` rotates/flips the ``k x k`` kernel). A layer
then learns one coefficient per basis element and field pair. Bases are arrays
``(D, |out|, |in|, k, k)`` (escnn's OIHW layout for one field pair; ``|rep|`` is 1 for trivial
and ``|G|`` for regular fields).

Two sources fill the same file format:

- ``tools/escnn_bases.py`` run in its own environment (escnn, torch, numpy < 2) exports the
  bases escnn's ``R2Conv`` trains (smooth, band-limited: a subspace of the full space);
- [`reynolds_basis`][sdekit.nets.equivariant.reynolds_basis] computes, exactly, an orthonormal
  basis of the *whole* equivariant space: the constraint says ``F`` is invariant under a
  permutation action of ``G`` on the filter entries, so the invariant subspace (the range of the
  Reynolds projection) is spanned by the orbit indicators, normalised by ``1/sqrt(orbit size)``.

sdekit ships both for kernel size 3: ``steerable_bases_k3.npz`` (the default, the second kind)
and ``escnn_bases_k3.npz`` (``basis="escnn"``: exported by ``tools/escnn_bases.py`` with escnn
1.0.11, torch 2.13 and numpy 1.26 in a separate environment; dimensions 6 / 24 / 2 for C4 and
6 / 48 / 2 for D4 against the full space's 9 / 36 / 3 and 9 / 72 / 3). Each file's ``meta`` entry
says where it came from.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..._validate import arg_error
from ._groups import get_group
from ._layers import _DN, _check_fields, _check_rep, _compute_dtype, _tie, _uniform, rep_size

SHIPPED_BASES = "steerable_bases_k3.npz"
ESCNN_BASES = "escnn_bases_k3.npz"


def basis_key(group: str, in_rep: str, out_rep: str, kernel_size: int) -> str:
    """Name of a basis inside a basis file, e.g. ``"D4_trivial_regular_k3"``."""
    return f"{get_group(group).name}_{in_rep}_{out_rep}_k{int(kernel_size)}"


def act_filter(group: str, g: int, f: Any, in_rep: str, out_rep: str) -> np.ndarray:
    """``(g . F)[a, b] = T_g F[g^{-1} a, g^{-1} b]`` on a filter ``(..., |out|, |in|, k, k)``."""
    grp = get_group(group)
    f = np.asarray(f)
    gi = grp.inverse[g]
    if out_rep == "regular":
        f = f[..., grp.table[gi], :, :, :]
    if in_rep == "regular":
        f = f[..., :, grp.table[gi], :, :]
    return grp.act(g, f, axes=(-2, -1))


def reynolds_basis(group: str, in_rep: str, out_rep: str, kernel_size: int) -> np.ndarray:
    """An orthonormal basis ``(D, |out|, |in|, k, k)`` of all equivariant filters (float64,
    exact: entries are ``0`` or ``1/sqrt(orbit size)``). ``D`` is the number of orbits of ``G``
    on the filter entries: 9 / 36 / 3 for a C4 3x3 lift / group conv / invariant kernel, 9 / 72 /
    3 for D4."""
    _check_rep("in_rep", in_rep)
    _check_rep("out_rep", out_rep)
    grp = get_group(group)
    shape = (rep_size(group, out_rep), rep_size(group, in_rep), kernel_size, kernel_size)
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    label = idx.ravel().copy()  # union-find-free: iterate to the orbit minimum
    perms = [act_filter(group, g, idx, in_rep, out_rep).ravel() for g in range(grp.order)]
    changed = True
    while changed:
        changed = False
        for p in perms:
            new = np.minimum(label, label[p])
            new[p] = np.minimum(new[p], label)
            if (new != label).any():
                label, changed = new, True
    orbits = np.unique(label)
    basis = np.zeros((orbits.size, idx.size))
    for d, o in enumerate(orbits):
        members = label == o
        basis[d, members] = 1.0 / math.sqrt(members.sum())
    return basis.reshape((orbits.size,) + shape)


def load_bases(path: Any = None) -> dict[str, np.ndarray]:
    """Read a basis file (default: the one shipped with sdekit; ``"escnn"``: the shipped escnn
    export) into ``{name: array}``; the entry ``"meta"`` is a dict (source, group conventions,
    versions)."""
    if path is None or (isinstance(path, str) and path == "escnn"):
        name = SHIPPED_BASES if path is None else ESCNN_BASES
        ref = importlib.resources.files(__package__).joinpath(name)
        with importlib.resources.as_file(ref) as p, np.load(p) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    else:
        with np.load(path) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    out: dict[str, Any] = {k: v for k, v in data.items() if k != "meta"}
    out["meta"] = json.loads(str(data["meta"])) if "meta" in data else {}
    return out


class SteerableConv(eqx.Module):
    """Convolution whose filter is a learned combination of a stored steerable basis:
    ``F[(o, a), (i, b)] = sum_d w[o, i, d] B[d, a, b]``.

    ``basis``: ``None`` (the shipped file's basis for this group, field types and kernel size),
    ``"escnn"`` (the shipped escnn export, kernel size 3), a path to a basis file (e.g. written
    by ``tools/escnn_bases.py``), or an array
    ``(D, |out|, |in|, k, k)``. Before use the basis is projected once more with the float64
    Reynolds operator (escnn samples its bases in float32; this makes the layer exact to
    float64 round-off). sdekit never imports escnn. Same field types and calling convention as
    [`GroupConv`][sdekit.nets.equivariant.GroupConv].
    """

    weight: Array
    bias: Array | None
    basis_data: bytes = eqx.field(static=True)
    basis_shape: tuple[int, ...] = eqx.field(static=True)
    group: str = eqx.field(static=True)
    in_rep: str = eqx.field(static=True)
    out_rep: str = eqx.field(static=True)
    in_fields: int = eqx.field(static=True)
    out_fields: int = eqx.field(static=True)

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        *,
        group: str,
        in_rep: str = "regular",
        out_rep: str = "regular",
        kernel_size: int = 3,
        basis: Any = None,
        use_bias: bool = True,
        key: PRNGKeyArray,
    ):
        _check_fields("in_fields", in_fields)
        _check_fields("out_fields", out_fields)
        _check_rep("in_rep", in_rep)
        _check_rep("out_rep", out_rep)
        gname = get_group(group).name
        name = basis_key(gname, in_rep, out_rep, kernel_size)
        if basis is None or isinstance(basis, (str, bytes)) or isinstance(basis, os.PathLike):
            bases = load_bases(basis)
            if name not in bases:
                raise arg_error("basis", f"a file without {name!r}",
                                "a basis file with " + name + " (see tools/escnn_bases.py)")
            basis = bases[name]
        b = np.asarray(basis, np.float64)
        want = (rep_size(gname, out_rep), rep_size(gname, in_rep), kernel_size, kernel_size)
        if b.ndim != 5 or b.shape[1:] != want:
            raise arg_error("basis", f"shape {b.shape}", f"(D,) + {want}")
        grp = get_group(gname)
        b = sum(act_filter(gname, g, b, in_rep, out_rep) for g in range(grp.order)) / grp.order
        self.basis_data, self.basis_shape = b.tobytes(), tuple(int(s) for s in b.shape)
        d = b.shape[0]
        fan_in = in_fields * want[1] * kernel_size**2
        # unit-norm basis elements: scale so the filter entries have variance ~ 1/fan_in
        limit = math.sqrt(3.0 * want[0] * want[1] * kernel_size**2 / (d * fan_in))
        self.weight = _uniform(key, (out_fields, in_fields, d), limit)
        self.bias = jnp.zeros((out_fields,), jnp.float32) if use_bias else None
        self.group, self.in_rep, self.out_rep = gname, in_rep, out_rep
        self.in_fields, self.out_fields = int(in_fields), int(out_fields)

    @property
    def basis(self) -> np.ndarray:
        """The (re-projected, float64) basis ``(D, |out|, |in|, k, k)``."""
        return np.frombuffer(self.basis_data, np.float64).reshape(self.basis_shape)

    def filter(self, dtype: Any = jnp.float32) -> Array:
        """The HWIO filter ``(k, k, in_fields * |in|, out_fields * |out|)``."""
        f = jnp.einsum("oid,dabyx->yxiboa", self.weight.astype(dtype),
                       jnp.asarray(self.basis, dtype))
        k = self.basis.shape[-1]
        return f.reshape(k, k, f.shape[2] * f.shape[3], f.shape[4] * f.shape[5])

    def __call__(self, x: Array) -> Array:
        want = self.in_fields * self.basis.shape[2]
        if x.ndim != 4 or x.shape[-1] != want:
            raise arg_error("x", f"shape {x.shape}", f"(N, H, W, {want})")
        dt = _compute_dtype(x)
        p = self.basis.shape[-1] // 2
        y = jax.lax.conv_general_dilated(x.astype(dt), self.filter(dt), (1, 1), [(p, p), (p, p)],
                                         dimension_numbers=_DN)
        if self.bias is not None:
            y = y + _tie(self.bias.astype(dt), self.basis.shape[1])
        return y


__all__ = ["SHIPPED_BASES", "SteerableConv", "act_filter", "basis_key", "load_bases",
           "reynolds_basis"]
