"""Write the fixtures that prove sdekit's converted networks compute the originals' functions.

For every arch of ``sdekit.nets.from_torch`` covered here this tool imports the ORIGINAL code
from your checkout of its repository (never a copy), builds the original module at a small
configuration with random weights, and writes to ``--out`` (default ``tests/fixtures/torch``):

- ``<case>.pth`` / ``.ckpt``: the weights, written by ``torch.save`` in the original's own file
  layout (a plain state dict, PSLD's Lightning checkpoint with raw and EMA networks, Reflected
  Diffusion's score_sde-style ``{'model', 'ema', 'optimizer', 'step'}``, ...);
- ``<case>.npz``: fixed inputs (``x`` in NCHW, ``t``, class labels including the null class)
  and the original's outputs for them, plus one sampler step of the original code on the same
  network (fixed noise) where deliverable 2 of issue 20 asks for it;
- ``manifests.json.gz``: the name, shape and kind of every entry of the state dict of the
  original module at each released configuration (built on the ``meta`` device where the code
  allows it, so nothing is allocated; no weights are written).

The tests (``tests/test_from_torch.py``) read these files without torch.

Setup (outside sdekit's environment: torch must never be a dependency of sdekit):

    python3.11 -m venv torchenv && . torchenv/bin/activate
    pip install torch torchvision numpy scipy safetensors
    pip install pytorch-lightning==1.9.0   # only for PSLD's Lightning checkpoint fixture
    git clone https://github.com/mandt-lab/PSLD
    git clone https://github.com/louaaron/Reflected-Diffusion
    git clone https://github.com/tqch/v-diffusion-torch
    git clone https://github.com/SpencerSzabados/Group-Diffusion
    pip install einops                     # Group-Diffusion's attention imports it
    pip install timm diffusers torchdiffeq   # only for --sit/--combostoc (SiT, ComboStoc, VAE)
    git clone https://github.com/willisma/SiT
    git clone https://github.com/Xrvitd/ComboStoc

    python tools/make_torch_fixtures.py --psld PSLD --reflected Reflected-Diffusion \\
        --vdpm v-diffusion-torch --group-diffusion Group-Diffusion --sit SiT --combostoc ComboStoc

Each repository argument is optional; only the archs whose checkout is given are written.
Reading an original's code before running it is the user's job; this tool only imports the
network modules (and, for the sampler steps, the SDE/sampler modules); nothing is downloaded and
PSLD's CUDA extensions are never compiled (their ``load`` is replaced by a stub while importing;
the CPU path of ``upfirdn2d`` is pure PyTorch).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------
# helpers


def _ns(d):
    """A nested attribute namespace (the originals read configs as ``config.a.b``)."""
    if isinstance(d, dict):
        return types.SimpleNamespace(**{k: _ns(v) for k, v in d.items()})
    return d


@contextlib.contextmanager
def _on_path(path):
    sys.path.insert(0, path)
    try:
        yield
    finally:
        sys.path.remove(path)


@contextlib.contextmanager
def _no_cuda_build():
    """PSLD's ``op`` package compiles CUDA kernels at import; they are never used on CPU."""
    import torch.utils.cpp_extension as ce

    saved = ce.load
    ce.load = lambda *a, **k: types.SimpleNamespace()
    try:
        yield
    finally:
        ce.load = saved


def _bare_package(name, path):
    """Register package ``name`` at ``path`` without running its ``__init__.py``."""
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    sys.modules[name] = mod
    return mod


def _forget(prefixes):
    for k in list(sys.modules):
        if any(k == p or k.startswith(p + ".") for p in prefixes):
            del sys.modules[k]


def randomise(module, seed, scale=1.0, fp16_exact=False):
    """Give every parameter an O(1)-output random value (the originals initialise many layers
    to ~0, which would make the comparison meaningless): weights ~ N(0, scale^2 / fan_in),
    biases ~ N(0, 0.1^2), GroupNorm scales ~ 1 + N(0, 0.1^2). With ``fp16_exact`` every value
    is rounded to float16 (and kept in float32), so a float16 file holds the same weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.requires_grad and name.endswith("W") and p.ndim == 1:
                continue  # score_sde's fixed Fourier matrix keeps its N(0, scale^2) draw
            if p.ndim == 1:
                base = 1.0 if ("norm" in name.lower() and name.endswith("weight")) else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else int(p.shape[0])
                if name.endswith(".W") and p.ndim == 2:  # score_sde's NIN: (in, out)
                    fan_in = int(p.shape[0])
                p.copy_(torch.randn(p.shape, generator=g) * (scale / np.sqrt(fan_in)))
            if fp16_exact:  # values float16 can hold exactly: the file may store float16
                p.copy_(p.half().float())


def kinds(module):
    """``{name: kind}`` for the state dict of ``module``: param, frozen or buffer."""
    out = {}
    for n, p in module.named_parameters():
        out[n] = "param" if p.requires_grad else "frozen"
    for n, _ in module.named_buffers():
        out[n] = "buffer"
    return out


def manifest(module):
    k = kinds(module)
    return [[n, list(v.shape), k[n]] for n, v in module.state_dict().items()]


def nchw(x):
    return np.ascontiguousarray(np.asarray(x, np.float32))


class Writer:
    def __init__(self, out):
        self.out = out
        os.makedirs(out, exist_ok=True)
        self.manifests = {}
        self.written = []

    def save_torch(self, name, obj):
        path = os.path.join(self.out, name)
        torch.save(obj, path)
        self.written.append(path)

    def save_safetensors(self, name, state):
        from safetensors.torch import save_file

        path = os.path.join(self.out, name)
        save_file({k: v.contiguous() for k, v in state.items()}, path)
        self.written.append(path)

    def save_npz(self, name, **arrays):
        path = os.path.join(self.out, name)
        cfg = arrays.pop("config", None)
        if cfg is not None:
            arrays["config"] = np.array(json.dumps(cfg))
        np.savez(path, **arrays)
        self.written.append(path)

    def add_manifest(self, arch, preset, entries):
        self.manifests.setdefault(arch, {})[preset] = entries

    def finish(self):
        if self.manifests:
            path = os.path.join(self.out, "manifests.json.gz")
            old = {}
            if os.path.exists(path):
                with gzip.open(path, "rt") as f:
                    old = json.load(f)
            old.update(self.manifests)
            with gzip.GzipFile(path, "wb", mtime=0) as f:
                f.write(json.dumps(old, sort_keys=True).encode())
            self.written.append(path)
        total = 0
        for p in self.written:
            size = os.path.getsize(p)
            total += size
            print(f"{size:>10,d}  {p}")
        print(f"{total:>10,d}  bytes written")


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_presets():
    """sdekit's presets (``sdekit/nets/_torch/_presets.py``: plain data, read without importing
    sdekit, whose JAX is not in this environment)."""
    path = os.path.join(_REPO, "sdekit", "nets", "_torch", "_presets.py")
    spec = importlib.util.spec_from_file_location("_sdekit_torch_presets", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def arch_config(arch, preset=None, **overrides):
    p = _load_presets()
    cfg = dict(p.DEFAULTS[arch])
    if preset is not None:
        cfg.update(p.PRESETS[arch][preset])
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise KeyError(f"{arch}: unknown configuration keys {sorted(unknown)}")
    cfg.update(overrides)
    return cfg


class _Anything(types.ModuleType):
    """A stand-in module: any attribute is another stand-in (used for torchvision, which the
    originals import for data loading only, when the installed torchvision cannot load)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = _Anything(f"{self.__name__}.{name}")
        setattr(self, name, sub)
        return sub

    def __call__(self, *args, **kwargs):
        return self


def _ensure_torchvision():
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install raises RuntimeError, not ImportError
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        tv = _Anything("torchvision")
        tv.__path__ = []
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tv.transforms
        print("note: torchvision does not load here; a stand-in is used (data code only)")


def _build_meta_or_cpu(make):
    """Build a full-size original module without allocating when the code allows it."""
    try:
        with torch.device("meta"):
            return make()
    except Exception:  # noqa: BLE001 - some initialisers insist on a real device
        with torch.no_grad():
            return make()


# ----------------------------------------------------------------------------------------------
# score_sde NCSN++ (PSLD and Reflected Diffusion): sdekit UNet keyword names -> score_fn config

_SCORE_SDE_KEYS = dict(
    nf="nf", ch_mult="ch_mult", num_res_blocks="num_res_blocks",
    attn_resolutions="attn_resolutions", dropout="dropout", resamp_with_conv="resamp_with_conv",
    fir="fir", fir_kernel="fir_kernel", skip_rescale="skip_rescale",
    resblock_type="resblock_type", progressive="progressive",
    progressive_input="progressive_input", progressive_combine="progressive_combine",
    embedding_type="embedding_type", init_scale="init_scale", fourier_scale="fourier_scale",
)


def _score_sde_cfg(cfg):
    d = {v: cfg[k] for k, v in _SCORE_SDE_KEYS.items()}
    for k in ("ch_mult", "attn_resolutions", "fir_kernel"):
        d[k] = list(d[k])
    d["nonlinearity"] = "swish"
    return d


# ----------------------------------------------------------------------------------------------
# PSLD


def _import_psld(root):
    _ensure_torchvision()
    main = os.path.join(root, "main")
    _forget(["models", "util"])
    with _on_path(main), _no_cuda_build():
        _bare_package("models", os.path.join(main, "models"))
        ncsnpp = importlib.import_module("models.score_fn.song_sde.ncsnpp")
        psld = importlib.import_module("models.sde.psld")
        samplers = importlib.import_module("samplers.sde") if os.path.exists(
            os.path.join(main, "samplers", "sde.py")) else None
    return ncsnpp, psld, samplers


def _psld_config(cfg, sde=None):
    sf = _score_sde_cfg(cfg)
    sf.update(name="ncsnpp", in_ch=cfg["in_channels"], out_ch=cfg["out_channels"],
              noise_cond=True)
    c = dict(
        model=dict(score_fn=sf, sde=dict(sde or {})),
        data=dict(image_size=cfg["image_size"], num_channels=cfg["in_channels"] // 2),
        training=dict(continuous=True),
    )
    return _ns(c)


def psld_fixtures(root, w: Writer, manifests=True):
    ncsnpp, psld_mod, samplers = _import_psld(root)
    if manifests:
        for preset in _load_presets().PRESETS["psld_ncsnpp"]:
            cfg = arch_config("psld_ncsnpp", preset)
            m = _build_meta_or_cpu(lambda cfg=cfg: ncsnpp.NCSNpp(_psld_config(cfg)))
            w.add_manifest("psld_ncsnpp", preset, dict(config=cfg, entries=manifest(m)))

    # 1. the SOTA combination at a small size (preset "smoke"): fourier(log t), FIR, residual
    #    input pyramid, BigGAN blocks, attention; a Lightning checkpoint with raw and EMA networks
    small = dict(nf=4, ch_mult=(1, 2), num_res_blocks=1, image_size=8, attn_resolutions=(4,),
                 dropout=0.15)
    cases = {
        "psld_smoke": arch_config("psld_ncsnpp", "smoke"),
        # 2. the ablation combination: positional(t), nearest/avg resampling, no pyramid
        "psld_positional": arch_config("psld_ncsnpp", "cifar10_ablation", **small),
    }
    sde_cfg = dict(beta_min=8.0, beta_max=8.0, nu=4.01, gamma=0.01, kappa=0.04,
                   decomp_mode="lower", numerical_eps=1e-9, n_timesteps=1000)
    for case, cfg in cases.items():
        torch.manual_seed(0)
        net = ncsnpp.NCSNpp(_psld_config(cfg, sde_cfg))
        randomise(net, seed=1)
        net.eval()
        n = 3
        g = torch.Generator().manual_seed(2)
        x = torch.randn(n, cfg["in_channels"], cfg["image_size"], cfg["image_size"], generator=g)
        t = torch.tensor([1e-5, 0.37, 1.0], dtype=torch.float32)
        with torch.no_grad():
            out = net(x, t)
        arrays = dict(x=nchw(x), t=t.numpy(), out=nchw(out), config=cfg)
        if case == "psld_smoke":
            # EMA copy differing from the raw weights; Lightning layout
            ema = ncsnpp.NCSNpp(_psld_config(cfg, sde_cfg))
            randomise(ema, seed=3)
            ema.eval()
            with torch.no_grad():
                arrays["out_ema"] = nchw(ema(x, t))
            w.save_torch(f"{case}.ckpt", _lightning_checkpoint(net, ema))
            # one Euler-Maruyama step of PSLD's own sampler on the EMA network
            sde = psld_mod.PSLD(_psld_config(cfg, sde_cfg))
            arrays.update(_psld_em_step(samplers, sde, ema, x, cfg, sde_cfg))
        else:
            w.save_torch(f"{case}.pth", net.state_dict())
        w.save_npz(f"{case}.npz", **arrays)


def _lightning_checkpoint(net, ema):
    """PSLD's checkpoint layout: what ``pytorch_lightning.Trainer.save_checkpoint`` (1.9, the
    version in PSLD's Pipfile) writes for ``SDEWrapper`` after one optimisation step, built
    here from the same pieces (``state_dict`` with the raw network under ``score_fn.`` and the
    EMA network under ``ema_score_fn.``, a real Adam state and LambdaLR state, loop progress and
    callback states). Lightning itself is not imported: its 1.9 release does not import next to
    current torch/setuptools."""
    sd = {}
    sd.update({f"score_fn.{k}": v for k, v in net.state_dict().items()})
    sd.update({f"ema_score_fn.{k}": v for k, v in ema.state_dict().items()})
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(step / 5000, 1.0))
    x = torch.zeros(1, net.config.score_fn.in_ch, 8, 8)  # one step makes the Adam state real
    net(x, torch.full((1,), 0.5)).sum().backward()
    opt.step()
    sched.step()
    opt.zero_grad()
    progress = {"total": {"ready": 1, "started": 1, "processed": 1, "completed": 1},
                "current": {"ready": 1, "started": 1, "processed": 1, "completed": 1}}
    return {
        "epoch": 0,
        "global_step": 1,
        "pytorch-lightning_version": "1.9.0",
        "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": progress,
                               "epoch_loop.batch_progress": progress,
                               "epoch_loop.state_dict": {"_batches_that_stepped": 1}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, "
            "'every_n_epochs': 50, 'train_time_interval': None}": {
                "monitor": None, "best_model_score": None, "best_model_path": "",
                "current_score": None, "dirpath": "/results/checkpoints", "best_k_models": {},
                "kth_best_model_path": "", "kth_value": torch.tensor(float("inf")),
                "last_model_path": ""},
        },
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [sched.state_dict()],
    }


def _psld_em_step(samplers, sde, net, x, cfg, sde_cfg):
    """One step of ``EulerMaruyamaSampler`` (PSLD's ``em_sde``) at reverse time tau with the
    noise replaced by a fixed draw; and its noise-free part (``x_mean``)."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    sampler = samplers.EulerMaruyamaSampler(_ns({}), sde, lambda u, t: net(u, t))
    u = x.to(torch.float64)
    tau = torch.tensor(0.25, dtype=torch.float64)
    dt = torch.tensor(0.02, dtype=torch.float64).reshape(1, 1, 1, 1)
    saved = torch.randn_like
    torch.randn_like = lambda a, *args, **kw: z.to(a.dtype)
    try:
        with torch.no_grad():
            x_next, x_mean = sampler.predictor_update_fn(u, tau, dt)
    finally:
        torch.randn_like = saved
    return dict(step_tau=np.float64(0.25), step_dt=np.float64(0.02), step_noise=z.numpy(),
                step_x_next=x_next.numpy(), step_x_mean=x_mean.numpy(),
                step_sde=np.array(json.dumps(sde_cfg)))


# ----------------------------------------------------------------------------------------------
# Reflected Diffusion


def _import_reflected(root):
    _ensure_torchvision()
    _forget(["models", "sde_lib", "cube", "sampling", "losses", "utils", "datasets"])
    with _on_path(root):
        ncsnpp = importlib.import_module("models.ncsnpp")
        ema = importlib.import_module("models.ema")
        sde_lib = importlib.import_module("sde_lib")
        sampling = importlib.import_module("sampling")
    return ncsnpp, ema, sde_lib, sampling


def _reflected_config(cfg):
    m = _score_sde_cfg(cfg)
    m.update(name="ncsnpp", conditional=True, scale_by_sigma=True, normalization="GroupNorm",
             ema_rate=0.9999, attention_type="ddpm", conv_size=3)
    return _ns(dict(
        model=m,
        data=dict(image_size=cfg["image_size"], num_channels=cfg["in_channels"]),
        sde=dict(sigma_min=cfg["sigma_min"], sigma_max=cfg["sigma_max"],
                 num_scales=cfg["num_scales"]),
    ))


def reflected_fixtures(root, w: Writer, manifests=True):
    ncsnpp, ema_mod, sde_lib, sampling = _import_reflected(root)
    if manifests:
        for preset in _load_presets().PRESETS["reflected_ncsnpp"]:
            cfg = arch_config("reflected_ncsnpp", preset)
            m = _build_meta_or_cpu(lambda cfg=cfg: ncsnpp.NCSNpp(_reflected_config(cfg)))
            w.add_manifest("reflected_ncsnpp", preset, dict(config=cfg, entries=manifest(m)))
    cfg = arch_config("reflected_ncsnpp", "cifar10", nf=4, ch_mult=(1, 2), num_res_blocks=1,
                      image_size=8, attn_resolutions=(4,), num_scales=50)
    torch.manual_seed(0)
    net = ncsnpp.NCSNpp(_reflected_config(cfg))
    randomise(net, seed=11)
    # score_sde's ExponentialMovingAverage keeps a *list* over the trainable parameters;
    # make it differ from the raw weights
    ema = ema_mod.ExponentialMovingAverage(net.parameters(), decay=0.9999)
    ema_net = ncsnpp.NCSNpp(_reflected_config(cfg))
    ema_net.load_state_dict(net.state_dict())
    randomise(net, seed=12)
    ema.num_updates = 7
    # a real Adam state_dict as saved before the first step (its moments would triple the
    # fixture's size; the structure is what matters for reading)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    net.eval()
    ema_net.eval()
    state = {"optimizer": opt.state_dict(), "model": net.state_dict(), "ema": ema.state_dict(),
             "step": 7, "scaler": None}
    w.save_torch("reflected_ncsnpp.pth", state)
    g = torch.Generator().manual_seed(13)
    x = torch.rand(3, 3, 8, 8, generator=g)
    sigma = torch.tensor([0.01, 0.3, 5.0])
    with torch.no_grad():
        out = net(x, sigma)
        out_ema = ema_net(x, sigma)
    arrays = dict(x=nchw(x), sigma=sigma.numpy(), out=nchw(out), out_ema=nchw(out_ema), config=cfg)
    # one step of the reference PC sampler's reflected Euler-Maruyama predictor (EMA network)
    sde = sde_lib.RVESDE(sigma_min=cfg["sigma_min"], sigma_max=cfg["sigma_max"], N=1000)
    score_fn = importlib.import_module("models.utils").get_score_fn(sde, ema_net, train=False)
    pred = sampling.ReflectedEulerMaruyamaPredictor(sde, score_fn)
    z = torch.randn(x.shape, generator=g)
    t = torch.full((3,), 0.5)
    saved = torch.randn_like
    torch.randn_like = lambda a, *args, **kw: z.to(a.dtype)
    try:
        with torch.no_grad():
            x_next, x_mean = pred.update_fn(x, t)
    finally:
        torch.randn_like = saved
    with torch.no_grad():
        drift, diffusion = pred.rsde.sde(x, t)
    arrays.update(step_t=np.float32(0.5), step_n=np.int64(1000), step_noise=nchw(z),
                  step_x_next=nchw(x_next), step_x_mean=nchw(x_mean), step_drift=nchw(drift),
                  step_diffusion=diffusion.numpy())
    w.save_npz("reflected_ncsnpp.npz", **arrays)


def psld_option_fixtures(root, w: Writer):
    """The other NCSN++ options sdekit's UNet implements, on PSLD's copy of NCSNpp (the one
    whose FIR code runs on CPU): DDPM blocks, FIR resampling layers, output_skip / residual
    output pyramid, input_skip input pyramids (sum and cat). The original's ``Upsample`` layer
    runs only as FIR without a convolution: its nearest-neighbour branch passes ``'nearest'``
    as ``F.interpolate``'s scale factor and its fused FIR convolution (``upsample_conv_2d``)
    slices with a negative step, both errors in PyTorch (sdekit's arch refuses those
    configurations)."""
    ncsnpp, _, _ = _import_psld(root)
    base = dict(nf=4, ch_mult=(1, 2), num_res_blocks=1, image_size=8, attn_resolutions=(4,),
                in_channels=2, out_channels=2)
    cases = {
        "psld_options_ddpm": arch_config(
            "psld_ncsnpp", None, **base, resblock_type="ddpm", fir=True,
            resamp_with_conv=False, progressive="output_skip", progressive_input="input_skip",
            progressive_combine="cat", embedding_type="fourier"),
    }
    for case, cfg in cases.items():
        torch.manual_seed(0)
        net = ncsnpp.NCSNpp(_psld_config(cfg))
        randomise(net, seed=21)
        net.eval()
        g = torch.Generator().manual_seed(22)
        x = torch.randn(2, cfg["in_channels"], 8, 8, generator=g)
        t = torch.tensor([0.05, 0.8])
        with torch.no_grad():
            out = net(x, t)
        w.save_torch(f"{case}.pth", net.state_dict())
        w.save_npz(f"{case}.npz", x=nchw(x), t=t.numpy(), out=nchw(out), config=cfg)


# ----------------------------------------------------------------------------------------------
# VDPM


def _import_vdpm(root):
    _forget(["v_diffusion"])
    pkg = os.path.join(root, "v_diffusion")
    _bare_package("v_diffusion", pkg)
    _bare_package("v_diffusion.models", os.path.join(pkg, "models"))
    unet = importlib.import_module("v_diffusion.models.unet")
    diffusion = importlib.import_module("v_diffusion.diffusion")
    return unet, diffusion


def _vdpm_kwargs(cfg):
    kw = {k: cfg[k] for k in ("in_channels", "hid_channels", "out_channels", "num_res_blocks",
                              "embedding_dim", "drop_rate", "head_dim", "num_heads",
                              "num_classes", "multitags", "resample_with_res", "use_xformers")}
    kw["ch_multipliers"] = list(cfg["ch_multipliers"])
    a = cfg["apply_attn"]
    kw["apply_attn"] = a if isinstance(a, bool) else list(a)
    return kw


def vdpm_fixtures(root, w: Writer, manifests=True):
    unet, diffusion = _import_vdpm(root)
    if manifests:
        for preset in _load_presets().PRESETS["vdpm_unet"]:
            cfg = arch_config("vdpm_unet", preset)
            m = _build_meta_or_cpu(lambda cfg=cfg: unet.UNet(**_vdpm_kwargs(cfg)))
            w.add_manifest("vdpm_unet", preset, dict(config=cfg, entries=manifest(m)))
    # class-conditional (labels 1..K, null label 0), attention after every block of level 1
    # (the resampling blocks included), scale-shift norm
    cfg = arch_config("vdpm_unet", "cifar10_cond", hid_channels=32, ch_multipliers=(1, 1),
                      num_res_blocks=1, apply_attn=(False, True), num_classes=3, image_size=8)
    torch.manual_seed(0)
    net = unet.UNet(**_vdpm_kwargs(cfg))
    randomise(net, seed=31, fp16_exact=True)
    net.eval()
    g = torch.Generator().manual_seed(32)
    x = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0.0, 0.3, 0.7, 1.0])
    y = torch.tensor([1, 3, 0, 2])
    with torch.no_grad():
        out = net(x, t, y)
    # as a safetensors file in float16 (the values are float16-exact): the other file format
    # from_torch reads, and half the size
    w.save_safetensors("vdpm_unet.safetensors",
                       {k: v.half() for k, v in net.state_dict().items()})
    arrays = dict(x=nchw(x), t=t.numpy(), y=y.numpy(), out=nchw(out), config=cfg)
    # one ancestral step (v prediction, fixed_medium 0.3, CFG w = 0.1 against label 0) and one
    # DDIM step of GaussianDiffusion.p_sample_step on the cosine log-SNR schedule, T_s = 10
    gd = diffusion.GaussianDiffusion(
        logsnr_fn=diffusion.get_logsnr_schedule("cosine", -20.0, 20.0),
        sample_timesteps=10, model_out_type="v", model_var_type="fixed_medium",
        reweight_type="snr_trunc", loss_type="mse", intp_frac=0.3, w_guide=0.1, p_uncond=0.1)
    step = torch.full((4,), 6.0, dtype=torch.float64)
    yl = torch.tensor([1, 3, 2, 1])
    # the ancestral step twice with different noise: its mean and standard deviation follow
    # from the two results (the original returns only mean + std * noise)
    for name, ddim, seed in (("ancestral", False, 33), ("ancestral2", False, 34),
                             ("ddim", True, 33)):
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            xs, x0 = gd.p_sample_step(net, x, step, yl, generator=gen, return_pred=True,
                                      use_ddim=ddim)
        noise = torch.empty_like(x).normal_(generator=torch.Generator().manual_seed(seed))
        arrays.update({f"step_{name}": nchw(xs), f"step_{name}_x0": nchw(x0),
                       f"step_{name}_noise": nchw(noise)})
    arrays.update(step_index=np.int64(6), step_total=np.int64(10), step_y=yl.numpy(),
                  step_w=np.float64(0.1), step_intp_frac=np.float64(0.3))
    w.save_npz("vdpm_unet.npz", **arrays)


# ----------------------------------------------------------------------------------------------
# Group-Diffusion


def _import_group_diffusion(root):
    """``model.unet`` without what the training stack imports at module level: ``model/
    logger.py`` (which pulls in blobfile, MPI and the training loop) becomes a stand-in with
    no-op logging functions, and GrouPy (only used by ``SplitGConv2d``, which the paper did not
    use) a stand-in module."""
    _ensure_torchvision()
    _forget(["model", "groupy"])
    model_dir = os.path.join(root, "model")
    _bare_package("model", model_dir)
    log = types.ModuleType("model.logger")
    for fn in ("info", "log", "warn", "debug", "error", "logkv", "logkv_mean", "dumpkvs"):
        setattr(log, fn, lambda *a, **k: None)
    sys.modules["model.logger"] = log
    sys.modules["model"].logger = log
    for name in ("groupy", "groupy.gconv", "groupy.gconv.make_gconv_indices",
                 "groupy.gconv.pytorch_gconv", "groupy.gconv.pytorch_gconv.pooling"):
        sys.modules[name] = _Anything(name)
    return importlib.import_module("model.unet")


def _gd_kwargs(cfg, num_classes=None):
    size = cfg["image_size"]
    return dict(
        image_size=size, in_channels=6 if cfg["self_cond"] else 3,
        model_channels=cfg["num_channels"], out_channels=6 if cfg["learn_sigma"] else 3,
        num_res_blocks=cfg["num_res_blocks"],
        attention_resolutions=tuple(size // int(r) for r in cfg["attention_resolutions"]),
        g_equiv=cfg["g_equiv"], g_input=cfg["g_input"], g_output=cfg["g_output"],
        self_cond=cfg["self_cond"], dropout=cfg["dropout"],
        channel_mult=tuple(cfg["channel_mult"]),
        num_classes=(num_classes or cfg["num_classes"]) if cfg["class_cond"] else None,
        num_heads=cfg["num_heads"], num_head_channels=cfg["num_head_channels"],
        num_heads_upsample=cfg["num_heads_upsample"],
        use_scale_shift_norm=cfg["use_scale_shift_norm"], resblock_updown=cfg["resblock_updown"],
    )


def group_diffusion_fixtures(root, w: Writer, manifests=True):
    unet = _import_group_diffusion(root)
    if manifests:
        for preset in _load_presets().PRESETS["group_diffusion_unet"]:
            cfg = arch_config("group_diffusion_unet", preset)
            m = _build_meta_or_cpu(lambda cfg=cfg: unet.UNetModel(**_gd_kwargs(cfg)))
            w.add_manifest("group_diffusion_unet", preset,
                           dict(config=cfg, entries=manifest(m)))
    small = dict(num_channels=32, channel_mult=(1, 1), image_size=8, attention_resolutions=(4,),
                 num_classes=5)
    cases = {
        # C4 kernel weight tying (KernelGConv2d), class labels
        "group_diffusion_c4_k": arch_config("group_diffusion_unet", "mnist_c4_k", **small),
        # D4 symmetric parametrisation, self-conditioning, class labels
        "group_diffusion_d4_s": arch_config("group_diffusion_unet", "lysto64_d4_s", **small),
    }
    for seed, (case, cfg) in enumerate(cases.items()):
        torch.manual_seed(40 + seed)
        net = unet.UNetModel(**_gd_kwargs(cfg))
        randomise(net, seed=41 + seed, fp16_exact=True)
        net.eval()
        g = torch.Generator().manual_seed(42 + seed)
        x = torch.randn(3, 3, 8, 8, generator=g)
        t = torch.tensor([1.0, 250.0, 999.0])
        y = torch.tensor([0, 4, 2])
        x_cond = torch.randn(3, 3, 8, 8, generator=g) if cfg["self_cond"] else None
        with torch.no_grad():
            out = net(x, t, y, x_cond=x_cond)
            # the same with the attention in float32: QKVAttentionLegacy's `qkv.half()` (its
            # only float16 cast) made the identity
            saved = torch.Tensor.half
            torch.Tensor.half = lambda self, *a, **k: self
            try:
                out32 = net(x, t, y, x_cond=x_cond)
            finally:
                torch.Tensor.half = saved
        w.save_safetensors(f"{case}.safetensors",
                           {k: v.half() for k, v in net.state_dict().items()})
        arrays = dict(x=nchw(x), t=t.numpy(), y=y.numpy(), out=nchw(out),
                      out_fp32_attention=nchw(out32), config=cfg)
        if x_cond is not None:
            arrays["x_cond"] = nchw(x_cond)
        w.save_npz(f"{case}.npz", **arrays)


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--psld", help="checkout of github.com/mandt-lab/PSLD")
    ap.add_argument("--reflected", help="checkout of github.com/louaaron/Reflected-Diffusion")
    ap.add_argument("--vdpm", help="checkout of github.com/tqch/v-diffusion-torch")
    ap.add_argument("--group-diffusion",
                    help="checkout of github.com/SpencerSzabados/Group-Diffusion")
    ap.add_argument("--sit", help="checkout of github.com/willisma/SiT (with --combostoc: the "
                    "SiT/ComboStoc DiT and SD-VAE fixtures of make_torch_fixtures_dit_vae.py)")
    ap.add_argument("--combostoc", help="checkout of github.com/Xrvitd/ComboStoc")
    ap.add_argument("--out", default=os.path.join("tests", "fixtures", "torch"))
    ap.add_argument("--no-manifests", action="store_true", help="skip the full-size manifests")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    w = Writer(args.out)
    if args.psld:
        psld_fixtures(os.path.abspath(args.psld), w, manifests=not args.no_manifests)
        psld_option_fixtures(os.path.abspath(args.psld), w)
    if args.reflected:
        reflected_fixtures(os.path.abspath(args.reflected), w, manifests=not args.no_manifests)
    if args.vdpm:
        vdpm_fixtures(os.path.abspath(args.vdpm), w, manifests=not args.no_manifests)
    if args.group_diffusion:
        group_diffusion_fixtures(os.path.abspath(args.group_diffusion), w,
                                 manifests=not args.no_manifests)
    w.finish()
    if args.sit or args.combostoc:  # SiT, ComboStoc and diffusers' AutoencoderKL
        if not (args.sit and args.combostoc):
            ap.error("--sit and --combostoc go together")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import make_torch_fixtures_dit_vae

        make_torch_fixtures_dit_vae.main(["--sit", args.sit, "--combostoc", args.combostoc,
                                          "--out", args.out])


if __name__ == "__main__":
    main()
