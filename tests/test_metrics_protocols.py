"""sdekit.metrics against pytorch-fid, torch-fidelity and clean-fid themselves.

`tools/make_metric_fixtures.py` ran each tool's own code (with torch) on the image groups of
`tests/_metric_fixtures.py`, with random networks written in each tool's file format, and stored
what the tools computed in tests/fixtures/metrics/. Here the same weight files are rebuilt byte
for byte from their skeletons and the seeded weights, read by sdekit without torch, and every
protocol's features and final numbers are compared with the tools'.

Agreement required: features within 1e-4 relative (max abs difference over the max abs value of
the tool's features), FID / KID / IS within 1e-3 relative, precision/recall exactly.
"""

import hashlib
import json
import os
import warnings

import jax
import numpy as np
import pytest

import sdekit.metrics as skm

from . import _metric_fixtures as mf

FEATURE_RTOL = 1e-4
NUMBER_RTOL = 1e-3
PROTOCOL_NAMES = ("pytorch-fid", "torch-fidelity", "clean-fid", "clean-fid-legacy-tf")
POOL_KEY = {"pytorch-fid": "pool3", "torch-fidelity": "2048", "clean-fid": "pool3",
            "clean-fid-legacy-tf": "pool3"}


def _rel(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


@pytest.fixture(scope="module", autouse=True)
def optimized_xla():
    """Compile with XLA's optimisations (conftest turns most off): the Inception and VGG-16
    forwards at 299 / 224 run several times faster, which more than pays for the longer
    compile of the one shared network."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="module")
def tool():
    with np.load(os.path.join(mf.FIXTURE_DIR, "tool_outputs.npz")) as z:
        out = {k: z[k] for k in z.files}
    with open(os.path.join(mf.FIXTURE_DIR, "meta.json")) as f:
        out["meta"] = json.load(f)
    return out


@pytest.fixture(scope="module")
def groups(tool):
    g = {name: mf.image_group(name) for name, *_ in mf.IMAGE_GROUPS}
    for name, a in g.items():  # the images the tools saw
        assert hashlib.sha256(a.tobytes()).hexdigest() == tool["meta"]["images_sha256"][name]
    return g


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """The tools' weight files, rebuilt byte for byte (SHA-256 checked) from the skeletons."""
    d = tmp_path_factory.mktemp("weights")
    out = {}
    for key, skel, weights, fname in (
        ("fid", "fid_inception.skel.npz", lambda: mf.fid_inception_weights(1),
         skm.FID_WEIGHTS_NAME),
        ("nvidia", "nvidia_inception.skel.npz", lambda: mf.nvidia_inception_weights(2),
         skm.NVIDIA_WEIGHTS_NAME),
    ):
        out[key] = mf.write_from_skeleton(os.path.join(mf.FIXTURE_DIR, skel), weights(),
                                          str(d / fname))
    return out


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("vgg")
    w = mf.vgg16_weights(mf.WEIGHT_SEED["vgg16"])
    path = mf.write_from_skeleton(os.path.join(mf.FIXTURE_DIR, "vgg16.skel.npz"), w,
                                  str(d / skm.VGG16_WEIGHTS_NAME))
    del w
    return path


@pytest.fixture(scope="module")
def nets(weight_files):
    return {"pytorch-fid": skm.load_inception(weight_files["fid"], protocol="pytorch-fid"),
            "nvidia-torchscript": skm.load_inception(weight_files["nvidia"],
                                                     protocol="clean-fid")}


@pytest.fixture(scope="module")
def features(nets, groups):
    """Every protocol's (pool3, logits) of every image group, one compiled network for all."""
    one = jax.devices()[:1]  # no padding of the 3-image batches to the 8 test devices
    out = {}
    for name in PROTOCOL_NAMES:
        proto = skm.get_protocol(name)
        for g, imgs in groups.items():
            out[name, g] = skm.inception_features(imgs, protocol=proto,
                                                  net=nets[proto.weight_format], batch_size=3,
                                                  devices=one, progress=False)
    return out


def _set(features, name, which, part=0):
    gs = mf.SET1 if which == 1 else mf.SET2
    return np.concatenate([features[name, g][part] for g in gs])


# ---------------------------------------------------------------- weights and features


def test_weight_files_are_the_tools(tool, weight_files, nets):
    # (the rebuilt files' SHA-256 was checked against the tool's when they were written)
    assert nets["pytorch-fid"].weight_format == "pytorch-fid"
    assert nets["nvidia-torchscript"].weight_format == "nvidia-torchscript"
    # the TorchScript units have no batch-norm scale; the output layer has a bias
    w = mf.nvidia_inception_weights(2)
    np.testing.assert_array_equal(np.asarray(nets["nvidia-torchscript"].fc_bias),
                                  w["output.bias"])
    np.testing.assert_array_equal(
        np.asarray(nets["nvidia-torchscript"].convs["Mixed_7b.branch3x3_2a"].bn_bias),
        w["layers.mixed_9.tower_mixed_conv.beta"])
    assert skm.nvidia_module_paths() == mf.nvidia_name_map()


@pytest.mark.parametrize("name", PROTOCOL_NAMES)
def test_features_equal_the_tools(name, tool, features, nets):
    for g, *_ in mf.IMAGE_GROUPS:
        pool, logits = features[name, g]
        assert _rel(pool, tool[f"{name}/{POOL_KEY[name]}/{g}"]) < FEATURE_RTOL, g
        if name == "torch-fidelity":  # the IS logits (no bias) and the classifier's
            assert _rel(logits, tool[f"{name}/logits_unbiased/{g}"]) < FEATURE_RTOL, g
            biased = logits + np.asarray(nets["pytorch-fid"].fc_bias)
            assert _rel(biased, tool[f"{name}/logits/{g}"]) < FEATURE_RTOL, g


@pytest.mark.parametrize("name", PROTOCOL_NAMES)
def test_fid_kid_is_equal_the_tools(name, tool, features):
    proto = skm.get_protocol(name)
    f1, f2 = _set(features, name, 1), _set(features, name, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", skm.RankDeficientWarning)
        fid = proto.fid(f1, f2, method="fast")
    assert abs(fid - tool[f"{name}/fid"]) < NUMBER_RTOL * abs(tool[f"{name}/fid"])
    if proto.kid is not None:
        mean, std = proto.kernel_inception_distance(f1, f2, subsets=mf.KID_SUBSETS,
                                                    subset_size=mf.KID_SUBSET_SIZE)
        want = np.atleast_1d(tool[f"{name}/kid"])
        assert abs(mean - want[0]) < NUMBER_RTOL * abs(want[0])
        if std is not None:
            assert abs(std - want[1]) < NUMBER_RTOL * abs(want[1])
    else:
        with pytest.raises(ValueError, match="computes no KID; protocols with one"):
            proto.kernel_inception_distance(f1, f2)
    if proto.inception_score is not None:
        for which, key in ((1, "set1"), (2, "set2")):
            mean, std = proto.inception_score_of(_set(features, name, which, part=1),
                                                 splits=mf.IS_SPLITS)
            want = tool[f"{name}/is/{key}"]
            assert abs(mean - want[0]) < NUMBER_RTOL * want[0]
            assert abs(std - want[1]) < NUMBER_RTOL * want[1]
    else:
        with pytest.raises(ValueError, match="computes no Inception Score"):
            proto.inception_score_of(np.zeros((4, 3)))


def test_precision_recall_equal_torch_fidelity(tool, features, groups, vgg_file):
    # Inception variant: torch-fidelity's prc on its pool3 (input 1 = generated = set 1)
    f1, f2 = _set(features, "torch-fidelity", 1), _set(features, "torch-fidelity", 2)
    got = skm.precision_recall(f2, f1, k=mf.PR_K)
    np.testing.assert_allclose(got, tool["torch-fidelity/pr_inception"], rtol=1e-6)
    # VGG-16 variant: torchvision's weights through torch-fidelity's feature path
    net = skm.load_vgg16(vgg_file)
    one = jax.devices()[:1]
    vgg = {g: skm.vgg16_features(a, net=net, batch_size=3, devices=one, progress=False)
           for g, a in groups.items()}
    for g in groups:
        want = np.maximum(tool[f"torch-fidelity/vgg16_fc2/{g}"], 0.0)
        assert _rel(vgg[g], want) < FEATURE_RTOL, g
    v1 = np.concatenate([vgg[g] for g in mf.SET1])
    v2 = np.concatenate([vgg[g] for g in mf.SET2])
    np.testing.assert_allclose(skm.precision_recall(v2, v1, k=mf.PR_K),
                               tool["torch-fidelity/pr_vgg16"], rtol=1e-6)


def test_statistics_with_the_tools_defaults(tool):
    """The tools' statistics functions at their default settings (KID 100 x 1000, IS 10
    splits), on synthetic features regenerated from the same seeds."""
    a = mf.synthetic_features(21, 1100, mf.SYNTH_DIM)
    b = mf.synthetic_features(22, 1050, mf.SYNTH_DIM, shift=0.3)
    pf, tf, cf = (skm.get_protocol(n) for n in ("pytorch-fid", "torch-fidelity", "clean-fid"))
    for proto, key in ((pf, "pytorch-fid"), (tf, "torch-fidelity"), (cf, "clean-fid")):
        want = float(tool[f"stats/{key}/fid"])
        assert abs(proto.fid(a, b) - want) < 1e-9 * want  # the tool's own sqrtm / eigvals
        assert abs(proto.fid(a, b, method="fast") - want) < 1e-6 * want
    assert (tf.kid.subsets, tf.kid.subset_size, tf.kid.seed) == (100, 1000, 2020)
    assert (cf.kid.subsets, cf.kid.subset_size, cf.kid.seed) == (100, 1000, 0)
    mean, std = tf.kernel_inception_distance(a, b, subsets=mf.DEFAULT_KID_SUBSETS)
    np.testing.assert_allclose([mean, std], tool["stats/torch-fidelity/kid"], rtol=1e-5)
    mean, _ = cf.kernel_inception_distance(a, b, subsets=mf.DEFAULT_KID_SUBSETS)
    assert abs(mean - tool["stats/clean-fid/kid"]) < 1e-5 * abs(tool["stats/clean-fid/kid"])
    logits = mf.synthetic_features(23, 1000, 40) * 4.0 - 2.0
    np.testing.assert_allclose(tf.inception_score_of(logits), tool["stats/torch-fidelity/is"],
                               rtol=1e-9)
    np.testing.assert_allclose(skm.precision_recall(b, a), tool["stats/torch-fidelity/pr"],
                               rtol=1e-6)
    got = pf.frechet_distance(np.zeros(3), np.zeros((3, 3)), np.ones(3), np.diag([1.0, 0, 2]))
    assert abs(got - tool["stats/pytorch-fid/fid_singular"]) < 1e-9


# ---------------------------------------------------------------- the tools' statistics files


def test_reference_files_of_the_tools(tool, tmp_path):
    pool64 = tool["formats/pool64"]
    ref = skm.load_reference(os.path.join(mf.FIXTURE_DIR, "pytorch_fid_stats_64.npz"),
                             protocol="pytorch-fid")
    assert ref["protocol"] == "pytorch-fid" and ref["format"] == "pytorch-fid"
    np.testing.assert_allclose(ref["mu"], pool64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(ref["sigma"], np.cov(pool64, rowvar=False), rtol=1e-10)
    tf64 = tool["formats/tf64"]
    stat = os.path.join(mf.FIXTURE_DIR, "tf_cache_ref-inception-v3-compat-stat-fid-64.pt")
    feat = os.path.join(mf.FIXTURE_DIR, "tf_cache_ref-inception-v3-compat-features-64.pt")
    for path in (stat, feat):
        ref = skm.load_reference(path, protocol="torch-fidelity")
        assert ref["protocol"] == "torch-fidelity" and ref["format"] == "torch-fidelity"
        np.testing.assert_allclose(ref["mu"], tf64.mean(0), rtol=1e-6)
        np.testing.assert_allclose(ref["sigma"], np.cov(tf64, rowvar=False), rtol=1e-6)
    np.testing.assert_array_equal(skm.load_reference(feat)["features"], tf64)
    # clean-fid's stats are np.savez_compressed(mu=, sigma=) named <name>_<mode>_<split>_<res>
    for mode, name in (("clean", "clean-fid"), ("legacy_tensorflow", "clean-fid-legacy-tf"),
                       ("legacy_pytorch", "pytorch-fid")):
        p = tmp_path / f"cifar10_{mode}_train_32.npz"
        np.savez_compressed(p, mu=pool64.mean(0), sigma=np.cov(pool64, rowvar=False))
        assert skm.load_reference(p, protocol=name)["protocol"] == name
    p = tmp_path / "cifar10_clean_train_32_kid.npz"
    np.savez_compressed(p, feats=tf64)
    ref = skm.load_reference(p, protocol="clean-fid")
    np.testing.assert_array_equal(ref["features"], tf64)
    # the wrong protocol is refused, naming both
    with pytest.raises(ValueError, match="made under protocol 'clean-fid'.*protocol "
                                         "'torch-fidelity' was asked for"):
        skm.load_reference(tmp_path / "cifar10_clean_train_32.npz", protocol="torch-fidelity")
    with pytest.raises(ValueError, match="protocol 'torch-fidelity'.*'pytorch-fid' was asked"):
        skm.load_reference(stat, protocol="pytorch-fid")
    p = tmp_path / "x_clean_clip_vit_b_32_train_32.npz"
    np.savez_compressed(p, mu=np.zeros(4), sigma=np.eye(4))
    with pytest.raises(ValueError, match="'clip_vit_b_32' features, not its Inception"):
        skm.load_reference(p)


def test_sdekit_reference_roundtrip(tmp_path):
    f = mf.synthetic_features(5, 40, 16)
    p = skm.save_reference(tmp_path / "r.npz", f, protocol="clean-fid", keep_features=True)
    ref = skm.load_reference(p, protocol="clean-fid")
    assert ref["protocol"] == "clean-fid" and ref["n"] == 40 and ref["format"] == "sdekit"
    mu, sigma = skm.get_protocol("clean-fid").statistics(f)
    np.testing.assert_array_equal(ref["mu"], mu)
    np.testing.assert_array_equal(ref["sigma"], sigma)
    np.testing.assert_array_equal(ref["features"], f)
    with np.load(p) as z:  # pytorch-fid reads f["mu"], f["sigma"]
        assert {"mu", "sigma"} <= set(z.files)
    with pytest.raises(ValueError, match="made under protocol 'clean-fid' \\(recorded in the "
                                         "file\\), but protocol 'pytorch-fid'"):
        skm.load_reference(p, protocol="pytorch-fid")
