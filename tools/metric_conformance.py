"""Print how closely each sdekit.metrics protocol reproduces its tool (the table in
docs/api/metrics.md), from the fixtures `tools/make_metric_fixtures.py` wrote.

Runs without torch, from the repository root:

    python tools/metric_conformance.py

It rebuilds the tools' weight files from their skeletons, computes every protocol's features of
the fixture image groups with sdekit and the final numbers on the two sets, and prints the
largest relative differences to the tools' (features: max |sdekit - tool| / max |tool| over
each group, worst group; numbers: |sdekit - tool| / |tool|).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import _metric_fixtures as mf  # noqa: E402

import sdekit.metrics as skm  # noqa: E402

PROTOCOLS = ("pytorch-fid", "torch-fidelity", "clean-fid", "clean-fid-legacy-tf")
POOL_KEY = {"torch-fidelity": "2048"}


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main() -> None:
    import jax

    warnings.simplefilter("ignore", skm.RankDeficientWarning)
    tool = dict(np.load(os.path.join(mf.FIXTURE_DIR, "tool_outputs.npz")))
    tmp = tempfile.mkdtemp()
    fid_path = mf.write_from_skeleton(os.path.join(mf.FIXTURE_DIR, "fid_inception.skel.npz"),
                                      mf.fid_inception_weights(1), os.path.join(tmp, "f.pth"))
    nv_path = mf.write_from_skeleton(os.path.join(mf.FIXTURE_DIR, "nvidia_inception.skel.npz"),
                                     mf.nvidia_inception_weights(2), os.path.join(tmp, "n.pt"))
    nets = {"pytorch-fid": skm.load_inception(fid_path),
            "nvidia-torchscript": skm.load_inception(nv_path, protocol="clean-fid")}
    one = jax.devices()[:1]
    groups = {g: mf.image_group(g) for g, *_ in mf.IMAGE_GROUPS}
    print("| protocol | pool3 features | IS logits | FID | KID | IS |")
    print("|---|---|---|---|---|---|")
    for name in PROTOCOLS:
        proto = skm.get_protocol(name)
        feats = {g: skm.inception_features(a, protocol=proto, net=nets[proto.weight_format],
                                           batch_size=2, devices=one, progress=False)
                 for g, a in groups.items()}
        pool_err = max(rel(feats[g][0], tool[f"{name}/{POOL_KEY.get(name, 'pool3')}/{g}"])
                       for g in groups)
        logit_err = (max(rel(feats[g][1], tool[f"{name}/logits_unbiased/{g}"]) for g in groups)
                     if proto.inception_score else None)
        f1 = np.concatenate([feats[g][0] for g in mf.SET1])
        f2 = np.concatenate([feats[g][0] for g in mf.SET2])
        fid = proto.fid(f1, f2, method="fast")
        fid_err = abs(fid - tool[f"{name}/fid"]) / abs(tool[f"{name}/fid"])
        kid_err = is_err = None
        if proto.kid:
            k, _ = proto.kernel_inception_distance(f1, f2, subsets=mf.KID_SUBSETS,
                                                   subset_size=mf.KID_SUBSET_SIZE)
            want = np.atleast_1d(tool[f"{name}/kid"])[0]
            kid_err = abs(k - want) / abs(want)
        if proto.inception_score:
            is_err = max(
                abs(proto.inception_score_of(np.concatenate([feats[g][1] for g in gs]),
                                             splits=mf.IS_SPLITS)[0]
                    - tool[f"{name}/is/{key}"][0]) / tool[f"{name}/is/{key}"][0]
                for key, gs in (("set1", mf.SET1), ("set2", mf.SET2)))

        def f(v):
            return "n/a (no such metric)" if v is None else f"{v:.1e}"

        print(f"| `{name}` | {f(pool_err)} | {f(logit_err)} | {f(fid_err)} | {f(kid_err)} | "
              f"{f(is_err)} |")
    vgg = skm.load_vgg16(mf.write_from_skeleton(
        os.path.join(mf.FIXTURE_DIR, "vgg16.skel.npz"), mf.vgg16_weights(3),
        os.path.join(tmp, "v.pth")))
    err = max(rel(skm.vgg16_features(a, net=vgg, batch_size=2, devices=one, progress=False),
                  np.maximum(tool[f"torch-fidelity/vgg16_fc2/{g}"], 0)) for g, a in groups.items())
    print(f"\nVGG-16 fc2_relu features (torch-fidelity's prc path): {err:.1e}")


if __name__ == "__main__":
    main()
