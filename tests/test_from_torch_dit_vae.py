"""SiT / ComboStoc DiTs and Stable Diffusion's autoencoder loaded from the originals' PyTorch
weights: output for output against the original code (fixtures written by
tools/make_torch_fixtures_dit_vae.py from SiT's and ComboStoc's ``models.py``, SiT's
``transport`` samplers and diffusers' ``AutoencoderKL``), bit-exact round trips, the released
configurations' name-and-shape manifests, one sampler step against SiT's, and latent sampling
and training end to end."""

from __future__ import annotations

import gzip
import json
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.io import load_safetensors, load_torch, save_safetensors, save_torch
from sdekit.nets import (
    TORCH_ARCHS,
    AutoencoderKL,
    DiT,
    LatentPosteriorSample,
    count_parameters,
    encode_images,
    from_torch,
    to_torch_state_dict,
)
from sdekit.wrappers import ClassifierFreeGuidance

FIX = pathlib.Path(__file__).parent / "fixtures" / "torch"
IO = np.load(FIX / "dit_vae_io.npz")
META = json.loads((FIX / "dit_vae_meta.json").read_text())
TOL = 1e-5  # relative: max |sdekit - original| / max |original|, float32
DITS = {  # fixture prefix -> (checkpoint, ComboStoc?)
    "sit": ("sit_dit_small.pt", False),
    "sit_p4": ("sit_dit_small_p4.pt", False),
    "combostoc": ("combostoc_dit_small.pt", True),
}


def nhwc(a):
    return np.moveaxis(np.asarray(a), 1, -1)


def rel(got, want) -> float:
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


def dit_config(prefix: str) -> dict:
    return dict(META[prefix], combostoc=DITS[prefix][1])


@pytest.fixture(scope="module")
def nets():
    """Each small original loaded twice: its own function (``convention='original'``) and in
    sdekit's conventions (the default)."""
    out = {}
    for prefix, (name, _) in DITS.items():
        cfg = dit_config(prefix)
        out[prefix] = (from_torch(FIX / name, "sit_dit", convention="original", **cfg),
                       from_torch(FIX / name, "sit_dit", **cfg))
    return out


_FWD = eqx.filter_jit(lambda net, x, t, y: net(x, t, y))


@pytest.mark.parametrize("prefix", list(DITS))
def test_dit_outputs_equal_the_originals(nets, prefix):
    raw, conv = nets[prefix]
    x, t, y = nhwc(IO[f"{prefix}/x"]), IO[f"{prefix}/t"], IO[f"{prefix}/y"]
    assert int(y[-1]) == META[prefix]["num_classes"]  # the null class is among the labels
    want = nhwc(IO[f"{prefix}/out"])
    assert rel(_FWD(raw, x, t, y), want) < TOL
    # sdekit's conventions: time 1 - t (exact for these dyadic times), velocity sign flipped
    assert rel(-_FWD(conv, x, 1.0 - t, y), want) < TOL
    # forward_with_cfg (scale 4, only 3 of the 4 channels guided) on the first half-batch
    tc = t[1:3]
    want = nhwc(IO[f"{prefix}/cfg_out"])[:2]
    g = ClassifierFreeGuidance(raw, w=META["cfg_scale"] - 1, guided_channels=3)
    assert rel(g(x[:2], tc, y[:2]), want) < TOL
    guided = ClassifierFreeGuidance(conv, w=META["cfg_scale"] - 1, guided_channels=3)
    assert rel(-guided(x[:2], 1.0 - tc, y[:2]), want) < TOL
    if DITS[prefix][1]:  # ComboStoc: a time per element
        te = nhwc(IO[f"{prefix}/t_element"])
        want = nhwc(IO[f"{prefix}/out_element"])
        assert rel(_FWD(raw, x, te, y), want) < TOL
        assert rel(-_FWD(conv, x, 1.0 - te, y), want) < TOL


@pytest.mark.parametrize("prefix", list(DITS))
def test_dit_round_trip_is_bit_exact(nets, prefix, tmp_path):
    raw, conv = nets[prefix]
    name = DITS[prefix][0]
    original = load_torch(FIX / name)
    size = {"input_size": META[prefix]["input_size"]}  # not knowable from the network
    for net in (raw, conv):
        state = to_torch_state_dict(net, "sit_dit", **size)
        assert list(state) == list(original)  # the original's state_dict() order
        for k in state:  # pos_embed is recomputed: SiT's table, bit for bit
            assert state[k].dtype == np.float32
            assert np.array_equal(state[k], original[k]), k
        save_torch(tmp_path / "w.pt", state)
        again = from_torch(tmp_path / "w.pt", "sit_dit", **dict(dit_config(prefix), **(
            {"convention": "original"} if net is raw else {})))
        for a, b in zip(jax.tree.leaves(net), jax.tree.leaves(again), strict=True):
            assert np.array_equal(np.asarray(a), np.asarray(b))
        assert jax.tree.structure(net) == jax.tree.structure(again)


def test_training_checkpoint_layout():
    """ComboStoc's train.py checkpoint: {'model', 'ema', 'opt', 'step', 'args'} with an
    argparse.Namespace and AdamW state; EMA weights by default, raw ones with ema=False."""
    path = FIX / "combostoc_train_ckpt.pt"
    cfg = dict(META["combostoc_train"], combostoc=True)
    ckpt = load_torch(path, objects=True)
    assert ckpt["step"] == 1 and type(ckpt["args"]).__name__ == "TorchObject"
    ema, raw = from_torch(path, "sit_dit", **cfg), from_torch(path, "sit_dit", ema=False, **cfg)
    for net, key in ((ema, "ema"), (raw, "model")):
        state = to_torch_state_dict(net, "sit_dit", input_size=cfg["input_size"])
        for k, v in state.items():
            assert np.array_equal(v, ckpt[key][k]), (key, k)
    w = "blocks.0.attn.qkv.weight"
    assert not np.array_equal(ckpt["model"][w], ckpt["ema"][w])  # one AdamW step apart


def test_dit_ema_selection_and_mismatch_errors(nets):
    state = dict(load_torch(FIX / "sit_dit_small.pt"))
    cfg = dit_config("sit")
    raw_w = {k: v + 1.0 if k != "pos_embed" else v for k, v in state.items()}
    ckpt = {"model": raw_w, "ema": state, "opt": {}, "args": None}  # SiT's train.py layout
    ema = from_torch(ckpt, "sit_dit", **cfg)
    assert np.array_equal(np.asarray(ema.patch.bias), state["x_embedder.proj.bias"])
    raw = from_torch(ckpt, "sit_dit", ema=False, **cfg)
    assert np.array_equal(np.asarray(raw.patch.bias), raw_w["x_embedder.proj.bias"])
    # a ComboStoc checkpoint is not a SiT one: the error lists the unmatched names
    with pytest.raises(ValueError, match="patchEmb"):
        from_torch(FIX / "combostoc_dit_small.pt", "sit_dit", **cfg)
    # names match, shapes do not: first mismatched name with both shapes
    with pytest.raises(ValueError, match=r"'pos_embed' has shape \(1, 16, 32\) in the source, "
                                         r"expected \(1, 64, 32\)"):
        from_torch(state, "sit_dit", **dict(cfg, input_size=16))
    bad = dict(state, pos_embed=state["pos_embed"] + 0.1)
    with pytest.raises(ValueError, match="pos_embed.*sine-cosine"):
        from_torch(bad, "sit_dit", **cfg)
    with pytest.raises(ValueError, match="class_dropout_prob"):
        from_torch(state, "sit_dit", **dict(cfg, class_dropout_prob=0.0))
    with pytest.raises(ValueError, match="convention"):
        from_torch(state, "sit_dit", **dict(cfg, convention="sit"))
    with pytest.raises(ValueError, match="a class-conditional DiT"):
        to_torch_state_dict(DiT(4, key=jr.key(0), width=32, depth=1, num_heads=2), "sit_dit")


def test_smoke_presets_are_the_fixtures():
    sit, vae = TORCH_ARCHS["sit_dit"], TORCH_ARCHS["sd_vae"]
    for preset, prefix in (("SiT-smoke", "sit"), ("ComboStoc-smoke", "combostoc")):
        assert sit.config(preset) == sit.config(**dit_config(prefix))
    assert vae.config("smoke") == vae.config(**META["sd_vae"])


def test_dit_options_and_guidance():
    kw = dict(key=jr.key(1), patch_size=2, width=32, depth=1, num_heads=2, num_classes=5)
    net = DiT(4, learn_sigma=True, **kw)
    assert net.final.weight.shape == (32, 2 * 2 * 8)
    assert _FWD(net, jnp.ones((2, 4, 4, 4)), jnp.array([0.1, 0.2]), jnp.array([0, 5])).shape == (
        2, 4, 4, 4)
    assert DiT(4, element_time=True, **kw).t_mlp0 is None  # ComboStoc has no per-example MLP
    for bad in (dict(time_shift=float("nan")), dict(output_scale=float("inf"))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DiT(4, **bad, **kw)
    net = eqx.tree_at(lambda m: m.final.weight, net, jr.normal(jr.key(2), (32, 32)) * 0.1)
    x, t, y = jr.normal(jr.key(3), (2, 4, 4, 4)), jnp.array([0.3, 0.7]), jnp.array([1, 2])
    c, u = _FWD(net, x, t, y), _FWD(net, x, t, jnp.array([5, 5]))
    g = _FWD(ClassifierFreeGuidance(net, w=3.0 - 1, guided_channels=3), x, t, y)
    np.testing.assert_allclose(g[..., :3], u[..., :3] + 3.0 * (c[..., :3] - u[..., :3]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(g[..., 3:], c[..., 3:])
    full = _FWD(ClassifierFreeGuidance(net, w=2.0), x, t, y)
    cfg = _FWD(sk.wrappers.ClassifierFreeGuidance(net, w=2.0), x, t, y)
    np.testing.assert_allclose(full, cfg, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="null_label"):  # an unconditional net has no null class
        ClassifierFreeGuidance(DiT(4, key=jr.key(0), width=32, depth=1, num_heads=2), w=1.0)(
            x, t, y)
    with pytest.raises(ValueError, match="guided_channels"):
        ClassifierFreeGuidance(net, w=1.0, guided_channels=0)
    with pytest.raises(ValueError, match="cond"):
        ClassifierFreeGuidance(net, w=2.0 - 1, guided_channels=3)(x, t)


# ----------------------------------------------------------------------------------------------
# One sampler step of sdekit against SiT's own samplers (transport), on the converted models.


@pytest.mark.parametrize("prefix", ["sit", "combostoc"])
def test_sampler_steps_equal_sits(nets, prefix):
    from sdekit.sampling import ODE, InterpolantSDE, sample
    from sdekit.sampling._base import PredictionFn

    _, net = nets[prefix]
    model = ClassifierFreeGuidance(net, w=META["cfg_scale"] - 1, guided_channels=3)
    process = sk.Interpolant("linear")
    s = f"{prefix}_sampler"
    z, y = jnp.asarray(nhwc(IO[f"{s}/z"])), jnp.asarray(IO[f"{s}/y"])
    # probability-flow ODE, Euler on SiT's 3-point grid (SiT time 0, 0.5, 1 = sdekit 1, 0.5, 0)
    traj = np.moveaxis(IO[f"{s}/ode_euler"], 2, -1)
    r = sample(jr.key(0), process, model, z.shape, method=ODE(num_steps=2, solver="euler"),
               prediction="velocity", cond=y, x_start=z, denoise="none", save_trajectory=True)
    assert rel(r.trajectory[0], traj[1]) < TOL
    assert rel(r.samples, traj[2]) < TOL
    # SDE (Euler-Maruyama, sigma diffusion, Mean last step 0.04), one step at a time
    sde = InterpolantSDE(num_steps=2, diffusion="sigma", norm=1.0, last_step="mean",
                         last_step_size=0.04)
    grid = np.asarray(sde.named_grid(process, 1.0, 0.0, jnp.float32))
    np.testing.assert_allclose(grid, [1.0, 0.04, 0.0], atol=1e-7)
    fn = PredictionFn(process, model, "velocity", cond=y)
    key = jr.key(5)
    z1, _ = sde.step(fn, grid[0], grid[1], z, None, key)
    xi = np.asarray(jr.normal(key, z.shape, z.dtype))  # the step's own draw
    want = nhwc(IO[f"{s}/sde_step_mean"]) + nhwc(IO[f"{s}/sde_step_noise_coef"]) * xi
    assert rel(z1, want) < TOL
    x1 = jnp.asarray(nhwc(IO[f"{s}/sde_step_mean"]))
    assert rel(sde.final_step(fn, grid[1], grid[2], x1, None, key),
               nhwc(IO[f"{s}/sde_last_mean"])) < TOL


# ----------------------------------------------------------------------------------------------
# Stable Diffusion's autoencoder.


@pytest.fixture(scope="module")
def vae():
    return from_torch(FIX / "sd_vae_small.safetensors", "sd_vae", **META["sd_vae"])


def test_vae_equals_diffusers(vae):
    x = nhwc(IO["sd_vae/x"])
    mean, logvar = eqx.filter_jit(lambda v, x: v.encode(x))(vae, x)
    assert rel(mean, nhwc(IO["sd_vae/mean"])) < TOL
    assert rel(logvar, nhwc(IO["sd_vae/logvar"])) < TOL
    dec = eqx.filter_jit(lambda v, z: v.decode(z))(vae, nhwc(IO["sd_vae/z"]))
    assert rel(dec, nhwc(IO["sd_vae/decoded"])) < TOL
    assert vae.downsampling_factor == 4 and vae.scaling_factor == 0.18215


def test_vae_round_trip_legacy_names_and_errors(vae, tmp_path):
    original = load_safetensors(FIX / "sd_vae_small.safetensors")
    state = to_torch_state_dict(vae, "sd_vae")
    assert sorted(state) == sorted(original)
    for k in state:
        assert np.array_equal(state[k], original[k]), k
    save_safetensors(tmp_path / "v.safetensors", state)
    again = from_torch(tmp_path / "v.safetensors", "sd_vae", **META["sd_vae"])
    for a, b in zip(jax.tree.leaves(vae), jax.tree.leaves(again), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # files written before diffusers 0.14: query/key/value/proj_attn (here as 1x1 kernels)
    legacy = {}
    for k, v in original.items():
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"),
                         ("to_out.0", "proj_attn")):
            if f".{new}." in k:
                k = k.replace(f".{new}.", f".{old}.")
                v = v[:, :, None, None] if v.ndim == 2 else v
        legacy[k] = v
    old = from_torch(legacy, "sd_vae", **META["sd_vae"])
    for a, b in zip(jax.tree.leaves(vae), jax.tree.leaves(old), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="conv_shortcut"):  # another configuration
        from_torch(original, "sd_vae", **dict(META["sd_vae"], block_out_channels=[8, 8, 16]))
    with pytest.raises(ValueError, match="norm_num_groups"):
        AutoencoderKL(block_out_channels=(8, 12), norm_num_groups=8, key=jr.key(0))
    with pytest.raises(ValueError, match="H and W divisible by 4"):
        vae.encode(jnp.zeros((1, 10, 16, 3)))


# ----------------------------------------------------------------------------------------------
# Released configurations: full-size names and shapes, one to one.


def _check_one_to_one(arch, cfg, manifest):
    specs = arch.names_and_shapes(cfg)
    assert [[s.name, list(s.shape), s.kind] for s in specs] == manifest
    like = eqx.filter_eval_shape(lambda k: arch.build(cfg, k), jr.key(0))
    seen = {}
    for rule in arch.rules(cfg):
        leaves = rule.leaves(like)
        if not leaves:  # recomputed by sdekit (SiT's fixed positions): a frozen table only
            assert rule.kinds == ("frozen",) and rule.names == ("pos_embed",)
            continue
        assert sum(int(np.prod(s)) for s in rule.shapes) == sum(int(l.size) for l in leaves)
        for leaf in leaves:
            assert id(leaf) not in seen, rule.names
            seen[id(leaf)] = rule.names
    inexact = [l for l in jax.tree.leaves(like) if jnp.issubdtype(l.dtype, jnp.inexact)]
    assert len(seen) == len(inexact)  # every sdekit parameter filled exactly once
    trainable = sum(int(np.prod(s.shape)) for s in specs if s.kind == "param")
    assert count_parameters(like) == trainable
    return trainable


def test_released_manifests_map_one_to_one():
    with gzip.open(FIX / "manifest_sit_dit.json.gz", "rt") as f:
        sit = json.load(f)
    arch = TORCH_ARCHS["sit_dit"]
    assert sorted(sit["presets"]) == sorted(p for p in arch.presets if "smoke" not in p)
    counts = {name: _check_one_to_one(arch, arch.config(name), manifest)
              for name, manifest in sit["presets"].items()}
    assert counts["SiT-XL/2"] == 674_834_720  # + the 294,912 entries of the fixed positions
    vae = json.loads((FIX / "manifest_sd_vae.json").read_text())
    a = TORCH_ARCHS["sd_vae"]
    assert _check_one_to_one(a, a.config("sd-vae-ft-ema"), vae["tensors"]) == 83_653_863


# ----------------------------------------------------------------------------------------------
# Latent diffusion end to end.


def test_latent_sit_pipeline_equals_sample_py(nets, vae):
    """SiT's sample.py on the small models: sample latents (ODE Euler, CFG 4), then
    ``vae.decode(samples / 0.18215)``."""
    from sdekit.sampling import ODE, sample

    _, net = nets["sit"]
    z, y = jnp.asarray(nhwc(IO["sit_sampler/z"])), jnp.asarray(IO["sit_sampler/y"])
    guided = ClassifierFreeGuidance(net, w=META["cfg_scale"] - 1, guided_channels=3)
    r = sample(jr.key(0), sk.Interpolant("linear"), guided, z.shape,
               method=ODE(num_steps=2, solver="euler"), prediction="velocity", cond=y,
               x_start=z, denoise="none")
    images = eqx.filter_jit(lambda v, z: v.decode_latents(z))(vae, r.samples)
    assert images.shape == (2, 32, 32, 3)
    assert rel(images, nhwc(IO["sit_pipeline/images"])) < TOL


def test_latent_training_on_user_images(vae):
    from sdekit.data import make_pipeline
    from sdekit.objectives import InterpolantLoss
    from sdekit.sampling import ODE, sample
    from sdekit.train import init_state, make_optimizer, make_train_step

    images = (np.arange(8 * 16 * 16 * 3) % 251).astype(np.uint8).reshape(8, 16, 16, 3)
    moments = encode_images(vae, images, moments=True, batch_size=8)
    assert moments.shape == (8, 4, 4, 8)
    mean, logvar = np.split(moments, 2, axis=-1)
    want, _ = eqx.filter_jit(lambda v, x: v.encode(x))(vae, images / 127.5 - 1.0)
    np.testing.assert_allclose(mean, want, rtol=1e-5, atol=1e-6)
    lat = encode_images(vae, images, batch_size=8)  # posterior means, scaled
    np.testing.assert_allclose(lat, 0.18215 * mean, rtol=1e-6, atol=1e-7)
    key = jr.key(7)
    drawn = encode_images(vae, images, key=key, batch_size=8)  # one batch: fold_in(key, 0)
    eps = np.asarray(jr.normal(jr.fold_in(key, 0), mean.shape))
    np.testing.assert_allclose(drawn, 0.18215 * (mean + np.exp(0.5 * logvar) * eps),
                               rtol=1e-5, atol=1e-6)
    # fresh posterior draws per example (SiT's training), then ComboStoc training on latents
    # three epochs of one batch, taken up front (an endless pipeline keeps prefetching)
    data = list(make_pipeline(moments, batch_size=8, value_range=None, num_epochs=3,
                              transforms=[LatentPosteriorSample(vae.scaling_factor)]))
    assert len(data) == 3 and not np.array_equal(data[0]["image"], data[1]["image"])
    rng = np.random.default_rng(0)
    one = LatentPosteriorSample(0.18215)(moments[0], rng)
    eps = np.random.default_rng(0).standard_normal((4, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(one, 0.18215 * (mean[0] + np.exp(0.5 * logvar[0]) * eps),
                               rtol=1e-6, atol=1e-7)
    process = sk.Interpolant("linear")
    net = DiT(4, key=jr.key(8), patch_size=2, width=16, depth=1, num_heads=2,
              element_time=True, time_scale=1.0)
    opt = make_optimizer("adam", lr=1e-3)
    state = init_state(net, opt, key=jr.key(9), ema_decays=(0.5,))
    step = make_train_step(InterpolantLoss(process, "velocity"), opt)  # fit's step
    losses = []
    for batch in data:  # fresh posterior draws every epoch
        assert batch["image"].shape == (8, 4, 4, 4)
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and int(state.step) == 3
    res = sample(jr.key(10), process, state.ema_model(), (2, 4, 4, 4),
                 method=ODE(num_steps=2, solver="euler"), prediction="velocity", denoise="none")
    out = eqx.filter_jit(lambda v, z: v.decode_latents(z))(vae, res.samples)
    assert out.shape == (2, 16, 16, 3) and np.all(np.isfinite(np.asarray(out)))
    with pytest.raises(ValueError, match="images"):
        encode_images(vae, images[..., :2])
    with pytest.raises(ValueError, match="key"):
        encode_images(vae, images, key=key, moments=True)


def test_convert_once_to_sdekit_checkpoint(nets, vae, tmp_path):
    """One call converts to sdekit's checkpoint format; load_model rebuilds the network from the
    file alone (a train.py checkpoint keeps its raw and EMA networks)."""
    from sdekit.train import convert_torch_checkpoint, load_model

    cases = (("combostoc_dit_small.pt", "sit_dit", dit_config("combostoc"), nets["combostoc"][1]),
             ("sd_vae_small.safetensors", "sd_vae", META["sd_vae"], vae))
    for name, arch, cfg, net in cases:
        path = convert_torch_checkpoint(FIX / name, arch, tmp_path / arch, **cfg)
        back = load_model(path, ema=False)
        assert type(back) is type(net)
        assert jax.tree.structure(back) == jax.tree.structure(net)
        for a, b in zip(jax.tree.leaves(net), jax.tree.leaves(back), strict=True):
            assert np.array_equal(np.asarray(a), np.asarray(b))
    path = convert_torch_checkpoint(FIX / "combostoc_train_ckpt.pt", "sit_dit", tmp_path / "t",
                                    **dict(META["combostoc_train"], combostoc=True))
    ckpt = load_torch(FIX / "combostoc_train_ckpt.pt", objects=True)
    w = "blocks.0.attn.qkv.weight"
    for ema, key in ((True, "ema"), (False, "model")):
        net = load_model(path, ema=ema)
        np.testing.assert_array_equal(np.asarray(net.blocks[0].qkv.weight).T, ckpt[key][w])
