"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance") as a
model wrapper, and the label dropout that trains the null branch.

The wrapper runs the network once on a doubled batch (conditional inputs, then the same inputs
with the null label) and returns ``(1 + w) out_c - w out_u``: ``w = 0`` is plain conditional
sampling (VDPM's convention; "guidance scale" ``1 + w`` elsewhere). Because every conversion
between eps, x0, score, v and velocity is affine in the prediction at fixed ``(x_t, t)`` and the
weights sum to one, guiding in any of these spaces gives the same result; the space matters only
when the branches are clipped in x0 first (``clip_x0``, VDPM's guided clipped means).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Data, Key
from .._errors import arg_error, check_choice
from .._model import call_model
from ..parameterisation import PREDICTIONS, convert
from ..processes import AbstractProcess


def _null_for(null_label: Any, labels: Any, where: str) -> Any:
    """The null label: the given one; 0 (the zero vector) for float tag vectors; an error for
    integer class labels, whose null index is the network's ``num_classes``."""
    if null_label is not None:
        return null_label
    if jnp.issubdtype(jnp.asarray(labels).dtype, jnp.floating):
        return 0
    raise arg_error("null_label", None, f"the null class index for integer labels in {where} "
                    "(sdekit's networks use num_classes: pass null_label=num_classes, or give "
                    "ClassifierFreeGuidance an sdekit network, whose num_classes it reads)")


def drop_labels(key: Key, labels: Any, p: float, null_label: Any = None) -> Any:
    """Replace each example's label by ``null_label`` with probability ``p`` (for CFG training).

    ``labels`` has a leading batch axis (class indices ``(N,)`` or tag vectors ``(N, K)``); a
    dropped example has all its entries set to ``null_label``. For integer class labels
    ``null_label`` is required: sdekit's networks (`sdekit.nets.UNet`, `sdekit.nets.DiT`) use
    the index ``num_classes`` as the null class. For float tag vectors it defaults to 0.
    """
    if isinstance(p, bool) or not 0.0 <= float(p) <= 1.0:
        raise arg_error("p", p, "a probability in [0, 1]")
    labels = jnp.asarray(labels)
    if labels.ndim < 1:
        raise arg_error("labels", labels.shape, "an array with a leading batch axis")
    null_label = _null_for(null_label, labels, "drop_labels")
    drop = jr.bernoulli(key, p, labels.shape[:1]).reshape((-1,) + (1,) * (labels.ndim - 1))
    return jnp.where(drop, jnp.asarray(null_label, labels.dtype), labels)


class ClassifierFreeGuidance(eqx.Module):
    """Wrap a conditional ``model(x, t, cond)`` into the guided ``(1 + w) cond - w uncond``.

    **Arguments:** ``model``; ``w`` (guidance strength, 0 = conditional); ``null_label`` (what
    replaces ``cond`` in the unconditional branch; ``None``: the network's null class
    ``model.num_classes`` for an sdekit network, 0 for float tag vectors, otherwise an error;
    VDPM's reference code uses 0); ``space``: the prediction space
    of the combination (``None``: the model's own output). A ``space`` other than the model's
    output, or ``clip_x0`` (clip each branch's x0 to ``[-clip_x0, clip_x0]`` before combining),
    needs ``process`` and ``prediction`` (what the model outputs) to convert. The wrapper's output
    is in the model's own prediction space, so pass it to ``sample`` with the same
    ``prediction`` and the labels as ``cond``. One model call per evaluation on a doubled batch.
    """

    model: Callable
    w: float = 0.0
    null_label: Any = None
    space: str | None = None
    process: AbstractProcess | None = None
    prediction: str | None = None
    clip_x0: float | None = None

    def __post_init__(self):
        if self.null_label is None:
            k = getattr(self.model, "num_classes", None)  # sdekit.nets: index K is the null class
            if isinstance(k, int) and not isinstance(k, bool):
                self.null_label = k

    def __check_init__(self):
        if isinstance(self.w, bool) or not np.isfinite(float(self.w)):
            raise arg_error("w", self.w, "a finite guidance strength")
        if self.space is not None:
            check_choice("space", self.space, PREDICTIONS)
        if self.prediction is not None:
            check_choice("prediction", self.prediction, PREDICTIONS)
        if self.clip_x0 is not None and not float(self.clip_x0) > 0:
            raise arg_error("clip_x0", self.clip_x0, "None or a value > 0")
        converts = self.clip_x0 is not None or (
            self.space is not None and self.space != self.prediction)
        if converts and (self.process is None or self.prediction is None):
            raise ValueError(
                "arguments `process` and `prediction`: got "
                f"process={type(self.process).__name__ if self.process is not None else None} "
                f"and prediction={self.prediction!r}, expected both to be given when "
                f"space={self.space!r} or clip_x0={self.clip_x0!r} requires a conversion."
            )

    def __call__(self, x: Data, t: Any, cond: Any = None, *, key: Any = None) -> Data:
        if cond is None:
            raise arg_error("cond", None, "labels for the conditional branch (classifier-free "
                            "guidance needs a condition; pass cond= to sample)")
        n = x.shape[0]
        t = jnp.asarray(t)
        x2 = jnp.concatenate([x, x], axis=0)
        t2 = jnp.concatenate([t, t], axis=0) if t.ndim > 0 and t.shape[0] == n else t
        def doubled(c):
            c = jnp.asarray(c)
            null = _null_for(self.null_label, c, "ClassifierFreeGuidance")
            return jnp.concatenate([c, jnp.full_like(c, null)], axis=0)

        c2 = jax.tree.map(doubled, cond)
        out = call_model(self.model, x2, t2, c2, key)
        o_c, o_u = out[:n], out[n:]
        if self.clip_x0 is None and (self.space is None or self.space == self.prediction):
            return (1.0 + self.w) * o_c - self.w * o_u
        space = "x0" if self.clip_x0 is not None else self.space

        def to(v):
            v = convert(self.process, v, x, t, source=self.prediction, target=space)
            return v if self.clip_x0 is None else jnp.clip(v, -self.clip_x0, self.clip_x0)

        g = (1.0 + self.w) * to(o_c) - self.w * to(o_u)
        return convert(self.process, g, x, t, source=space, target=self.prediction)


__all__ = ["ClassifierFreeGuidance", "drop_labels"]
