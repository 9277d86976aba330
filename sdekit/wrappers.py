r"""Model wrappers: a network in, a network (``model(x, t, cond=None, *, key=None)``) out.

| wrapper | what it does |
| --- | --- |
| `Precond` | EDM's preconditioning around any network (an ``x0`` prediction) |
| `SigmaScaledScore` | a noise-scale-conditioned network as a score (reflected diffusion) |
| `ClassifierFreeGuidance` | ``(1 + w)`` conditional minus ``w`` unconditional |
| `SelfConditioning` | the network also sees its own previous estimate |
| `Symmetrised` | the group average: exact equivariance for any network |

Every wrapper is an ``eqx.Module`` and a network itself, so wrappers nest and work with every
objective and sampler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._custom_types import Array, ArrayLike, Data, Float, Key, Time, TimeT
from ._model import call_model
from ._validate import arg_error, broadcast_time, check_choice, check_real
from .nets._base import AbstractNet
from .nets.equivariant._groups import Group, act_time, get_group
from .parameterisation import X0, AbstractPrediction, convert, prediction
from .processes import (
    AbstractAffineGaussianProcess,
    AbstractClosedFormTransitionProcess,
    AbstractProcess,
)


# ------------------------------------------------------------------ EDM preconditioning
class Precond(eqx.Module):
    """EDM preconditioning (Karras et al. 2022) around any network, for any affine process.

    With ``s = alpha(t)`` and ``sigma~ = sigma(t) / alpha(t)`` (the noise level of ``x_t / s``),
    the wrapper returns the ``x0`` prediction

    ``D(x_t, t) = c_skip x_t / s + c_out F(c_in x_t / s, c_noise)``

    with ``c_skip = sd^2 / (sigma~^2 + sd^2)``, ``c_out = sigma~ sd / sqrt(sigma~^2 + sd^2)``,
    ``c_in = 1 / sqrt(sigma~^2 + sd^2)`` and ``c_noise = log(sigma~) / 4``. The network
    runs in whatever dtype it likes; the skip path and scalings stay float32. Use it with
    ``prediction="x0"``.
    """

    net: Any
    process: AbstractAffineGaussianProcess
    sigma_data: float = 0.5

    def __check_init__(self):
        check_real("sigma_data", self.sigma_data, lo=0.0, lo_open=True)
        if not isinstance(self.process, AbstractAffineGaussianProcess):
            raise TypeError(
                "argument `process`: got "
                f"{type(self.process).__name__}, expected an AbstractAffineGaussianProcess."
            )

    def coefficients(self, t: Time) -> tuple[Any, Any, Any, Any]:
        """``(c_skip, c_out, c_in, c_noise)`` at time ``t`` (in the ``x_t / alpha`` frame)."""
        t = jnp.asarray(t)
        sig = self.process.sigma(t) / self.process.alpha(t)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sig**2 + sd2)
        c_out = sig * self.sigma_data / jnp.sqrt(sig**2 + sd2)
        c_in = 1.0 / jnp.sqrt(sig**2 + sd2)
        c_noise = 0.25 * jnp.log(sig)
        return c_skip, c_out, c_in, c_noise

    def __call__(
        self, x: Float[Array, "batch *dims"], t: TimeT, cond: Any = None, *, key: Any = None
    ) -> Float[Array, "batch *dims"]:
        tb = broadcast_time(t, x)
        scale = self.process.alpha(tb)
        c_skip, c_out, c_in, _ = self.coefficients(tb)
        _, _, _, c_noise = self.coefficients(jnp.asarray(t))
        x_hat = x / scale
        out = call_model(self.net, (c_in * x_hat).astype(x.dtype), c_noise, cond, key)
        return c_skip * x_hat + c_out * out.astype(jnp.float32)


# ------------------------------------------------- reflected diffusion's score network
class SigmaScaledScore(eqx.Module):
    """A score model from a network conditioned on the noise scale (the reference's networks).

    Called with sdekit's convention ``model(x, t, cond=None, *, key=None)`` (``t`` the process
    time), it evaluates ``F = net(x, sigma(t), cond)`` (``noise_input="sigma"``, as the
    reference: its DDPM++ embeds ``log sigma`` with Fourier features; ``"t"`` passes ``t``) and
    returns the score ``F / sigma(t)`` (``scale_by_sigma=True``) or ``F``. Use it with
    ``prediction="score"`` in `sdekit.sampling.sample`.
    """

    net: Callable
    process: AbstractClosedFormTransitionProcess
    scale_by_sigma: bool = True
    noise_input: str = "sigma"

    def __check_init__(self):
        if not isinstance(self.process, AbstractClosedFormTransitionProcess):
            raise arg_error("process", type(self.process).__name__,
                            "an AbstractClosedFormTransitionProcess (e.g. ReflectedVE)")
        check_choice("noise_input", self.noise_input, ("sigma", "t"))

    def __call__(self, x: Data, t: Time, cond: Any = None, *, key: Key | None = None) -> Data:
        t = jnp.asarray(t, dtype=x.dtype)
        sigma = self.process.noise_scale(t).astype(x.dtype)
        noise = sigma if self.noise_input == "sigma" else t
        out = call_model(self.net, x, noise, cond, key)
        if not self.scale_by_sigma:
            return out
        return out / broadcast_time(sigma, out)


# ------------------------------------------------------- classifier-free guidance
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


def _optional_prediction(kind: Any) -> AbstractPrediction | None:
    return None if kind is None else prediction(kind)


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
    space: AbstractPrediction | None = eqx.field(default=None, converter=_optional_prediction)
    process: AbstractProcess | None = None
    prediction: AbstractPrediction | None = eqx.field(default=None,
                                                       converter=_optional_prediction)
    clip_x0: float | None = None

    def __post_init__(self):
        if self.null_label is None and isinstance(self.model, AbstractNet) \
                and self.model.num_classes is not None:
            self.null_label = self.model.num_classes  # sdekit.nets: index K is the null class

    def _same_space(self) -> bool:
        return self.space is None or type(self.space) is type(self.prediction)

    def __check_init__(self):
        if isinstance(self.w, bool) or not np.isfinite(float(self.w)):
            raise arg_error("w", self.w, "a finite guidance strength")
        if self.clip_x0 is not None and not float(self.clip_x0) > 0:
            raise arg_error("clip_x0", self.clip_x0, "None or a value > 0")
        converts = self.clip_x0 is not None or not self._same_space()
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
        if self.clip_x0 is None and self._same_space():
            return (1.0 + self.w) * o_c - self.w * o_u
        space = X0() if self.clip_x0 is not None else self.space

        def to(v):
            v = convert(self.process, v, x, t, source=self.prediction, target=space)
            return v if self.clip_x0 is None else jnp.clip(v, -self.clip_x0, self.clip_x0)

        g = (1.0 + self.w) * to(o_c) - self.w * to(o_u)
        return convert(self.process, g, x, t, source=space, target=self.prediction)


# ------------------------------------------------------------------ self-conditioning
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


# ------------------------------------------------------------------ symmetrisation
class Symmetrised(eqx.Module):
    """``D_sym(x) = (1/|G|) sum_g g^{-1} . D(g . x)``: the group average of any network.

    Exactly equivariant (``D_sym(h . x) = h . D_sym(x)`` for every ``h``, to round-off) whatever
    ``net`` is, because ``g -> g h`` permutes the group. The ``|G|`` transformed copies are
    batched into one call of ``net`` (``|G|`` times the cost of one evaluation). ``net`` is any
    callable ``(x, t, cond=None, *, key=None)`` on NHWC images whose output is an image of the
    same spatial size (eps, x0, v, score predictions all transform like ``x`` under a pixel
    permutation); ``t`` may be per example or a per-pixel map (transformed with ``x``).
    ``estimate=`` (self-conditioning) is transformed like ``x``. Usable with every sampler:
    it is just a network.
    """

    net: Any
    group: str = eqx.field(static=True)

    def __init__(self, net: Any, group: str | Group):
        if not callable(net):
            raise arg_error("net", type(net).__name__, "a callable network (x, t, cond=None)")
        self.net = net
        self.group = get_group(group).name

    def __call__(
        self,
        x: Array,
        t: ArrayLike,
        cond: ArrayLike | None = None,
        *,
        key: PRNGKeyArray | None = None,
        estimate: Array | None = None,
    ) -> Array:
        if x.ndim != 4 or x.shape[1] != x.shape[2]:
            raise arg_error("x", f"shape {x.shape}", "square NHWC images (N, H, H, C)")
        grp = get_group(self.group)
        n, order = x.shape[0], grp.order
        xs = jnp.concatenate(grp.orbit(x), axis=0)
        t = jnp.asarray(t)
        if t.ndim == 0:
            ts = t
        else:
            tb = jnp.broadcast_to(t, (n,) + t.shape[1:]) if t.shape[0] == 1 else t
            ts = jnp.concatenate([act_time(grp, g, tb, x) for g in range(order)], axis=0)
        cs = None
        if cond is not None:
            c = jnp.broadcast_to(jnp.asarray(cond), (n,) + jnp.shape(cond)[1:])
            cs = jnp.concatenate([c] * order, axis=0)
        kwargs = {}
        if estimate is not None:
            kwargs["estimate"] = jnp.concatenate(grp.orbit(jnp.asarray(estimate)), axis=0)
        if kwargs:
            out = self.net(xs, ts, **({} if cs is None else {"cond": cs}), key=key, **kwargs)
        else:
            out = call_model(self.net, xs, ts, cs, key)
        if out.ndim != 4 or out.shape[:3] != xs.shape[:3]:
            raise ValueError(
                f"symmetrise: the network returned shape {out.shape}, expected images of spatial "
                f"shape {xs.shape[1:3]} (outputs must transform like the input)."
            )
        outs = jnp.split(out, order, axis=0)
        return sum(grp.act(grp.inv(g), outs[g]) for g in range(order)) / order

    def next_estimate(self, output: Array, x: Array, t: ArrayLike) -> Array:
        """Forwarded to a self-conditioning ``net`` (samplers call it between steps)."""
        return self.net.next_estimate(output, x, t)


def symmetrise(denoiser: Any, group: str | Group) -> Symmetrised:
    """Make any denoiser exactly ``group``-equivariant by averaging over the group (at
    ``|G|`` network evaluations per call): ``(1/|G|) sum_g g^{-1} . D(g . x)``. See
    [`Symmetrised`][sdekit.wrappers.Symmetrised]."""
    return Symmetrised(denoiser, group)


__all__ = [
    "ClassifierFreeGuidance",
    "Precond",
    "SelfConditioning",
    "SigmaScaledScore",
    "Symmetrised",
    "self_conditioning_forward",
    "symmetrise",
]
