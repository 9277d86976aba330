"""examples/combostoc.py: every flag documented, smoke settings, built-in data, bad input named."""

import contextlib
import importlib.util
import io
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("combostoc", ROOT / "examples" / "combostoc.py")
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
    for flag in ("--out", "--smoke", "--modes", "--path", "--no-compensate", "--sample-steps"):
        assert flag in text


def test_smoke_settings_and_modes():
    mod = _load()
    args = mod._parser().parse_args(["--smoke"])
    mod._smoke_overrides(args)
    assert args.data == "synthetic" and args.steps <= 50 and mod.parse_modes(args.modes) == [
        "baseline", "all"]
    assert mod.parse_modes("baseline, channel,position") == ["baseline", "channel", "position"]
    with pytest.raises(SystemExit, match="--modes"):
        mod.parse_modes("baseline,patch")
    with pytest.raises(SystemExit, match="--patch-size"):
        mod.main(["--data", "synthetic", "--patch-size", "3", "--num-train", "8"])


def test_synthetic_images_are_deterministic_uint8():
    mod = _load()
    a, b = mod.synthetic_images(8, 16, seed=1), mod.synthetic_images(8, 16, seed=1)
    assert a.dtype.name == "uint8" and a.shape == (8, 16, 16, 1) and (a == b).all()
    assert a.std() > 20
