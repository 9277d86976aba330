"""Write steerable C4/D4 kernel bases to a small ``.npz`` file that sdekit's ``SteerableConv``
expands at run time (sdekit itself never imports escnn).

escnn cannot sit in sdekit's environment (its dependency lie-learn pins numpy < 2, which pins
JAX to 0.6, and it pulls in torch and needs a Fortran compiler for py3nj), so this script runs
in its OWN virtual environment:

    python3.11 -m venv ~/.venvs/escnn            # any path outside the repository
    . ~/.venvs/escnn/bin/activate
    sudo apt-get install -y gfortran              # py3nj is built from source
    pip install "numpy<2" torch escnn             # torch: the CPU wheel is enough
    python tools/escnn_bases.py --out escnn_bases_k3.npz --kernel-size 3

Then, in sdekit's environment: ``SteerableConv(..., basis="escnn_bases_k3.npz")``.

``--source reynolds`` needs no escnn: it writes the exact orthonormal basis of the *whole*
equivariant filter space (orbit indicators of the Reynolds projection; numpy only, plus
sdekit on the path). sdekit ships both: ``sdekit/nets/equivariant/escnn_bases_k3.npz`` was
written by this script with escnn 1.0.11 (torch 2.13.0 CPU, numpy 1.26.4, gfortran from
Debian) and is ``SteerableConv(..., basis="escnn")``; the default
``sdekit/nets/equivariant/steerable_bases_k3.npz`` was written with:

    PYTHONPATH=. python tools/escnn_bases.py --source reynolds \
        --out sdekit/nets/equivariant/steerable_bases_k3.npz

File layout: one array per ``{group}_{in_rep}_{out_rep}_k{k}`` (e.g. ``D4_regular_regular_k3``)
of shape ``(D, |out|, |in|, k, k)`` (escnn's OIHW layout for one field pair, element order
``(+, r=0..3), (-, r=0..3)``: flip left-right, then ``numpy.rot90(k=r)``), and ``meta``, a
JSON string (source, versions, conventions).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

PAIRS = (("trivial", "regular"), ("regular", "regular"), ("trivial", "trivial"))


def _escnn_bases(groups, k):
    import escnn  # noqa: F401  (only in the tool environment)
    import torch
    from escnn import gspaces
    from escnn import nn as enn

    out = {}
    for name in groups:
        gs = gspaces.rot2dOnR2(N=4) if name == "C4" else gspaces.flipRot2dOnR2(N=4)
        reps = {"trivial": gs.trivial_repr, "regular": gs.regular_repr}
        for in_rep, out_rep in PAIRS:
            conv = enn.R2Conv(enn.FieldType(gs, [reps[in_rep]]), enn.FieldType(gs, [reps[out_rep]]),
                              kernel_size=k, padding=k // 2)
            d = conv.basisexpansion.dimension()
            with torch.no_grad():
                eye = torch.eye(d)
                b = torch.stack([conv.basisexpansion(eye[i]) for i in range(d)])
            b = b.reshape(d, b.shape[1], b.shape[2], k, k)
            out[f"{name}_{in_rep}_{out_rep}_k{k}"] = b.numpy()
    meta = dict(source="escnn R2Conv basisexpansion (default rings/sigma/frequency cutoff)",
                escnn=escnn.__version__, torch=torch.__version__, numpy=np.__version__)
    return out, meta


def _reynolds_bases(groups, k):
    from sdekit.nets.equivariant import reynolds_basis

    out = {f"{g}_{i}_{o}_k{k}": reynolds_basis(g, i, o, k) for g in groups for i, o in PAIRS}
    meta = dict(
        source="sdekit reynolds_basis: exact orthonormal basis of the whole equivariant filter "
               "space (orbit indicators / sqrt(orbit size)); NOT escnn's band-limited basis, which "
               "spans a subspace of this one (spec equivariant_layers.md section 6)",
        numpy=np.__version__,
    )
    return out, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", required=True, help="output .npz file")
    ap.add_argument("--kernel-size", type=int, default=3, help="odd kernel size")
    ap.add_argument("--groups", nargs="+", default=["C4", "D4"], choices=["C4", "D4"],
                    help="groups to export")
    ap.add_argument("--source", choices=["escnn", "reynolds"], default="escnn",
                    help="escnn (needs the escnn venv) or reynolds (exact, numpy + sdekit)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                    help="stored dtype")
    args = ap.parse_args(argv)
    if args.kernel_size % 2 != 1:
        ap.error(f"--kernel-size: got {args.kernel_size}, expected an odd size")
    make = _escnn_bases if args.source == "escnn" else _reynolds_bases
    bases, meta = make(args.groups, args.kernel_size)
    meta.update(
        layout="(D, |out|, |in|, k, k); element (m, r) = flip left-right m times, then rot90 r "
               "times on (H, W); regular channel h of a field = group element h",
        kernel_size=args.kernel_size, python=sys.version.split()[0],
        dims={k: int(v.shape[0]) for k, v in bases.items()},
    )
    arrays = {k: v.astype(args.dtype) for k, v in bases.items()}
    np.savez_compressed(args.out, meta=np.asarray(json.dumps(meta)), **arrays)
    for k, v in arrays.items():
        print(f"{k}: {v.shape}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
