"""The example scripts' command lines: every flag documented, bad input named."""

import contextlib
import importlib.util
import io
import pathlib
import re

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
    flags = ("--out", "--smoke") + (("--gamma", "--nu", "--kappa") if command == "train" else ())
    for flag in flags:
        assert flag in text
    assert "(default: None)" not in text and "psld.md" not in text
    for block in re.split(r"\n  -", text):  # one option each: its default is said once
        assert block.count("(default") <= 1, block


def test_psld_cifar10_net_choices_are_the_named_configs():
    from sdekit.nets import NET_CONFIGS

    # the UNet / DiT configurations (the equivariant ones serve examples/structure_preserving_*)
    plain = sorted(k for k, v in NET_CONFIGS.items() if v["arch"] in ("unet", "dit"))
    mod = _load("psld_cifar10")
    assert sorted(mod.NET_NAMES) == plain
    net = next(a for a in mod._train_parser()._actions if a.dest == "net")
    assert sorted(net.choices) == plain


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "--batch", "0"], "--batch: got 0, expected an integer >= 1"),
        (["sample", "--num", "0"], "--num: got 0, expected an integer >= 1"),
        (["sample", "--t-end", "-1"], "--t-end: got -1, expected a number in"),
        (["sample", "--steps", "2.5"], "--steps: got '2.5', expected an integer"),
        (["sample", "--gamma", "0.5"], "--gamma: the process parameters come from the"),
        (["train", "--smoke", "--batch-size", "-16"], "--batch-size: got -16"),
        (["train", "--smoke", "--lr", "-1"], "--lr: got -1"),
        (["train", "--net", "nope"], "--net: invalid choice"),
    ],
)
def test_psld_cifar10_bad_flags_are_named(argv, message, capsys):
    mod = _load("psld_cifar10")
    with pytest.raises(SystemExit) as info:
        mod.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_psld_cifar10_out_file_and_missing_cifar_are_one_line(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    mod = _load("psld_cifar10")
    f = tmp_path / "file"
    f.write_text("x")
    for command in ("train", "sample"):
        with pytest.raises(SystemExit, match="argument --out: .* is a file, expected a directory"):
            mod.main([command, "--out", str(f)])

    def offline(*a, **k):
        raise urllib.error.URLError("no network in the test")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        mod.main(["train", "--data-root", str(tmp_path / "data"), "--out", str(run)])
    msg = str(info.value.code)
    assert "--data-root" in msg and "cifar-10-python.tar.gz" in msg and "\n" not in msg
    assert not run.exists()  # no empty run folder left behind


def test_psld_cifar10_smoke_keeps_explicit_flags(capsys):
    mod = _load("psld_cifar10")
    argv = ["--smoke", "--batch-size", "8", "--steps", "7"]
    args = mod._train_parser().parse_args(argv)
    mod._smoke_overrides(args, "train", mod._explicit(mod._train_parser(), argv))
    assert (args.batch_size, args.steps) == (8, 7)  # explicit: kept
    assert args.net == "tiny" and args.lr == mod.SMOKE_TRAIN["lr"]  # not given: smoke values
    assert args.out == "runs/psld_smoke"
    assert "kept: --batch-size --steps" in capsys.readouterr().out


def test_psld_cifar10_defaults_are_the_paper_recipe():
    mod = _load("psld_cifar10")
    a = mod._train_parser().parse_args([])
    assert (a.beta_min, a.beta_max, a.gamma, a.nu, a.kappa) == (8.0, 8.0, 0.01, 4.01, 0.04)
    assert (a.lr, a.warmup, a.clip, a.ema, a.batch_size, a.t_eps) == (
        2e-4, 5000, 1.0, 0.9999, 128, 1e-5
    )
    assert a.net == "psld_cifar10"


def test_synthetic_images_are_deterministic_uint8():
    mod = _load("psld_cifar10")
    a, b = mod.synthetic_images(8, 16, seed=1), mod.synthetic_images(8, 16, seed=1)
    assert a.dtype.name == "uint8" and a.shape == (8, 16, 16, 3) and (a == b).all()
    assert a.std() > 20
