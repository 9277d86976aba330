"""examples/reflected_cifar10.py: every flag documented, the paper's recipe as defaults."""

import contextlib
import importlib.util
import io
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("reflected_cifar10",
                                                  ROOT / "examples" / "reflected_cifar10.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("command", ["train", "sample", "bpd"])
def test_reflected_cifar10_help_documents_every_flag(command):
    mod = _load()
    parser = {"train": mod._train_parser, "sample": mod._sample_parser,
              "bpd": mod._bpd_parser}[command]()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 8, action.option_strings
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        mod.main([command, "--help"])
    text = buf.getvalue()
    for flag in ("--out", "--smoke", "--sigma-min", "--sigma-max", "--t-eps"):
        assert flag in text


def test_top_level_help_lists_the_subcommands():
    mod = _load()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert mod.main(["--help"]) == 0
    assert "train" in buf.getvalue() and "bpd" in buf.getvalue()


def test_reflected_cifar10_defaults_are_the_paper_recipe():
    mod = _load()
    a = mod._train_parser().parse_args([])
    assert (a.sigma_min, a.sigma_max, a.t_eps) == (0.01, 5.0, 1e-5)
    assert (a.lr, a.warmup, a.clip, a.ema, a.batch_size) == (2e-4, 5000, 1.0, 0.9999, 128)
    assert a.steps == 1_300_001 and a.net == "reflected_ddpmpp_cifar10"
    assert (a.weighting, a.reduce, a.no_flip) == ("sigma2", "half_sum", False)
    s = mod._sample_parser().parse_args([])
    assert (s.method, s.steps, s.dt, s.corrector, s.snr, s.moll) == (
        "pc", 999, "reference", "none", 0.01, 200.0)
    b = mod._bpd_parser().parse_args([])
    assert (b.divergence, b.tol) == ("hutchinson", 1e-5)


def test_bad_arguments_are_named():
    mod = _load()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        mod.main(["sample", "--method", "ddim"])
    assert "--method" in err.getvalue()


def test_synthetic_images_are_deterministic_and_saturated():
    mod = _load()
    a, b = mod.synthetic_images(8, 16, seed=1), mod.synthetic_images(8, 16, seed=1)
    assert a.dtype.name == "uint8" and a.shape == (8, 16, 16, 3) and (a == b).all()
    assert (a == 0).any() and (a == 255).any()
