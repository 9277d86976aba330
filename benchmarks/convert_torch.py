"""Converting an XL-sized (about 675 M parameters) PyTorch checkpoint with ``from_torch``.

Issue 20's target: under 60 s and under twice the file's size in memory (whole-process peak
resident set size) on the project's CPU machine. Each conversion runs in a fresh process, so
the figure is what a user's process pays: ``import sdekit``, reading the file with the
restricted unpickler, the layout conversions and the sdekit network's arrays.

The input is written with sdekit's own torch-free writer (``sdekit.io.save_torch``), so no
torch is needed: random float32 weights with exactly the state-dict names and shapes of the
chosen arch and configuration (default: PSLD's NCSN++ ``cifar10`` preset widened to
``nf=320, num_res_blocks=9``, 673,858,566 parameters, a UNet of DiT-XL/2's size (675 M); or
SiT-XL/2 itself, ``--arch sit_dit --preset SiT-XL/2``, 675,129,632 numbers).

Examples::

    python benchmarks/convert_torch.py                      # write /tmp file, convert 3 times
    python benchmarks/convert_torch.py --file big.pth --repeat 1 --keep
    python benchmarks/convert_torch.py --arch psld_ncsnpp --preset cifar10   # 97.6 M
    python benchmarks/convert_torch.py --arch sit_dit --preset SiT-XL/2      # 675.1 M

Prints one table row per conversion and appends them to ``benchmarks/results_convert_torch.txt``
(with ``--record``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))

_CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import jax, numpy as np
import sdekit.nets as sn
t1 = time.perf_counter()


def hwm():  # peak resident set size of this process image (reset by exec, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


rss_import = hwm()
args = json.loads(sys.argv[1])
net = sn.from_torch(args["file"], args["arch"], preset=args["preset"], **args["config"])
leaves = jax.tree.leaves(net)
jax.block_until_ready(leaves)
t2 = time.perf_counter()
n = sum(int(x.size) for x in leaves if hasattr(x, "size"))
print(json.dumps({"import_s": t1 - t0, "convert_s": t2 - t1, "params": n,
                  "rss_import": rss_import, "rss_peak": hwm()}))
"""


def write_file(path: str, arch: str, preset: str | None, config: dict, seed: int) -> int:
    """Random float32 weights with the arch's exact names and shapes, written by sdekit's
    torch-free writer. Returns the number of parameters."""
    import numpy as np

    from sdekit.io import save_torch
    from sdekit.nets import TORCH_ARCHS

    a = TORCH_ARCHS[arch]
    cfg = a.config(preset, **config)
    # frozen tables the arch recomputes from the configuration and checks on loading (SiT's
    # sine-cosine positions): the values the original stores
    fixed = {}
    for rule in a.rules(cfg) if hasattr(a, "rules") else ():
        if not inspect.signature(rule.to_torch).parameters:  # made from nothing
            fixed.update(zip(rule.names, rule.to_torch(), strict=True))
    rng = np.random.default_rng(seed)
    state = {}
    total = 0
    for spec in a.names_and_shapes(cfg):
        if spec.kind == "buffer":
            continue
        if spec.name in fixed:
            state[spec.name] = np.asarray(fixed[spec.name], np.float32)
        else:
            state[spec.name] = (rng.standard_normal(spec.shape, dtype=np.float32) * 0.02)
        total += int(np.prod(spec.shape))
    save_torch(path, state)
    return total


def convert_once(path: str, arch: str, preset: str | None, config: dict,
                 mmap_threshold: int | None = None) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if mmap_threshold is not None:  # glibc: keep large buffers in mmap (returned when freed)
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(dict(file=path, arch=arch, preset=preset,
                                                       config=config))],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="psld_ncsnpp")
    ap.add_argument("--preset", default="cifar10")
    ap.add_argument("--config", default=None,
                    help='JSON configuration overrides (default for psld_ncsnpp/cifar10: '
                         '{"nf": 320, "num_res_blocks": 9})')
    ap.add_argument("--file", default="/tmp/sdekit_convert_bench.pth")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the file afterwards")
    ap.add_argument("--mmap-threshold", type=int, default=None,
                    help="set glibc's MALLOC_MMAP_THRESHOLD_ (bytes) in the converting process "
                         "(fixed threshold: freed large buffers go back to the system)")
    ap.add_argument("--record", action="store_true",
                    help="append the rows to benchmarks/results_convert_torch.txt")
    args = ap.parse_args(argv)
    if args.config is not None:
        config = json.loads(args.config)
    elif args.arch == "psld_ncsnpp" and args.preset == "cifar10":
        config = {"nf": 320, "num_res_blocks": 9}
    else:
        config = {}
    t = time.perf_counter()
    if not os.path.exists(args.file):  # in a child process: this one stays small
        code = ("import json, sys; sys.path.insert(0, %r); import convert_torch as c; "
                "a = json.loads(sys.argv[1]); "
                "print(c.write_file(a['file'], a['arch'], a['preset'], a['config'], 0))" % _HERE)
        out = subprocess.run([sys.executable, "-c", code, json.dumps(dict(
            file=args.file, arch=args.arch, preset=args.preset, config=config))],
            check=True, capture_output=True, text=True)
        n = int(out.stdout.strip().splitlines()[-1])
        print(f"wrote {args.file}: {n:,} parameters in {time.perf_counter() - t:.1f} s")
    size = os.path.getsize(args.file)
    load = os.getloadavg()[0]
    head = (f"sdekit.nets.from_torch | {args.arch} preset={args.preset} config={json.dumps(config)}"
            f" | file {size / 2**30:.2f} GiB (sdekit.io.save_torch, float32) | "
            f"{platform.machine()}, {os.cpu_count()} cores | MALLOC_MMAP_THRESHOLD_="
            f"{args.mmap_threshold or 'unset'} | load average {load:.1f}")
    rows = [head, "",
            "| run | params | import s | convert s | peak RSS GiB | after import GiB |"
            " peak / file |",
            "|-----|--------|----------|-----------|--------------|------------------|"
            "-------------|"]
    for i in range(args.repeat):
        r = convert_once(args.file, args.arch, args.preset, config, args.mmap_threshold)
        rows.append(f"| {i + 1} | {r['params']:,} | {r['import_s']:.1f} | {r['convert_s']:.1f} |"
                    f" {r['rss_peak'] / 2**30:.2f} | {r['rss_import'] / 2**30:.2f} |"
                    f" {r['rss_peak'] / size:.2f} |")
        print(rows[-1], flush=True)
    rows.append(f"(load average after: {os.getloadavg()[0]:.1f})")
    text = "\n".join(rows)
    print(text)
    if args.record:
        with open(os.path.join(_HERE, "results_convert_torch.txt"), "a") as f:
            f.write(text + "\n\n")
    if not args.keep:
        os.remove(args.file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
