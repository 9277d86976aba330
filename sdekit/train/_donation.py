"""Donation without dangling references.

A donating train step reuses the buffers of its input state for its output, so the input's
arrays are deleted when the step runs. `fit` hands its state to user code (callbacks, the
sample writer's ``sample_fn``); whatever that code keeps must stay valid. Copying the whole state
every step would cost a copy of the parameters, optimiser state and EMA per step, so instead
[`Escapes`][sdekit.train._donation.Escapes] counts the references to every node of the state
(modules, containers, arrays) before and after user code runs: a node whose count grew was kept,
and the arrays under it are copied before the next step donates them (only then, and only
those).
"""

import dataclasses
import sys
from typing import Any

import equinox as eqx
import jax


def _children(node: Any) -> list:
    if isinstance(node, eqx.Module):
        return [node.__dict__[f.name] for f in dataclasses.fields(node)
                if not f.metadata.get("static", False) and f.name in node.__dict__]
    if isinstance(node, (list, tuple)):
        return list(node)
    if isinstance(node, dict):
        return list(node.values())
    return []


def _nodes(tree: Any) -> list:
    """Every module, container and array of ``tree`` (depth first, each once)."""
    out, seen, stack = [], set(), [tree]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        if isinstance(node, (eqx.Module, list, tuple, dict, jax.Array)):
            seen.add(id(node))
            out.append(node)
            stack.extend(_children(node))
    return out


class Escapes:
    """Which parts of a state user code kept: ``with Escapes(state) as e: callback(state)``,
    then ``e.protect(state)`` is ``state`` with every array reachable from a kept node copied
    (the same object when nothing was kept)."""

    def __init__(self, tree: Any):
        self._nodes = _nodes(tree)
        self._before: list[int] = []
        self._escaped: set[int] = set()

    def __enter__(self) -> "Escapes":
        self._before = [sys.getrefcount(n) for n in self._nodes]
        return self

    def __exit__(self, *exc: Any) -> None:
        after = [sys.getrefcount(n) for n in self._nodes]
        self._escaped = {id(n) for n, a, b in zip(self._nodes, self._before, after, strict=True)
                         if b > a}

    @property
    def kept(self) -> bool:
        """Whether user code kept any part of the state."""
        return bool(self._escaped)

    def protect(self, tree: Any) -> Any:
        """``tree`` with fresh copies of the arrays under every kept node (the kept ones stay
        valid when the copies are donated)."""
        if not self._escaped:
            return tree
        return _copy_under(tree, self._escaped, False)


def _copy_under(node: Any, escaped: set[int], inside: bool) -> Any:
    inside = inside or id(node) in escaped
    if isinstance(node, jax.Array):
        return node.copy() if inside else node
    if isinstance(node, eqx.Module):
        changed = {}
        for f in dataclasses.fields(node):
            if f.metadata.get("static", False) or f.name not in node.__dict__:
                continue
            value = node.__dict__[f.name]
            new = _copy_under(value, escaped, inside)
            if new is not value:
                changed[f.name] = new
        if not changed:
            return node
        out = object.__new__(type(node))
        out.__dict__.update(node.__dict__)
        out.__dict__.update(changed)
        return out
    if isinstance(node, (list, tuple)) and type(node) in (list, tuple):
        items = [_copy_under(v, escaped, inside) for v in node]
        if all(a is b for a, b in zip(items, node, strict=True)):
            return node
        return type(node)(items)
    if isinstance(node, dict) and type(node) is dict:
        items = {k: _copy_under(v, escaped, inside) for k, v in node.items()}
        if all(items[k] is node[k] for k in node):
            return node
        return items
    if isinstance(node, tuple):  # namedtuples (optax states)
        items = [_copy_under(v, escaped, inside) for v in node]
        if all(a is b for a, b in zip(items, node, strict=True)):
            return node
        return type(node)(*items)
    return node


def check_not_donated(tree: Any, name: str) -> None:
    """Raise a clear error when an array of ``tree`` was deleted by a donation."""
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and leaf.is_deleted():
            raise ValueError(
                f"argument `{name}`: holds an array whose buffer was donated to a training step "
                "(make_train_step(..., donate=True) reuses the input state's memory for its "
                "output, which deletes the input's arrays). Use the state the step returned, or "
                "keep a copy before the step: kept = jax.tree.map(lambda a: a.copy(), state)."
            )


__all__ = ["Escapes", "check_not_donated"]
