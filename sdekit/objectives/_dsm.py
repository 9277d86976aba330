r"""Denoising score matching for any Gaussian process, any target and any weighting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx

from .._custom_types import Array, Data, Float, Key, TimeT
from .._model import call_model
from .._validate import arg_error, check_output_shape, check_real
from ..parameterisation import X0, AbstractPrediction, convert, prediction
from ..processes import AbstractGaussianProcess
from ._base import AbstractObjective, mean_per_example
from ._time import AbstractTimeSampler
from ._weighting import (
    SNR,
    AbstractWeighting,
    Constant,
    Karras,
    Likelihood,
    MinSNR,
    SNRPlusOne,
    TruncatedSNR,
    weighting,
)

#: DSM's weighting shorthands (the modules of `sdekit.objectives` are the general form).
WEIGHTINGS = ("constant", "snr", "truncated_snr", "snr_plus_one", "min_snr", "likelihood", "karras")


class DSM(AbstractObjective):
    r"""Denoising score matching (Vincent 2011; Song et al. 2021, "Score-Based Generative
    Modeling through Stochastic Differential Equations", eq. 7) for any Gaussian process:

    $$\ell(x_0, t, \varepsilon) = \lambda(t)\, \overline{\big\| \hat y(x_t, t) - y \big\|^2},
    \qquad x_t = \mu(x_0, t) + C_t\,\varepsilon,$$

    the mean over elements of the squared error between the network's output, converted exactly
    to the ``target`` space (``eps``, ``x0``, ``v``, ``score`` or ``velocity``; default: the
    prediction's own), and the true target $y$ built from $x_0$ and $\varepsilon$.

    **Arguments:**

    - `process`: an `AbstractGaussianProcess`.
    - `prediction`: what the network outputs (a prediction module or its name).
    - `target`: the space the error is measured in (default: ``prediction``).
    - `weighting`: $\lambda(t)$: a weighting module, a callable ``fn(t)``, or one of
      ``WEIGHTINGS`` (``constant``, ``snr``, ``truncated_snr``, ``snr_plus_one``,
      ``min_snr`` with ``min_snr_gamma``, ``likelihood`` ($g^2$; with ``target="score"`` the
      ELBO weighting), ``karras`` with ``sigma_data``).
    - `time_sampler`: default ``UniformTime(process.t0, process.t1)``.
    - `sigma_data`, `min_snr_gamma`: the parameters of the ``karras`` and ``min_snr``
      shorthands.

    Because $\hat\varepsilon - \varepsilon = -(\alpha/\sigma)(\hat x_0 - x_0)$ and
    $\hat v - v = -(\hat x_0 - x_0)/\sigma$ for VP processes, VDPM's four losses are
    ``(target, weighting)`` = ``("x0", "constant")``, ``("eps", "constant")`` (= SNR in x0
    space), ``("x0", "truncated_snr")`` and ``("v", "constant")`` (= 1 + SNR in x0 space).
    """

    process: AbstractGaussianProcess
    prediction: AbstractPrediction
    target: AbstractPrediction
    weighting: AbstractWeighting
    time_sampler: AbstractTimeSampler | None
    sigma_data: float = eqx.field(static=True)
    min_snr_gamma: float = eqx.field(static=True)

    def __init__(self, process: AbstractGaussianProcess, prediction: Any = "eps",
                 target: Any = None, weighting: Any = "constant",
                 time_sampler: AbstractTimeSampler | None = None, sigma_data: float = 0.5,
                 min_snr_gamma: float = 5.0):
        if not isinstance(process, AbstractGaussianProcess):
            raise arg_error("process", type(process).__name__, "an AbstractGaussianProcess")
        check_real("sigma_data", sigma_data, lo=0.0, lo_open=True)
        check_real("min_snr_gamma", min_snr_gamma, lo=0.0, lo_open=True)
        self.process = process
        self.prediction = _prediction(prediction, "prediction")
        self.target = self.prediction if target is None else _prediction(target, "target")
        self.sigma_data = float(sigma_data)
        self.min_snr_gamma = float(min_snr_gamma)
        self.weighting = weighting_of(weighting, sigma_data=self.sigma_data,
                                      min_snr_gamma=self.min_snr_gamma)
        self.weighting.check_process(process)
        self.time_sampler = time_sampler

    def true_target(self, x0: Data, x_t: Data, t: TimeT, eps: Data) -> Data:
        """The regression target at ``x_t`` built from ``x0`` with noise ``eps``."""
        if isinstance(self.target, X0):
            return x0  # x_t = mean(x0, t) + C_t eps, so the data prediction target is x0 itself
        return convert(self.process, eps, x_t, t, source="eps", target=self.target)

    def per_example(self, model: Callable, x0: Float[Array, "batch *dims"], t: TimeT,
                    eps: Float[Array, "batch *sdims"], cond: Any = None,
                    key: Key | None = None, *, aux: Any = None) -> Float[Array, " batch"]:
        """Per-example losses for given times and noise (deterministic; for tests/analysis)."""
        p = self.process
        x_t = p.perturb(x0, t, eps)
        out = call_model(model, x_t, t, cond, key)
        check_output_shape("model", out, p.prediction_shape(x_t.shape))
        pred = convert(p, out, x_t, t, source=self.prediction, target=self.target)
        err = (pred - self.true_target(x0, x_t, t, eps)) ** 2 * self.weight(t, x_t)
        return mean_per_example(err)


def _prediction(kind: Any, name: str) -> AbstractPrediction:
    if isinstance(kind, str) and kind == "noise":
        raise arg_error(name, kind, "one of 'eps', 'x0', 'score', 'v', 'velocity' (the noise "
                        "prediction is called 'eps')")
    return prediction(kind, name=name)


def weighting_of(value: Any, *, sigma_data: float = 0.5,
                 min_snr_gamma: float = 5.0) -> AbstractWeighting:
    """DSM's shorthands (``WEIGHTINGS``) resolved to weighting modules."""
    table = {
        "constant": Constant, "snr": SNR, "truncated_snr": TruncatedSNR,
        "snr_plus_one": SNRPlusOne, "min_snr": lambda: MinSNR(min_snr_gamma),
        "likelihood": Likelihood, "karras": lambda: Karras(sigma_data),
    }
    return weighting(value, table)


__all__ = ["DSM", "WEIGHTINGS"]
