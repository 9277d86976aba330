"""The one calling convention for networks: ``model(x, t, cond=None, *, key=None)``.

``x`` is a batch (leading axis), ``t`` a scalar, per-example ``(N,)`` or shaped like ``x``,
``cond`` optional labels, and ``key`` the dropout key (dropout is active only when a key is
given). Plain callables ``f(x, t)`` are accepted too: `call_model` passes ``cond`` and
``key`` only when they are set and the callable takes them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def _accepts(fn: Callable, name: str) -> bool:
    target = fn.__call__ if not inspect.isfunction(fn) and callable(fn) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return True
    params = sig.parameters
    if name in params:
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_model(model: Callable, x: Any, t: Any, cond: Any = None, key: Any = None) -> Any:
    """Call ``model`` with the sdekit convention, passing ``cond``/``key`` only when needed."""
    kwargs = {}
    if cond is not None:
        kwargs["cond"] = cond
    if key is not None and _accepts(model, "key"):
        kwargs["key"] = key
    return model(x, t, **kwargs)
