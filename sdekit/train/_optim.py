"""Optimisers (optax) and exponential moving averages of parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

__all__ = [
    "make_optimizer",
    "make_schedule",
    "ema_decay_at",
    "ema_update",
    "current_lr",
    "has_updated",
]

_OPTIMIZERS = ("adam", "adamw", "radam")


def _err(name: str, given: Any, expected: str) -> ValueError:
    return ValueError(f"argument `{name}`: got {given!r}, expected {expected}.")


def make_schedule(
    lr: float | int,
    warmup_steps: int = 0,
    cosine_decay_steps: int | None = None,
    final_lr: float | int = 0.0,
) -> optax.Schedule:
    """The learning-rate schedule used by [`make_optimizer`][sdekit.train.make_optimizer].

    ``lr(step) = lr * min(step / warmup_steps, 1) * c(step)`` with ``step`` counted from 0, so the
    first update has learning rate 0 (the PSLD recipe). Without cosine decay ``c = 1``; with
    ``cosine_decay_steps = D`` the rate then follows a half cosine from ``lr`` down to ``final_lr``
    over the ``D`` steps after the warm-up, and stays at ``final_lr``.

    Args:
        lr: peak learning rate (> 0).
        warmup_steps: length of the linear warm-up from 0 (0 disables it).
        cosine_decay_steps: length of the cosine decay after the warm-up, or ``None``.
        final_lr: learning rate at the end of the cosine decay.

    Returns:
        An optax schedule ``step -> learning rate``.
    """
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise _err("lr", lr, "a finite float > 0")
    if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
        raise _err("warmup_steps", warmup_steps, "an int >= 0")
    if cosine_decay_steps is not None and not (
        isinstance(cosine_decay_steps, int) and cosine_decay_steps > 0
    ):
        raise _err("cosine_decay_steps", cosine_decay_steps, "None or an int > 0")
    if not (isinstance(final_lr, (int, float)) and 0 <= final_lr <= lr):
        raise _err("final_lr", final_lr, f"a float in [0, lr={lr}]")

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        factor = jnp.asarray(1.0, jnp.float32)
        if warmup_steps > 0:
            factor = jnp.minimum(step / warmup_steps, 1.0)
        value = lr * factor
        if cosine_decay_steps is not None:
            frac = jnp.clip((step - warmup_steps) / cosine_decay_steps, 0.0, 1.0)
            cos = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
            value = factor * (final_lr + (lr - final_lr) * cos)
        return value

    return schedule


def make_optimizer(
    name: str = "adam",
    lr: float | int = 2e-4,
    warmup_steps: int = 0,
    clip_norm: float | int | None = 1.0,
    b1: float | int = 0.9,
    b2: float | int = 0.999,
    eps: float | int = 1e-8,
    weight_decay: float | int = 0.0,
    cosine_decay_steps: int | None = None,
    accumulate: int = 1,
    final_lr: float | int = 0.0,
) -> optax.GradientTransformation:
    """Build an optax optimiser: global-norm clipping, then Adam / AdamW / RAdam with a schedule.

    The chain is ``clip_by_global_norm(clip_norm)`` -> (``add_decayed_weights`` for ``adam`` and
    ``radam`` when ``weight_decay > 0``, i.e. PyTorch-style L2) -> the optimiser with the learning
    rate of [`make_schedule`][sdekit.train.make_schedule]. ``adamw`` decouples the weight decay
    (``p -= lr * weight_decay * p``, as PyTorch's AdamW). The learning rate is injected as a
    hyper-parameter, so the rate used by the last update can be read from the optimiser state
    (see [`current_lr`][sdekit.train.current_lr]).

    With ``accumulate = k > 1`` the optimiser is wrapped in ``optax.MultiSteps``: each call
    receives the gradient of one micro-batch, the mean over ``k`` calls is applied on every
    ``k``-th call, and the other calls return zero updates. Schedules and warm-up count applied
    updates, not micro-batches.

    The PSLD CIFAR-10 recipe is ``make_optimizer("adam", 2e-4, warmup_steps=5000, clip_norm=1.0)``;
    VDPM's is ``make_optimizer("adamw", lr, warmup_steps=w, weight_decay=wd, accumulate=k)``.

    Args:
        name: ``"adam"``, ``"adamw"`` or ``"radam"``.
        lr: peak learning rate.
        warmup_steps: linear warm-up length from 0 (``lr * min(step / warmup_steps, 1)``).
        clip_norm: maximum global gradient norm, or ``None`` for no clipping.
        b1: first-moment decay.
        b2: second-moment decay.
        eps: Adam's epsilon.
        weight_decay: weight decay (L2 for adam/radam, decoupled for adamw).
        cosine_decay_steps: optional cosine decay length after the warm-up.
        accumulate: number of micro-batches per update (gradient accumulation).
        final_lr: learning rate reached at the end of the cosine decay.

    Returns:
        An ``optax.GradientTransformation``.
    """
    if name not in _OPTIMIZERS:
        raise _err("name", name, "one of " + ", ".join(repr(n) for n in _OPTIMIZERS))
    if clip_norm is not None and not (isinstance(clip_norm, (int, float)) and clip_norm > 0):
        raise _err("clip_norm", clip_norm, "None or a float > 0")
    for arg, value in (("b1", b1), ("b2", b2)):
        if not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise _err(arg, value, "a float in [0, 1)")
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise _err("eps", eps, "a float >= 0")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise _err("weight_decay", weight_decay, "a float >= 0")
    if not (isinstance(accumulate, int) and not isinstance(accumulate, bool) and accumulate >= 1):
        raise _err("accumulate", accumulate, "an int >= 1")
    schedule = make_schedule(lr, warmup_steps, cosine_decay_steps, final_lr)

    parts = []
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(float(clip_norm)))
    if name == "adamw":
        parts.append(
            optax.inject_hyperparams(optax.adamw)(
                learning_rate=schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay
            )
        )
    else:
        if weight_decay > 0:
            parts.append(optax.add_decayed_weights(weight_decay))
        base = optax.adam if name == "adam" else optax.radam
        parts.append(optax.inject_hyperparams(base)(learning_rate=schedule, b1=b1, b2=b2, eps=eps))
    opt = optax.chain(*parts)
    if accumulate > 1:
        opt = optax.MultiSteps(opt, every_k_schedule=accumulate).gradient_transformation()
    return opt


def current_lr(opt_state: Any) -> jax.Array | None:
    """The learning rate used by the last update, if the optimiser injected it (else ``None``).

    Looks for the first ``optax.inject_hyperparams`` state holding a ``"learning_rate"``.
    """
    kinds = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    for node in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, kinds)):
        if isinstance(node, kinds) and eqx.is_array(node.hyperparams.get("learning_rate")):
            return node.hyperparams["learning_rate"]
    return None


def has_updated(opt_state: Any) -> jax.Array:
    """Whether the last optimiser call applied an update (``False`` between accumulation steps)."""
    if isinstance(opt_state, optax.MultiStepsState):
        return jnp.logical_and(opt_state.mini_step == 0, opt_state.gradient_step > 0)
    return jnp.asarray(True)


def ema_decay_at(decay: float | int, num_updates: Any, warmup: bool) -> jax.Array:
    """The EMA decay for update number ``num_updates`` (1 for the first update).

    Without warm-up it is ``decay``; with it, VDPM's ``min(decay, (1 + n) / (10 + n))``.
    """
    decay_arr = jnp.asarray(decay, jnp.float32)
    if not warmup:
        return decay_arr
    n = jnp.asarray(num_updates, jnp.float32)
    return jnp.minimum(decay_arr, (1.0 + n) / (10.0 + n))


def ema_update(
    ema_models: Sequence[Any], model: Any, decays: Sequence[Any], apply: Any = True
) -> tuple:
    """``ema <- decay * ema + (1 - decay) * params`` for each EMA copy (floating leaves only).

    ``apply`` (a boolean scalar) leaves the averages unchanged when false (used between gradient
    accumulation steps).
    """
    params = eqx.filter(model, eqx.is_inexact_array)
    out = []
    for ema, decay in zip(ema_models, decays, strict=True):
        ema_params, ema_static = eqx.partition(ema, eqx.is_inexact_array)

        def _avg(e, p, decay=decay):
            new = (decay * e + (1.0 - decay) * p).astype(e.dtype)
            return jnp.where(apply, new, e)

        ema_params = jax.tree.map(_avg, ema_params, params)
        out.append(eqx.combine(ema_params, ema_static))
    return tuple(out)
