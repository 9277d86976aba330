"""Reference statistics files: sdekit's (which record their protocol) and the tools' own.

Read by `load_reference`:

- sdekit's ``.npz`` (`save_reference`): ``mu``, ``sigma``, ``protocol``, ``n`` and optionally
  ``features`` (for KID and precision/recall) and ``vgg16_features``;
- pytorch-fid's ``--save-stats`` ``.npz`` and TTUR's ``fid_stats_*.npz`` (``mu``, ``sigma``):
  protocol ``"pytorch-fid"``;
- clean-fid's statistics, recognised by clean-fid's file names
  ``<name>_<mode>_<split>_<res>.npz`` (``mu``, ``sigma``) and ``..._kid.npz`` (``feats``):
  ``mode`` ``clean`` is protocol ``"clean-fid"``, ``legacy_tensorflow`` is
  ``"clean-fid-legacy-tf"``, and ``legacy_pytorch`` (pytorch-fid's network and resize) is
  ``"pytorch-fid"``;
- torch-fidelity's cache files ``<input>-inception-v3-compat-stat-fid-<layer>.pt`` (``mu``,
  ``sigma``) and ``<input>-inception-v3-compat-features-<layer>.pt`` (the features): protocol
  ``"torch-fidelity"``.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any

import numpy as np

from ._protocols import Protocol, get_protocol

FORMAT_VERSION = 1
_CLEANFID_MODES = {"clean": "clean-fid", "legacy_tensorflow": "clean-fid-legacy-tf",
                   "legacy_pytorch": "pytorch-fid"}


def _cleanfid_name(name: str) -> tuple[str, str, bool] | None:
    """``(mode, model modifier, is_kid)`` of a clean-fid statistics file name
    ``<dataset>_<mode>[_<model>]_<split>_<res>[_kid].npz``, or ``None``."""
    stem = name.lower()
    if not stem.endswith(".npz"):
        return None
    tokens = stem[:-4].split("_")
    kid = tokens[-1] == "kid"
    if kid:
        tokens = tokens[:-1]
    for i in range(len(tokens) - 3, 0, -1):
        for mode in ("clean", "legacy_tensorflow", "legacy_pytorch"):
            width = mode.count("_") + 1
            if "_".join(tokens[i:i + width]) == mode and i + width <= len(tokens) - 2:
                return mode, "_".join(tokens[i + width:-2]), kid
    return None

_TF_NAME = re.compile(r"-(?P<kind>stat-fid|features)-(?P<layer>[^-]+)\.pt$")


def save_reference(
    path: str | os.PathLike,
    features: Any,
    *,
    protocol: Protocol | str,
    keep_features: bool = False,
    vgg16_features: Any = None,
) -> pathlib.Path:
    """Write reference statistics of Inception features made under ``protocol``.

    The file is an ``.npz`` with ``mu`` and ``sigma`` (so pytorch-fid reads it too), the
    protocol's name, the sample count and a format version; with ``keep_features`` also the
    pool3 ``features`` (float32, for KID and the Inception precision/recall), and the VGG-16
    ``fc2_relu`` features if given (for the VGG-16 precision/recall).

    Args:
        path: the ``.npz`` to write (parent folders are made).
        features: ``(n, 2048)`` pool3 features of the reference set under ``protocol``.
        protocol: the `Protocol` (or name) the features were made with.
        keep_features: also store the features.
        vgg16_features: ``(n', 4096)`` VGG-16 features of the reference set, or ``None``.

    Returns:
        The path written.
    """
    proto = get_protocol(protocol)
    mu, sigma = proto.statistics(features)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if keep_features:
        extra["features"] = np.asarray(features, np.float32)
    if vgg16_features is not None:
        extra["vgg16_features"] = np.asarray(vgg16_features, np.float32)
    np.savez(path, mu=mu, sigma=sigma, protocol=np.array(proto.name),
             n=np.array(int(np.shape(features)[0])),
             sdekit_metrics_format=np.array(FORMAT_VERSION), **extra)
    return path


def _mismatch(path, found: str, how: str, wanted: Protocol) -> ValueError:
    return ValueError(
        f"{path}: reference statistics made under protocol {found!r} ({how}), but protocol "
        f"{wanted.name!r} was asked for; FIDs across protocols are not comparable. Use "
        f"protocol={found!r} for the samples too, or rebuild the statistics with "
        f"`python -m sdekit.metrics stats <images> --protocol {wanted.name} --out ...`.")


def load_reference(path: str | os.PathLike, *, protocol: Protocol | str | None = None) -> dict:
    """Read reference statistics (sdekit's or a tool's own file; see the module docstring) and
    check they were made under ``protocol``.

    Args:
        path: the file.
        protocol: the protocol the caller computes sample features with; if the file was made
            under another one, ``ValueError`` names both. ``None`` skips the check.

    Returns:
        A dict with ``mu``, ``sigma``, ``protocol`` (the file's), ``format`` (``"sdekit"``,
        ``"pytorch-fid"``, ``"clean-fid"`` or ``"torch-fidelity"``), and ``features`` /
        ``vgg16_features`` / ``n`` when the file holds them.
    """
    from ..io import load_torch

    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"argument `path`: no reference statistics file at {str(p)!r}.")
    wanted = None if protocol is None else get_protocol(protocol)
    out: dict[str, Any]
    if p.suffix == ".pt":
        m = _TF_NAME.search(p.name)
        if m is None:
            raise ValueError(f"{p}: a .pt file not named like torch-fidelity's cache "
                             "(<input>-inception-v3-compat-stat-fid-2048.pt or "
                             "...-features-2048.pt).")
        if not p.name[:m.start()].endswith("-inception-v3-compat"):
            raise ValueError(f"{p}: not statistics of torch-fidelity's Inception (its cache "
                             "files are named <input>-inception-v3-compat-stat-fid-<layer>.pt).")
        obj = load_torch(p)
        proto = get_protocol("torch-fidelity")
        if m["kind"] == "features":
            if not isinstance(obj, np.ndarray) or obj.ndim != 2:
                raise ValueError(f"{p}: expected a (n, d) feature tensor, found "
                                 f"{type(obj).__name__}.")
            mu, sigma = proto.statistics(obj)
            out = {"mu": mu, "sigma": sigma, "features": obj, "n": obj.shape[0]}
        else:
            if not (isinstance(obj, dict) and {"mu", "sigma"} <= set(obj)):
                raise ValueError(f"{p}: expected torch-fidelity's dict of 'mu' and 'sigma', "
                                 f"found {type(obj).__name__}.")
            out = {"mu": np.asarray(obj["mu"]), "sigma": np.asarray(obj["sigma"])}
        out.update(protocol=proto.name, format="torch-fidelity")
        how = "a torch-fidelity cache file"
    elif p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        m = _cleanfid_name(p.name)
        if "protocol" in data:
            out = {k: v for k, v in data.items() if k not in ("protocol", "sdekit_metrics_format")}
            out.update(protocol=str(data["protocol"]), format="sdekit")
            if "n" in out:
                out["n"] = int(out["n"])
            how = "recorded in the file"
        elif m is not None:
            mode, model, kid = m
            if model:
                raise ValueError(f"{p}: clean-fid statistics of the {model!r} features, not its "
                                 "Inception's.")
            found = _CLEANFID_MODES[mode]
            if kid:  # the KID file: features
                if "feats" not in data:
                    raise ValueError(f"{p}: clean-fid KID statistics need an array 'feats', the "
                                     f"file holds {sorted(data)}.")
                feats = data["feats"]
                mu, sigma = get_protocol(found).statistics(feats)
                out = {"mu": mu, "sigma": sigma, "features": feats, "n": feats.shape[0]}
            else:
                out = {"mu": data.get("mu"), "sigma": data.get("sigma")}
            out.update(protocol=found, format="clean-fid")
            how = f"clean-fid's mode {mode!r} in the file name"
        else:
            out = {"mu": data.get("mu"), "sigma": data.get("sigma")}
            out.update(protocol="pytorch-fid", format="pytorch-fid")
            how = "pytorch-fid's / TTUR's mu-sigma layout"
        if out.get("mu") is None or out.get("sigma") is None:
            raise ValueError(f"{p}: a statistics file needs arrays 'mu' and 'sigma', it holds "
                             f"{sorted(data)}.")
    else:
        raise ValueError(f"{p}: not a statistics file (.npz of sdekit, pytorch-fid or clean-fid, "
                         "or a torch-fidelity .pt cache file).")
    mu, sigma = np.asarray(out["mu"]), np.asarray(out["sigma"])
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{p}: 'mu' has shape {mu.shape} and 'sigma' {sigma.shape}, expected "
                         "(d,) and (d, d).")
    if wanted is not None and out["protocol"] != wanted.name:
        raise _mismatch(p, out["protocol"], how, wanted)
    return out
