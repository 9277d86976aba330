"""Conditioning at sampling time: the interface every condition of `sample` implements."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx

from .._custom_types import Key, Shape
from ..processes import AbstractProcess
from ._base import AbstractSampler, PredictionFn, SampleResult


class AbstractCondition(eqx.Module):
    """A condition of [`sample`][sdekit.sampling.sample] (``sample(..., condition=...)``).

    A condition checks that it can work with the method and the process (`check`, which
    raises an error naming both and the reason when it cannot) and then runs the solve
    (`run`), reusing the method's own steps.
    """

    def check(self, sampler: AbstractSampler, process: AbstractProcess, shape: Shape) -> None:
        """Raise a clear error when this condition cannot be used with ``sampler`` on
        ``process`` for data of ``shape``."""

    @abc.abstractmethod
    def run(self, key: Key, fn: PredictionFn, sampler: AbstractSampler, shape: Shape, *,
            t_start: float, t_end: float, denoise: str, save_trajectory: bool,
            x_start: Any) -> SampleResult:
        """Draw the conditioned samples (inside `sample`'s ``jit``)."""


__all__ = ["AbstractCondition"]
