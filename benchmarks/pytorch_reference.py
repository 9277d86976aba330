"""Time the original PSLD PyTorch network on this machine: issue 14's reference column.

sdekit does not depend on torch; this script is for re-measuring the reference side by side
with ``benchmarks/nets.py`` and ``benchmarks/train_overhead.py`` on the same machine. It needs
``torch`` (CPU build) and a checkout of the original code (https://github.com/mandt-lab/PSLD)::

    pip install torch            # in a separate environment is fine
    git clone https://github.com/mandt-lab/PSLD /tmp/PSLD
    python benchmarks/pytorch_reference.py --psld-repo /tmp/PSLD            # all rows
    python benchmarks/pytorch_reference.py --psld-repo /tmp/PSLD --rows fwd_b8 --repeats 5

It imports the checkout's NCSN++ (``main/models/score_fn/song_sde``) unchanged. Its ``op``
package builds CUDA extensions at import time; the script makes that build a no-op, which
is safe on CPU because the original code calls its pure-PyTorch ``upfirdn2d_native`` for CPU
tensors and NCSN++ does not use the fused activation. The configurations are the PSLD
CIFAR-10 SOTA network (``scripts_psld/sota/uncond/cifar10/train_uncond_psld.sh``: nf 128,
ch_mult 2,2,2, 8 res blocks, FIR, Fourier embedding, residual input pyramid; 97,627,910
parameters) and issue 14's small network (nf 64, ch_mult 1,2,2, 2 res blocks; 7,087,174).

Rows (``fwdbwd_b2`` and ``fwdbwd_small_b32``, the bare forward+backward at the step rows'
batches, only when asked for with ``--rows``), as in issue 14: ``fwd_b8`` (forward, eval mode, no grad), ``fwdbwd_b8`` (forward +
backward of a mean-squared loss, train mode, dropout on), ``step_b2`` and ``step_small_b32``
(a full step: zero grad, forward, backward, ``clip_grad_norm_(1.0)``, Adam, and an EMA update
with ``torch._foreach_lerp_``, as the original trains with EMA). Memory: the peak RSS above the
RSS with the network and inputs built, before the first call (Linux: the peak mark is reset
per row). Each row runs in its own process. Threads: torch's default (all cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

ROWS = {
    # row: (net, what, batch)
    "fwd_b8": ("big", "fwd", 8),
    "fwdbwd_b8": ("big", "fwdbwd", 8),
    "step_b2": ("big", "step", 2),
    "step_small_b32": ("small", "step", 32),
    # not issue rows (opt-in with --rows): the bare forward+backward at the step rows' batches,
    # for PyTorch's own step / forward+backward ratio (train_overhead.py's "ratio" column)
    "fwdbwd_b2": ("big", "fwdbwd", 2),
    "fwdbwd_small_b32": ("small", "fwdbwd", 32),
}
ISSUE_ROWS = ["fwd_b8", "fwdbwd_b8", "step_b2", "step_small_b32"]


def _config(net: str) -> SimpleNamespace:
    sf = dict(
        in_ch=6, out_ch=6, nonlinearity="swish", nf=128, ch_mult=[2, 2, 2], num_res_blocks=8,
        attn_resolutions=[16], dropout=0.15, resamp_with_conv=True, noise_cond=True, fir=True,
        fir_kernel=[1, 3, 3, 1], skip_rescale=True, resblock_type="biggan", progressive="none",
        progressive_input="residual", progressive_combine="sum", embedding_type="fourier",
        init_scale=0.0, fourier_scale=16,
    )  # fmt: skip
    if net == "small":
        sf.update(nf=64, ch_mult=[1, 2, 2], num_res_blocks=2)
    return SimpleNamespace(
        model=SimpleNamespace(score_fn=SimpleNamespace(**sf)),
        data=SimpleNamespace(image_size=32, num_channels=3, norm=True),
        training=SimpleNamespace(continuous=True),
    )


def _status_gib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    raise KeyError(field)


def _import_ncsnpp(repo: str):
    import types

    import torch.utils.cpp_extension as ext

    ext.load = lambda *a, **k: None  # the CUDA ops are not used on CPU (see the docstring)
    sys.modules.setdefault("util", types.ModuleType("util"))
    sys.modules["util"].register_module = lambda category=None, name=None: (lambda cls: cls)
    sys.path.insert(0, os.path.join(repo, "main", "models", "score_fn"))
    from song_sde.ncsnpp import NCSNpp

    return NCSNpp


def run_row(repo: str, row: str, repeats: int) -> dict:
    import torch

    net_name, what, batch = ROWS[row]
    ncsnpp = _import_ncsnpp(repo)
    torch.manual_seed(0)
    net = ncsnpp(_config(net_name))
    params = list(net.parameters())
    x = torch.randn(batch, 6, 32, 32)
    t = torch.rand(batch) * 0.99 + 1e-5
    opt = torch.optim.Adam(params, lr=2e-4)
    ema = [p.detach().clone() for p in params]

    def call():
        if what == "fwd":
            net.eval()
            with torch.no_grad():
                return net(x, t)
        net.train()
        loss = (net(x, t) ** 2).mean()
        if what == "fwdbwd":
            net.zero_grad(set_to_none=True)
            loss.backward()
            return loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1 - 0.9999)
        return loss.item()

    linux = os.path.exists("/proc/self/clear_refs")
    if linux:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss0 = _status_gib("VmRSS")
    call()  # warm-up (oneDNN primitive caches, allocator)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return dict(
        row=row, net=net_name, what=what, batch=batch,
        params=sum(p.numel() for p in params),
        min=min(walls), med=statistics.median(walls), max=max(walls),
        cpu=statistics.median(cpus), threads=torch.get_num_threads(), torch=torch.__version__,
        rss_gib=(_status_gib("VmHWM") - rss0) if linux else None,
        load=os.getloadavg()[0],
    )  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Time the original PSLD PyTorch network (issue 14's reference column) on "
        "this machine, one process per row, and print a table."
    )
    ap.add_argument("--psld-repo", required=True,
                    help="path to a checkout of https://github.com/mandt-lab/PSLD")
    ap.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=ISSUE_ROWS,
                    metavar="ROW", help="rows to time: " + ", ".join(ROWS) + " (default: "
                    + ", ".join(ISSUE_ROWS) + ", issue 14's rows)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per row (default: 5)")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._child:
        print(json.dumps(run_row(a.psld_repo, a._child, a.repeats)))
        return 0
    if not os.path.isdir(os.path.join(a.psld_repo, "main", "models", "score_fn", "song_sde")):
        ap.error(f"--psld-repo {a.psld_repo!r}: expected a checkout of mandt-lab/PSLD "
                 "(with main/models/score_fn/song_sde)")
    results = []
    for row in a.rows:
        out = subprocess.run(
            [sys.executable, __file__, "--psld-repo", a.psld_repo, "--repeats", str(a.repeats),
             "--_child", row], capture_output=True, text=True, check=True,
        )  # fmt: skip
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"# done {row}", file=sys.stderr, flush=True)
    r0 = results[0]
    lines = [
        f"PSLD original (PyTorch {r0['torch']}, CPU, {r0['threads']} threads), float32",
        "",
        "| row | net | params | batch | what | wall s min/med/max | CPU s | peak RSS above "
        "built net (GiB) | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rss = "n/a" if r["rss_gib"] is None else f"{r['rss_gib']:.2f}"
        lines.append(
            f"| {r['row']} | {r['net']} | {r['params']:,} | {r['batch']} | {r['what']} | "
            f"{r['min']:.3f}/{r['med']:.3f}/{r['max']:.3f} | {r['cpu']:.2f} | {rss} | "
            f"{r['load']:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
