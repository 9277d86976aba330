"""sdekit.metrics: weight-file loader, Inception network, FID/IS/KID/PR formulas, weightless
metrics, feature extraction sharded over (simulated) devices, and the command line."""

import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats

import sdekit.metrics as skm
from sdekit.metrics import _inception

from ._torch_writer import save_zip


@pytest.fixture(scope="module")
def random_inception():
    return skm.InceptionV3(jax.random.key(3), resize=75)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, random_inception):
    path = tmp_path_factory.mktemp("w") / skm.FID_WEIGHTS_NAME
    state = skm.inception_state_dict(random_inception)
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0, np.int64)  # as torch writes it
    save_zip(path, state)
    return path


def test_inception_weights_roundtrip(weights_file, random_inception):
    net = skm.load_inception(weights_file, resize=75)
    a = jax.tree.leaves(net)
    b = jax.tree.leaves(random_inception)
    assert len(a) == len(b) == len(_inception.CONV_SPECS) * 5 + 2
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    n_params = sum(int(np.prod(x.shape)) for x in a)
    # torchvision's inception_v3(aux_logits=False) has 23 834 568 parameters with 1000 classes;
    # 1008 classes add 8 x 2048 + 8. Running statistics are buffers in torch, leaves here.
    running = sum(2 * s[2] for s in _inception.CONV_SPECS)
    assert n_params - running == 23_834_568 + 8 * 2048 + 8


def test_inception_state_dict_errors(random_inception):
    state = skm.inception_state_dict(random_inception)
    del state["fc.bias"]
    with pytest.raises(ValueError, match="missing \\['fc.bias'\\]"):
        skm.inception_from_state_dict(state)
    state = skm.inception_state_dict(random_inception)
    state["fc.bias"] = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="'fc.bias' has shape"):
        skm.inception_from_state_dict(state)


def test_missing_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SDEKIT_FID_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError) as e:
        skm.load_inception()
    msg = str(e.value)
    assert skm.FID_WEIGHTS_URL in msg and "SDEKIT_FID_WEIGHTS" in msg and "nope.pth" in msg


def test_pool_and_resize_match_torch_semantics():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 5, 6, 2)).astype(np.float32)
    got = np.asarray(_inception._avg_pool_exclude_pad(jnp.asarray(x)))
    want = np.zeros_like(x)
    for i in range(5):
        for j in range(6):
            want[0, i, j] = x[0, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean(axis=(0, 1))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    got = np.asarray(_inception._max_pool(jnp.asarray(x), 2))
    want = np.stack([np.stack([x[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(0, 1))
                               for j in range(2)]) for i in range(2)])[None]
    np.testing.assert_array_equal(got, want)

    # F.interpolate(bilinear, align_corners=False): src = (dst + 0.5) * in/out - 0.5, clamped.
    def torch_bilinear_1d(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = src - i0
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), i0] += 1 - w
        m[np.arange(n_out), i1] += w
        return m

    img = rng.standard_normal((1, 7, 9, 3)).astype(np.float32)
    want = np.einsum("ah,bw,nhwc->nabc", torch_bilinear_1d(7, 20), torch_bilinear_1d(9, 23), img)
    got = jax.image.resize(img, (1, 20, 23, 3), "bilinear", antialias=False)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_inception_features_sharded(random_inception):
    assert len(jax.devices()) == 8
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    pool, logits = skm.extract_features(random_inception, imgs, batch_size=8, progress=False)
    assert pool.shape == (3, 2048) and logits.shape == (3, 1008)
    assert np.all(np.isfinite(pool)) and np.all(pool >= 0)  # pool3 averages ReLU outputs
    np.testing.assert_allclose(logits, pool @ np.asarray(random_inception.fc_weight).T,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inception_features_sharded_match_single_device(random_inception):
    import equinox as eqx

    imgs = np.random.default_rng(2).integers(0, 256, (3, 12, 12, 1), dtype=np.uint8)
    pool, _ = skm.extract_features(random_inception, imgs, batch_size=2, progress=False)
    x = jnp.repeat(jnp.asarray(imgs, jnp.float32) / 127.5 - 1.0, 3, axis=-1)
    ref, _ = eqx.filter_jit(lambda m, v: m(v))(random_inception, x)
    np.testing.assert_allclose(pool, np.asarray(ref), rtol=2e-4, atol=2e-5)


def test_extract_features_sharding_exact():
    w = np.random.default_rng(0).standard_normal((4 * 4 * 3, 5)).astype(np.float32)
    fn = lambda x: (x.reshape(x.shape[0], -1) @ w, jnp.sum(x, axis=(1, 2, 3)))
    imgs = np.random.default_rng(1).uniform(-1, 1, (21, 4, 4, 3)).astype(np.float32)
    f, s = skm.extract_features(fn, imgs, batch_size=5, progress=False)  # rounded up to 8
    np.testing.assert_allclose(f, imgs.reshape(21, -1) @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, imgs.sum(axis=(1, 2, 3)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="must be in \\[-1, 1\\]"):
        skm.extract_features(fn, imgs * 3, progress=False)


# ---------------------------------------------------------------- formulas vs numpy / scipy


def _fid_numpy(f1, f2):
    """Independent reference: tr (S1 S2)^(1/2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1)))."""
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r1 = scipy.linalg.sqrtm(s1).real
    ev = np.linalg.eigvalsh(r1 @ s2 @ r1)
    tr = np.sqrt(np.clip(ev, 0, None)).sum()
    return ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr


def test_streaming_stats_and_fid():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12)) + 3.0
    b = rng.standard_normal((250, 12)) * 1.3 + 0.5
    st = skm.StreamingStats(12)
    for i in range(0, 300, 37):
        st.update(a[i:i + 37])
    np.testing.assert_allclose(st.mean, a.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.cov, np.cov(a, rowvar=False), rtol=1e-10, atol=1e-10)
    assert abs(skm.fid_from_features(a, b) - _fid_numpy(a, b)) < 1e-6
    assert abs(skm.fid_from_features(a, a)) < 1e-6
    assert abs(skm.fid_from_features(a, b, method="eigh") - _fid_numpy(a, b)) < 1e-6
    assert abs(skm.fid_from_features(a, a, method="eigh")) < 1e-6
    # closed form of two Gaussians' Frechet distance with commuting covariances
    got = skm.frechet_distance(np.zeros(3), np.diag([1.0, 4, 9]), np.ones(3), np.diag([4.0, 1, 1]))
    assert abs(got - (3 + (1 + 4 + 9 + 4 + 1 + 1) - 2 * (2 + 2 + 3))) < 1e-9
    # singular covariances go through the eps branch and stay finite
    z = np.zeros((4, 4))
    assert abs(skm.frechet_distance(np.zeros(4), z, np.zeros(4), z)) < 1e-5


def test_inception_score_vs_numpy():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((103, 17)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for i in range(5):  # chunks [i n / s, (i + 1) n / s) as in Salimans et al.'s code
        part = p[i * 103 // 5:(i + 1) * 103 // 5]
        py = part.mean(0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(q, py) for q in part])))
    mean, std = skm.inception_score(logits, splits=5)
    assert abs(mean - np.mean(scores)) < 1e-6 and abs(std - np.std(scores)) < 1e-6
    # one-hot confident and uniform over classes: IS = number of classes
    onehot = np.eye(17)[np.arange(170) % 17] * 50.0
    assert abs(skm.inception_score(onehot, splits=1)[0] - 17) < 1e-6


def test_kid_vs_numpy():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((60, 8)), rng.standard_normal((50, 8)) + 0.3
    got, _ = skm.kernel_inception_distance(a, b, subsets=3, subset_size=40, seed=5)
    r = np.random.default_rng(5)
    vals = []
    for _ in range(3):
        x, y = a[r.choice(60, 40, replace=False)], b[r.choice(50, 40, replace=False)]
        k = lambda u, v: (u @ v / 8 + 1) ** 3
        m = 40
        sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
        vals.append(sxx + syy - 2 * sxy)
    assert abs(got - np.mean(vals)) < 1e-6


def test_precision_recall_vs_numpy():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((80, 5)), rng.standard_normal((70, 5)) * 1.5 + 0.5
    p, r = skm.precision_recall(real, fake, k=3, block_size=16)
    dr = scipy.spatial.distance.cdist(real, real)
    df = scipy.spatial.distance.cdist(fake, fake)
    rad_r = np.sort(dr, axis=1)[:, 3]
    rad_f = np.sort(df, axis=1)[:, 3]
    d = scipy.spatial.distance.cdist(fake, real)
    want_p = np.mean((d <= rad_r[None, :] + 1e-12).any(1))
    want_r = np.mean((d.T <= rad_f[None, :] + 1e-12).any(1))
    assert abs(p - want_p) < 1e-6 and abs(r - want_r) < 1e-6
    assert 0 < p < 1 and 0 < r < 1
    assert skm.precision_recall(real, real) == (1.0, 1.0)


# ---------------------------------------------------------------- weightless metrics


def test_mmd_vs_numpy_and_closed_form():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) + 0.4
    h = 1.7
    kf = lambda u, v: np.exp(-np.sum((u - v) ** 2) / (2 * h * h))
    kxx = np.array([[kf(u, v) for v in x] for u in x])
    kyy = np.array([[kf(u, v) for v in y] for u in y])
    kxy = np.array([[kf(u, v) for v in y] for u in x])
    want_u = ((kxx.sum() - 40) / (40 * 39) + (kyy.sum() - 30) / (30 * 29) - 2 * kxy.mean())
    want_v = kxx.mean() + kyy.mean() - 2 * kxy.mean()
    assert abs(skm.mmd(x, y, bandwidth=h) - want_u) < 1e-9
    assert abs(skm.mmd(x, y, bandwidth=h, unbiased=False) - want_v) < 1e-9
    # population MMD^2 between N(0, I) and N(mu, I) in d dims
    d, mu = 2, np.array([1.0, 0.0])
    x, y = rng.standard_normal((1500, d)), rng.standard_normal((1500, d)) + mu
    c = lambda v: (h * h / (h * h + v)) ** (d / 2)
    exact = 2 * c(2.0) - 2 * c(2.0) * np.exp(-mu @ mu / (2 * (h * h + 2)))
    assert abs(skm.mmd(x, y, bandwidth=h) - exact) < 0.04  # the estimator's std is ~0.012 here
    assert abs(skm.mmd(x, x[::-1].copy(), bandwidth=h, unbiased=False)) < 1e-12


def test_energy_distance_vs_scipy():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(50), rng.standard_normal(40) * 2 + 1
    assert abs(skm.energy_distance(x, y) - scipy.stats.energy_distance(x, y) ** 2) < 1e-9
    a, b = rng.standard_normal((30, 4)), rng.standard_normal((20, 4)) + 1
    cd = scipy.spatial.distance.cdist
    want = 2 * cd(a, b).mean() - cd(a, a).mean() - cd(b, b).mean()
    assert abs(skm.energy_distance(a, b) - want) < 1e-9


def test_sliced_wasserstein():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal(64), rng.standard_normal(48) + 0.7
    got = skm.sliced_wasserstein(jax.random.key(0), x, y, n_projections=4, p=1)
    assert abs(got - scipy.stats.wasserstein_distance(x, y)) < 1e-9
    # N(0, I) vs N(delta, I): SW_2^2 -> |delta|^2 / d as samples and directions grow
    d, delta = 4, np.array([2.0, 0, 0, 0])
    x = rng.standard_normal((4000, d))
    got = skm.sliced_wasserstein(jax.random.key(1), x, x + delta, n_projections=2000)
    assert abs(got - np.linalg.norm(delta) / np.sqrt(d)) < 0.03


def test_frechet_feature_distance():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((400, 3))
    b = rng.standard_normal((300, 3)) * 2 + 1
    assert abs(skm.frechet_feature_distance(None, a, b) - _fid_numpy(a, b)) < 1e-6
    w = rng.standard_normal((3, 5))
    got = skm.frechet_feature_distance(lambda s: jnp.asarray(s) @ w, a, b, batch_size=64)
    assert abs(got - _fid_numpy(a @ w, b @ w)) < 1e-4


# ---------------------------------------------------------------- command line


def _cli_setup(tmp_path, weights_file):
    from sdekit.metrics.__main__ import main

    rng = np.random.default_rng(8)
    np.savez(tmp_path / "ref.npz", images=rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8))
    samples = rng.uniform(-1, 1, (5, 12, 12, 3)).astype(np.float32)
    np.savez(tmp_path / "samples.npz", images=samples)
    common = ["--weights", str(weights_file), "--resize", "75", "--batch-size", "8",
              "--no-progress", "--jsonl", str(tmp_path / "m.jsonl")]
    main(["stats", str(tmp_path / "ref.npz"), "--out", str(tmp_path / "st.npz"), "--features",
          "--protocol", "torch-fidelity"] + common)
    return main, common


@pytest.fixture
def optimized_xla():
    """Compile with XLA's optimisations (conftest turns most off): the networks run several
    times faster, which more than pays for the longer compile."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def test_cli(tmp_path, weights_file, optimized_xla):
    main, common = _cli_setup(tmp_path, weights_file)
    st = skm.load_reference(tmp_path / "st.npz", protocol="torch-fidelity")
    assert st["mu"].shape == (2048,) and st["features"].shape == (6, 2048) and st["n"] == 6
    np.testing.assert_allclose(st["mu"], st["features"].mean(0), rtol=1e-6)
    tf = common + ["--protocol", "torch-fidelity"]
    pr = main(["pr", str(tmp_path / "ref.npz"), "--ref", str(tmp_path / "st.npz"),
               "--on", "inception"] + tf)
    assert pr["precision_inception"] == 1.0 and pr["recall_inception"] == 1.0
    is_ = main(["is", str(tmp_path / "samples.npz"), "--splits", "2"] + tf)
    assert is_["inception_score"] >= 1.0 and is_["protocol"] == "torch-fidelity"
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(s)["command"] for s in lines] == ["stats", "pr", "is"]
    # statistics of another protocol are refused, naming both, before any feature is computed
    with pytest.raises(SystemExit, match="made under protocol 'torch-fidelity' \\(recorded in "
                                         "the file\\), but protocol 'pytorch-fid' was asked for"):
        main(["fid", str(tmp_path / "samples.npz"), "--ref", str(tmp_path / "st.npz")] + common)
    with pytest.raises(SystemExit, match="pytorch-fid 0.3.0 computes no Inception Score; "
                                         "protocols with one: \\['torch-fidelity'\\]"):
        main(["is", str(tmp_path / "samples.npz")] + common)
    skm.save_reference(tmp_path / "nofeat.npz", st["features"], protocol="torch-fidelity")
    with pytest.raises(SystemExit, match="has no 'features'.*--features"):
        main(["kid", str(tmp_path / "samples.npz"), "--ref", str(tmp_path / "nofeat.npz")] + tf)


@pytest.mark.slow
def test_cli_fid_kid(tmp_path, weights_file, optimized_xla):
    main, common = _cli_setup(tmp_path, weights_file)
    common += ["--fid-method", "fast", "--protocol", "torch-fidelity"]
    fid = main(["fid", str(tmp_path / "samples.npz"), "--ref", str(tmp_path / "st.npz")] + common)
    assert fid["fid"] > 0
    self_fid = main(["fid", str(tmp_path / "ref.npz"), "--ref", str(tmp_path / "st.npz")] + common)
    assert abs(self_fid["fid"]) < 1e-6 * fid["fid"] + 1e-4
    kid = main(["kid", str(tmp_path / "samples.npz"), "--ref", str(tmp_path / "st.npz"),
                "--subsets", "2", "--subset-size", "4", "--protocol", "torch-fidelity"]
               + common[:-4])
    assert np.isfinite(kid["kid"])
    ev = main(["eval", str(tmp_path / "samples.npz"), "--ref", str(tmp_path / "ref.npz"),
               "--metrics", "fid,kid,is,pr_inception", "--subset-size", "4", "--splits", "2"]
              + common)
    assert abs(ev["fid"] - fid["fid"]) < 1e-6 * fid["fid"]


# ---------------------------------------------------------------- protocols: clear errors


def test_protocol_names_and_pixels():
    assert skm.get_protocol("Torch_Fidelity").name == "torch-fidelity"
    assert skm.get_protocol("legacy_tensorflow").name == "clean-fid-legacy-tf"
    with pytest.raises(ValueError, match="argument `protocol`: got 'tf-gan', expected one of"):
        skm.get_protocol("tf-gan")
    x = np.array([-1.0, -0.5, 0.0031, 1.0], np.float32).reshape(1, 2, 2, 1)
    tf, pf = skm.get_protocol("torch-fidelity"), skm.get_protocol("pytorch-fid")
    # torch-fidelity takes uint8 only: float images are quantised; grey is repeated to RGB
    np.testing.assert_array_equal(tf.pixels(x)[..., 0].ravel(), [0, 64, 128, 255])
    assert tf.pixels(x).shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(tf.pixels(x, quantize="truncate")[..., 0].ravel(),
                                  [0, 63, 127, 255])
    np.testing.assert_allclose(pf.pixels(x)[..., 0].ravel(), (x.ravel() + 1) * 127.5, rtol=1e-7)
    with pytest.raises(ValueError, match="argument `quantize`: got 'none', but torch-fidelity "
                                         "0.4.0 only takes uint8 images"):
        tf.pixels(x, quantize="none")


def test_images_outside_the_range():
    img = np.full((2, 8, 8, 3), 200.0, np.float32)
    with pytest.raises(ValueError, match="argument `images`: float images must be in \\[-1, 1\\], "
                                         "found values in \\[200, 200\\].*pass uint8"):
        skm.get_protocol("clean-fid").pixels(img)
    with pytest.raises(ValueError, match="argument `images`: float images must be in \\[-1, 1\\]"
                                         ", found values in \\[-3, 200\\]"):
        skm.inception_features(np.concatenate([img, -3 + 0 * img]), net=skm.InceptionV3(
            jax.random.key(0)), progress=False)
    with pytest.raises(ValueError, match="contain NaN or inf"):
        skm.get_protocol("pytorch-fid").pixels(np.full((1, 4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="argument `images`: got dtype int32, expected uint8"):
        skm.get_protocol("pytorch-fid").pixels(np.zeros((1, 4, 4, 3), np.int32))


def test_statistics_argument_errors():
    rng = np.random.default_rng(0)
    st = skm.StreamingStats(3).update(rng.standard_normal((5, 3)))
    bad = rng.standard_normal((4, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="1 of 4 rows contain NaN or inf \\(first at row 2 of "
                                         "this batch; 5 rows were added before\\)"):
        st.update(bad)
    assert st.n == 5  # unchanged
    f = rng.standard_normal((20, 4))
    for fn in (lambda b: skm.knn_radii(f, block_size=b),
               lambda b: skm.precision_recall(f, f, block_size=b)):
        with pytest.raises(ValueError, match="argument `block_size`: got 0, expected an int >= 1"):
            fn(0)
    kid_fns = (skm.kernel_inception_distance, skm.kid_torch_fidelity, skm.kid_clean_fid)
    for fn in kid_fns:
        with pytest.raises(ValueError, match="argument `subsets`: got 0, expected an int >= 1"):
            fn(f, f, subsets=0, subset_size=5)
        with pytest.raises(ValueError, match="argument `subset_size`: got 1, expected an int >= 2"):
            fn(f, f, subsets=2, subset_size=1)
    with pytest.raises(ValueError, match="argument `subset_size`: got 30, but the sets have 20 "
                                         "and 20 rows"):
        skm.kid_torch_fidelity(f, f, subsets=2, subset_size=30)
    # too few samples: fewer than 2 is an error; fewer than d + 1 (rank-deficient covariance) a
    # warning, the FID is still the tools' number
    with pytest.raises(ValueError, match="at least 2 samples"):
        skm.fid_from_features(f[:1], f)
    with pytest.warns(skm.RankDeficientWarning, match="3 samples of 4-d features.*rank at most 2"):
        skm.fid_from_features(f[:3], f)
    with pytest.raises(ValueError, match="argument `splits`: got 30, expected an int in "):
        skm.inception_score(f, splits=30)


def test_weights_of_the_wrong_network(tmp_path):
    from sdekit.io import save_torch

    vgg_like = {"features.0.weight": np.zeros((64, 3, 3, 3), np.float32),
                "features.0.bias": np.zeros(64, np.float32)}
    save_torch(tmp_path / "vgg.pth", vgg_like)
    with pytest.raises(ValueError, match="vgg.pth: not the pytorch-fid Inception weights: tensor "
                                         "'Conv2d_1a_3x3.conv.weight' is missing.*it holds "
                                         "'features.0.weight'"):
        skm.load_inception(tmp_path / "vgg.pth")
    with pytest.raises(ValueError, match="vgg.pth: a plain state dict, but protocol 'clean-fid' "
                                         "reads NVIDIA's TorchScript archive"):
        skm.load_inception(tmp_path / "vgg.pth", protocol="clean-fid")
    with pytest.raises(ValueError, match="vgg.pth: not torchvision's VGG-16 weights: tensor "
                                         "'features.2.weight' is missing"):
        skm.load_vgg16(tmp_path / "vgg.pth")
    # a TorchScript archive given to the pytorch-fid reader
    body = (b"\x80\x02c__torch__\nInceptionV3\n)\x81}X\x01\x00\x00\x00kJ\x03\x00\x00\x00sb.")
    with zipfile.ZipFile(tmp_path / "ts.pt", "w") as zf:
        zf.writestr("ts/data.pkl", body)
    with pytest.raises(ValueError, match="ts.pt: a TorchScript archive .* use "
                                         "protocol='clean-fid'"):
        skm.load_inception(tmp_path / "ts.pt", protocol="torch-fidelity")
    with pytest.raises(ValueError, match="ts.pt: not the TorchScript Inception .* tensor "
                                         "'layers.conv.weight' is missing"):
        skm.load_inception(tmp_path / "ts.pt", protocol="clean-fid")


def test_features_module_refuses_another_protocols_net(random_inception):
    net = skm.inception_from_state_dict(skm.inception_state_dict(random_inception), resize=75)
    with pytest.raises(ValueError, match="weights read from a 'pytorch-fid' file, but protocol "
                                         "'clean-fid' runs the network of a 'nvidia-torchscript'"):
        skm.InceptionFeatures(net, "clean-fid")
    skm.InceptionFeatures(net, "torch-fidelity")  # same file as pytorch-fid's
