"""examples/vdpm_cifar10.py: presets, the sampler steps against the reference (spec §6) through
the example's own code, the variational-bound loss (spec §4.2), and the command line."""

import contextlib
import importlib.util
import io
import json
import pathlib
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sdekit as sk
from sdekit.sampling import PredictionFn

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mod():
    path = ROOT / "examples" / "vdpm_cifar10.py"
    spec = importlib.util.spec_from_file_location("vdpm_cifar10", path)
    m = importlib.util.module_from_spec(spec)
    sys.modules["vdpm_cifar10"] = m  # its equinox modules use postponed annotations
    spec.loader.exec_module(m)
    return m


def _cfg(mod, preset, *argv):
    return mod.resolve_config(mod._train_parser().parse_args(["--preset", preset, *argv]))


@pytest.mark.parametrize("command", ["train", "sample", "eval"])
def test_help_documents_every_flag(mod, command):
    parser = {"train": mod._train_parser, "sample": mod._sample_parser,
              "eval": mod._eval_parser}[command]()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 8, action.option_strings
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        mod.main([command, "--help"])
    text = buf.getvalue()
    for flag in ("--out", "--smoke"):
        assert flag in text
    if command == "train":
        # every reference option is a flag or is explained (spec §11)
        for flag in ("--logsnr-schedule", "--model-out-type", "--model-var-type", "--intp-frac",
                     "--reweight-type", "--loss-type", "--use-cfg", "--w-guide", "--p-uncond",
                     "--num-accum", "--train-timesteps", "--sample-timesteps", "--weight-decay",
                     "--beta1", "--beta2", "--ema-decay", "--use-ddim", "--num-workers",
                     "--distributed", "--chkpt-intv", "--eval", "--allow-rescale", "--resume"):
            assert flag in text, flag


def test_presets_are_the_head_configs(mod):
    u = _cfg(mod, "cifar10_uncond")
    assert (u["model_out_type"], u["schedule"], u["reweight_type"], u["model_var_type"]) == (
        "x0", "cosine", "snr_trunc", "fixed_large")
    assert (u["lr"], u["weight_decay"], u["warmup"], u["use_cfg"]) == (2e-4, 1e-3, 1000, False)
    c = _cfg(mod, "cifar10_cond")
    assert (c["model_out_type"], c["model_var_type"], c["intp_frac"]) == ("v", "fixed_medium", 0.3)
    assert (c["use_cfg"], c["w_guide"], c["p_uncond"], c["warmup"]) == (True, 0.1, 0.1, 10000)
    assert _cfg(mod, "celeba")["model_out_type"] == "both"
    assert _cfg(mod, "mnist")["channels"] == 1
    o = _cfg(mod, "cifar10_uncond", "--model-out-type", "x_0", "--reweight-type", "alpha2")
    assert (o["model_out_type"], o["reweight_type"]) == ("x0", "snr_1plus")
    obj = mod.make_objective(u, mod.make_process(u))
    assert (obj.prediction, obj.target, obj.weighting) == ("x0", "x0", "truncated_snr")
    obj = mod.make_objective(c, mod.make_process(c))
    assert obj.p_uncond == 0.1 and obj.null_label == 10 and obj.objective.prediction == "v"


def _coordinate_image(h=218, w=178):
    """A synthetic aligned-CelebA-sized image whose pixels hold their own row and column."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)


def test_celeba_crop_takes_the_spec_window(mod):
    """Spec §9: top 40, left 15, 148x148 of the 218x178 image, then 64x64."""
    assert mod.CELEBA_CROP == (40, 15, 148, 148)
    assert _cfg(mod, "celeba")["crop"] == [40, 15, 148, 148]
    img = _coordinate_image()
    win = mod.crop_resize(img, mod.CELEBA_CROP, 148)  # no resize: the window itself
    assert win.shape == (148, 148, 3)
    rows, cols = np.meshgrid(np.arange(40, 188), np.arange(15, 163), indexing="ij")
    np.testing.assert_array_equal(win[..., 0], rows)
    np.testing.assert_array_equal(win[..., 1], cols)
    out = mod.crop_resize(img, mod.CELEBA_CROP, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # bilinear resize of a linear ramp: output pixel j (centre (j + 1/2) 148/64 - 1/2 in the
    # window) holds the window's coordinate there; edge pixels see a one-sided filter
    centre = 40 + (np.arange(64) + 0.5) * 148 / 64 - 0.5
    np.testing.assert_allclose(out[2:-2, 10, 0], centre[2:-2], atol=0.6)
    np.testing.assert_allclose(out[10, 2:-2, 1], centre[2:-2] - 25, atol=0.6)
    assert 40 <= out[..., 0].min() and out[..., 0].max() <= 187
    assert 15 <= out[..., 1].min() and out[..., 1].max() <= 162
    np.testing.assert_array_equal(out[..., 2], 7)
    with pytest.raises(ValueError, match="does not fit"):
        mod.crop_resize(img[:180], mod.CELEBA_CROP, 64)  # 40 + 148 > 180


def test_celeba_preset_source_applies_the_crop(mod, tmp_path):
    from PIL import Image

    img = _coordinate_image()
    Image.fromarray(img).save(tmp_path / "000001.png")
    cfg = _cfg(mod, "celeba")
    src = mod._source(cfg, str(tmp_path), False, 0)
    assert len(src) == 1
    x = src[0]["image"]
    assert x.shape == (64, 64, 3)
    np.testing.assert_array_equal(x, mod.crop_resize(img, mod.CELEBA_CROP, 64))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        mod.main(["train", "--help"])
    assert "top 40, left 15" in " ".join(buf.getvalue().split())


# spec §6 reference step: cosine, T_s = 10, i = 6 (t = 0.7 -> s = 0.6)
XT = np.array([0.8, -1.3, 0.2, 2.1], np.float32)
X0_RAW = np.array([0.4, -0.9, 1.5, 0.0], np.float32)
NOISE = np.array([0.5, -0.25, 1.0, -1.5], np.float32)


def test_reverse_step_matches_reference(mod, vdpm_ref):
    cfg = _cfg(mod, "cifar10_uncond")
    p = mod.make_process(cfg)
    x, x0 = jnp.asarray(XT)[None], jnp.asarray(X0_RAW)[None]
    ddim = mod.reverse_step(cfg, p, x, x0, 0.7, 0.6, method="ddim")
    np.testing.assert_allclose(ddim[0], [0.796612, -1.338384, 0.357159, 1.906765], atol=2e-6)
    anc = mod.reverse_step(cfg, p, x, x0, 0.7, 0.6, method="ancestral",
                           noise=jnp.asarray(NOISE)[None])
    np.testing.assert_allclose(anc[0], [0.946477, -1.255427, 1.061190, 0.384534], atol=2e-6)
    # direct steps at given log-SNRs: a sigmoid schedule on [-20, 20] has lambda(t) = 20 - 40 t
    lin = sk.LogSNR(schedule="sigmoid")
    for case in vdpm_ref["ddim_step_direct"]:
        t, s = (20 - case["logsnr_t"]) / 40, (20 - case["logsnr_s"]) / 40
        xt, x0 = jnp.asarray(case["x_t"])[None], jnp.asarray(case["x0_pred"])[None]
        got = mod.reverse_step(cfg, lin, xt, x0, t, s, method="ddim")
        np.testing.assert_allclose(got[0], case["x_s_ddim_eta0 (reference)"], atol=3e-6)
        mean = mod.reverse_step(cfg, lin, xt, x0, t, s, method="ancestral")
        np.testing.assert_allclose(mean[0], case["ancestral_posterior_mean (reference)"],
                                   atol=3e-6)
    # guidance: w = 0.5, conditional x0 0.3, unconditional 0 -> 0.45
    g = mod.reverse_step(cfg, p, x, jnp.full_like(x, 0.3), 0.7, 0.6, method="ddim",
                         x0_raw_uncond=jnp.zeros_like(x), w=0.5, final=True)
    np.testing.assert_allclose(g, 0.45, atol=1e-7)


def _const_x0_model(value):
    return lambda x, t, cond=None: jnp.broadcast_to(jnp.asarray(value, x.dtype), x.shape)


@pytest.mark.parametrize("method", ["ddim", "ancestral"])
def test_sampler_runs_the_reference_step(mod, method):
    """The samplers `sample` uses take exactly the reference step (first step of a grid that
    starts at t = 0.7)."""
    cfg = _cfg(mod, "cifar10_uncond")
    p = sk.LogSNR(schedule="cosine", t1=0.7)
    sampler = mod.make_sampler(cfg, method, 2)
    fn = PredictionFn(p, _const_x0_model(X0_RAW), "x0", None)
    key = jr.key(3)
    z1 = jnp.asarray(XT)[None]
    final, stats = sampler.solve(key, fn, z1, 0.5, save_trajectory=True)
    np.testing.assert_allclose(stats.ts, [0.6, 0.5], atol=1e-7)
    first = stats.trajectory[0]
    if method == "ddim":
        np.testing.assert_allclose(first[0], [0.796612, -1.338384, 0.357159, 1.906765],
                                   atol=2e-6)
    else:
        z = jr.normal(jr.split(key, 2)[0], z1.shape, z1.dtype)
        want = mod.reverse_step(cfg, p, z1, jnp.asarray(X0_RAW)[None], 0.7, 0.6,
                                method="ancestral", noise=z)
        np.testing.assert_allclose(first, want, atol=2e-6)
    np.testing.assert_allclose(final, np.clip(X0_RAW, -1, 1)[None], atol=1e-6)  # final rule


def test_guided_sampling_path(mod):
    cfg = _cfg(mod, "cifar10_cond")
    p = mod.make_process(cfg)

    def net(x, t, cond=None):  # x0 = 0.3 (conditional) or 0 (null label 10), as a v-prediction
        x0 = jnp.where((cond == 10)[:, None], 0.0, 0.3)
        tb = t[:, None]
        return (p.alpha(tb) * x - x0) / p.sigma(tb)  # v such that alpha x - sigma v = x0

    model = mod.guided_model(cfg, p, net, 0.5)
    sampler = mod.make_sampler(cfg, "ddim", 3, guided=True)
    assert sampler.clip_x0 is None  # the clip happens per branch in the guidance wrapper
    res = sk.sample(jr.key(0), p, model, (2, 4), method=sampler, prediction="v",
                    cond=jnp.array([1, 2]), t_end=0.0)
    np.testing.assert_allclose(res.samples, 0.45, atol=1e-5)


def test_vlb_terms_match_reference(mod, vdpm_ref):
    ref = vdpm_ref["kl_loss_example"]
    p = sk.LogSNR(schedule="cosine")
    x0 = jnp.asarray(ref["x0"])[None]
    eps = jnp.asarray(ref["eps"])[None]
    x0_hat = x0 + jnp.asarray(ref["delta"])[None]
    with jax.enable_x64(True):
        for name, (s, t) in (("s=0.6,t=0.7", (0.6, 0.7)), ("s=0,t=0.1", (0.0, 0.1))):
            x_t = p.perturb(x0, jnp.asarray([t]), eps)
            kl, nll = mod.vlb_terms(p, x0, x_t, x0_hat, jnp.asarray([t]), jnp.asarray([s]),
                                    "fixed_large")
            np.testing.assert_allclose(float(kl[0]), ref[name]["kl_bits_per_dim"], rtol=2e-4)
            np.testing.assert_allclose(float(nll[0]), ref[name]["decoder_nll_bits_per_dim"],
                                       rtol=2e-5)


def test_kl_loss_and_both_heads_train_step(mod):
    cfg = _cfg(mod, "celeba", "--loss-type", "kl", "--sample-timesteps", "4")
    cfg.update(net="tiny", net_overrides={"image_size": 8, "dropout": 0.0}, image_size=8)
    p = mod.make_process(cfg)
    model = mod.make_model(cfg, jr.key(0))
    x0 = jr.uniform(jr.key(1), (3, 8, 8, 3), minval=-1, maxval=1)
    t = jnp.array([0.2, 0.5, 0.9])
    objective = mod.make_objective(cfg, p)

    @eqx.filter_jit
    def run(m):
        return m(x0, t), m.net(x0, t), objective(m, jr.key(2), x0)

    out, raw, loss = run(model)
    c = 3
    a, s = p.alpha(t)[:, None, None, None], p.sigma(t)[:, None, None, None]
    want = s**2 * raw[..., :c] + a**2 * (x0 - s * raw[..., c:]) / a
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert np.isfinite(float(loss)) and float(loss) > 0


@pytest.mark.slow
def test_smoke_end_to_end(mod, tmp_path):
    assert mod.main(["--smoke", "--out", str(tmp_path), "--no-progress"]) == 0
    ev = [json.loads(s) for s in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert np.isfinite(ev[-1]["pixel_frechet"])
    with np.load(sorted(tmp_path.glob("samples_*.npz"))[0]) as z:
        assert z["images"].dtype == np.uint8 and z["images"].shape == (32, 16, 16, 3)
