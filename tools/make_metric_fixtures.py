"""Write tests/fixtures/metrics/*: what pytorch-fid, torch-fidelity and clean-fid compute, with
random networks that sdekit also loads, for `tests/test_metrics_protocols.py`.

Run it in an environment with torch, torchvision and the three tools (versions recorded in the
fixture; the ones used: torch 2.13.0+cpu, torchvision 0.28.0, pytorch-fid 0.3.0,
torch-fidelity 0.4.0, clean-fid 0.1.35), from the repository root:

    python tools/make_metric_fixtures.py

Nothing is downloaded. For every tool this script

1. draws the random weights of the tool's network from fixed seeds (`tests/_metric_fixtures.py`,
   the same code the test uses) and writes them in the tool's own file format with torch:
   pytorch-fid's legacy-format ``pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity reads the
   same file), torchvision's ``vgg16`` state dict (zip format), and a TorchScript archive with the
   module layout of the NVIDIA ``inception-2015-12-05.pt`` that clean-fid runs (see
   `NvidiaInception` below: that file is not obtainable here, so its graph is rebuilt from its
   published structure);
2. stores each file's skeleton (all bytes but the tensor payloads; the test splices the
   regenerated payloads back and checks the SHA-256);
3. runs the tool's own code on the image groups of `tests/_metric_fixtures.py` written as PNG
   files (uint8) or passed as tensors through the tool's API (float), and stores the features,
   and the tool's FID / KID / IS / precision-recall on the two sets;
4. runs the tool's statistics functions on larger synthetic feature sets (default settings:
   KID subsets of 1000 (the first 10 of the default 100), IS 10 splits) and stores the
   numbers;
5. writes small reference-statistics files in each tool's own format (64-d features so they
   stay small).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import shutil
import struct
import sys
import tempfile
import types
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import _metric_fixtures as mf  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    import torchvision  # noqa: F401
except RuntimeError:
    # The torchvision wheel on the package index is built against CUDA torch; with the CPU torch
    # its compiled ops (nms, roi_align...) fail to register and its fake-kernel registrations
    # raise at import. Nothing used here needs those ops: skip the registrations.
    for k in [k for k in sys.modules if k.startswith("torchvision")]:
        del sys.modules[k]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations")
    import torchvision  # noqa: F401

import pytorch_fid  # noqa: E402
import torch_fidelity  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(2)
torch.set_grad_enabled(False)
OUT = mf.FIXTURE_DIR
DEV = torch.device("cpu")


def tt(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# ------------------------------------------------------------------------------ skeletons


def _zip_payload_spans(path, weights):
    by_hash = {}
    for name, a in weights.items():
        by_hash.setdefault(hashlib.sha256(mf.payload_bytes(a)).digest(), name)
    spans = []
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            if "/data/" not in info.filename:
                continue
            assert info.compress_type == zipfile.ZIP_STORED
            f.seek(info.header_offset)
            head = f.read(30)
            n_name, n_extra = struct.unpack("<HH", head[26:30])
            off = info.header_offset + 30 + n_name + n_extra
            f.seek(off)
            data = f.read(info.file_size)
            name = by_hash.get(hashlib.sha256(data).digest())
            if name is None:
                raise SystemExit(f"{path}: storage {info.filename} matches no generated tensor")
            spans.append((off, info.file_size, name))
    return spans


class _Named:
    """A stand-in for any global of the pickle: remembers its name, calling it does nothing."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        return _Rec()


class _Rec(dict):
    def __setstate__(self, state):
        pass

    def append(self, v):
        pass


class _Skip(pickle.Unpickler):
    """Walks the legacy format's pickles without building anything; records persistent ids."""

    def find_class(self, module, name):
        return _Named(name)

    def persistent_load(self, pid):
        self.pids.append(pid)
        return None


_ITEMSIZE = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "LongStorage": 8}


def _legacy_payload_spans(path, weights):
    by_hash = {}
    for name, a in weights.items():
        by_hash.setdefault(hashlib.sha256(mf.payload_bytes(a)).digest(), name)
    spans = []
    with open(path, "rb") as f:
        up = _Skip(f)
        up.pids = []
        for _ in range(4):  # magic, protocol, system info, the object
            up.load()
        storage_type = {str(p[2]): p[1].name for p in up.pids}
        keys = pickle.load(f)
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            off = f.tell()
            data = f.read(numel * _ITEMSIZE[storage_type[str(key)]])
            name = by_hash.get(hashlib.sha256(data).digest())
            if name is None:
                raise SystemExit(f"{path}: storage {key} matches no generated tensor")
            spans.append((off, len(data), name))
    return spans


def skeleton(path, weights, out_name, legacy=False):
    spans = _legacy_payload_spans(path, weights) if legacy else _zip_payload_spans(path, weights)
    skel = mf.make_skeleton(path, spans)
    mf.save_skeleton(os.path.join(OUT, out_name), skel)
    # the test's splice gives back the same bytes
    tmp = path + ".rebuilt"
    mf.write_from_skeleton(os.path.join(OUT, out_name), weights, tmp)
    os.remove(tmp)
    print(f"{out_name}: {len(spans)} payloads, {len(skel['literal'])} literal bytes")
    return skel["sha256"]


# -------------------------------------------------- the TorchScript Inception clean-fid runs


class ConvUnit(nn.Module):
    """conv (no bias) -> batch norm without scale (``beta``, ``mean``, ``var``, eps 1e-3) -> ReLU:
    the unit of NVIDIA's TorchScript port of the TensorFlow 2015-12-05 Inception graph."""

    def __init__(self, cin, cout, k, stride, pad):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, *k))
        self.beta = nn.Parameter(torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))
        self.stride = stride
        self.pad = list(pad)

    def forward(self, x):
        x = F.conv2d(x, self.weight, None, self.stride, self.pad)
        x = F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 0.001)
        return F.relu(x)


def _units(names):
    specs = {n: (ci, co, k, s, p) for n, ci, co, k, s, p in mf.fid_inception_convs()}
    return {n: ConvUnit(*specs[n]) for n in names}


class MixedA(nn.Module):
    def __init__(self, blk):
        super().__init__()
        u = _units([f"{blk}.{b}" for b in ("branch1x1", "branch5x5_1", "branch5x5_2",
                                           "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3",
                                           "branch_pool")])
        self.conv = u[f"{blk}.branch1x1"]
        self.tower = nn.Sequential(collections.OrderedDict(
            conv=u[f"{blk}.branch5x5_1"], conv_1=u[f"{blk}.branch5x5_2"]))
        self.tower_1 = nn.Sequential(collections.OrderedDict(
            conv=u[f"{blk}.branch3x3dbl_1"], conv_1=u[f"{blk}.branch3x3dbl_2"],
            conv_2=u[f"{blk}.branch3x3dbl_3"]))
        self.tower_2 = nn.Sequential(collections.OrderedDict(
            pool=nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv=u[f"{blk}.branch_pool"]))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class MixedB(nn.Module):
    def __init__(self):
        super().__init__()
        u = _units(["Mixed_6a.branch3x3", "Mixed_6a.branch3x3dbl_1", "Mixed_6a.branch3x3dbl_2",
                    "Mixed_6a.branch3x3dbl_3"])
        self.conv = u["Mixed_6a.branch3x3"]
        self.tower = nn.Sequential(collections.OrderedDict(
            conv=u["Mixed_6a.branch3x3dbl_1"], conv_1=u["Mixed_6a.branch3x3dbl_2"],
            conv_2=u["Mixed_6a.branch3x3dbl_3"]))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class MixedC(nn.Module):
    def __init__(self, blk):
        super().__init__()
        names = ([f"{blk}.branch1x1", f"{blk}.branch_pool"]
                 + [f"{blk}.branch7x7_{i}" for i in (1, 2, 3)]
                 + [f"{blk}.branch7x7dbl_{i}" for i in (1, 2, 3, 4, 5)])
        u = _units(names)
        self.conv = u[f"{blk}.branch1x1"]
        self.tower = nn.Sequential(collections.OrderedDict(
            (k, u[f"{blk}.branch7x7_{i}"]) for k, i in (("conv", 1), ("conv_1", 2),
                                                        ("conv_2", 3))))
        self.tower_1 = nn.Sequential(collections.OrderedDict(
            (k, u[f"{blk}.branch7x7dbl_{i}"]) for k, i in (("conv", 1), ("conv_1", 2),
                                                           ("conv_2", 3), ("conv_3", 4),
                                                           ("conv_4", 5))))
        self.tower_2 = nn.Sequential(collections.OrderedDict(
            pool=nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv=u[f"{blk}.branch_pool"]))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class MixedD(nn.Module):
    def __init__(self):
        super().__init__()
        u = _units([f"Mixed_7a.branch3x3_{i}" for i in (1, 2)]
                   + [f"Mixed_7a.branch7x7x3_{i}" for i in (1, 2, 3, 4)])
        self.tower = nn.Sequential(collections.OrderedDict(
            conv=u["Mixed_7a.branch3x3_1"], conv_1=u["Mixed_7a.branch3x3_2"]))
        self.tower_1 = nn.Sequential(collections.OrderedDict(
            (k, u[f"Mixed_7a.branch7x7x3_{i}"]) for k, i in (("conv", 1), ("conv_1", 2),
                                                             ("conv_2", 3), ("conv_3", 4))))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class MixedE(nn.Module):
    def __init__(self, blk, max_pool):
        super().__init__()
        m = {"branch1x1": "conv", "branch3x3_1": "tower_conv",
             "branch3x3_2a": "tower_mixed_conv", "branch3x3_2b": "tower_mixed_conv_1",
             "branch3x3dbl_1": "tower_1_conv", "branch3x3dbl_2": "tower_1_conv_1",
             "branch3x3dbl_3a": "tower_1_mixed_conv", "branch3x3dbl_3b": "tower_1_mixed_conv_1",
             "branch_pool": "tower_2_conv"}
        u = _units([f"{blk}.{k}" for k in m])
        for k, v in m.items():
            setattr(self, v, u[f"{blk}.{k}"])
        self.tower_2_pool = (nn.MaxPool2d(3, 1, 1) if max_pool
                             else nn.AvgPool2d(3, 1, 1, count_include_pad=False))

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


class NvidiaInception(nn.Module):
    """The module layout of ``inception-2015-12-05.pt`` (stylegan2-ada-pytorch's TorchScript
    port, which clean-fid loads): ``layers`` (conv .. conv_4, pool0/pool1, mixed .. mixed_10,
    pool2) and ``output`` (2048 -> 1008); ``forward(img, return_features)`` resizes any input to
    299 with ``affine_grid``/``grid_sample`` (bilinear, border padding, the TensorFlow-1 sampling
    grid ``src = dst * in / 299``), then ``(x - 128) / 128``. Rebuilt from the published
    description of that file's code and parameter names; the file itself is not obtainable
    here."""

    def __init__(self):
        super().__init__()
        u = _units(["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                    "Conv2d_4a_3x3"])
        layers = collections.OrderedDict(
            conv=u["Conv2d_1a_3x3"], conv_1=u["Conv2d_2a_3x3"], conv_2=u["Conv2d_2b_3x3"],
            pool0=nn.MaxPool2d(3, 2), conv_3=u["Conv2d_3b_1x1"], conv_4=u["Conv2d_4a_3x3"],
            pool1=nn.MaxPool2d(3, 2), mixed=MixedA("Mixed_5b"), mixed_1=MixedA("Mixed_5c"),
            mixed_2=MixedA("Mixed_5d"), mixed_3=MixedB(), mixed_4=MixedC("Mixed_6b"),
            mixed_5=MixedC("Mixed_6c"), mixed_6=MixedC("Mixed_6d"), mixed_7=MixedC("Mixed_6e"),
            mixed_8=MixedD(), mixed_9=MixedE("Mixed_7b", False),
            mixed_10=MixedE("Mixed_7c", True), pool2=nn.AvgPool2d(8, 8))
        self.layers = nn.Sequential(layers)
        self.output = nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False,
                use_fp16: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        batch_size, channels, height, width = img.shape
        x = img.to(torch.float16 if use_fp16 else torch.float32)
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2] += theta[0, 0] / width - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / height - theta[1, 1] / 299
        theta = theta.to(x.dtype).unsqueeze(0).repeat([batch_size, 1, 1])
        grid = F.affine_grid(theta, [batch_size, channels, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = x - 128
        x = x / 128
        features = self.layers(x).reshape(-1, 2048).to(torch.float32)
        if return_features:
            return features
        if no_output_bias:
            logits = F.linear(features, self.output.weight)
        else:
            logits = self.output(features)
        return F.softmax(logits, dim=1)


# ------------------------------------------------------------------------------ images


def write_pngs(folder, name, images):
    os.makedirs(folder, exist_ok=True)
    files = []
    for i, im in enumerate(images):
        p = os.path.join(folder, f"{name}_{i:03d}.png")
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(p)
        files.append(p)
    return files


def nchw(a):
    return tt(np.transpose(a, (0, 3, 1, 2)))


# ------------------------------------------------------------------------------ main


def main():
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="metric_fixtures_")
    groups = {g: mf.image_group(g) for g, *_ in mf.IMAGE_GROUPS}
    files = {g: write_pngs(os.path.join(tmp, "png"), g, a) for g, a in groups.items()
             if a.dtype == np.uint8}
    meta = {"versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "pytorch-fid": pytorch_fid.__version__,
                         "torch-fidelity": torch_fidelity.__version__,
                         "clean-fid": "0.1.35", "numpy": np.__version__},
            "images_sha256": {g: hashlib.sha256(a.tobytes()).hexdigest()
                              for g, a in groups.items()}}
    out: dict[str, np.ndarray] = {}

    # ---- weight files, in each tool's format, and their skeletons
    fidw = mf.fid_inception_weights(mf.WEIGHT_SEED["fid-inception"])
    hub = os.path.join(tmp, "torchhome", "hub", "checkpoints")
    os.makedirs(hub)
    fid_path = os.path.join(hub, "pt_inception-2015-12-05-6726825d.pth")
    torch.save(collections.OrderedDict((k, tt(v)) for k, v in fidw.items()), fid_path,
               _use_new_zipfile_serialization=False)
    meta["sha_fid_inception"] = skeleton(fid_path, fidw, "fid_inception.skel.npz", legacy=True)

    nvw = mf.nvidia_inception_weights(mf.WEIGHT_SEED["nvidia-inception"])
    nv = NvidiaInception().eval()
    missing = nv.load_state_dict({k: tt(v) for k, v in nvw.items()}, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    cf_dir = os.path.join(tmp, "cleanfid")
    os.makedirs(cf_dir)
    ts_path = os.path.join(cf_dir, "inception-2015-12-05.pt")
    torch.jit.script(nv).save(ts_path)
    meta["sha_nvidia_inception"] = skeleton(ts_path, nvw, "nvidia_inception.skel.npz")

    vggw = mf.vgg16_weights(mf.WEIGHT_SEED["vgg16"])
    vgg = torchvision.models.vgg16()
    vgg.load_state_dict({k: tt(v) for k, v in vggw.items()})
    vgg_path = os.path.join(tmp, "vgg16-397923af.pth")
    torch.save(vgg.state_dict(), vgg_path)
    meta["sha_vgg16"] = skeleton(vgg_path, vggw, "vgg16.skel.npz")
    del vgg

    # ---- pytorch-fid: its InceptionV3 (fid_inception_v3 reads the file from the hub cache)
    os.environ["TORCH_HOME"] = os.path.join(tmp, "torchhome")
    from pytorch_fid import fid_score
    from pytorch_fid.inception import InceptionV3 as PFInception

    model = PFInception([3]).eval()
    feats = {}
    for g, a in groups.items():
        if a.dtype == np.uint8:
            f = fid_score.get_activations(files[g], model, batch_size=50, dims=2048,
                                          device="cpu", num_workers=0)
        else:  # float images through the module's API: values in [0, 1]
            f = model(nchw((a + 1.0) / 2.0))[0].squeeze(3).squeeze(2).numpy()
        feats[g] = f.astype(np.float32)
        out[f"pytorch-fid/pool3/{g}"] = feats[g]
    s1 = np.concatenate([feats[g] for g in mf.SET1]).astype(np.float64)
    s2 = np.concatenate([feats[g] for g in mf.SET2]).astype(np.float64)
    out["pytorch-fid/fid"] = np.float64(fid_score.calculate_frechet_distance(
        np.mean(s1, axis=0), np.cov(s1, rowvar=False), np.mean(s2, axis=0),
        np.cov(s2, rowvar=False)))
    print("pytorch-fid fid", out["pytorch-fid/fid"])

    # ---- torch-fidelity: FeatureExtractorInceptionV3 / VGG16 on uint8 tensors
    from torch_fidelity.datasets import ImagesPathDataset
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric
    from torch_fidelity.utils import get_featuresdict_from_dataset

    class U8(torch.utils.data.Dataset):
        def __init__(self, a):
            self.a = nchw(a)

        def __len__(self):
            return len(self.a)

        def __getitem__(self, i):
            return self.a[i]

    def tf_dataset(g):
        a = groups[g]
        return ImagesPathDataset(files[g]) if a.dtype == np.uint8 else U8(mf.quantize_round(a))

    fe = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased", "logits"],
                                     feature_extractor_weights_path=fid_path)
    tf_feats = {}
    for g in groups:
        d = get_featuresdict_from_dataset(tf_dataset(g), fe, 64, False, True, False)
        tf_feats[g] = d
        for k in ("2048", "logits_unbiased", "logits"):
            out[f"torch-fidelity/{k}/{g}"] = d[k].numpy()
    fev = FeatureExtractorVGG16("vgg16", ["fc2", "fc2_relu"],
                                feature_extractor_weights_path=vgg_path)
    vgg_feats = {}
    for g in groups:
        d = get_featuresdict_from_dataset(tf_dataset(g), fev, 64, False, True, False)
        vgg_feats[g] = d
        out[f"torch-fidelity/vgg16_fc2/{g}"] = d["fc2"].numpy()
        assert torch.equal(d["fc2_relu"], F.relu(d["fc2"]))

    def tcat(dd, key, names):
        return torch.cat([dd[g][key] for g in names])

    kw = dict(kid_subsets=mf.KID_SUBSETS, kid_subset_size=mf.KID_SUBSET_SIZE, verbose=False,
              prc_neighborhood=mf.PR_K, save_cpu_ram=False)
    f1, f2 = tcat(tf_feats, "2048", mf.SET1), tcat(tf_feats, "2048", mf.SET2)
    out["torch-fidelity/fid"] = np.float64(fid_statistics_to_metric(
        fid_features_to_statistics(f1), fid_features_to_statistics(f2), False)
        ["frechet_inception_distance"])
    kid = kid_features_to_metric(f1, f2, **kw)
    out["torch-fidelity/kid"] = np.array([kid["kernel_inception_distance_mean"],
                                          kid["kernel_inception_distance_std"]])
    for name, gs in (("set1", mf.SET1), ("set2", mf.SET2)):
        isc = isc_features_to_metric(tcat(tf_feats, "logits_unbiased", gs), mf.IS_SPLITS)
        out[f"torch-fidelity/is/{name}"] = np.array([isc["inception_score_mean"],
                                                    isc["inception_score_std"]])
    prc = prc_features_to_metric(f1, f2, **kw)  # input 1 = generated (set 1), input 2 = real
    out["torch-fidelity/pr_inception"] = np.array([prc["precision"], prc["recall"]])
    prc = prc_features_to_metric(tcat(vgg_feats, "fc2_relu", mf.SET1),
                                 tcat(vgg_feats, "fc2_relu", mf.SET2), **kw)
    out["torch-fidelity/pr_vgg16"] = np.array([prc["precision"], prc["recall"]])
    print("torch-fidelity", {k: out[k] for k in out if k.startswith("torch-fidelity/") and
                             "/" not in k[len("torch-fidelity/"):] or k.endswith("set1")})

    # ---- clean-fid: InceptionV3W around the TorchScript file, clean and legacy_tensorflow
    from cleanfid import fid as cfid
    from cleanfid.inception_torchscript import InceptionV3W

    for mode, proto in (("clean", "clean-fid"), ("legacy_tensorflow", "clean-fid-legacy-tf")):
        w = InceptionV3W(cf_dir, download=False, resize_inside=mode == "legacy_tensorflow").eval()

        def model_fn(x, w=w):
            return w(x)

        cf = {}
        for g, a in groups.items():
            if a.dtype == np.uint8:
                f = cfid.get_files_features(files[g], model=model_fn, num_workers=0,
                                            batch_size=8, device=DEV, mode=mode, verbose=False)
            else:  # a generator returning float images in [0, 255]
                imgs = nchw((a + 1.0) * 127.5)
                f = cfid.get_model_features(lambda z, imgs=imgs: imgs, model_fn, mode=mode,
                                            z_dim=1, num_gen=len(a), batch_size=len(a),
                                            device=DEV, verbose=False)
            cf[g] = f
            out[f"{proto}/pool3/{g}"] = f.astype(np.float32)
        c1 = np.concatenate([cf[g] for g in mf.SET1])
        c2 = np.concatenate([cf[g] for g in mf.SET2])
        out[f"{proto}/fid"] = np.float64(cfid.fid_from_feats(c1, c2))
        np.random.seed(mf.CLEANFID_KID_SEED)
        out[f"{proto}/kid"] = np.float64(cfid.kernel_distance(
            c1, c2, num_subsets=mf.KID_SUBSETS, max_subset_size=mf.KID_SUBSET_SIZE))
        print(proto, out[f"{proto}/fid"], out[f"{proto}/kid"])

    # ---- the statistics with the tools' default settings, on synthetic features
    a = mf.synthetic_features(21, 1100, mf.SYNTH_DIM)
    b = mf.synthetic_features(22, 1050, mf.SYNTH_DIM, shift=0.3)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out["stats/pytorch-fid/fid"] = np.float64(fid_score.calculate_frechet_distance(
        a64.mean(0), np.cov(a64, rowvar=False), b64.mean(0), np.cov(b64, rowvar=False)))
    ta, tb = tt(a), tt(b)
    out["stats/torch-fidelity/fid"] = np.float64(fid_statistics_to_metric(
        fid_features_to_statistics(ta), fid_features_to_statistics(tb), False)
        ["frechet_inception_distance"])
    # the default subset size and seed; 10 subsets are the first 10 of the default 100
    kid = kid_features_to_metric(ta, tb, verbose=False, kid_subsets=mf.DEFAULT_KID_SUBSETS)
    out["stats/torch-fidelity/kid"] = np.array([kid["kernel_inception_distance_mean"],
                                                kid["kernel_inception_distance_std"]])
    la = mf.synthetic_features(23, 1000, 40) * 4.0 - 2.0
    isc = isc_features_to_metric(tt(la))
    out["stats/torch-fidelity/is"] = np.array([isc["inception_score_mean"],
                                               isc["inception_score_std"]])
    prc = prc_features_to_metric(ta, tb, verbose=False)
    out["stats/torch-fidelity/pr"] = np.array([prc["precision"], prc["recall"]])
    out["stats/clean-fid/fid"] = np.float64(cfid.fid_from_feats(a, b))
    np.random.seed(mf.CLEANFID_KID_SEED)
    out["stats/clean-fid/kid"] = np.float64(cfid.kernel_distance(
        a, b, num_subsets=mf.DEFAULT_KID_SUBSETS))
    # a singular product: scipy's sqrtm gives non-finite values and the tools add eps * I
    z = np.zeros((3, 3))
    out["stats/pytorch-fid/fid_singular"] = np.float64(fid_score.calculate_frechet_distance(
        np.zeros(3), z, np.ones(3), np.diag([1.0, 0.0, 2.0])))
    print({k: v for k, v in out.items() if k.startswith("stats/")})

    # ---- reference statistics in the tools' own file formats (64-d features: small files)
    model64 = PFInception([0]).eval()
    ref_dir = os.path.join(tmp, "ref")
    ref_files = write_pngs(ref_dir, "ref", np.concatenate(
        [groups["u8_rgb_32"], mf.make_images("u8-rgb", 5, 32, 31)]))
    pf_stats = os.path.join(OUT, "pytorch_fid_stats_64.npz")
    if os.path.exists(pf_stats):
        os.remove(pf_stats)
    fid_score.save_fid_stats([ref_dir, pf_stats], 50, "cpu", 64, num_workers=0)
    act = fid_score.get_activations(ref_files, model64, 50, 64, "cpu", 0)
    out["formats/pool64"] = act.astype(np.float64)
    cache = os.path.join(tmp, "fidelity_cache")
    torch_fidelity.calculate_metrics(
        input1=ref_dir, input2=ref_dir, input2_cache_name="ref", fid=True,
        feature_extractor="inception-v3-compat", feature_layer_fid="64",
        feature_extractor_weights_path=fid_path, cache_root=cache, cuda=False, verbose=False,
        save_cpu_ram=True)
    for fn in sorted(os.listdir(cache)):
        print("torch-fidelity cache file", fn)
        if fn.startswith("ref-"):
            with open(os.path.join(cache, fn), "rb") as src, \
                    open(os.path.join(OUT, "tf_cache_" + fn), "wb") as dst:
                dst.write(src.read())
    d = get_featuresdict_from_dataset(ImagesPathDataset(ref_files), FeatureExtractorInceptionV3(
        "inception-v3-compat", ["64"], feature_extractor_weights_path=fid_path), 64, False, True,
        False)
    out["formats/tf64"] = d["64"].numpy()

    np.savez_compressed(os.path.join(OUT, "tool_outputs.npz"), **out)
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    shutil.rmtree(tmp)  # the weight files and PNGs (about 700 MB)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
