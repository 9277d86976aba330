"""Converting an XL-sized SiT checkpoint (SiT-XL/2: 675,129,632 numbers, 2.7 GB in float32):
wall time and the converting process's peak resident memory.

The checkpoint is written first, in a separate process, with sdekit's torch-free writer
(``sdekit.io.save_torch``; random weights, SiT's fixed position table, the names and shapes of
the original's ``state_dict()``), exactly as ``torch.save(model.state_dict(), path)`` lays it
out. A fresh process then runs the conversion and reports

- ``from_torch``: reading the file (restricted unpickler, every offset checked) and building
  the sdekit ``DiT`` (``sdekit.nets.from_torch(path, "sit_dit", preset=...)``);
- ``save``: writing it once in sdekit's own checkpoint format
  (``sdekit.train.save_checkpoint`` of a state with no optimiser moments and no EMA copy,
  with the ``named_net`` spec that ``sdekit.train.load_model`` rebuilds it from);
- ``peak RSS``: the converting process's ``ru_maxrss`` (everything: Python, JAX, the file's
  tensors and the network), against the checkpoint's size (target: under 2x).

One of the loaded tensors is compared with the file's values (``to_torch_state_dict``) so the
timing is of a correct conversion.

    python benchmarks/convert_dit.py                       # SiT-XL/2, a temporary folder
    python benchmarks/convert_dit.py --preset ComboStoc-XL/2 --dir /tmp/convert --keep
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
from sdekit.nets import TORCH_ARCHS, from_torch, to_torch_state_dict
from sdekit.train import init_state, model_config, save_checkpoint
t_import = time.perf_counter() - t0
path, preset, out = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
net = from_torch(path, "sit_dit", preset=preset)
jax.block_until_ready(jax.tree.leaves(net))
t_load = time.perf_counter() - t0
rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
arch = TORCH_ARCHS["sit_dit"]
name, kwargs = arch.net_spec(arch.config(preset))
state = init_state(net, optax.identity(), key=jr.key(0), ema_decays=())
ckpt = save_checkpoint(out, state, config={"model": model_config(name, **kwargs)})
t_save = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
# correctness spot check: one block's qkv weight back in the original layout
w = np.asarray(net.blocks[3].qkv.weight).T
print(json.dumps({"import_s": t_import, "from_torch_s": t_load, "save_s": t_save,
                  "peak_rss": rss, "peak_rss_load": rss_load, "ckpt": str(ckpt),
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
            print(f"{args.preset:<16} from_torch {r['from_torch_s']:6.1f} s   save "
                  f"{r['save_s']:5.1f} s   peak RSS {r['peak_rss'] / 1e9:5.2f} GB "
                  f"(after from_torch {r['peak_rss_load'] / 1e9:5.2f} GB) "
                  f"= {r['peak_rss'] / size:4.2f} x file   (imports {r['import_s']:.1f} s, "
                  f"sdekit checkpoint {r['ckpt_bytes'] / 1e9:.3f} GB, values match: {ok})")
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
