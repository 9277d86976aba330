"""Benchmark: Inception (FID) feature extraction of CIFAR-sized images, sdekit vs pytorch-fid.

Both sides compute pool3 features of the same ``--n`` random 32 x 32 uint8 images with the
same network (pytorch-fid's FID Inception; random weights, which cost the same as the real
ones), each in its own process on this machine, and report images per second and the process's
peak resident memory:

- sdekit: ``sdekit.metrics.inception_features(images, protocol="pytorch-fid")`` (batch
  ``--batch``, default 200; the one-off compile is timed separately and excluded);
- pytorch-fid 0.3.0: ``pytorch_fid.inception.InceptionV3([3])`` on the images as float tensors
  in [0, 1] (what ``ToTensor`` gives), in batches of ``--torch-batch`` (default 50,
  pytorch-fid's), under ``torch.no_grad()``, after one warm-up batch. PNG decoding is left out
  of both sides.

The pytorch-fid side needs a Python with torch, torchvision and pytorch-fid
(``--torch-python``); it writes its random weight file to a temporary ``$TORCH_HOME`` so
nothing is downloaded. Example::

    python benchmarks/metrics_features.py --n 10000 --torch-python /path/to/torch/bin/python
    python benchmarks/metrics_features.py --n 1000 --rounds 2 --torch-python ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_sdekit(n: int, batch: int) -> dict:
    import jax

    import sdekit.metrics as skm

    imgs = _images(n)
    net = skm.InceptionV3(jax.random.key(0))
    t0 = time.perf_counter()
    skm.inception_features(imgs[:batch], protocol="pytorch-fid", net=net, batch_size=batch,
                           progress=False)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool, _ = skm.inception_features(imgs, protocol="pytorch-fid", net=net, batch_size=batch,
                                     progress=False)
    sec = time.perf_counter() - t0
    assert pool.shape == (n, 2048)
    return {"side": "sdekit", "n": n, "batch": batch, "seconds": sec, "compile_s": compile_s,
            "peak_rss_mib": _peak_rss_mib(), "devices": len(jax.devices())}


def run_pytorch_fid(n: int, batch: int) -> dict:
    import sys as _sys
    import types

    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        # a CUDA-built torchvision wheel next to the CPU torch: its compiled ops do not
        # register and its fake-kernel registrations raise at import; none is used here
        for k in [k for k in _sys.modules if k.startswith("torchvision")]:
            del _sys.modules[k]
        _sys.modules["torchvision._meta_registrations"] = types.ModuleType("_meta")
    from pytorch_fid import inception as pfi

    home = tempfile.mkdtemp(prefix="pfid_bench_")
    ckpt = os.path.join(home, "hub", "checkpoints")
    os.makedirs(ckpt)
    # the FID blocks have the parameters of torchvision's, so this is fid_inception_v3's layout
    sd = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None).state_dict()
    torch.save(sd, os.path.join(ckpt, os.path.basename(pfi.FID_WEIGHTS_URL)))
    os.environ["TORCH_HOME"] = home
    model = pfi.InceptionV3([3]).eval()
    imgs = torch.from_numpy(_images(n)).permute(0, 3, 1, 2)
    shutil.rmtree(home)  # the random weight file: read already
    with torch.no_grad():
        model(imgs[:batch].float() / 255)
        t0 = time.perf_counter()
        out = [model(imgs[i:i + batch].float() / 255)[0] for i in range(0, n, batch)]
        sec = time.perf_counter() - t0
    assert torch.cat(out).shape[:2] == (n, 2048)
    return {"side": "pytorch-fid", "n": n, "batch": batch, "seconds": sec, "compile_s": 0.0,
            "peak_rss_mib": _peak_rss_mib(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def _child(python: str, side: str, n: int, batch: int) -> dict:
    cmd = [python, os.path.abspath(__file__), "--worker", side, "--n", str(n), "--batch",
           str(batch)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{side} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="images (default %(default)s)")
    ap.add_argument("--batch", type=int, default=200, help="sdekit batch (default %(default)s)")
    ap.add_argument("--torch-batch", type=int, default=50,
                    help="pytorch-fid batch (default %(default)s, pytorch-fid's)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate the two sides this many times (default %(default)s)")
    ap.add_argument("--torch-python", default=os.environ.get("SDEKIT_TORCH_PYTHON"),
                    help="a Python with torch and pytorch-fid (default $SDEKIT_TORCH_PYTHON); "
                         "without it only sdekit runs")
    ap.add_argument("--worker", choices=["sdekit", "pytorch-fid"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "sdekit":
        print(json.dumps(run_sdekit(args.n, args.batch)))
        return
    if args.worker == "pytorch-fid":
        print(json.dumps(run_pytorch_fid(args.n, args.batch)))
        return
    rows: dict[str, list[dict]] = {"sdekit": [], "pytorch-fid": []}
    for _ in range(args.rounds):
        rows["sdekit"].append(_child(sys.executable, "sdekit", args.n, args.batch))
        if args.torch_python:
            rows["pytorch-fid"].append(_child(args.torch_python, "pytorch-fid", args.n,
                                              args.torch_batch))
    load = os.getloadavg()
    print(f"Inception pool3 features of {args.n} random 32x32 uint8 images; {os.cpu_count()} "
          f"CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {args.rounds} "
          "round(s), min / median / max")
    print(f"{'side':<12} {'batch':>5} {'images/s':>24} {'peak RSS MiB':>22} {'compile s':>10}")
    for side, rs in rows.items():
        if not rs:
            continue
        ips = [r["n"] / r["seconds"] for r in rs]
        rss = [r["peak_rss_mib"] for r in rs]

        def mmm(v, fmt):
            return " / ".join(format(x, fmt) for x in (min(v), statistics.median(v), max(v)))

        comp = statistics.median(r["compile_s"] for r in rs)
        print(f"{side:<12} {rs[0]['batch']:>5} {mmm(ips, '.1f'):>24} {mmm(rss, '.0f'):>22} "
              f"{comp:>10.1f}")


if __name__ == "__main__":
    main()
