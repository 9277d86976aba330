"""The originals' networks in sdekit: output equality against the original code, exact round
trips, the released configurations' state dicts, strict-matching errors, and one sampler step
of each recipe against the original's own step.

Fixtures in ``tests/fixtures/torch`` are written by ``tools/make_torch_fixtures.py`` from the
original repositories (torch is never imported here).
"""

from __future__ import annotations

import gzip
import json
import pathlib
import pickle
import zipfile

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.io import WeightFileError, load_safetensors, load_torch, save_torch
from sdekit.nets import TORCH_ARCHS, from_torch, to_torch_state_dict
from sdekit.nets._torch import AbstractRuleArch
from sdekit.sampling import (
    DDIM,
    Ancestral,
    EulerMaruyama,
    PredictionFn,
    ReflectedPC,
)
from sdekit.train import convert_torch_checkpoint, load_model, read_header
from sdekit.wrappers import ClassifierFreeGuidance, SigmaScaledScore

FIX = pathlib.Path(__file__).resolve().parent / "fixtures" / "torch"
TOL = 1e-5  # relative (to the largest magnitude of the original's output), float32

# case -> (weights file, arch, time key in the npz, network output divided by that time)
CASES = {
    "psld_smoke": ("psld_smoke.ckpt", "psld_ncsnpp", "t", False),
    "psld_positional": ("psld_positional.pth", "psld_ncsnpp", "t", False),
    "psld_options_ddpm": ("psld_options_ddpm.pth", "psld_ncsnpp", "t", False),
    "reflected_ncsnpp": ("reflected_ncsnpp.pth", "reflected_ncsnpp", "sigma", True),
    "vdpm_unet": ("vdpm_unet.safetensors", "vdpm_unet", "t", False),
    "group_diffusion_c4_k": ("group_diffusion_c4_k.safetensors", "group_diffusion_unet", "t",
                             False),
    "group_diffusion_d4_s": ("group_diffusion_d4_s.safetensors", "group_diffusion_unet", "t",
                             False),
}


def _case(name):
    d = np.load(FIX / f"{name}.npz")
    return d, json.loads(str(d["config"]))


def _nhwc(a):
    return jnp.asarray(np.asarray(a).transpose(0, 2, 3, 1))


def _nchw(a):
    return np.asarray(a).transpose(0, 3, 1, 2)


def _rel(got, want):
    """Largest per-sample ``max |got - want| / max |want|``."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return max(float(np.max(np.abs(g - w)) / np.max(np.abs(w)))
               for g, w in zip(got, want, strict=True))


def vdpm_labels(y, num_classes):
    """VDPM's labels (1..K, null 0) as sdekit's (0..K-1, null K)."""
    return jnp.asarray((np.asarray(y) - 1) % (num_classes + 1), jnp.int32)


@eqx.filter_jit
def _forward(net, *args):
    return net(*args)


def _inputs(name, d, cfg):
    """The original's inputs in sdekit's conventions: NHWC; Group-Diffusion's self-conditioning
    input concatenated before ``x``; VDPM's labels shifted (its null label 0 is sdekit's K)."""
    x = d["x"] if "x_cond" not in d else np.concatenate([d["x_cond"], d["x"]], axis=1)
    args = (_nhwc(x), jnp.asarray(d[CASES[name][2]]))
    if "y" in d:
        y = (vdpm_labels(d["y"], cfg["num_classes"]) if name == "vdpm_unet"
             else jnp.asarray(d["y"], jnp.int32))
        args += (y,)
    return args


def _net_output(name, ema, **extra):
    file, arch, tkey, scaled = CASES[name]
    d, cfg = _case(name)
    net = from_torch(FIX / file, arch, ema=ema, **{**cfg, **extra})
    out = _nchw(_forward(net, *_inputs(name, d, cfg)))
    if scaled:  # the original divides by sigma inside the network (scale_by_sigma)
        out = out / np.asarray(d[tkey])[:, None, None, None]
    want = d["out_ema"] if (ema is not False and "out_ema" in d) else d["out"]
    if extra.get("attention_float16") is False:
        want = d["out_fp32_attention"]
    return out, want


# ----------------------------------------------------------------------------------------------
# 1. output equality with the original code


@pytest.mark.parametrize(
    "name, ema",
    [("psld_smoke", None), ("psld_smoke", False), ("psld_positional", None),
     ("psld_options_ddpm", None), ("reflected_ncsnpp", True), ("reflected_ncsnpp", False),
     ("vdpm_unet", None)],
)
def test_output_equals_the_original(name, ema):
    """Fourier (log t / log sigma) and positional time embeddings, FIR and nearest/average
    resampling, BigGAN and DDPM blocks, the three input/output pyramids the original runs,
    VDPM's class labels with its null label 0, raw and EMA weights of each checkpoint layout
    (PSLD's Lightning ``.ckpt``, Reflected Diffusion's score_sde dict with an EMA list, a
    float16 ``.safetensors`` file)."""
    out, want = _net_output(name, ema)
    assert out.shape == want.shape
    assert _rel(out, want) < TOL


@pytest.mark.parametrize("name", ["group_diffusion_c4_k", "group_diffusion_d4_s"])
@pytest.mark.parametrize("float16", [False, True])
def test_group_diffusion_output_equals_the_original(name, float16):
    """Group-Diffusion's weight-tied C4 ``_K`` and D4 ``_S`` convolutions, ADM time embedding,
    class table, self-conditioning input. The original computes its attention in float16
    (``QKVAttentionLegacy``: ``qkv.half()``): with that cast made the identity on both sides
    the outputs agree to float32 precision; with it, sdekit rounds at the same points
    (``attention_float16=True``, the default) and the remaining differences are float16
    rounding ties (a few 1e-4 relative, against about 3e-3 without the emulation)."""
    out, want = _net_output(name, None, attention_float16=float16)
    assert _rel(out, want) < (1e-3 if float16 else TOL)


def test_raw_and_ema_weights_differ():
    # the EMA selection is meaningful: the fixtures' raw and EMA networks differ
    for name in ("psld_smoke", "reflected_ncsnpp"):
        d, _ = _case(name)
        assert _rel(d["out"], d["out_ema"]) > 1e-2


# ----------------------------------------------------------------------------------------------
# 2. exact round trips


def _leaves(net):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(net, eqx.is_array))]


def _bits_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", ["psld_smoke", "reflected_ncsnpp", "vdpm_unet",
                                  "group_diffusion_c4_k", "group_diffusion_d4_s"])
def test_round_trip_is_bit_exact(name, tmp_path):
    file, arch, _, _ = CASES[name]
    _, cfg = _case(name)
    a = TORCH_ARCHS[arch]
    net = a.build(a.config(**cfg), jr.key(3))
    state = to_torch_state_dict(net, arch, **({k: cfg[k] for k in ("sigma_min", "sigma_max",
                                                                  "num_scales") if k in cfg}))
    assert list(state) == [s.name for s in a.names_and_shapes(a.config(**cfg))]
    if name.startswith("group_diffusion"):  # C4 and D4 3x3 kernels coincide: say which layout
        state = to_torch_state_dict(net, arch, g_input=cfg["g_input"], g_output=cfg["g_output"])
    back = from_torch(state, arch, **cfg)
    assert all(_bits_equal(x, y) for x, y in zip(_leaves(net), _leaves(back), strict=True))
    # through a file written by sdekit's torch-free writer (what torch.load reads)
    save_torch(tmp_path / "w.pth", state)
    again = from_torch(tmp_path / "w.pth", arch, **cfg)
    assert all(_bits_equal(x, y) for x, y in zip(_leaves(net), _leaves(again), strict=True))
    if name.startswith("group_diffusion"):
        # the original's tensors hold more numbers than the weight-tied kernels read: the
        # entries the `_S` parametrisation reads come back exactly
        orig = from_torch(FIX / file, arch, **cfg)
        out = to_torch_state_dict(orig, arch, g_input=cfg["g_input"], g_output=cfg["g_output"])
        src = load_safetensors(FIX / file)
        assert sorted(out) == sorted(src)
        if name.endswith("_s"):
            for k in out:
                want = np.asarray(src[k]).astype(np.float32)
                if k.endswith("original") and want.shape[-1] == 3:
                    want = want[..., [0, 0, 1], [0, 1, 1]]
                    got = out[k][..., [0, 0, 1], [0, 1, 1]]
                else:
                    got = out[k]
                assert _bits_equal(np.ascontiguousarray(got), np.ascontiguousarray(want)), k
        return
    # and the original's own tensors come back unchanged
    orig = from_torch(FIX / file, arch, ema=False if name != "vdpm_unet" else None, **cfg)
    out = to_torch_state_dict(orig, arch, **({k: cfg[k] for k in ("sigma_min", "sigma_max",
                                                                 "num_scales") if k in cfg}))
    src = load_torch(FIX / file, objects=True) if file.endswith((".pth", ".ckpt")) else None
    if name == "psld_smoke":
        src = {k[len("score_fn."):]: v for k, v in src["state_dict"].items()
               if k.startswith("score_fn.")}
    elif name == "reflected_ncsnpp":
        src = src["model"]
    else:
        src = load_safetensors(FIX / file)
    if name == "vdpm_unet":  # safetensors files keep their names sorted
        assert sorted(out) == sorted(src)
    else:
        assert list(out) == list(src)
    for k in out:
        want = np.asarray(src[k]).astype(np.float32)
        assert _bits_equal(out[k], want), k


# ----------------------------------------------------------------------------------------------
# 3. the released configurations: the original's full state dicts map one to one


def _manifests():
    with gzip.open(FIX / "manifests.json.gz", "rt") as f:
        return json.load(f)


MANIFESTS = _manifests()
MY_ARCHS = ("psld_ncsnpp", "reflected_ncsnpp", "vdpm_unet", "group_diffusion_unet")


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def test_every_preset_has_a_manifest():
    for arch in MY_ARCHS:
        assert set(MANIFESTS[arch]) == set(TORCH_ARCHS[arch].presets), arch


@pytest.mark.parametrize("arch, preset",
                         [(a, p) for a in MY_ARCHS for p in sorted(MANIFESTS.get(a, {}))])
def test_released_configuration_maps_one_to_one(arch, preset):
    """Names, order, shapes and kinds of the original module's ``state_dict()`` at full size
    (built by the tool on the meta device) equal the arch's, and the arch's rules fill every
    sdekit parameter exactly once with the right shape."""
    a = TORCH_ARCHS[arch]
    m = MANIFESTS[arch][preset]
    cfg = a.config(preset)
    assert _plain(m["config"]) == _plain(cfg)
    got = [[s.name, list(s.shape), s.kind] for s in a.names_and_shapes(cfg)]
    assert got == m["entries"]
    assert isinstance(a, AbstractRuleArch)
    like = eqx.filter_eval_shape(lambda k: a.build(cfg, k), jr.key(0))
    seen = {}
    for rule in a.rules(cfg):
        leaves = rule.leaves(like)
        if not leaves:  # a buffer the original derives from its configuration
            assert rule.kinds == ("buffer",) * len(rule.names)
            continue
        ins = [np.broadcast_to(np.float32(0), s) for s in rule.shapes]
        outs = rule.to_sdekit(*ins)
        assert len(outs) == len(leaves)
        for o, leaf in zip(outs, leaves, strict=True):
            assert tuple(np.shape(o)) == tuple(leaf.shape), rule.names
            assert id(leaf) not in seen, (rule.names, seen.get(id(leaf)))
            seen[id(leaf)] = rule.names
    assert set(seen) == {id(x) for x in jax.tree.leaves(like)}


def test_group_diffusion_converted_nets_are_equivariant():
    """The weight-tied networks stay exactly equivariant in sdekit: rotating (C4) and flipping
    (D4) the input rotates and flips the output (float32 attention; the original's float16
    attention rounds differently for permuted pixels)."""
    for name in ("group_diffusion_c4_k", "group_diffusion_d4_s"):
        d, cfg = _case(name)
        net = from_torch(FIX / CASES[name][0], "group_diffusion_unet",
                         **{**cfg, "attention_float16": False})
        x, t, y = _inputs(name, d, cfg)
        out = _forward(net, x, t, y)
        rot = _forward(net, jnp.rot90(x, 1, axes=(1, 2)), t, y)
        np.testing.assert_allclose(np.asarray(rot), np.asarray(jnp.rot90(out, 1, axes=(1, 2))),
                                   atol=2e-5 * float(jnp.max(jnp.abs(out))))
        if name.endswith("_s"):
            flip = _forward(net, x[:, :, ::-1], t, y)
            np.testing.assert_allclose(np.asarray(flip), np.asarray(out[:, :, ::-1]),
                                       atol=2e-5 * float(jnp.max(jnp.abs(out))))


def test_released_parameter_counts():
    def total(arch, preset):
        return sum(int(np.prod(e[1])) for e in MANIFESTS[arch][preset]["entries"]
                   if e[2] != "buffer")

    assert total("psld_ncsnpp", "cifar10") == 97_627_910
    assert total("psld_ncsnpp", "celeba64") == 62_769_286
    assert total("reflected_ncsnpp", "cifar10") == 107_587_075


# ----------------------------------------------------------------------------------------------
# 4. clear errors


def _smoke_state():
    a = TORCH_ARCHS["psld_ncsnpp"]
    return to_torch_state_dict(a.build(a.config("smoke"), jr.key(0)), "psld_ncsnpp")


def test_shape_mismatch_names_the_tensor_and_both_shapes():
    with pytest.raises(ValueError, match=r"'all_modules\.0\.W' has shape \(4,\) in the source, "
                                         r"expected \(8,\)"):
        from_torch(_smoke_state(), "psld_ncsnpp", preset="smoke", nf=8)


def test_other_configuration_lists_unmatched_names_with_shapes_and_counts():
    with pytest.raises(ValueError) as e:
        from_torch(_smoke_state(), "psld_ncsnpp", preset="smoke", num_res_blocks=2)
    msg = str(e.value)
    assert "tensors are not used" in msg or "tensors are missing" in msg
    assert "more" in msg and "all_modules." in msg and "(" in msg


def test_truncated_file_is_a_clear_error(tmp_path):
    data = (FIX / "psld_smoke.ckpt").read_bytes()
    p = tmp_path / "cut.ckpt"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match="cut.ckpt"):
        from_torch(p, "psld_ncsnpp", preset="smoke")


def test_code_payload_does_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    p = tmp_path / "evil.pth"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", pickle.dumps({"w": Payload()}, protocol=2))
        z.writestr("evil/version", "3\n")
    with pytest.raises(WeightFileError, match="system"):
        from_torch(p, "psld_ncsnpp", preset="smoke")
    assert not marker.exists()


def test_argument_errors():
    state = _smoke_state()
    with pytest.raises(ValueError, match="argument `ema`"):
        from_torch(state, "psld_ncsnpp", preset="smoke", ema=True)
    with pytest.raises(ValueError, match="argument `preset`"):
        from_torch(state, "psld_ncsnpp", preset="cifar100")
    with pytest.raises(ValueError, match="argument `config`"):
        from_torch(state, "psld_ncsnpp", preset="smoke", nff=4)
    with pytest.raises(ValueError, match="argument `arch`"):
        from_torch(state, "ncsnpp")
    with pytest.raises(ValueError, match="argument `source`"):
        from_torch(42, "psld_ncsnpp")
    # configurations the original code cannot run (its Upsample layer raises in PyTorch)
    with pytest.raises(ValueError, match="argument `resblock_type`"):
        TORCH_ARCHS["psld_ncsnpp"].config(resblock_type="ddpm")
    with pytest.raises(ValueError, match="argument `fir`"):
        TORCH_ARCHS["reflected_ncsnpp"].config(fir=True)
    # a network of another arch
    vd = TORCH_ARCHS["vdpm_unet"]
    with pytest.raises(ValueError, match="argument `net`"):
        to_torch_state_dict(vd.build(vd.config(hid_channels=32, ch_multipliers=(1, 1),
                                                  apply_attn=(False, True), num_res_blocks=1,
                                                  image_size=8), jr.key(0)), "psld_ncsnpp")


def test_reflected_sigmas_buffer_is_checked():
    _, cfg = _case("reflected_ncsnpp")
    with pytest.raises(ValueError, match="'sigmas' buffer"):
        from_torch(FIX / "reflected_ncsnpp.pth", "reflected_ncsnpp", **{**cfg, "sigma_min": 0.02})


def test_ema_layouts_on_mappings():
    """VDPM's {'model', 'ema': {'shadow': ...}}, SiT's {'model', 'ema'} and DDP prefixes."""
    a = TORCH_ARCHS["psld_ncsnpp"]
    raw = _smoke_state()
    ema = to_torch_state_dict(a.build(a.config("smoke"), jr.key(1)), "psld_ncsnpp")
    ref_raw, ref_ema = (_leaves(from_torch(s, "psld_ncsnpp", preset="smoke")) for s in (raw, ema))
    for obj in ({"model": raw, "ema": {"shadow": ema, "decay": 0.9999, "num_updates": 3}},
                {"model": {f"module.{k}": v for k, v in raw.items()}, "ema": ema, "args": None}):
        for flag, want in ((None, ref_ema), (True, ref_ema), (False, ref_raw)):
            got = _leaves(from_torch(obj, "psld_ncsnpp", preset="smoke", ema=flag))
            assert all(_bits_equal(x, y) for x, y in zip(got, want, strict=True))


# ----------------------------------------------------------------------------------------------
# 5. time and output conventions: one sampler step of sdekit = the original's step


def test_psld_em_step_matches_the_original():
    """PSLD's ``em_sde`` at reverse time tau (forward time ``t = 1 - tau``), the network fed the
    forward time: sdekit's ``EulerMaruyama`` step with ``prediction="eps"`` on ``PSLD``."""
    d, cfg = _case("psld_smoke")
    sde = json.loads(str(d["step_sde"]))
    net = from_torch(FIX / "psld_smoke.ckpt", "psld_ncsnpp", ema=True, **cfg)
    p = sk.PSLD(beta_min=sde["beta_min"], beta_max=sde["beta_max"], gamma=sde["gamma"],
                nu=sde["nu"], kappa=sde["kappa"], numerical_eps=sde["numerical_eps"],
                decomp_mode=sde["decomp_mode"])
    fn = PredictionFn(p, net, "eps")
    z = _nhwc(d["x"])
    t, h = 1.0 - float(d["step_tau"]), float(d["step_dt"])
    key = jr.key(7)

    @eqx.filter_jit
    def run(fn, z):
        mean = z + h * fn.reverse_drift(z, t)
        return mean, EulerMaruyama(num_steps=1).step(fn, t, t - h, z, None, key)[0]

    mean, out = run(fn, z)
    assert _rel(_nchw(mean), d["step_x_mean"]) < TOL
    # the full step: the original's mean + g sqrt(h) * (sdekit's noise)
    g = (d["step_x_next"] - d["step_x_mean"]) / (np.sqrt(h) * d["step_noise"])
    np.testing.assert_allclose(_nchw(p.diffusion(t, z) * jnp.ones_like(z)), g, rtol=1e-5)
    want = d["step_x_mean"] + g * np.sqrt(h) * _nchw(jr.normal(key, z.shape, z.dtype))
    assert _rel(_nchw(out), want) < TOL


def test_reflected_pc_step_matches_the_original():
    """Reflected Diffusion's PC predictor (``dt = 1/N``, fold) with the network conditioned on
    ``sigma(t)`` and its output divided by sigma: ``SigmaScaledScore`` + ``ReflectedPC``."""
    d, cfg = _case("reflected_ncsnpp")
    net = from_torch(FIX / "reflected_ncsnpp.pth", "reflected_ncsnpp", ema=True, **cfg)
    p = sk.ReflectedVE(sigma_min=cfg["sigma_min"], sigma_max=cfg["sigma_max"])
    fn = PredictionFn(p, SigmaScaledScore(net, p), "score")
    z = _nhwc(d["x"])
    t, n = float(d["step_t"]), int(d["step_n"])
    sampler = ReflectedPC(num_steps=n - 1)  # the reference's N grid points, dt = 1/N
    key = jr.key(8)

    @eqx.filter_jit
    def run(fn, z):
        return (fn.reverse_drift(z, t), sampler.final_step(fn, t, t - 1.0 / n, z, None, key),
                sampler.step(fn, t, t - 1.0 / n, z, None, key)[0])

    drift, mean, out = run(fn, z)
    # sdekit's reverse drift (time running down) is minus the original's reverse-SDE drift
    assert _rel(-_nchw(drift), d["step_drift"]) < TOL
    np.testing.assert_allclose(np.asarray(p.diffusion(t, z)).reshape(3, -1)[:, 0],
                               d["step_diffusion"], rtol=1e-6)
    assert _rel(_nchw(mean), d["step_x_mean"]) < TOL
    xi = _nchw(jr.normal(jr.split(key)[1], z.shape, z.dtype))
    want = np.asarray(sk.processes.fold(
        d["x"] - d["step_drift"] / n + d["step_diffusion"][:, None, None, None] * np.sqrt(1 / n)
        * xi))
    assert _rel(_nchw(out), want) < TOL


def test_vdpm_steps_match_the_original():
    """VDPM's ancestral (v prediction, fixed_medium 0.3) and DDIM steps with classifier-free
    guidance (w = 0.1 against the null label 0, clipped x0 guided) on the cosine log-SNR
    schedule: the network takes ``t`` in [0, 1]."""
    d, cfg = _case("vdpm_unet")
    net = from_torch(FIX / "vdpm_unet.safetensors", "vdpm_unet", **cfg)
    p = sk.LogSNR(schedule="cosine", logsnr_min=-20.0, logsnr_max=20.0)
    guided = ClassifierFreeGuidance(net, w=float(d["step_w"]), space="x0", process=p,
                                    prediction="v", clip_x0=1.0)
    fn = PredictionFn(p, guided, "v", cond=vdpm_labels(d["step_y"], cfg["num_classes"]))
    z = _nhwc(d["x"])
    n, i = int(d["step_total"]), int(d["step_index"])
    t, s = (i + 1) / n, i / n
    key = jr.key(9)
    anc = Ancestral(num_steps=n, variance="fixed_medium", intp_frac=float(d["step_intp_frac"]))

    @eqx.filter_jit
    def run(fn, z):
        return (fn.x0(z, t), DDIM(num_steps=n).step(fn, t, s, z, None, jr.key(0))[0],
                anc.step(fn, t, s, z, None, key)[0])

    x0, ddim, out = run(fn, z)
    assert _rel(_nchw(x0), d["step_ancestral_x0"]) < TOL
    assert _rel(_nchw(ddim), d["step_ddim"]) < TOL
    # the original's ancestral mean and standard deviation, from its two draws
    a1, a2 = d["step_ancestral"], d["step_ancestral2"]
    n1, n2 = d["step_ancestral_noise"], d["step_ancestral2_noise"]
    std = (a1 - a2) / (n1 - n2)
    mean = a1 - std * n1
    want = mean + std * _nchw(jr.normal(key, z.shape, z.dtype))
    assert _rel(_nchw(out), want) < TOL


# ----------------------------------------------------------------------------------------------
# 6. one conversion into sdekit's checkpoint format


def test_convert_torch_checkpoint_round_trip(tmp_path):
    path = convert_torch_checkpoint(FIX / "psld_smoke.ckpt", "psld_ncsnpp", tmp_path,
                                    preset="smoke", run_config={"gamma": 0.01})
    header = read_header(path)
    assert header["config"]["from_torch"]["arch"] == "psld_ncsnpp"
    assert header["config"]["gamma"] == 0.01 and header["config"]["image_size"] == 8
    for ema in (True, False):
        want = _leaves(from_torch(FIX / "psld_smoke.ckpt", "psld_ncsnpp", preset="smoke",
                                  ema=ema))
        got = _leaves(load_model(path, ema=ema))
        assert all(_bits_equal(x, y) for x, y in zip(got, want, strict=True))
