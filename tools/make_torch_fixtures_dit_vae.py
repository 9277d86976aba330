"""Fixtures that prove sdekit's SiT/ComboStoc DiT and Stable Diffusion VAE compute the
originals' functions (tests/test_from_torch_dit_vae.py reads them; torch is never imported by
sdekit or its tests).

For each original it builds the module at a SMALL configuration with random weights (every
parameter drawn, including the zero-initialised adaLN and output layers), runs it on fixed
inputs and writes the state dict (as the original would save it), the inputs and the outputs:

- SiT's ``SiT`` (``models.py``): patch 2 with learned sigma, patch 4 without; forward at
  per-example times (SiT's time, including both ends), labels including the null class, and
  ``forward_with_cfg``;
- ComboStoc's ``ComboStoc`` (``models.py``): per-element times, per-example times, and
  ``forward_with_cfg``; and a tiny training checkpoint laid out as its ``train.py`` writes it
  (``{"model", "ema", "opt", "step", "args"}``, ``args`` an ``argparse.Namespace``);
- one step of SiT's own samplers (``transport``: Linear path, velocity model,
  ``Sampler.sample_ode`` Euler on a 3-point grid, ``Sampler.sample_sde`` Euler with the
  ``sigma`` diffusion and the ``Mean`` last step; the SDE's Gaussian draws replaced by zeros and
  by ones, which gives its deterministic part and its noise coefficient) with
  ``forward_with_cfg`` at scale 4 on the small SiT and ComboStoc models;
- diffusers' ``AutoencoderKL`` (three levels, 16 x 16 images): ``encode`` (posterior mean and
  log-variance) and ``decode``; its weights as diffusers saves them
  (``diffusion_pytorch_model.safetensors``); and SiT's ``sample.py`` pipeline end to end on the
  small models (the ODE sample above decoded with ``vae.decode(samples / 0.18215)``);
- name-and-shape manifests (no weights) of the full-size released configurations: every
  ``SiT-*`` / ``ComboStoc-*`` preset of arch ``sit_dit`` and the ``sd-vae-ft-*`` autoencoder,
  built on PyTorch's ``meta`` device.

Setup (a separate environment; nothing here is imported by sdekit)::

    python -m venv torchenv && . torchenv/bin/activate
    pip install torch numpy safetensors timm diffusers torchdiffeq
    git clone https://github.com/willisma/SiT            # used at 947f95b
    git clone https://github.com/Xrvitd/ComboStoc        # used at e323409
    python tools/make_torch_fixtures_dit_vae.py --sit SiT --combostoc ComboStoc
    # or, with the other archs: python tools/make_torch_fixtures.py --sit SiT --combostoc ...

The original code is imported from those checkouts (``models.py``, SiT's ``transport``), never
copied. ``timm`` (which SiT's ``models.py`` imports its ``PatchEmbed``/``Attention``/``Mlp``
from) imports ``torchvision`` at import time; where torchvision cannot be imported (e.g. a CUDA
build of it beside a CPU torch) an inert placeholder module is installed for it, which is safe
because none of the layers used here touches torchvision.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib.abc
import importlib.machinery
import importlib.util
import json
import math
import pathlib
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np

SMALL_SIT = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2,
                 num_heads=2, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10,
                 learn_sigma=True)
SMALL_SIT_P4 = dict(SMALL_SIT, patch_size=4, depth=1, learn_sigma=False)
TINY_TRAIN = dict(input_size=8, patch_size=4, in_channels=4, hidden_size=16, depth=1,
                  num_heads=2, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=3,
                  learn_sigma=True)
SMALL_VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
                 block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4,
                 scaling_factor=0.18215)
RELEASED_VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
                    block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                    norm_num_groups=32, scaling_factor=0.18215, sample_size=256)
SIZES = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}
CFG_SCALE = 4.0


# ---------------------------------------------------------------------------------------------
# environment


class _Inert(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = _Inert(name, (), {})
        setattr(cls, name, sub)
        return sub


class _InertModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = _Inert(name, (), {})
        setattr(self, name, sub)
        return sub


class _InertFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _InertModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def _torchvision_placeholder() -> bool:
    """Install an inert ``torchvision`` if the real one cannot be imported; True if installed."""
    try:
        import torchvision.ops.misc  # noqa: F401  (what timm imports; also rejects a stand-in)

        return False
    except Exception:
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.meta_path.insert(0, _InertFinder())
        return True


def _load_module(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------
# helpers


def _randomise(torch, model, seed: int, skip=("pos_embed",)):
    """Every parameter drawn: weights N(0, 1/fan_in), biases N(0, 0.1^2), normalisation
    weights 1 + N(0, 0.1^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in skip:
                continue
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.ndim >= 2:
                p.copy_(r / math.sqrt(float(np.prod(p.shape[1:]))))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(0.1 * r)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _dyadic(torch, gen, shape, denom=256):
    """Times k / denom: exact in float32, and so is 1 - t (sdekit's time)."""
    return torch.randint(0, denom + 1, shape, generator=gen).to(torch.float32) / denom


def _manifest(model) -> list:
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    out = []
    for name, t in model.state_dict().items():
        kind = "frozen" if name in frozen else "buffer" if name in buffers else "param"
        out.append([name, list(t.shape), kind])
    return out


@contextlib.contextmanager
def _randn_as(torch, value: float):
    """``torch.randn`` returning a constant (SiT's SDE step draws its noise with it)."""
    orig = torch.randn

    def fake(*size, **kw):
        shape = size[0] if len(size) == 1 and not isinstance(size[0], int) else size
        return torch.full(tuple(shape), value, dtype=kw.get("dtype") or torch.float32)

    torch.randn = fake
    try:
        yield
    finally:
        torch.randn = orig


# ---------------------------------------------------------------------------------------------
# fixtures


def dit_fixtures(torch, cls, cfg: dict, prefix: str, seed: int, per_element: bool, out: dict):
    model = cls(**cfg).eval()
    _randomise(torch, model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    n, c, s = 4, cfg["in_channels"], cfg["input_size"]
    x = torch.randn((n, c, s, s), generator=gen)
    t = torch.tensor([0.0, 0.25, 0.625, 1.0])
    y = torch.tensor([0, 3, cfg["num_classes"] - 1, cfg["num_classes"]])  # last: null class
    with torch.no_grad():
        out[f"{prefix}/x"], out[f"{prefix}/t"], out[f"{prefix}/y"] = _np(x), _np(t), y.numpy()
        out[f"{prefix}/out"] = _np(model(x, t, y))
        if per_element:
            te = _dyadic(torch, gen, (n, c, s, s))
            out[f"{prefix}/t_element"] = _np(te)
            out[f"{prefix}/out_element"] = _np(model(x, te, y))
        # forward_with_cfg: first half of the batch with labels, second half null
        yc = torch.cat([y[:2], torch.full((2,), cfg["num_classes"])])
        xc = torch.cat([x[:2], x[:2]])
        tc = torch.cat([t[1:3], t[1:3]])
        out[f"{prefix}/cfg_y"] = yc.numpy()
        out[f"{prefix}/cfg_out"] = _np(model.forward_with_cfg(xc, tc, yc, CFG_SCALE))
    return model


def train_checkpoint(torch, cls, path: pathlib.Path, seed: int):
    """A checkpoint laid out as ComboStoc's ``train.py`` saves it (SiT's is the same without
    ``"step"``): raw and EMA state dicts, the AdamW state after one step, the step count and the
    ``argparse.Namespace`` of the run, at a tiny configuration."""
    import argparse
    import copy

    model = cls(**TINY_TRAIN)
    _randomise(torch, model, seed)
    ema = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((2, 4, 8, 8), generator=gen)
    loss = model(x, torch.rand((2,), generator=gen), torch.tensor([0, 2])).pow(2).mean()
    loss.backward()
    opt.step()
    args = argparse.Namespace(model="ComboStoc-S/4", image_size=64, num_classes=3,
                              combostoc_type="UNSYNC_ALL", global_seed=0)
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "step": 1, "args": args}, path)


def sampler_fixtures(torch, sit_dir: pathlib.Path, model, cfg: dict, prefix: str, seed: int,
                     out: dict):
    sys.path.insert(0, str(sit_dir))
    try:
        from transport import Sampler, create_transport
    finally:
        sys.path.remove(str(sit_dir))
    transport = create_transport("Linear", "velocity")
    sampler = Sampler(transport)
    gen = torch.Generator().manual_seed(seed)
    n, c, s = 2, cfg["in_channels"], cfg["input_size"]
    z = torch.randn((n, c, s, s), generator=gen)
    y = torch.tensor([1, 7])
    zz = torch.cat([z, z])
    yy = torch.cat([y, torch.full((n,), cfg["num_classes"])])
    kw = dict(y=yy, cfg_scale=CFG_SCALE)
    out[f"{prefix}/z"], out[f"{prefix}/y"] = _np(z), y.numpy()
    with torch.no_grad():
        ode = sampler.sample_ode(sampling_method="euler", num_steps=3)
        traj = ode(zz, model.forward_with_cfg, **kw)
        out[f"{prefix}/ode_euler"] = _np(traj[:, :n])  # (3, N, C, H, W), the grid's states
        sde = sampler.sample_sde(sampling_method="Euler", diffusion_form="sigma",
                                 diffusion_norm=1.0, last_step="Mean", last_step_size=0.04,
                                 num_steps=2)
        with _randn_as(torch, 0.0):
            xs0 = sde(zz, model.forward_with_cfg, **kw)
        with _randn_as(torch, 1.0):
            xs1 = sde(zz, model.forward_with_cfg, **kw)
        out[f"{prefix}/sde_step_mean"] = _np(xs0[0][:n])  # first step with zero noise
        out[f"{prefix}/sde_step_noise_coef"] = _np(xs1[0][:n] - xs0[0][:n])
        out[f"{prefix}/sde_last_mean"] = _np(xs0[1][:n])  # the Mean last step from it


def vae_fixtures(torch, out: dict, outdir: pathlib.Path, seed: int):
    from diffusers import AutoencoderKL

    levels = len(SMALL_VAE["block_out_channels"])
    cfg = {k: v for k, v in SMALL_VAE.items()}
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * levels,
                        up_block_types=("UpDecoderBlock2D",) * levels, sample_size=16,
                        **cfg).eval()
    _randomise(torch, vae, seed, skip=())
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand((2, 3, 16, 16), generator=gen) * 2 - 1
    z = torch.randn((2, 4, 4, 4), generator=gen)
    with torch.no_grad():
        post = vae.encode(x).latent_dist
        out["sd_vae/x"], out["sd_vae/z"] = _np(x), _np(z)
        out["sd_vae/mean"], out["sd_vae/logvar"] = _np(post.mean), _np(post.logvar)
        out["sd_vae/decoded"] = _np(vae.decode(z).sample)
    with tempfile.TemporaryDirectory() as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(pathlib.Path(tmp) / "diffusion_pytorch_model.safetensors",
                    outdir / "sd_vae_small.safetensors")
    return cfg, vae


def manifests(torch, sit_models, cs_models) -> tuple[dict, list]:
    from diffusers import AutoencoderKL

    presets = {}
    with torch.device("meta"):
        for family, mod, table in (("SiT", sit_models, "SiT_models"),
                                   ("ComboStoc", cs_models, "ComboStoc_models")):
            for size in SIZES:
                for p in (2, 4, 8):
                    name = f"{family}-{size}/{p}"
                    m = getattr(mod, table)[name](input_size=32, num_classes=1000,
                                                  learn_sigma=True)
                    presets[name] = _manifest(m)
        m = sit_models.SiT_models["SiT-XL/2"](input_size=64, num_classes=1000,
                                              learn_sigma=False)
        presets["SiT-XL/2-512"] = _manifest(m)
        vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, **RELEASED_VAE)
        vae_manifest = _manifest(vae)
    return presets, vae_manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sit", required=True, help="checkout of github.com/willisma/SiT")
    ap.add_argument("--combostoc", required=True, help="checkout of github.com/Xrvitd/ComboStoc")
    ap.add_argument("--out", default="tests/fixtures/torch", help="output folder")
    ap.add_argument("--sit-rev", default=None,
                    help="commit of the SiT checkout to record (default: git rev-parse HEAD)")
    ap.add_argument("--combostoc-rev", default=None,
                    help="commit of the ComboStoc checkout to record (default: git rev-parse)")
    args = ap.parse_args(argv)
    placeholder = _torchvision_placeholder()
    import diffusers
    import timm
    import torch

    torch.manual_seed(0)
    sit_dir, cs_dir = pathlib.Path(args.sit), pathlib.Path(args.combostoc)
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    sit_models = _load_module("sit_original_models", sit_dir / "models.py")
    cs_models = _load_module("combostoc_original_models", cs_dir / "models.py")

    out: dict[str, np.ndarray] = {}
    sit = dit_fixtures(torch, sit_models.SiT, SMALL_SIT, "sit", 10, False, out)
    torch.save(sit.state_dict(), outdir / "sit_dit_small.pt")
    sit4 = dit_fixtures(torch, sit_models.SiT, SMALL_SIT_P4, "sit_p4", 20, False, out)
    torch.save(sit4.state_dict(), outdir / "sit_dit_small_p4.pt")
    cs = dit_fixtures(torch, cs_models.ComboStoc, SMALL_SIT, "combostoc", 30, True, out)
    torch.save(cs.state_dict(), outdir / "combostoc_dit_small.pt")
    train_checkpoint(torch, cs_models.ComboStoc, outdir / "combostoc_train_ckpt.pt", 35)
    sampler_fixtures(torch, sit_dir, sit, SMALL_SIT, "sit_sampler", 40, out)
    sampler_fixtures(torch, sit_dir, cs, SMALL_SIT, "combostoc_sampler", 50, out)
    vae_cfg, vae = vae_fixtures(torch, out, outdir, 60)
    # SiT's sample.py end to end (small models): the ODE sample decoded by the autoencoder
    with torch.no_grad():
        latents = torch.from_numpy(out["sit_sampler/ode_euler"][-1])
        out["sit_pipeline/images"] = _np(vae.decode(latents / 0.18215).sample)
    np.savez_compressed(outdir / "dit_vae_io.npz", **out)

    presets, vae_manifest = manifests(torch, sit_models, cs_models)
    raw = json.dumps({"arch": "sit_dit", "presets": presets}).encode()
    with open(outdir / "manifest_sit_dit.json.gz", "wb") as f:  # mtime 0: reproducible bytes
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
            gz.write(raw)
    (outdir / "manifest_sd_vae.json").write_text(json.dumps(
        {"arch": "sd_vae", "preset": "sd-vae-ft-ema", "tensors": vae_manifest}, indent=0))

    def rev(d: pathlib.Path, given: str | None) -> str:
        if given:
            return given
        r = subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], capture_output=True,
                           text=True)
        return r.stdout.strip() if r.returncode == 0 else "(unknown)"

    meta = {
        "sit": SMALL_SIT, "sit_p4": SMALL_SIT_P4, "combostoc": SMALL_SIT, "sd_vae": vae_cfg,
        "combostoc_train": TINY_TRAIN,
        "cfg_scale": CFG_SCALE,
        "versions": {"torch": torch.__version__, "timm": timm.__version__,
                     "diffusers": diffusers.__version__, "numpy": np.__version__,
                     "torchvision_placeholder": placeholder},
        "checkouts": {"SiT": rev(sit_dir, args.sit_rev),
                      "ComboStoc": rev(cs_dir, args.combostoc_rev)},
    }
    (outdir / "dit_vae_meta.json").write_text(json.dumps(meta, indent=1, default=list))
    for p in sorted(outdir.glob("*")):
        if p.name.startswith(("sit_", "combostoc_", "sd_vae", "dit_vae", "manifest_s")):  # ours
            print(f"{p}: {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
