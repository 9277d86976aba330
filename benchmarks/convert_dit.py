"""Converting an XL-sized SiT checkpoint (SiT-XL/2: 675,129,632 numbers, 2.7 GB in float32):
wall time and the converting process's peak resident memory.

The checkpoint is written first, in a separate process, with sdekit's torch-free writer
(``sdekit.io.save_torch``; random weights, SiT's fixed position table, the names and shapes of
the original's ``state_dict()``), exactly as ``torch.save(model.state_dict(), path)`` lays it
out. A fresh process then runs the conversion and reports

- ``from_torch``: ``sdekit.nets.from_torch(path, "sit_dit", preset=...)``, timed as its two
  steps: reading the file (restricted unpickler, every offset checked; names and shapes
  matched) and mapping the tensors onto the sdekit ``DiT``;
- ``save``: writing it once in sdekit's own checkpoint format
  (``sdekit.train.save_checkpoint`` of a state with no optimiser moments and no EMA copy,
  with the ``named_net`` spec that ``sdekit.train.load_model`` rebuilds it from);
- peak resident memory (``VmHWM``: everything in the process, Python, JAX, the file's tensors
  and the network) after reading, after mapping (the end of ``from_torch``) and at the end
  (``ru_maxrss``, including the save), against the checkpoint's size (target: under 2x).

One of the loaded tensors is compared with the file's values (``to_torch_state_dict``) so the
timing is of a correct conversion.

    python benchmarks/convert_dit.py                       # SiT-XL/2, a temporary folder
    python benchmarks/convert_dit.py --preset ComboStoc-XL/2 --dir /tmp/convert --keep
    python benchmarks/convert_dit.py --preset ComboStoc-XL/2 --dir /tmp/convert --reuse
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

MAKE = r"""
import sys, numpy as np
from sdekit.io import save_torch
from sdekit.nets import TORCH_ARCHS
from sdekit.nets._dit import sincos_pos_embed_2d
arch = TORCH_ARCHS["sit_dit"]
cfg = arch.config(sys.argv[2])
rng = np.random.default_rng(0)
state = {}
for s in arch.names_and_shapes(cfg):
    if s.name == "pos_embed":
        g = cfg["input_size"] // cfg["patch_size"]
        state[s.name] = sincos_pos_embed_2d(cfg["hidden_size"], g, g)[None]
    else:
        state[s.name] = (0.02 * rng.standard_normal(s.shape, dtype=np.float32))
save_torch(sys.argv[1], state)
print(sum(a.size for a in state.values()))
"""

CONVERT = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import jax, jax.random as jr, numpy as np, optax
import sdekit as sk
from sdekit.nets import TORCH_ARCHS
from sdekit.nets._torch import load_torch_weights
from sdekit.train import init_state, model_config, save_checkpoint
t_import = time.perf_counter() - t0

def mem():  # (current, peak) resident set size in bytes
    d = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    return int(d["VmRSS"].split()[0]) * 1024, int(d["VmHWM"].split()[0]) * 1024

path, preset, out = sys.argv[1], sys.argv[2], sys.argv[3]
arch = TORCH_ARCHS["sit_dit"]
# from_torch(path, "sit_dit", preset=preset) is exactly these two calls:
t0 = time.perf_counter()
state, cfg, _ = load_torch_weights(path, "sit_dit", preset=preset)  # read, pick, check names
t_read = time.perf_counter() - t0
m_read = mem()
t0 = time.perf_counter()
net = arch.to_sdekit(state, cfg)  # the layout changes and the sdekit DiT
del state
jax.block_until_ready(jax.tree.leaves(net))
t_map = time.perf_counter() - t0
m_map = mem()
t0 = time.perf_counter()
name, kwargs = arch.net_spec(cfg)
st = init_state(net, optax.identity(), key=jr.key(0), ema_decays=())
ckpt = save_checkpoint(out, st, config={"model": model_config(name, **kwargs)})
t_save = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
w = np.asarray(net.blocks[3].qkv.weight).T  # spot check, in the original's layout
print(json.dumps({"import_s": t_import, "read_s": t_read, "map_s": t_map, "save_s": t_save,
                  "rss_read": m_read, "rss_map": m_map, "peak_rss": rss, "ckpt": str(ckpt),
                  "ckpt_bytes": os.path.getsize(ckpt), "qkv3": w[:2, :3].tolist()}))
"""

CHECK = r"""
import json, sys, numpy as np
from sdekit.io import load_torch
w = load_torch(sys.argv[1])["blocks.3.attn.qkv.weight"]
print(json.dumps(w[:2, :3].tolist()))
"""


def _run(code: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        raise SystemExit(f"subprocess failed:\n{r.stderr[-3000:]}")
    return r.stdout.strip().splitlines()[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="SiT-XL/2", help="a preset of arch 'sit_dit'")
    ap.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the written files")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse <dir>/sit.pt from an earlier --keep run of the same preset")
    ap.add_argument("--rounds", type=int, default=1, help="conversions to time (fresh process "
                                                          "each)")
    args = ap.parse_args(argv)
    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="sdekit_convert_")
        work = pathlib.Path(tmp.name)
    else:
        work = pathlib.Path(args.dir)
        work.mkdir(parents=True, exist_ok=True)
    src = work / "sit.pt"
    try:
        if args.reuse and src.is_file():
            size = src.stat().st_size
            print(f"reusing {src.name}: {size / 1e9:.3f} GB")
        else:
            t0 = time.perf_counter()
            numel = int(_run(MAKE, str(src), args.preset))
            size = src.stat().st_size
            print(f"wrote {src.name}: {numel:,} numbers, {size / 1e9:.3f} GB "
                  f"({time.perf_counter() - t0:.1f} s, sdekit.io.save_torch)")
        want = json.loads(_run(CHECK, str(src)))
        rows = []
        for i in range(args.rounds):
            r = json.loads(_run(CONVERT, str(src), args.preset, str(work / f"sdekit_{i}")))
            ok = r["qkv3"] == want
            rows.append(r)
            g = 1e9
            print(f"{args.preset:<15} from_torch {r['read_s'] + r['map_s']:5.1f} s (read "
                  f"{r['read_s']:4.1f} s, map {r['map_s']:4.1f} s); peak RSS after reading "
                  f"{r['rss_read'][1] / g:4.2f} GB ({r['rss_read'][1] / size:4.2f} x file), "
                  f"after mapping {r['rss_map'][1] / g:4.2f} GB ({r['rss_map'][1] / size:4.2f} x,"
                  f" current {r['rss_map'][0] / g:4.2f} GB); save_checkpoint {r['save_s']:4.1f} s,"
                  f" whole-process peak {r['peak_rss'] / g:4.2f} GB "
                  f"({r['peak_rss'] / size:4.2f} x); imports {r['import_s']:.1f} s; "
                  f"values match: {ok}")
            if not ok:
                raise SystemExit("the converted weights differ from the file's")
    finally:
        if not args.keep:
            for p in sorted(work.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            if tmp is not None:
                tmp.cleanup()
            elif args.dir is not None and not any(work.iterdir()):
                os.rmdir(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
