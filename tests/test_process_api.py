"""Public surface of processes and objectives: abstract-or-final classes, named-dimension type
checks (jaxtyping + beartype, on under the test suite), and the ``seed`` spelling."""

import inspect
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

import sdekit as sk
import sdekit.data as sd
from sdekit.objectives import DSM, HSM


def _public_classes(mod):
    for name in getattr(mod, "__all__", None) or dir(mod):
        obj = getattr(mod, name)
        ours = inspect.isclass(obj) and obj.__module__.startswith("sdekit")
        if ours and not name.startswith("_"):
            yield name, obj


@pytest.mark.parametrize("modname", ["processes", "objectives"])
def test_every_public_class_is_abstract_or_final(modname):
    """The equinox pattern: an ``Abstract*`` class cannot be instantiated; any other public
    class is final (no public class of sdekit subclasses it)."""
    mods = [sk.processes, sk.objectives, sk.sampling, sk.parameterisation]
    everything = {obj for m in mods for _, obj in _public_classes(m)}
    for name, cls in _public_classes(getattr(sk, modname)):
        if name.startswith("Abstract"):
            assert inspect.isabstract(cls) or _not_instantiable(cls), name
        else:
            subs = [c.__name__ for c in everything if c is not cls and issubclass(c, cls)]
            assert not subs, (name, subs)


def _not_instantiable(cls):
    try:
        cls()
    except TypeError:
        return True
    return False


def test_named_dimensions_are_checked():
    vp, ps = sk.VP(), sk.PSLD()
    with pytest.raises(TypeCheckError):  # eps must have x0's shape
        vp.perturb(jnp.zeros((2, 3)), 0.5, jnp.zeros((2, 4)))
    with pytest.raises(TypeCheckError):  # the state shares the data's leading axes
        ps.perturb(jnp.zeros((2, 1, 2, 1)), 0.5, jnp.zeros((3, 1, 2, 2)))
    with pytest.raises(TypeCheckError):  # eps_to_score returns the state's shape
        ps.eps_to_score(jnp.zeros((2, 4, 2)), jnp.zeros((3, 4, 2)), 0.5)
    with pytest.raises(TypeCheckError):  # per-example losses: x0 and eps share the batch
        DSM(vp).per_example(lambda x, t: x, jnp.zeros((2, 3)), jnp.ones(2) * 0.5,
                            jnp.zeros((3, 3)))
    loss = HSM(ps).per_example(lambda z, t: jnp.zeros_like(z), jnp.zeros((2, 1, 2, 1)),
                               jnp.ones(2) * 0.5, jnp.ones((2, 1, 2, 2)))
    assert loss.shape == (2,)
    # unbatched data and scalar times stay allowed for processes
    assert vp.perturb(jnp.zeros(()), 0.5, jnp.ones(())).shape == ()


def test_toy_data_takes_a_seed():
    a = sd.toy_data(3, "two_moons", 5)
    np.testing.assert_array_equal(sd.toy_data(seed=3, name="two_moons", n=5), a)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(sd.toy_data(key=3, name="two_moons", n=5), a)
    assert any(issubclass(x.category, DeprecationWarning) for x in w)
    with pytest.raises(ValueError, match="argument `seed`"):
        sd.toy_data(None, "two_moons", 5)
