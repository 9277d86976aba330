"""The example scripts' command lines: every flag documented, bad input named."""

import contextlib
import importlib.util
import io
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("command", ["train", "sample"])
def test_psld_cifar10_help_documents_every_flag(command):
    mod = _load("psld_cifar10")
    parser = mod._train_parser() if command == "train" else mod._sample_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 8, action.option_strings
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        mod.main([command, "--help"])
    text = buf.getvalue()
    for flag in ("--out", "--smoke", "--gamma", "--nu", "--kappa"):
        assert flag in text


def test_psld_cifar10_defaults_are_the_paper_recipe():
    mod = _load("psld_cifar10")
    a = mod._train_parser().parse_args([])
    assert (a.beta_min, a.beta_max, a.gamma, a.nu, a.kappa) == (8.0, 8.0, 0.01, 4.01, 0.04)
    assert (a.lr, a.warmup, a.clip, a.ema, a.batch_size, a.t_eps) == (2e-4, 5000, 1.0, 0.9999, 128, 1e-5)
    assert a.net == "psld_cifar10"


def test_synthetic_images_are_deterministic_uint8():
    mod = _load("psld_cifar10")
    a, b = mod.synthetic_images(8, 16, seed=1), mod.synthetic_images(8, 16, seed=1)
    assert a.dtype.name == "uint8" and a.shape == (8, 16, 16, 3) and (a == b).all()
    assert a.std() > 20
