"""Type aliases used across sdekit's public signatures."""

from typing import TypeAlias

import jax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Shaped

#: A time: a Python float, a 0-d array, or an array aligned with the leading axes of ``x``
#: (per example ``(N,)``, per channel ``(N, 1, 1, C)``, per element shaped like ``x``).
Time: TypeAlias = Float[ArrayLike, "..."]
#: A scalar time.
ScalarTime: TypeAlias = Float[ArrayLike, ""]
#: A data or state array (any shape; images are NHWC).
Data: TypeAlias = Float[Array, "..."]
Key: TypeAlias = PRNGKeyArray
Shape: TypeAlias = tuple[int, ...]

# Named-dimension aliases of the process, parameterisation and objective signatures. jaxtyping
# binds a dimension name once per call, so ``perturb(x0: Dims, t, eps: Dims) -> Dims`` checks
# that ``x0``, ``eps`` and the result share their shape. Augmented states share the data's
# leading axes (``*pix``) and have ``k`` times its channels (``s`` against ``c``).
#: A time: a scalar, per example ``(N,)``, per channel or per element (aligned with the
#: leading axes of the data).
TimeT: TypeAlias = Float[ArrayLike, "*tdims"]
#: Data or a state of an affine process (same shape for ``x0``, ``x_t``, ``eps``, the score).
Dims: TypeAlias = Float[Array, "*dims"]
#: A batch of data (batch first).
Batch: TypeAlias = Float[Array, "batch *dims"]
#: Per-example values.
PerExample: TypeAlias = Float[Array, " batch"]
#: Data of an augmented process: leading axes, ``c`` channels.
DataC: TypeAlias = Float[Array, "*pix c"]
#: A state of an augmented process: the same leading axes, ``s = k c`` channels.
StateS: TypeAlias = Float[Array, "*pix s"]
#: A network output of an augmented process: ``p`` = (number of predicted components) ``c``.
PredP: TypeAlias = Float[Array, "*pix p"]

__all__ = [
    "Array", "ArrayLike", "Batch", "Data", "DataC", "Dims", "Float", "Key", "PerExample", "PredP",
    "ScalarTime", "Shape", "Shaped", "StateS", "Time", "TimeT", "jax",
]
