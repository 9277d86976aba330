"""Classifier-free guidance on two Gaussian classes with a shared covariance (closed form), and
label dropout."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.objectives import drop_labels
from sdekit.parameterisation import convert
from sdekit.sampling import DPMSolverPP, EDMSampler, sample
from sdekit.wrappers import ClassifierFreeGuidance
from tests.helpers import make_gaussian
from tests.test_samplers import fast_eps

_, COV = make_gaussian(4, seed=1)
MEANS = {0: np.array([0.0, 0.0, 0.0, 0.0], np.float32),  # null label: the unconditional model
         1: np.array([0.5, -0.3, 0.2, 0.1], np.float32),
         2: np.array([-0.4, 0.3, 0.0, 0.6], np.float32)}


class TwoClass:
    """Exact conditional eps for class ``c`` (data ``N(mu_c, Sigma)``); label 0 is the null
    branch ``N(mu_0, Sigma)``. Records the batch sizes it is called with."""

    def __init__(self, process):
        self.eps = {k: fast_eps(process, m, COV) for k, m in MEANS.items()}
        self.calls = []

    def __call__(self, x, t, cond):
        self.calls.append(x.shape[0])
        out = jnp.zeros_like(x)
        for k, e in self.eps.items():
            out = jnp.where((cond == k)[:, None], e(x, t), out)
        return out


def guided_mean(c, w):
    """With a shared covariance, ``(1 + w) eps_c - w eps_0`` is the eps of ``N(mu_g, Sigma)`` with
    ``mu_g = mu_c + w (mu_c - mu_0)``: the scores are affine in x with the same slope."""
    return MEANS[c] + w * (MEANS[c] - MEANS[0])


@pytest.mark.parametrize("space", [None, "x0", "score", "v"])
def test_guided_prediction_is_closed_form(space):
    p = sk.VP()
    model = TwoClass(p)
    w = 1.5
    kw = dict(process=p, prediction="eps") if space is not None else {}
    guided = ClassifierFreeGuidance(model, w, null_label=0, space=space, **kw)
    x = jr.normal(jr.key(0), (32, 4))
    cond = jnp.asarray([1, 2] * 16)
    t = jnp.full((32,), 0.4)
    model.calls.clear()
    out = guided(x, t, cond)
    assert model.calls == [64]  # one call on the doubled batch
    ref = jnp.where((cond == 1)[:, None], fast_eps(p, guided_mean(1, w), COV)(x, t),
                    fast_eps(p, guided_mean(2, w), COV)(x, t))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("w,method", [(0.0, DPMSolverPP(40, grid="quadratic")),
                                      (1.0, EDMSampler(60))], ids=["w0_dpmpp", "w1_edm"])
def test_guided_sampling_moves_the_mean(w, method):
    """w = 0 samples the conditional law; w > 0 samples N(mu_c + w (mu_c - mu_0), Sigma)."""
    p = sk.VP()
    n = 4096
    labels = jnp.asarray([1] * (n // 2) + [2] * (n // 2))
    guided = ClassifierFreeGuidance(TwoClass(p), w, null_label=0)
    res = sample(jr.key(0), p, guided, (n, 4), method=method, cond=labels)
    x = np.asarray(res.samples, np.float64)
    se = np.sqrt(np.diag(COV) / (n // 2))
    for c, part in ((1, x[: n // 2]), (2, x[n // 2:])):
        assert np.max(np.abs(part.mean(0) - guided_mean(c, w)) / se) < 4.0
        err = np.linalg.norm(np.cov(part.T) - COV) / np.linalg.norm(COV)
        assert err < 0.06, err


def test_vdpm_guided_clipped_x0():
    """spec/vdpm.md 6.1: w = 0.5, cond x0 = 0.3, uncond x0 = 0 -> 0.45; branches clipped first."""
    p = sk.LogSNR()

    def model(x, t, cond):  # an x0-predicting model: 0.3 (or 1.5) for label 1, 0 for label 0
        return jnp.where((cond == 1)[:, None], jnp.full_like(x, 0.3), 0.0) + \
            jnp.where((cond == 2)[:, None], jnp.full_like(x, 1.5), 0.0)

    x = jnp.ones((2, 3))
    t = jnp.full((2,), 0.5)
    g = ClassifierFreeGuidance(model, 0.5, null_label=0, process=p, prediction="x0",
                               clip_x0=1.0)
    out = g(x, t, jnp.asarray([1, 2]))
    np.testing.assert_allclose(out, [[0.45] * 3, [1.5] * 3], rtol=1e-6)
    # the same through eps: clipping happens in x0 whatever the model outputs
    eps_model = lambda x, t, cond: convert(p, model(x, t, cond), x, t, source="x0", target="eps")
    g = ClassifierFreeGuidance(eps_model, 0.5, null_label=0, process=p, prediction="eps",
                               clip_x0=1.0)
    x0 = convert(p, g(x, t, jnp.asarray([1, 2])), x, t, source="eps", target="x0")
    np.testing.assert_allclose(x0, [[0.45] * 3, [1.5] * 3], rtol=1e-4)


def test_drop_labels():
    labels = jnp.arange(1, 20001) % 10 + 1
    out = drop_labels(jr.key(0), labels, 0.1, null_label=0)
    dropped = np.asarray(out == 0)
    assert abs(dropped.mean() - 0.1) < 0.01
    np.testing.assert_array_equal(np.asarray(out)[~dropped], np.asarray(labels)[~dropped])
    tags = jnp.ones((1000, 40))
    out = np.asarray(drop_labels(jr.key(1), tags, 0.5))
    assert set(np.unique(out.sum(1))) == {0.0, 40.0}  # whole rows are dropped
    assert np.asarray(drop_labels(jr.key(0), labels, 0.0, null_label=0) == labels).all()


def test_errors():
    with pytest.raises(ValueError, match="`p`"):
        drop_labels(jr.key(0), jnp.ones(4), 1.5)
    with pytest.raises(ValueError, match="`process` and `prediction`"):
        ClassifierFreeGuidance(lambda x, t, cond: x, 1.0, space="x0")
    with pytest.raises(ValueError, match="`cond`"):
        ClassifierFreeGuidance(lambda x, t, cond: x, 1.0)(jnp.ones((2, 2)), jnp.ones(2))
