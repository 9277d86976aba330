"""Tests for sdekit.data: official-format archives, downloads and checksums, sources,
transforms, pipelines."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

import sdekit.data as sd

RNG = np.random.default_rng(0)


# ------------------------------------------------------------- tiny official-format archives


def make_cifar_tarball(path, n_per_batch=2):
    """A cifar-10-python.tar.gz with the official layout.

    Members: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}.
    """
    images, labels = {}, {}
    with tarfile.open(path, "w:gz") as tar:

        def add(name, obj):
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))

        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            hwc = RNG.integers(0, 256, (n_per_batch, 32, 32, 3), dtype=np.uint8)
            lab = [(i * n_per_batch + j) % 10 for j in range(n_per_batch)]
            # official row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major
            rows = hwc.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)
            add(
                name,
                {
                    b"batch_label": name.encode(),
                    b"labels": lab,
                    b"data": rows,
                    b"filenames": [f"img{j}.png".encode() for j in range(n_per_batch)],
                },
            )
            images[name], labels[name] = hwc, np.array(lab)
        add(
            "batches.meta",
            {b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": n_per_batch},
        )
    return images, labels


def write_idx_gz(path, array):
    array = np.asarray(array, np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    path = root / "cifar-10-python.tar.gz"
    images, labels = make_cifar_tarball(path)
    return root, path, images, labels


def test_cifar10_reads_official_layout(cifar):
    root, path, images, labels = cifar
    md5 = sd.md5sum(path)
    x, y = sd.load_cifar10("train", root=root, md5=md5, download=False)
    assert x.shape == (10, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    want = np.concatenate([images[f"data_batch_{k}"] for k in range(1, 6)])
    np.testing.assert_array_equal(x, want)  # pixel values, channel order and example order
    np.testing.assert_array_equal(
        y, np.concatenate([labels[f"data_batch_{k}"] for k in range(1, 6)])
    )
    # a pixel by hand: red plane first, row-major
    rows = pickle.loads(
        tarfile.open(path).extractfile("cifar-10-batches-py/data_batch_1").read(), encoding="bytes"
    )[b"data"]
    assert x[0, 1, 2, 0] == rows[0][1 * 32 + 2] and x[0, 1, 2, 2] == rows[0][2048 + 1 * 32 + 2]
    xt, yt = sd.load_cifar10("test", root=root, md5=md5, download=False)
    np.testing.assert_array_equal(xt, images["test_batch"])
    src = sd.CIFAR10("test", root=root, md5=md5, download=False)
    assert len(src) == 2 and src[1]["label"] == labels["test_batch"][1]


def test_cifar10_checksum_and_missing_file_errors(cifar, tmp_path, monkeypatch):
    root, path, _, _ = cifar
    with pytest.raises(sd.ChecksumError, match="c58f30108f718f92721af3b95e74349a"):
        sd.load_cifar10(
            "train", root=root, download=False
        )  # the official md5 does not match our tiny file
    with pytest.raises(FileNotFoundError, match="place it at"):
        sd.load_cifar10("train", root=tmp_path / "empty", download=False)
    with pytest.raises(ValueError, match="`split`"):
        sd.load_cifar10("valid", root=root)
    monkeypatch.setenv("SDEKIT_DATA", str(tmp_path / "env"))
    assert sd.cache_dir() == tmp_path / "env"


def test_download_from_file_url_verifies_md5(cifar, tmp_path):
    _, path, images, _ = cifar
    url = path.as_uri()  # file:// -- no network in tests
    md5 = sd.md5sum(path)
    x, _ = sd.load_cifar10("test", root=tmp_path / "dl", url=url, md5=md5)
    np.testing.assert_array_equal(x, images["test_batch"])
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").is_file()
    with pytest.raises(sd.ChecksumError, match="does not match the expected 0{32}"):
        sd.download(url, tmp_path / "bad" / "f.tar.gz", md5="0" * 32)
    assert not (tmp_path / "bad" / "f.tar.gz").exists() and not list((tmp_path / "bad").iterdir())
    with pytest.raises(RuntimeError, match="place it at"):
        sd.download((tmp_path / "nope.tar.gz").as_uri(), tmp_path / "x" / "nope.tar.gz")


def test_mnist_reads_idx_files(tmp_path):
    imgs = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labs = np.array([7, 0, 9], np.uint8)
    md5s = {}
    for split, a, b in (("train", imgs, labs), ("test", imgs[:2], labs[:2])):
        for kind, arr in (("images", a), ("labels", b)):
            name = sd.MNIST_FILES[(split, kind)][0]
            write_idx_gz(tmp_path / name, arr)
            md5s[name] = sd.md5sum(tmp_path / name)
    raw = gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read()
    assert (
        raw[:4] == b"\x00\x00\x08\x03"
        and gzip.open(tmp_path / "train-labels-idx1-ubyte.gz").read()[:4] == b"\x00\x00\x08\x01"
    )
    x, y = sd.load_mnist("train", root=tmp_path, md5s=md5s, download=False)
    assert x.shape == (3, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[..., 0], imgs)
    np.testing.assert_array_equal(y, [7, 0, 9])
    assert len(sd.MNIST("test", root=tmp_path, md5s=md5s, download=False)) == 2
    with pytest.raises(sd.ChecksumError, match="f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        sd.load_mnist("train", root=tmp_path, download=False)  # official md5s
    (tmp_path / "broken.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="magic"):
        sd.read_idx(tmp_path / "broken.gz")


def test_image_folder(tmp_path):
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (6, 4), colour).save(tmp_path / cls / f"{i}.png")
    src = sd.ImageFolder(tmp_path)
    assert len(src) == 4 and src.classes == ("cat", "dog")
    ex = src[3]
    assert (
        ex["image"].shape == (4, 6, 3)
        and ex["label"] == 1
        and tuple(ex["image"][0, 0]) == (0, 0, 255)
    )
    grey = sd.ImageFolder(tmp_path, mode="L", size=(8, 8))
    assert grey[0]["image"].shape == (8, 8, 1)
    with pytest.raises(ValueError, match="`root`"):
        sd.ImageFolder(tmp_path / "cat" / "0.png")


# ----------------------------------------------------------------------------- transforms, toy data


def test_transforms():
    x = np.arange(2 * 2 * 1, dtype=np.uint8).reshape(2, 2, 1) * 85  # 0, 85, 170, 255
    np.testing.assert_allclose(sd.scale(x).ravel(), [-1, -1 / 3, 1 / 3, 1], atol=1e-6)
    np.testing.assert_allclose(sd.scale(x, "[0,1]").ravel(), [0, 1 / 3, 2 / 3, 1], atol=1e-6)
    rng = np.random.default_rng(0)
    d = sd.dequantize(np.full((1000,), 200, np.uint8), rng, "[0,1]")
    assert np.all(np.floor(d * 256) == 200)
    d = sd.dequantize(np.array([0, 255], np.uint8), rng)
    assert d.min() >= -1 and d.max() <= 1
    img = RNG.integers(0, 256, (3, 3, 2), dtype=np.uint8)
    c4 = [np.rot90(img, k, axes=(0, 1)) for k in range(4)]
    d4 = c4 + [g[:, ::-1] for g in c4]
    seen_c4, seen_d4 = set(), set()
    for _ in range(64):
        y = sd.random_c4(img, rng)
        seen_c4.add(next(i for i, g in enumerate(c4) if np.array_equal(g, y)))
        z = sd.random_d4(img, rng)
        seen_d4.add(next(i for i, g in enumerate(d4) if np.array_equal(g, z)))
        f = sd.random_flip(img, rng)
        assert np.array_equal(f, img) or np.array_equal(f, img[:, ::-1])
    assert seen_c4 == set(range(4)) and seen_d4 == set(range(8))
    with pytest.raises(ValueError, match="`value_range`"):
        sd.scale(x, "[0,255]")


def test_toy_data():
    for name in sd.TOY_DATASETS:
        x = sd.toy_data(0, name, 200)
        assert (
            x.shape == (200, 2)
            and x.dtype == np.float32
            and np.all(np.isfinite(x))
            and np.abs(x).max() < 6
        )
    np.testing.assert_array_equal(sd.toy_data(3, "two_moons", 10), sd.toy_data(3, "two_moons", 10))
    c = sd.toy_data(1, "checkerboard", 2000)
    assert np.all(
        (np.floor(c[:, 0] / 2) + np.floor(c[:, 1] / 2)) % 2 == 0
    )  # only the black squares
    with pytest.raises(ValueError, match="`name`"):
        sd.toy_data(0, "spiral galaxy", 10)


# ----------------------------------------------------------------------------- pipelines


def test_pipeline_epochs_state_and_sharding():
    n = 12
    imgs = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=1)
    src = sd.ArraySource(imgs, labels=np.arange(n))
    it = sd.make_pipeline(src, batch_size=4, seed=3)
    epoch1 = np.concatenate([next(it)["label"] for _ in range(3)])
    state = json.loads(json.dumps(it.get_state()))  # JSON-able
    epoch2 = np.concatenate([next(it)["label"] for _ in range(3)])
    assert sorted(epoch1) == list(range(n)) and sorted(epoch2) == list(range(n))
    assert not np.array_equal(epoch1, epoch2)  # reshuffled every epoch
    b = next(it)
    assert (
        b["image"].dtype == np.float32
        and b["image"].shape == (4, 2, 1, 1)
        and b["label"].dtype == np.int32
    )
    np.testing.assert_allclose(b["image"][:, 0, 0, 0], b["label"] / 127.5 - 1, atol=1e-6)
    it2 = sd.make_pipeline(src, batch_size=4, seed=3)
    it2.set_state(state)
    np.testing.assert_array_equal(np.concatenate([next(it2)["label"] for _ in range(3)]), epoch2)
    # two processes: disjoint halves, each yields batch_size / 2 rows
    parts = [
        sd.make_pipeline(src, batch_size=4, seed=3, num_epochs=1, process_index=i, process_count=2)
        for i in range(2)
    ]
    got = [np.concatenate([b["label"] for b in p]) for p in parts]
    assert all(len(g) == 6 for g in got) and sorted(np.concatenate(got)) == list(range(n))
    with pytest.raises(ValueError, match="`batch_size`.*5.*2"):
        sd.make_pipeline(src, batch_size=5, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="`augment`"):
        sd.make_pipeline(src, batch_size=4, augment="C8")


def test_pipeline_toy_points_and_augmentation():
    pts = sd.toy_data(0, "gaussian", 16)
    it = sd.make_pipeline(pts, batch_size=8, value_range=None, shuffle=False)
    np.testing.assert_array_equal(next(it)["image"], pts[:8])
    imgs = RNG.integers(0, 256, (8, 4, 4, 3), dtype=np.uint8)
    a = sd.make_pipeline(imgs, batch_size=8, augment="D4", dequantize=True, seed=7, shuffle=False)
    b = sd.make_pipeline(imgs, batch_size=8, augment="D4", dequantize=True, seed=7, shuffle=False)
    xa = next(a)["image"]
    np.testing.assert_array_equal(xa, next(b)["image"])  # deterministic given the seed
    assert xa.min() >= -1 and xa.max() <= 1
    pix = np.floor((xa + 1) / 2 * 256).astype(np.uint8)
    for i in range(8):  # each example is a D4 transform of its source image
        group = [np.rot90(imgs[i], k, axes=(0, 1)) for k in range(4)]
        group += [g[:, ::-1] for g in group]
        assert any(np.array_equal(g, pix[i]) for g in group)


@pytest.mark.slow  # grain worker processes: slow to start; hung once on the loaded machine
def test_pipeline_with_worker_process_matches_in_process():
    imgs = RNG.integers(0, 256, (16, 2, 2, 1), dtype=np.uint8)
    ref = sd.make_pipeline(imgs, batch_size=4, seed=5, augment="flip")
    mp = sd.make_pipeline(imgs, batch_size=4, seed=5, augment="flip", num_workers=1)
    try:
        for _ in range(3):
            np.testing.assert_array_equal(next(ref)["image"], next(mp)["image"])
        state = mp.get_state()
        want = next(ref)["image"]
    finally:
        mp.close()
    again = sd.make_pipeline(imgs, batch_size=4, seed=5, augment="flip", num_workers=1)
    try:
        again.set_state(state)  # worker-pipeline states resume a pipeline with the same num_workers
        np.testing.assert_array_equal(next(again)["image"], want)
    finally:
        again.close()


# ------------------------------------------------------------- hardening: unsafe / bad input


class _RunsCode:
    """Pickles to a call of ``builtins.exec``: what a crafted CIFAR-10 batch would carry."""

    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.mark!r}).write_text('pwned')",))


def _tarball(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_cifar10_crafted_pickle_runs_no_code(tmp_path):
    mark = tmp_path / "pwned.txt"
    payload = pickle.dumps({b"data": _RunsCode(mark), b"labels": [0]}, protocol=2)
    probe = tmp_path / "probe.txt"  # the payload does run code under a plain pickle.load
    pickle.loads(pickle.dumps({b"data": _RunsCode(probe)}, protocol=2))
    assert probe.read_text() == "pwned"
    path = tmp_path / "cifar-10-python.tar.gz"
    _tarball(path, {"test_batch": payload})
    for md5 in (None, sd.md5sum(path)):  # no check, or the crafted file's own md5
        refused = r"refusing to load the global (__builtin__|builtins)\.exec"
        with pytest.raises(ValueError, match=refused):
            sd.load_cifar10("test", root=tmp_path, md5=md5, download=False)
    assert not mark.exists()


def test_cifar10_mismatched_counts_and_extracted_directory(tmp_path):
    rows = RNG.integers(0, 256, (3, 3072), dtype=np.uint8)
    bad = pickle.dumps({b"data": rows, b"labels": [1, 2]}, protocol=2)
    _tarball(tmp_path / "cifar-10-python.tar.gz", {"test_batch": bad})
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        sd.load_cifar10("test", root=tmp_path, md5=None, download=False)
    ext = tmp_path / "x" / "cifar-10-batches-py"
    ext.mkdir(parents=True)
    (ext / "test_batch").write_bytes(pickle.dumps({b"data": rows, b"labels": [1, 2, 3]}))
    x, y = sd.load_cifar10("test", root=tmp_path / "x", download=False)
    assert x.shape == (3, 32, 32, 3) and list(y) == [1, 2, 3]
    np.testing.assert_array_equal(x[1, 0, 0], rows[1, [0, 1024, 2048]])


def test_mnist_refuses_non_uint8_idx(tmp_path):
    name = sd.MNIST_FILES[("test", "images")][0]
    arr = np.zeros((2, 28, 28), ">f4")
    header = struct.pack(">HBB", 0, 0x0D, 3) + struct.pack(">3I", *arr.shape)
    with gzip.open(tmp_path / name, "wb") as f:
        f.write(header + arr.tobytes())
    write_idx_gz(tmp_path / sd.MNIST_FILES[("test", "labels")][0], np.array([1, 2]))
    with pytest.raises(ValueError, match="float32 values, expected uint8"):
        sd.load_mnist("test", root=tmp_path, md5s={n: None for n, _ in sd.MNIST_FILES.values()},
                      download=False)


def test_image_folder_skips_bad_files_and_refuses_links_out(tmp_path):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4), (1, 2, 3)).save(root / "a" / "ok.png")
    (root / "a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (root / "a" / "notes.jpg").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 2 of 3 files"):
        src = sd.ImageFolder(root)
    assert len(src) == 1 and len(src.skipped) == 2
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    (root / "a" / "link.png").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link.*outside"):
        sd.ImageFolder(root)


def test_pipeline_does_not_assume_8_bit_input():
    floats = RNG.uniform(-1, 1, (8, 2, 2, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="`input_range`.*float32"):
        sd.make_pipeline(floats, batch_size=4)
    it = sd.make_pipeline(floats, batch_size=8, input_range=(-1, 1), shuffle=False)
    np.testing.assert_allclose(next(it)["image"], floats, atol=1e-6)
    digits = RNG.integers(0, 17, (8, 2, 2, 1)).astype(np.int64)
    it = sd.make_pipeline(digits, batch_size=8, input_range=(0, 16), shuffle=False)
    np.testing.assert_allclose(next(it)["image"], digits / 8.0 - 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="`input_range`.*span"):
        sd.make_pipeline(digits * 20, batch_size=4, input_range=(0, 16))
    with pytest.raises(ValueError, match="`dequantize`"):
        sd.make_pipeline(floats, batch_size=4, input_range=(-1, 1), dequantize=True)


def test_import_sdekit_does_not_import_grain():
    import subprocess
    import sys

    code = "import sys, sdekit; print('grain' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
