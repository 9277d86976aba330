r"""Training-time distributions: uniform on $[t_\epsilon, t_1]$, stratified, EDM's log-normal,
discrete DDPM steps; ComboStoc's per-element times are in ``_interpolant.py``."""

import abc

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Key, Shape
from .._validate import check_order, check_real, static_int


class AbstractTimeSampler(eqx.Module):
    """Draws training times: ``sampler(key, data_shape)`` returns one time per example (shape
    ``(N,)``) or, with ``per_element=True``, one per element of the data (ComboStoc-style
    asynchronous time). Subclasses give `draw` and the field ``per_element``."""

    per_element: eqx.AbstractVar[bool]

    def __call__(self, key: Key, data_shape: Shape) -> Array:
        shape = tuple(data_shape) if self.per_element else tuple(data_shape[:1])
        return self.draw(key, shape)

    @abc.abstractmethod
    def draw(self, key: Key, shape: Shape) -> Array:
        """Times of the given shape."""


class UniformTime(AbstractTimeSampler):
    """``t ~ U[t_min, t_max]`` (score_sde, VDPM, PSLD with ``t_min = 1e-5``)."""

    t_min: float = 1e-5
    t_max: float = 1.0
    per_element: bool = False

    def __check_init__(self):
        check_real("t_min", self.t_min, lo=0.0)
        check_real("t_max", self.t_max)
        check_order("t_min", self.t_min, "t_max", self.t_max)

    def draw(self, key: Key, shape: Shape) -> Array:
        return jr.uniform(key, shape, minval=self.t_min, maxval=self.t_max)


class StratifiedTime(AbstractTimeSampler):
    """Low-discrepancy uniform times: example ``i`` of ``N`` falls in ``[(i + u)/N]`` of the
    interval (one shared offset ``u``; Kingma et al. 2021), which lowers the loss variance."""

    t_min: float = 1e-5
    t_max: float = 1.0
    per_element: bool = False

    def __check_init__(self):
        check_real("t_min", self.t_min, lo=0.0)
        check_real("t_max", self.t_max)
        check_order("t_min", self.t_min, "t_max", self.t_max)

    def draw(self, key: Key, shape: Shape) -> Array:
        n = 1
        for s in shape:
            n *= int(s)
        u = (jr.uniform(key, ()) + jnp.arange(n)) / n
        return (self.t_min + (self.t_max - self.t_min) * u).reshape(shape)


class LogNormalTime(AbstractTimeSampler):
    """EDM's ``ln sigma ~ N(p_mean, p_std^2)``, clipped to ``[t_min, t_max]``; meant for the
    ``EDM`` process where ``t = sigma``."""

    p_mean: float = -1.2
    p_std: float = 1.2
    t_min: float = 0.002
    t_max: float = 80.0
    per_element: bool = False

    def __check_init__(self):
        check_real("p_mean", self.p_mean)
        check_real("p_std", self.p_std, lo=0.0, lo_open=True)
        check_real("t_min", self.t_min, lo=0.0, lo_open=True)
        check_real("t_max", self.t_max)
        check_order("t_min", self.t_min, "t_max", self.t_max)

    def draw(self, key: Key, shape: Shape) -> Array:
        t = jnp.exp(self.p_mean + self.p_std * jr.normal(key, shape))
        return jnp.clip(t, self.t_min, self.t_max)


class DiscreteTime(AbstractTimeSampler):
    """DDPM's discrete steps in continuous time: ``t = (k + 1) / T`` with
    ``k ~ U{0, ..., T - 1}`` (VDPM's ``train_timesteps``)."""

    num_timesteps: int = 1000
    per_element: bool = False

    def __check_init__(self):
        static_int("num_timesteps", self.num_timesteps, 1)

    def draw(self, key: Key, shape: Shape) -> Array:
        k = jr.randint(key, shape, 0, self.num_timesteps)
        return (k + 1).astype(jnp.float32) / self.num_timesteps
