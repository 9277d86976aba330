"""SiT's objectives and ComboStoc's per-element time (Ma et al. 2024; Xu et al. 2024).

All in sdekit's time (``t = 0`` data, ``t = 1`` noise; SiT's time is ``1 - t``) and sign
(the velocity is ``dx/dt`` towards the noise, minus SiT's).

- [`InterpolantLoss`][sdekit.objectives.InterpolantLoss]: SiT's velocity, noise and score
  losses with the ``velocity`` and ``likelihood`` weightings, for any affine Gaussian process,
  optionally with ComboStoc's compensated velocity target.
- [`ComboStoc`][sdekit.objectives.ComboStoc]: a time sampler returning a time of the data's
  shape, with the elements that share a time chosen by a mode.
- [`compensate`][sdekit.objectives.compensate],
  [`combostoc_times`][sdekit.objectives.combostoc_times]: the pure maths, for tests and custom
  losses.
- [`sit_eps`][sdekit.objectives.sit_eps], [`sit_interval`][sdekit.objectives.sit_interval]:
  SiT's end-point cut-offs and training / sampling intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key, Shape, Time
from .._model import call_model
from .._validate import arg_error, broadcast_time, check_choice, check_order, check_output_shape
from ..parameterisation import AbstractPrediction, Eps, Score, Velocity
from ..processes import AbstractAffineGaussianProcess
from ..processes._interpolant import PATHS, Interpolant
from ._base import AbstractObjective, mean_per_example
from ._time import AbstractTimeSampler, UniformTime
from ._weighting import AbstractWeighting, Constant, SiTLikelihood, SiTVelocity, weighting

#: Predictions of `InterpolantLoss` (SiT's ``--prediction``; ``eps`` is an alias of ``noise``).
INTERPOLANT_PREDICTIONS: tuple[str, ...] = ("velocity", "noise", "score", "eps")
#: SiT's ``--loss-weight`` values (``None`` is no weighting).
INTERPOLANT_WEIGHTINGS: tuple[Any, ...] = (None, "velocity", "likelihood")
#: ComboStoc modes: which elements get their own time (see `ComboStoc`).
COMBOSTOC_MODES: tuple[str, ...] = ("none", "channel", "position", "all")
_ALIASES = {"UNSYNC_NONE": "none", "UNSYNC_VEC": "channel", "UNSYNC_PATCH": "position",
            "UNSYNC_ALL": "all"}
#: The cut-off used where SiT's interval would put a sampler on a singularity.
SINGULAR_EPS = 1e-3


# --- SiT's interval rules ------------------------------------------------------------------
def _path_of(path: Any) -> str:
    p = path.path if isinstance(path, Interpolant) else str(path).lower()
    check_choice("path", p, PATHS)
    return p


def _prediction(prediction: Any) -> str:
    """SiT's name of a prediction (``velocity``, ``noise`` or ``score``) from a name or module."""
    if isinstance(prediction, AbstractPrediction):
        names = {Velocity: "velocity", Eps: "noise", Score: "score"}
        if type(prediction) not in names:
            raise arg_error("prediction", prediction, "Velocity(), Eps() or Score() (SiT's "
                            "velocity, noise and score models)")
        return names[type(prediction)]
    check_choice("prediction", prediction, INTERPOLANT_PREDICTIONS)
    return "noise" if prediction == "eps" else prediction


_MODULES = {"velocity": Velocity(), "noise": Eps(), "score": Score()}


def sit_eps(path: Any, prediction: str = "velocity", *, train_eps: float | None = None,
            sample_eps: float | None = None) -> tuple[float, float]:
    """``(train_eps, sample_eps)``: SiT's end-point cut-offs with its defaults.

    Defaults (``create_transport``): ``vp``: ``1e-5`` and ``1e-3``; ``linear``/``gvp`` with a
    noise or score model: ``1e-3`` and ``1e-3``; ``linear``/``gvp`` velocity: ``0`` and ``0``.

    **Differences from the reference (fixed on purpose):** each value is resolved on its own,
    so a given ``sample_eps`` is honoured even when ``train_eps`` is not given (SiT HEAD ignores
    it then; ComboStoc's older copy leaves ``sample_eps = None`` and crashes every noise/score
    sampler), and values given for velocity models are honoured (SiT forces them to 0).
    """
    p, pred = _path_of(path), _prediction(prediction)
    if p == "vp":
        d_train, d_sample = 1e-5, 1e-3
    elif pred == "velocity":
        d_train, d_sample = 0.0, 0.0
    else:
        d_train, d_sample = 1e-3, 1e-3
    te = d_train if train_eps is None else float(train_eps)
    se = d_sample if sample_eps is None else float(sample_eps)
    for name, v in (("train_eps", te), ("sample_eps", se)):
        if not 0.0 <= v < 0.5:
            raise arg_error(name, v, "a value in [0, 0.5)")
    return te, se


def sit_interval(path: Any, prediction: str = "velocity", kind: str = "train", *,
                 diffusion: str = "sigma", last_step_size: float = 0.04, solver: str = "euler",
                 train_eps: float | None = None, sample_eps: float | None = None,
                 sit_convention: bool = False) -> tuple[float, float]:
    """SiT's ``check_interval``: the time interval for training or for a sampler's grid.

    ``kind`` is ``train``, ``ode`` or ``sde``. Returns ``(t_lo, t_hi)`` in sdekit's time
    (``t_lo`` nearest the data), or SiT's ``(t0, t1)`` with ``sit_convention=True``. In SiT's
    time: ``vp``: ``[0, 1 - eps]``; ``linear``/``gvp`` with a noise or score model, or any SDE:
    ``t0 = eps`` (SDE with ``SBDM`` diffusion or non-velocity model) else 0, ``t1 = 1 - eps``;
    ``linear``/``gvp`` velocity training or ODE: ``[0, 1]``. For an SDE with a last step of size
    ``h > 0``, ``t1 = 1 - h`` (the last step covers the rest).

    **Fixed on purpose:** where the reference's interval puts a sampler on a singularity it is
    moved by `SINGULAR_EPS` (``1e-3``): the ``SBDM`` diffusion ``w = t/(1-t)`` (sdekit time) is
    infinite at the noise end for ``linear``/``gvp`` (SiT starts velocity models there and gets
    NaN), and stochastic Heun without a last step evaluates the score at ``sigma = 0``.
    """
    check_choice("kind", kind, ("train", "ode", "sde"))
    check_choice("solver", solver, ("euler", "heun"))
    p, pred = _path_of(path), _prediction(prediction)
    te, se = sit_eps(p, pred, train_eps=train_eps, sample_eps=sample_eps)
    eps = te if kind == "train" else se
    sde = kind == "sde"
    h = float(last_step_size) if sde else 0.0
    if p == "vp":
        t0, t1 = 0.0, 1.0 - (h if h > 0 else eps)
    elif pred != "velocity" or sde:
        t0 = eps if ((sde and diffusion == "SBDM") or pred != "velocity") else 0.0
        t1 = 1.0 - (h if h > 0 else eps)
        if sde and diffusion == "SBDM":
            t0 = max(t0, SINGULAR_EPS)
        if sde and solver == "heun" and h == 0.0:
            t1 = min(t1, 1.0 - SINGULAR_EPS)
    else:
        t0, t1 = 0.0, 1.0
    if sit_convention:
        return t0, t1
    return 1.0 - t1, 1.0 - t0


# --- ComboStoc ------------------------------------------------------------------------------
def _mode(mode: Any) -> Any:
    if isinstance(mode, str):
        mode = _ALIASES.get(mode, mode)
        check_choice("mode", mode, COMBOSTOC_MODES)
        return mode
    try:
        axes = tuple(int(a) for a in mode)
    except TypeError:
        raise arg_error("mode", mode, "one of " + ", ".join(COMBOSTOC_MODES)
                        + " or a tuple of non-batch axes that share a time") from None
    if any(a < 1 for a in axes):
        raise arg_error("mode", mode, "axes >= 1 (axis 0 is the batch)")
    return axes


def mode_shape(mode: Any, shape: Shape) -> Shape:
    """The shape of one ComboStoc draw for data of shape ``shape`` (batch first).

    ``none``: ``(N, 1, ..., 1)`` (one time per example); ``channel``: ``(N, 1, ..., 1, C)`` (one
    per channel / feature, shared by all positions, tokens or parts); ``position``:
    ``(N, H, W, 1)`` (one per position, token or part, shared by its channels); ``all``: the
    data shape; a tuple of axes: size 1 on those (shared) axes.
    """
    mode = _mode(mode)
    shape = tuple(int(s) for s in shape)
    n, rest = shape[0], shape[1:]
    if mode == "none":
        return (n,) + (1,) * len(rest)
    if mode == "channel":
        return (n,) + (1,) * (len(rest) - 1) + rest[-1:]
    if mode == "position":
        return (n,) + rest[:-1] + (1,)
    if mode == "all":
        return shape
    if any(a >= len(shape) for a in mode):
        raise arg_error("mode", mode, f"axes of a {len(shape)}-d data array")
    return tuple(1 if i in mode else s for i, s in enumerate(shape))


def combostoc_times(t_ori: Array, t_mode: Array, p: Array, shape: Shape, *, halfmix: bool = True,
                    blend: bool = True) -> Array:
    """ComboStoc's time construction (``Transport.sample``), for given uniform draws.

    ``t_ori`` (per example, ``(N,)``) is the synchronised time; ``t_mode`` (a `mode_shape`)
    the unsynchronised one. With ``halfmix`` the first ``N // 2`` examples take ``t_mode`` and
    the rest ``t_ori`` (otherwise every example takes ``t_mode``); with ``blend`` the result is
    ``(1 - p) t_ori + p t`` for one scalar ``p`` per batch. Returns a time of shape ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    x = jnp.zeros(shape, dtype=jnp.result_type(t_ori, float))
    t_o = jnp.broadcast_to(broadcast_time(t_ori, x, name="t_ori"), shape)
    t_m = jnp.broadcast_to(broadcast_time(t_mode, x, name="t_mode"), shape)
    if halfmix:
        first = (jnp.arange(shape[0]) < shape[0] // 2).reshape((-1,) + (1,) * (len(shape) - 1))
        t = jnp.where(first, t_m, t_o)
    else:
        t = t_m
    if blend:
        t = (1.0 - p) * t_o + p * t
    return t


class ComboStoc(AbstractTimeSampler):
    """ComboStoc's time sampler (Xu et al. 2024): a time of the data's shape, one per group.

    ``mode`` says which elements get their own time: ``none`` (one per example: SiT, but
    still half-mixed and blended), ``channel`` (one per channel / feature, ComboStoc's
    ``UNSYNC_VEC``), ``position`` (one per pixel, token or part, shared by its channels:
    ``UNSYNC_PATCH``), ``all`` (one per element: ``UNSYNC_ALL``), or a tuple of the non-batch
    axes that share a time. ComboStoc's names ``UNSYNC_*`` are accepted.

    A call draws ``t_ori ~ U[t_min, t_max]`` per example, the mode's draw, and one ``p ~ U(0, 1)``
    per batch, and returns `combostoc_times` (``halfmix``: only the first half-batch is
    unsynchronised; ``blend``: ``t = (1 - p) t_ori + p t``). Use it as the ``time_sampler`` of
    [`InterpolantLoss`][sdekit.objectives.InterpolantLoss] or of [`DSM`][sdekit.objectives.DSM]
    (any Gaussian process).
    """

    mode: Any = "all"
    halfmix: bool = True
    blend: bool = True
    t_min: float = 0.0
    t_max: float = 1.0

    def __check_init__(self):
        _mode(self.mode)
        check_order("t_min", self.t_min, "t_max", self.t_max)

    @property
    def per_element(self) -> bool:
        """Always True: the time has the data's shape."""
        return True

    def __call__(self, key: Key, data_shape: Shape) -> Array:
        shape = tuple(int(s) for s in data_shape)
        k_ori, k_mode, k_p = jr.split(key, 3)
        t_ori = self.draw(k_ori, shape[:1])
        t_mode = self.draw(k_mode, mode_shape(self.mode, shape))
        p = jr.uniform(k_p, (), dtype=t_ori.dtype)
        return combostoc_times(t_ori, t_mode, p, shape, halfmix=self.halfmix, blend=self.blend)

    def draw(self, key: Key, shape: Shape) -> Array:
        return jr.uniform(key, shape, minval=self.t_min, maxval=self.t_max)


def compensate(x0: Data, x_t: Data, u: Data, *, first_half: bool = True) -> Data:
    """ComboStoc's compensated velocity target (``compensate_offdiagonal_ut``), sdekit's sign.

    Per example, with inner products over all non-batch elements: ``delta = x_0 - x_t``,
    ``c = <delta, u> / <u, u>`` and the target ``u - (delta - c u)``: the part of the residual
    to the data that is orthogonal to ``u`` is added to the velocity towards the data (SiT's
    ``u* = u + (delta - c u)`` with ``u`` pointing to the data, here ``u = dx/dt`` points to
    the noise). Applied to the first ``N // 2`` examples (``first_half=True``, as in the
    reference) or to all.
    """
    n = x0.shape[0]
    d = (x0 - x_t).reshape(n, -1)
    uf = u.reshape(n, -1)
    uu = jnp.sum(uf * uf, axis=-1, keepdims=True)
    c = jnp.sum(d * uf, axis=-1, keepdims=True) / jnp.where(uu > 0, uu, 1.0)
    target = (uf - (d - c * uf)).reshape(u.shape)
    if not first_half:
        return target
    first = (jnp.arange(n) < n // 2).reshape((-1,) + (1,) * (u.ndim - 1))
    return jnp.where(first, target, u)


# --- the loss ------------------------------------------------------------------------------
def drift_var(process: AbstractAffineGaussianProcess, t: Time) -> Array:
    """SiT's ``drift_var(t) = g(t)^2 / 2`` (its ``SBDM`` diffusion) for any affine process."""
    return process.drift_var(t)


def _sit_weighting(value: Any) -> AbstractWeighting:
    return weighting(value, {None: Constant, "velocity": SiTVelocity,
                             "likelihood": SiTLikelihood})


class InterpolantLoss(AbstractObjective):
    r"""SiT's training losses (Ma et al. 2024, "SiT: Exploring Flow and Diffusion-based
    Generative Models with Scalable Interpolant Transformers", ``Transport.training_losses``)
    for any affine Gaussian process. With $x_t = \alpha(t) x_0 + \sigma(t)\varepsilon$ and $t$
    from ``time_sampler`` (per example or, e.g. with [`ComboStoc`][sdekit.objectives.ComboStoc],
    per element), the loss per example is the mean over its elements of

    | prediction | loss |
    | --- | --- |
    | ``velocity`` | $(\hat u - u)^2$, $u = \alpha' x_0 + \sigma' \varepsilon$ (or compensated) |
    | ``noise`` (``eps``) | $\lambda(t) (\hat\varepsilon - \varepsilon)^2$ |
    | ``score`` | $\lambda(t) (\sigma \hat s + \varepsilon)^2$ |

    **Arguments:**

    - `process`: any `AbstractAffineGaussianProcess` (`Interpolant`, `VP`, `LogSNR`, ...).
    - `prediction`: ``velocity``, ``noise`` (alias ``eps``) or ``score``, or the modules
      `Velocity`, `Eps`, `Score`.
    - `weighting`: SiT's ``--loss-weight`` (noise and score only): ``None``
      ([`Constant`][sdekit.objectives.Constant]), ``velocity``
      ([`SiTVelocity`][sdekit.objectives.SiTVelocity], $(g^2/2\sigma)^2$) or ``likelihood``
      ([`SiTLikelihood`][sdekit.objectives.SiTLikelihood], $g^2/2\sigma^2$), or any weighting
      module; element-wise for per-element times.
    - `time_sampler`: default: uniform on SiT's training interval
      ([`sit_interval`][sdekit.objectives.sit_interval]) for an `Interpolant`, on
      ``[process.t0, process.t1]`` otherwise.
    - `compensate`: replace the velocity target by ComboStoc's
      [`compensate`][sdekit.objectives.compensate] (on the first half-batch, or on all with
      ``compensate_first_half=False``); needs ``prediction="velocity"``.
    """

    process: AbstractAffineGaussianProcess
    prediction: AbstractPrediction = eqx.field(
        default="velocity", converter=lambda p: _MODULES[_prediction(p)])
    weighting: AbstractWeighting = eqx.field(default=None, converter=_sit_weighting)
    time_sampler: AbstractTimeSampler | None = None
    compensate: bool = False
    compensate_first_half: bool = True

    def __check_init__(self):
        if not isinstance(self.process, AbstractAffineGaussianProcess):
            raise arg_error("process", type(self.process).__name__,
                            "an AbstractAffineGaussianProcess (Interpolant, VP, LogSNR, ...)")
        velocity = isinstance(self.prediction, Velocity)
        if velocity and not isinstance(self.weighting, Constant):
            raise arg_error("weighting", self.weighting,
                            "None for a velocity model (SiT weights noise and score losses only)")
        self.weighting.check_process(self.process)
        if self.compensate and not velocity:
            raise arg_error("compensate", self.compensate,
                            "False unless prediction='velocity' (the target of noise and score "
                            "models is the noise itself)")

    def default_times(self) -> AbstractTimeSampler:
        """Uniform on SiT's training interval (`Interpolant`), else on ``[t0, t1]``."""
        p = self.process
        if isinstance(p, Interpolant):
            lo, hi = sit_interval(p, self.prediction, "train")
            lo, hi = max(lo, float(p.t0)), min(hi, float(p.t1))
        else:
            lo, hi = float(p.t0), float(p.t1)
        return UniformTime(lo, hi)

    def target(self, x0: Data, t: Time, eps: Data) -> tuple[Data, Data]:
        """``(x_t, target)``: the interpolant and the regression target for given ``t``, noise."""
        p = self.process
        tb = broadcast_time(t, x0)
        x_t = p.alpha(tb) * x0 + p.sigma(tb) * eps
        if not isinstance(self.prediction, Velocity):
            return x_t, eps
        u = p.d_alpha(tb) * x0 + p.d_sigma(tb) * eps
        if self.compensate:
            u = compensate(x0, x_t, u, first_half=self.compensate_first_half)
        return x_t, u

    def per_example(self, model: Callable, x0: Data, t: Time, eps: Data, cond: Any = None,
                    key: Key | None = None, *, aux: Any = None) -> Array:
        """Per-example losses for given times and noise (deterministic; for tests/analysis)."""
        x_t, target = self.target(x0, t, eps)
        out = call_model(model, x_t, t, cond, key)
        check_output_shape("model", out, x_t.shape)
        if isinstance(self.prediction, Velocity):
            err = (out - target) ** 2
        elif isinstance(self.prediction, Eps):
            err = self.weight(t, x_t) * (out - target) ** 2
        else:
            s = self.process.sigma(broadcast_time(t, x_t))
            err = self.weight(t, x_t) * (s * out + target) ** 2
        return mean_per_example(err)


__all__ = [
    "COMBOSTOC_MODES",
    "INTERPOLANT_PREDICTIONS",
    "INTERPOLANT_WEIGHTINGS",
    "SINGULAR_EPS",
    "ComboStoc",
    "InterpolantLoss",
    "combostoc_times",
    "compensate",
    "drift_var",
    "mode_shape",
    "sit_eps",
    "sit_interval",
]
