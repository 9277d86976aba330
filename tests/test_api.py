"""Meta-tests of the public surface: documented, importable, processes validated at construction."""

import inspect

import pytest

import sdekit

SUBPACKAGES = ["processes", "parameterisation", "objectives", "sampling", "nets", "train", "data",
               "metrics"]


def _public(modname):
    mod = getattr(sdekit, modname)
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    for n in names:
        obj = getattr(mod, n)
        if inspect.ismodule(obj) or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not getattr(obj, "__module__", "").startswith("sdekit"):
            continue
        yield f"{modname}.{n}", obj


@pytest.mark.parametrize("modname", SUBPACKAGES)
def test_every_public_class_and_function_has_a_docstring(modname):
    missing = [name for name, obj in _public(modname) if not (obj.__doc__ or "").strip()]
    assert not missing, missing


def test_top_level_reexports_processes():
    for name in ["VP", "VE", "SubVP", "EDM", "LogSNR", "LinearSDE", "CLD", "PSLD"]:
        assert getattr(sdekit, name) is getattr(sdekit.processes, name)


def test_abstract_classes_are_not_instantiable():
    for cls in [sdekit.AbstractProcess, sdekit.AbstractGaussianProcess,
                sdekit.AbstractAffineGaussianProcess]:
        with pytest.raises(TypeError):
            cls()


def test_sample_function_and_subpackage_have_distinct_names():
    import sdekit as sk

    assert callable(sk.sample)
    assert sk.sample is sk.sampling.sample
    assert sk.log_likelihood is sk.sampling.log_likelihood
