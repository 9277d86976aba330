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

__all__ = ["Array", "ArrayLike", "Data", "Float", "Key", "ScalarTime", "Shape", "Shaped", "Time", "jax"]
