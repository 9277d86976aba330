"""Run every benchmark in ``benchmarks/`` and write their tables into one file.

Each benchmark runs in its own process (so that one's memory and XLA flags do not affect the
next: the data-parallel run asks XLA:CPU for 8 simulated devices), one after the other; the
machine line, the load average and the wall time of each run are recorded with its table.

    python benchmarks/run_all.py                 # everything, full size (about an hour on 2 cores)
    python benchmarks/run_all.py --quick         # small sizes, a few minutes on a quiet machine
    python benchmarks/run_all.py --only nets train_overhead --out /tmp/perf.md
    python benchmarks/run_all.py --psld-repo /tmp/PSLD --torch-python /path/to/torch/python

With ``--psld-repo`` (a checkout of the original PSLD code) the PyTorch reference rows are
timed too, first, by ``pytorch_reference.py`` under ``--torch-python`` (an interpreter with
torch; sdekit does not depend on it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent

# name -> (script, full-size arguments, --quick arguments)
BENCHMARKS = {
    "nets": ("nets.py", [], ["--quick"]),
    "train_overhead": ("train_overhead.py", [], ["--quick"]),
    "data_parallel": (
        "train_overhead.py",
        ["--net", "tiny", "--batch", "32", "--devices", "1", "2", "4", "8"],
        ["--net", "mlp", "--batch", "16", "--steps", "3", "--devices", "1", "2", "4", "8"],
    ),
    "sampler_unet": ("sampler_unet.py", [], ["--quick"]),
    "sampler_overhead": (
        "sampler_overhead.py",
        [],
        ["--batch", "64", "--steps", "50", "--repeats", "2"],
    ),
    "nfe_vs_error": (
        "nfe_vs_error.py",
        [],
        ["--n", "512", "--steps", "10", "50", "--tols", "1e-2"],
    ),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test of all)")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help="run only these: " + ", ".join(BENCHMARKS),
    )
    ap.add_argument(
        "--out",
        default=None,
        help="output file (default: benchmarks/results_all[_quick].md)",
    )
    ap.add_argument(
        "--timeout", type=float, default=7200, help="seconds allowed per benchmark (7200)"
    )
    ap.add_argument(
        "--psld-repo", default=None,
        help="checkout of https://github.com/mandt-lab/PSLD: also time the PyTorch original "
        "(pytorch_reference.py) on this machine",
    )
    ap.add_argument(
        "--torch-python", default=sys.executable,
        help="Python interpreter with torch installed, for --psld-repo (default: this one)",
    )
    a = ap.parse_args(argv)
    out = pathlib.Path(a.out or HERE / ("results_all_quick.md" if a.quick else "results_all.md"))
    names = a.only or list(BENCHMARKS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent), str(HERE), env.get("PYTHONPATH", "")) if p
    )
    parts = [
        f"# sdekit benchmarks ({'quick' if a.quick else 'full'})",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with "
        f"`python benchmarks/run_all.py{' --quick' if a.quick else ''}`. Times are wall seconds "
        "unless marked; the load average (other jobs on the machine) is printed with each table.",
    ]
    failures = 0
    jobs = [(n, *BENCHMARKS[n], sys.executable) for n in names]
    if a.psld_repo:
        rows = ["--rows", "fwd_b8", "step_small_b32", "--repeats", "2"] if a.quick else []
        ref = ["--psld-repo", a.psld_repo, *rows]
        jobs.insert(0, ("pytorch_reference", "pytorch_reference.py", ref, ref, a.torch_python))
    for name, script, full, quick, python in jobs:
        cmd = [python, str(HERE / script), *(quick if a.quick else full)]
        print(f"# {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=a.timeout, cwd=HERE.parent
            )
            body, rc = proc.stdout.strip(), proc.returncode
            err = proc.stderr.strip().splitlines()[-5:]
        except subprocess.TimeoutExpired as e:
            body, rc, err = (e.stdout or b"").decode(errors="replace"), "timeout", []
        dt = time.perf_counter() - t0
        parts += ["", f"## {name}", "", f"`{script} {' '.join(cmd[2:])}`: {dt:.0f} s", ""]
        parts += ["```text", body or "(no output)", "```"]
        if rc != 0:
            failures += 1
            parts += ["", f"exit status {rc}; last lines of stderr:", "", "```text", *err, "```"]
        print(f"# {name}: {dt:.0f} s, exit {rc}", file=sys.stderr, flush=True)
        out.write_text("\n".join(parts) + "\n")  # after each benchmark: partial results survive
    print(out.read_text())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
