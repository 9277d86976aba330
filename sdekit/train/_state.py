"""The training state: everything needed to resume a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

__all__ = ["TrainState", "init_state"]


class TrainState(eqx.Module):
    """Model, EMA copies, optimiser state, step counter, RNG key and data-iterator state.

    Attributes:
        model: the network being trained (an equinox Module).
        ema: one EMA copy of ``model`` per entry of ``ema_decays`` (same structure as ``model``).
        opt_state: the optax optimiser state.
        step: number of completed training steps (int32 scalar array).
        key: typed PRNG key; each step splits it, so it changes every step.
        ema_decays: the EMA decay rates (static).
        ema_warmup: whether the EMA uses VDPM's ``min(decay, (1 + n) / (10 + n))`` warm-up (static).
        data_state: JSON-able state of the data iterator after the batches of the completed steps
            (static; ``None`` when the data source has no state).
        aux: the objective's auxiliary state (e.g. the target network of
            [`EqvReg`][sdekit.objectives.EqvReg]; ``None`` for most objectives).
    """

    model: Any
    ema: tuple
    opt_state: Any
    step: Any
    key: Any
    aux: Any = None
    ema_decays: tuple = eqx.field(static=True, default=())
    ema_warmup: bool = eqx.field(static=True, default=False)
    data_state: Any = eqx.field(static=True, default=None)

    @property
    def params(self) -> Any:
        """The trainable (inexact array) leaves of the model."""
        return eqx.filter(self.model, eqx.is_inexact_array)

    def ema_model(self, decay: float | None = None) -> Any:
        """The EMA copy with rate ``decay`` (the first one when ``None``; ``model`` without EMA)."""
        if not self.ema:
            if decay is None:
                return self.model
            raise ValueError(
                f"argument `decay`: got {decay!r}, expected None (this state keeps no EMA)."
            )
        if decay is None:
            return self.ema[0]
        for rate, copy in zip(self.ema_decays, self.ema, strict=True):
            if rate == decay:
                return copy
        raise ValueError(
            f"argument `decay`: got {decay!r}, expected one of {list(self.ema_decays)}."
        )


def _check_decays(ema_decays: Sequence[float]) -> tuple[float, ...]:
    if isinstance(ema_decays, (int, float)):
        ema_decays = (ema_decays,)
    out = []
    for d in ema_decays:
        if not (isinstance(d, (int, float)) and not isinstance(d, bool) and 0.0 <= d < 1.0):
            raise ValueError(
                f"argument `ema_decays`: got {ema_decays!r}, expected floats in [0, 1)."
            )
        out.append(float(d))
    if len(set(out)) != len(out):
        raise ValueError(f"argument `ema_decays`: got {ema_decays!r}, expected distinct rates.")
    return tuple(out)


def init_state(
    model: Any,
    optimizer: optax.GradientTransformation,
    *,
    key: Any,
    ema_decays: Sequence[float] | float = (0.9999,),
    ema_warmup: bool = True,
    data_state: dict | None = None,
    aux: Any = None,
) -> TrainState:
    """A fresh [`TrainState`][sdekit.train.TrainState] at step 0.

    Every EMA copy starts as a copy of ``model`` (the PSLD recipe).

    Args:
        model: the network (an equinox Module).
        optimizer: an optax optimiser, e.g. from [`make_optimizer`][sdekit.train.make_optimizer].
        key: PRNG key (typed ``jr.key`` or raw ``jr.PRNGKey`` data) for the training randomness.
        ema_decays: EMA rates; ``()`` keeps no EMA.
        ema_warmup: use VDPM's EMA warm-up ``min(decay, (1 + n) / (10 + n))`` (default; without
            it a young EMA is dominated by the initial weights).
        data_state: initial data-iterator state.
        aux: the objective's initial auxiliary state (``objective.init_aux(model)``).

    Returns:
        The training state.
    """
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"argument `optimizer`: got {type(optimizer).__name__}, expected an optax "
            "GradientTransformation."
        )
    decays = _check_decays(ema_decays)
    key = _as_typed_key(key)
    opt_state, ema, step = _init_arrays(model, optimizer, len(decays))
    return TrainState(
        model=model,
        ema=ema,
        opt_state=opt_state,
        step=step,
        key=key,
        ema_decays=decays,
        ema_warmup=bool(ema_warmup),
        data_state=data_state,
        aux=aux,
    )


@eqx.filter_jit
def _init_arrays(model: Any, optimizer: Any, n_ema: int) -> tuple:
    # one compiled call instead of one per leaf: the optimiser state, EMA copies, step counter
    params = eqx.filter(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    ema = tuple(
        jax.tree.map(lambda x: x + jnp.zeros((), x.dtype) if eqx.is_array(x) else x, model)
        for _ in range(n_ema)
    )
    return opt_state, ema, jnp.asarray(0, jnp.int32)


def _as_typed_key(key: Any) -> jax.Array:
    if isinstance(key, int):
        raise ValueError(
            f"argument `key`: got the int {key!r}, expected a PRNG key such as "
            f"jax.random.key({key})."
        )
    if not isinstance(key, jax.Array):
        raise ValueError(
            f"argument `key`: got {type(key).__name__}, expected a PRNG key array (jax.random.key)."
        )
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(
                f"argument `key`: got a key array of shape {key.shape}, expected a single key."
            )
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return jr.wrap_key_data(key)
    raise ValueError(
        f"argument `key`: got an array of dtype {key.dtype} and shape {key.shape}, expected a "
        "PRNG key."
    )
