r"""Classifier-free training (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance"): each
example's label is replaced by the null label with probability $p$, so one network learns the
conditional and the unconditional model."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, Data, Key
from .._validate import arg_error, check_real
from ._base import AbstractObjective


def _null_for(null_label: Any, labels: Any) -> Any:
    if null_label is not None:
        return null_label
    if jnp.issubdtype(jnp.asarray(labels).dtype, jnp.floating):
        return 0
    raise arg_error("null_label", None, "the null class index for integer labels (sdekit's "
                    "networks use num_classes: pass null_label=num_classes)")


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
    null_label = _null_for(null_label, labels)
    drop = jr.bernoulli(key, p, labels.shape[:1]).reshape((-1,) + (1,) * (labels.ndim - 1))
    return jnp.where(drop, jnp.asarray(null_label, labels.dtype), labels)


class LabelDropout(AbstractObjective):
    """Wrap an objective so that each example's label becomes ``null_label`` with probability
    ``p_uncond`` before the loss (`drop_labels`); unconditional calls (``cond=None``) pass
    through."""

    objective: AbstractObjective
    p_uncond: float = 0.1
    null_label: Any = None

    def __check_init__(self):
        if not isinstance(self.objective, AbstractObjective):
            raise arg_error("objective", type(self.objective).__name__, "an AbstractObjective")
        check_real("p_uncond", self.p_uncond, lo=0.0, hi=1.0)

    @property
    def process(self):
        return self.objective.process

    @property
    def time_sampler(self):
        return self.objective.time_sampler

    @property
    def weighting(self):
        return self.objective.weighting

    def default_times(self):
        return self.objective.times

    def init_aux(self, model):
        return self.objective.init_aux(model)

    def update_aux(self, aux, model):
        return self.objective.update_aux(aux, model)

    def draw(self, key, x0):
        k_labels, k_base = jr.split(key)
        t, noise, k_model = self.objective.draw(k_base, x0)
        return t, (*noise, k_labels), k_model

    def per_example(self, model: Any, x0: Data, t: Any, *noise: Any, cond: Any = None,
                    key: Key | None = None, aux: Any = None) -> Array:
        """The wrapped objective's per-example loss with dropped labels; the last entry of
        ``noise`` is the label key."""
        *base_noise, k_labels = noise
        if cond is not None and float(self.p_uncond) > 0:
            cond = drop_labels(k_labels, cond, self.p_uncond, self.null_label)
        return self.objective.per_example(model, x0, t, *base_noise, cond=cond, key=key, aux=aux)


__all__ = ["LabelDropout", "drop_labels"]
