"""`fit` donates its state to each step, yet nothing it hands to user code dies later; an explicit
donation (`make_train_step(donate=True)`) gives a clear error when its input is used again."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import sdekit as sk
import sdekit.train as st
from sdekit.objectives import DSM
from sdekit.sampling import DDIM, sample


class _MLP(eqx.Module):
    lin1: eqx.nn.Linear
    lin2: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jr.split(key)
        self.lin1 = eqx.nn.Linear(3, 16, key=k1)
        self.lin2 = eqx.nn.Linear(16, 2, key=k2)

    def __call__(self, x, t, cond=None, *, key=None):
        h = jnp.concatenate([x, t[:, None]], axis=-1)
        return jax.vmap(lambda v: self.lin2(jax.nn.tanh(self.lin1(v))))(h)


PROCESS = sk.VP()
OBJECTIVE = DSM(PROCESS, prediction="eps")


def _data(n=24):
    x = np.asarray(jr.normal(jr.key(0), (n * 8, 2)), np.float32)
    return [x[i * 8:(i + 1) * 8] for i in range(n)]


def _fit(callback=None, sample_fn=None, steps=12, **kw):
    return st.fit(OBJECTIVE, _MLP(jr.key(1)), _data(steps), optimizer=optax.adam(1e-3),
                  num_steps=steps, key=jr.key(2), ema_decays=(0.9,), progress=False,
                  callback=callback, sample_fn=sample_fn,
                  sample_every=4 if sample_fn is not None else None,
                  sample_dir=kw.pop("sample_dir", None), **kw)


def _sample(model):
    return sample(jr.key(3), PROCESS, model, (4, 2), method=DDIM(5)).samples


def test_the_issue_snippet_works():
    early = {}

    def cb(state, metrics):
        if int(state.step) == 4:
            early["model"] = state.model

    final = _fit(cb)
    out = _sample(early["model"])
    assert np.all(np.isfinite(np.asarray(out)))
    # the kept model is the step-4 model, not the final one
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                        eqx.filter(early["model"], eqx.is_array),
                        eqx.filter(final.model, eqx.is_array))
    assert max(jax.tree.leaves(diff)) > 0


def test_everything_kept_from_user_code_stays_valid(tmp_path):
    kept = {}

    def cb(state, metrics):
        s = int(state.step)
        if s == 3:
            kept["state"] = state
        if s == 5:
            kept["ema"] = state.ema_model()
            kept["params"] = state.params
        if s == 6:
            kept["opt"] = state.opt_state
            kept["metrics"] = metrics
        if s == 7:
            kept["leaf"] = state.model.lin1.weight

    grids = {}

    def sample_fn(key, model):
        grids.setdefault("model", model)
        return jnp.zeros((4, 2))

    final = _fit(cb, sample_fn, sample_dir=tmp_path)
    for name in ("state", "ema", "params", "opt", "metrics", "leaf"):
        for leaf in jax.tree.leaves(eqx.filter(kept[name], eqx.is_array)):
            assert not leaf.is_deleted(), name
            if jnp.issubdtype(leaf.dtype, jnp.inexact) and name != "metrics":  # lr may be NaN
                assert np.all(np.isfinite(np.asarray(leaf))), name
    assert int(kept["state"].step) == 3 and int(final.step) == 12
    for model in (kept["state"].model, kept["ema"], grids["model"], final.model):
        assert np.all(np.isfinite(np.asarray(_sample(model))))


def test_a_callback_that_keeps_nothing_costs_no_copy(monkeypatch):
    from sdekit.train import _donation

    copies = []
    real = _donation._copy_under

    def spy(*a):
        copies.append(1)
        return real(*a)

    monkeypatch.setattr(_donation, "_copy_under", spy)
    _fit(lambda state, metrics: float(metrics["loss"]), steps=6)
    assert copies == []


def test_explicit_donation_error_is_clear():
    opt = optax.sgd(0.1)
    state = st.init_state(_MLP(jr.key(1)), opt, key=jr.key(2), ema_decays=())
    state = jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, state)
    step = st.make_train_step(OBJECTIVE, opt, donate=True)
    batch = jnp.ones((8, 2))
    new, _ = step(state, batch)
    with pytest.raises(ValueError, match=r"argument `state`.*donated.*copy"):
        step(state, batch)
    with pytest.raises(ValueError, match=r"argument `model`.*donated.*copy"):
        _sample(state.model)
    assert np.all(np.isfinite(np.asarray(_sample(new.model))))
