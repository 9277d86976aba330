"""The structure-preserving example's command line: every flag documented, bad input named."""

import contextlib
import importlib.util
import io
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "structure_preserving_mnist", ROOT / "examples" / "structure_preserving_mnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help_documents_every_flag():
    mod = _load()
    parser = mod._parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 8, action.option_strings
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        mod.main(["--help"])
    text = buf.getvalue()
    for flag in ("--out", "--smoke", "--variant", "--group", "--reg-weight", "--target-ema",
                 "--sampler", "--num-error"):
        assert flag in text


def test_defaults_follow_the_paper():
    a = _load()._parser().parse_args([])
    assert (a.group, a.variant, a.num_train, a.target_ema, a.reg_weight) == (
        "C4", "equivariant", 6000, 0.95, 1.0)
    assert (a.lr, a.sample_steps, a.sampler) == (1e-4, 40, "edm_heun")


def test_bad_flags_are_named():
    mod = _load()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        mod.main(["--steps", "0"])
    assert "--steps" in err.getvalue()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        mod.main(["--variant", "magic"])
    assert "--variant" in err.getvalue()


def test_synthetic_digits_are_deterministic_and_asymmetric():
    mod = _load()
    a, la = mod.synthetic_digits(12, 16, seed=1)
    b, lb = mod.synthetic_digits(12, 16, seed=1)
    assert a.dtype == np.uint8 and a.shape == (12, 16, 16, 1)
    assert (a == b).all() and (la == lb).all() and set(la) <= {0, 1, 2}
    for img in a[:, :, :, 0]:  # no glyph is invariant under a quarter turn
        assert (np.rot90(img) != img).any()
