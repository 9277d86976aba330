"""Self-conditioning (Chen et al. 2022, "Analog Bits"): the network also sees its own previous
estimate, concatenated to ``x`` on the channel axis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._errors import arg_error


class SelfConditioning(eqx.Module):
    """Wrap a network whose input has ``C + estimate_channels`` channels so that it is called
    as an ordinary ``(x, t, cond=None, *, key=None)`` network on ``C``-channel ``x``.

    ``net(concat([x, estimate], axis=-1), t, cond, key=key)`` is evaluated, where
    ``estimate`` is:

    - the ``estimate=`` argument when given (samplers pass the previous step's estimate; it is
      passed through ``stop_gradient``);
    - otherwise, at inference (``key=None``), zeros;
    - otherwise (training, ``key`` given), what ``self_conditioning_forward`` produces: with
      probability ``p_train`` an estimate from a first, gradient-free pass with a zero
      estimate, else zeros.

    ``to_estimate(output, x, t)`` turns the network's output into the estimate fed back
    (default: the output itself, i.e. the network predicts ``x0``). For other
    parameterisations pass a conversion to ``x0``; networks know nothing about SDEs, so this
    conversion comes from the caller.
    """

    net: Any
    estimate_channels: int = eqx.field(static=True)
    p_train: float | int = eqx.field(static=True, default=0.5)
    to_estimate: Callable | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if int(self.estimate_channels) < 1:
            raise arg_error("estimate_channels", self.estimate_channels, "a positive integer")
        if not 0.0 <= float(self.p_train) <= 1.0:
            raise arg_error("p_train", self.p_train, "a probability in [0, 1]")

    def _run(self, x, estimate, t, cond, key):
        inp = jnp.concatenate([x, jax.lax.stop_gradient(estimate).astype(x.dtype)], axis=-1)
        kwargs = {} if cond is None else {"cond": cond}
        return self.net(inp, t, key=key, **kwargs)

    def _estimate_from(self, out, x, t):
        est = out if self.to_estimate is None else self.to_estimate(out, x, t)
        if est.shape[-1] != self.estimate_channels:
            raise ValueError(
                f"self-conditioning: the estimate has {est.shape[-1]} channels, expected "
                f"estimate_channels={self.estimate_channels}; set `to_estimate` or "
                "`estimate_channels` accordingly."
            )
        return est

    def zeros_estimate(self, x: Array) -> Array:
        return jnp.zeros((*x.shape[:-1], self.estimate_channels), x.dtype)

    def __call__(
        self,
        x: Array,
        t: ArrayLike,
        cond: ArrayLike | None = None,
        *,
        key: PRNGKeyArray | None = None,
        estimate: Array | None = None,
    ) -> Array:
        x = jnp.asarray(x, jnp.float32)
        if estimate is not None:
            estimate = jnp.asarray(estimate)
            want = (*x.shape[:-1], self.estimate_channels)
            if estimate.shape != want:
                raise arg_error("estimate", f"shape {estimate.shape}", f"shape {want}")
            return self._run(x, estimate, t, cond, key)
        if key is None or self.p_train == 0.0:
            return self._run(x, self.zeros_estimate(x), t, cond, key)
        return self_conditioning_forward(self, x, t, cond, key=key, p=self.p_train)

    def next_estimate(self, output: Array, x: Array, t: ArrayLike) -> Array:
        """The estimate to feed back at the next call: ``to_estimate(output, x, t)`` (or
        ``output``), without gradient. Samplers call this after each step and pass the result
        as ``estimate=`` to the next network evaluation."""
        return jax.lax.stop_gradient(self._estimate_from(output, x, t))


def self_conditioning_forward(
    model: SelfConditioning,
    x: Array,
    t: ArrayLike,
    cond: ArrayLike | None = None,
    *,
    key: PRNGKeyArray,
    p: ArrayLike = 0.5,
) -> Array:
    """The self-conditioning training forward pass.

    With probability ``p`` (one coin per call, i.e. per batch), first run the network with a
    zero estimate and no gradient to get an estimate, then run it again conditioned on that
    estimate; otherwise run it once with a zero estimate. Returns the (second) output, whose
    gradient flows only through the second pass. The coin uses ``lax.cond``, so the extra
    pass is only computed when it is used.
    """
    if not isinstance(model, SelfConditioning):
        raise arg_error("model", type(model).__name__, "a SelfConditioning wrapper")
    x = jnp.asarray(x, jnp.float32)
    k_coin, k_first, k_second = jax.random.split(key, 3)
    zeros = model.zeros_estimate(x)

    def first_pass(_):
        out = model._run(x, zeros, t, cond, k_first)
        return jax.lax.stop_gradient(model._estimate_from(out, x, t).astype(zeros.dtype))

    use = jax.random.bernoulli(k_coin, p)
    est = jax.lax.cond(use, first_pass, lambda _: zeros, None)
    return model._run(x, est, t, cond, k_second)
