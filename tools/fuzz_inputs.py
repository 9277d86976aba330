"""Try many bad inputs across sdekit's public API and classify what each one does.

Not part of CI (a few minutes). Each case is a call with one bad argument; the outcome is

* ``clear``   -- an exception whose message names the argument (or CLI flag) given badly,
* ``unclear`` -- an exception that does not name it,
* ``silent``  -- no exception: the bad value was accepted (NaN, inf or a wrong result later),
* ``hang``    -- no answer within ``--timeout`` seconds (the worker is killed and restarted).

    python tools/fuzz_inputs.py            # prints one line per non-clear case and the counts
    python tools/fuzz_inputs.py --all      # every case

Cases run in a worker process, in order; the parent watches the time of each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import queue
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAN, INF = math.nan, math.inf


def cases():
    """``(label, argument name, thunk)``; the thunk performs the call with the bad input."""
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    import sdekit as sk
    import sdekit.data as sd
    import sdekit.train as st
    from sdekit import objectives as ob
    from sdekit import sampling as sa
    from sdekit.nets import named_net

    out = []

    def add(label, arg, fn):
        out.append((label, arg, fn))

    bad_floats = [NAN, INF, -INF, -1.0]
    # processes
    for name, cls, params in [
        ("VP", sk.VP, ["beta_min", "beta_max", "cosine_s", "t0", "t1"]),
        ("SubVP", sk.SubVP, ["beta_min", "beta_max", "t0", "t1"]),
        ("VE", sk.VE, ["sigma_min", "sigma_max", "t0", "t1"]),
        ("EDM", sk.EDM, ["sigma_min", "sigma_max", "sigma_data"]),
        ("LogSNR", sk.LogSNR, ["logsnr_min", "logsnr_max", "t0", "t1"]),
        ("PSLD", sk.PSLD, ["beta_min", "beta_max", "gamma", "nu", "kappa", "numerical_eps", "t0"]),
    ]:
        for p in params:
            for v in bad_floats:
                if p.startswith("logsnr") and v == -1.0:
                    continue
                add(f"{name}({p}={v})", p, lambda cls=cls, p=p, v=v: cls(**{p: v}))
    add("VP(schedule='cosine', t1=1.0)", "t1", lambda: sk.VP(schedule="cosine", t1=1.0))
    add("VP(schedule='quadratic')", "schedule", lambda: sk.VP(schedule="quadratic"))
    add("VE(sigma_min=10, sigma_max=1)", "sigma", lambda: sk.VE(sigma_min=10.0, sigma_max=1.0))
    add("VP(t0=0.5, t1=0.2)", "t", lambda: sk.VP(t0=0.5, t1=0.2))
    add("LogSNR(schedule='nope')", "schedule", lambda: sk.LogSNR(schedule="nope"))
    # objectives and time samplers
    add("DSM(min_snr_gamma=-1)", "min_snr_gamma",
        lambda: ob.DSM(sk.VP(), weighting="min_snr", min_snr_gamma=-1.0))
    add("DSM(min_snr_gamma=nan)", "min_snr_gamma",
        lambda: ob.DSM(sk.VP(), weighting="min_snr", min_snr_gamma=NAN))
    add("DSM(prediction='bogus')", "prediction", lambda: ob.DSM(sk.VP(), prediction="bogus"))
    add("DSM(weighting='bogus')", "weighting", lambda: ob.DSM(sk.VP(), weighting="bogus"))
    add("DSM(sigma_data=-1)", "sigma_data", lambda: ob.DSM(sk.VP(), sigma_data=-1.0))
    add("DSM(process='VP')", "process", lambda: ob.DSM("VP"))
    for kw in [dict(t_min=-1.0), dict(t_min=0.5, t_max=0.1), dict(t_max=NAN), dict(t_min=INF)]:
        add(f"UniformTime({kw})", next(iter(kw)), lambda kw=kw: ob.UniformTime(**kw))
    add("HSM(VP())", "process", lambda: ob.HSM(sk.VP()))
    # samplers
    for v in [True, 1.5, "5", 0, -3, 2.5]:
        add(f"EulerMaruyama({v!r})", "num_steps", lambda v=v: sa.EulerMaruyama(v))
        add(f"ODE(num_steps={v!r})", "num_steps", lambda v=v: sa.ODE(num_steps=v))
        add(f"DDIM({v!r})", "num_steps", lambda v=v: sa.DDIM(v))
    add("EulerMaruyama(grid='nope')", "grid", lambda: sa.EulerMaruyama(10, grid="nope"))
    add("ODE(solver='nope')", "solver", lambda: sa.ODE(10, solver="nope"))
    for v in [INF, NAN, -0.1, 0.0]:
        add(f"PC(snr={v})", "snr", lambda v=v: sa.PC(10, snr=v))
    add("PC(n_corrector=-1)", "n_corrector", lambda: sa.PC(10, n_corrector=-1))
    for v in [-0.1, 0.0, NAN]:
        add(f"AdaptiveSDE(brownian_tol={v})", "brownian_tol",
            lambda v=v: sa.sample(jr.key(0), sk.VP(), lambda x, t: 0 * x, (4, 2),
                                  method=sa.AdaptiveSDE(brownian_tol=v)))
    for kw in [dict(rtol=-1.0), dict(atol=NAN), dict(max_steps=0)]:
        add(f"AdaptiveODE({kw})", next(iter(kw)), lambda kw=kw: sa.AdaptiveODE(**kw))
    add("DDIM(eta=-1)", "eta", lambda: sa.DDIM(10, eta=-1.0))
    model = lambda x, t: 0 * x  # noqa: E731
    for v in [-0.5, 2.0, NAN]:
        add(f"sample(t_end={v})", "t_end",
            lambda v=v: sa.sample(jr.key(0), sk.VP(), model, (4, 2), method=sa.EulerMaruyama(4),
                                  t_end=v))
    for shape in [(4, 2.7), (4, -2), (0, 2), "4,2"]:
        add(f"sample(shape={shape!r})", "shape",
            lambda shape=shape: sa.sample(jr.key(0), sk.VP(), model, shape,
                                          method=sa.EulerMaruyama(4)))
    add("sample(method='nope')", "method",
        lambda: sa.sample(jr.key(0), sk.VP(), model, (4, 2), method="nope"))
    add("sample(prediction='nope')", "prediction",
        lambda: sa.sample(jr.key(0), sk.VP(), model, (4, 2), prediction="nope"))
    add("sample(key=0)", "key", lambda: sa.sample(0, sk.VP(), model, (4, 2)))
    add("sample(denoise='nope')", "denoise",
        lambda: sa.sample(jr.key(0), sk.VP(), model, (4, 2), denoise="nope"))
    add("ClassifierFreeGuidance(w=nan)", "w",
        lambda: sa.ClassifierFreeGuidance(model, w=NAN))
    # training
    for kw in [dict(lr=NAN), dict(lr=-1.0), dict(lr=0), dict(b1=1.5), dict(b2=-0.1),
               dict(eps=-1.0), dict(clip_norm=-1.0), dict(clip_norm=NAN), dict(accumulate=0),
               dict(accumulate=1.5), dict(warmup_steps=-1), dict(warmup_steps=2.5),
               dict(weight_decay=-1.0), dict(weight_decay=NAN), dict(name="sgd"),
               dict(cosine_decay_steps=0), dict(final_lr=-1.0), dict(b1=NAN)]:
        add(f"make_optimizer({kw})", next(iter(kw)), lambda kw=kw: st.make_optimizer(**kw))
    net = lambda x, t: x  # noqa: E731

    class Loss:
        def __call__(self, model, key, x0, cond=None):
            return jnp.mean(x0**2)

    data = [np.zeros((8, 2), np.float32)] * 4
    for kw in [dict(num_steps=-1), dict(num_steps=2.5), dict(log_every=0),
               dict(checkpoint_every=0, checkpoint_dir=tempfile.mkdtemp()),
               dict(batch_size=0), dict(batch_size=3), dict(mesh="cpu"), dict(key=3),
               dict(ema_decays=(1.5,)), dict(ema_decays=(NAN,)), dict(keep_checkpoints=0,
               checkpoint_dir=tempfile.mkdtemp()), dict(sample_every=5),
               dict(config={"f": object()}), dict(checkpoint_dir=__file__)]:
        kw2 = dict(dict(optimizer=st.make_optimizer(), num_steps=1, key=jr.key(0),
                        progress=False), **kw)
        add(f"fit({kw})", next(iter(kw)), lambda kw2=kw2: st.fit(Loss(), net, data, **kw2))
    add("fit(objective=3)", "objective",
        lambda: st.fit(3, net, data, optimizer=st.make_optimizer(), num_steps=1, key=jr.key(0)))
    add("Checkpointer(every=0)", "every", lambda: st.Checkpointer(tempfile.mkdtemp(), every=0))
    add("Checkpointer(directory=file)", "directory", lambda: st.Checkpointer(__file__))
    add("MetricsLogger(every=0)", "every", lambda: st.MetricsLogger(None, every=0))
    like = st.init_state({"w": jnp.zeros(2)}, st.make_optimizer(), key=jr.key(0))
    add("restore_checkpoint(missing)", "path",
        lambda: st.restore_checkpoint("/nonexistent/ckpt_000000001.eqx", like))
    add("load_model(missing dir)", "path", lambda: st.load_model(tempfile.mkdtemp()))
    add("make_schedule(lr=inf)", "lr", lambda: st.make_schedule(INF))
    add("per_device_batch_size(0)", "batch_size",
        lambda: st.per_device_batch_size(0, st.make_mesh()))
    add("make_mesh([])", "devices", lambda: st.make_mesh([]))
    # data
    imgs = np.random.default_rng(0).integers(0, 256, (16, 4, 4, 3), dtype=np.uint8)
    for kw in [dict(batch_size=0), dict(batch_size=-8), dict(batch_size="8"),
               dict(batch_size=2.5), dict(augment="C8"), dict(value_range="[0,255]"),
               dict(num_epochs=0), dict(seed="a"), dict(input_range=(1, 0)),
               dict(input_range=(0, 10)), dict(num_workers=-1), dict(batch_size=64),
               dict(process_index=2, process_count=2), dict(dequantize=True, value_range=None)]:
        kw2 = dict(dict(batch_size=4), **kw)
        add(f"make_pipeline(uint8, {kw})", next(iter(kw)),
            lambda kw2=kw2: sd.make_pipeline(imgs, **kw2))
    add("make_pipeline(float images)", "input_range",
        lambda: sd.make_pipeline(np.zeros((16, 4, 4, 3), np.float32), batch_size=4))
    add("make_pipeline(source=3)", "source", lambda: sd.make_pipeline(3, batch_size=4))
    add("toy_data(name='x')", "name", lambda: sd.toy_data(0, "x", 10))
    add("toy_data(n=-1)", "n", lambda: sd.toy_data(0, "gaussian", -1))
    add("ArraySource(empty)", "images", lambda: sd.ArraySource(np.zeros((0, 2))))
    add("ArraySource(labels wrong)", "labels",
        lambda: sd.ArraySource(np.zeros((4, 2)), labels=np.zeros(3)))
    add("ImageFolder(root=file)", "root", lambda: sd.ImageFolder(__file__))
    add("ImageFolder(mode='CMYK')", "mode", lambda: sd.ImageFolder(tempfile.mkdtemp(), mode="X"))
    add("load_cifar10(split='valid')", "split", lambda: sd.load_cifar10("valid"))
    add("load_mnist(split='valid')", "split", lambda: sd.load_mnist("valid"))
    add("scale(value_range='[0,255]')", "value_range", lambda: sd.scale(imgs, "[0,255]"))
    add("image_grid(nrow=0)", "nrow", lambda: st.image_grid(np.zeros((4, 4, 4, 3)), nrow=0))
    add("image_grid(value_range=(1,0))", "value_range",
        lambda: st.image_grid(np.zeros((4, 4, 4, 3)), value_range=(1, 0)))
    add("save_image_grid((4, 3))", "images",
        lambda: st.save_image_grid(np.zeros((4, 3)), tempfile.mkdtemp() + "/x.png"))
    # networks
    add("named_net('nope')", "name", lambda: named_net("nope", key=jr.key(0)))
    for kw in [dict(nf=0), dict(ch_mult=()), dict(num_res_blocks=-1), dict(dropout=1.5),
               dict(image_size=7), dict(in_channels=0), dict(resblock_type="x"),
               dict(num_heads=0), dict(compute_dtype="int8")]:
        add(f"named_net('tiny', {kw})", next(iter(kw)),
            lambda kw=kw: named_net("tiny", key=jr.key(0), **kw))
    # the example's command line
    for argv, flag in [
        (["sample", "--batch", "0"], "--batch"), (["sample", "--num", "0"], "--num"),
        (["sample", "--t-end", "-1"], "--t-end"), (["sample", "--steps", "1"], "--steps"),
        (["sample", "--gamma", "0.5"], "--gamma"), (["sample", "--tol", "-1"], "--tol"),
        (["train", "--batch-size", "-16", "--smoke"], "--batch-size"),
        (["train", "--lr", "-1", "--smoke"], "--lr"), (["train", "--ema", "1.5"], "--ema"),
        (["train", "--steps", "0"], "--steps"), (["train", "--net", "nope"], "--net"),
        (["train", "--out", __file__], "--out"), (["sample", "--out", __file__], "--out"),
        (["train", "--warmup", "-1"], "--warmup"), (["train", "--t-eps", "0"], "--t-eps"),
    ]:
        add(f"psld_cifar10.py {' '.join(argv)}", flag, lambda argv=argv: _cli(argv))
    return out


def _cli(argv):
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("ex", ROOT / "examples" / "psld_cifar10.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = mod.main(list(argv))
    except SystemExit as e:
        if e.code in (0, None):
            return None
        text = e.code if isinstance(e.code, str) else err.getvalue().strip().splitlines()[-1]
        raise RuntimeError(text) from e
    return rc


def worker(start: int) -> None:
    import numpy as np

    all_cases = cases()
    print(json.dumps({"total": len(all_cases)}), flush=True)
    for i, (label, arg, fn) in enumerate(all_cases):
        if i < start:
            continue
        print(json.dumps({"start": i, "label": label}), flush=True)
        try:
            res = fn()
            try:
                import jax

                leaves = [np.asarray(x) for x in jax.tree.leaves(res) if hasattr(x, "dtype")]
                leaves = [x for x in leaves if np.issubdtype(x.dtype, np.floating)]
                nonfinite = any(not np.all(np.isfinite(x)) for x in leaves)
            except Exception:  # noqa: BLE001
                nonfinite = False
            outcome, msg = "silent", ("non-finite result" if nonfinite else "accepted")
        except BaseException as e:  # noqa: BLE001
            msg = f"{type(e).__name__}: {e}".replace("\n", " ")[:300]
            names = {arg, arg.lstrip("-").replace("-", "_")}
            outcome = "clear" if any(n and n in msg for n in names) else "unclear"
        print(json.dumps({"i": i, "label": label, "arg": arg, "outcome": outcome, "msg": msg}),
              flush=True)


def _pump(stream, lines: queue.Queue) -> None:
    """Move the worker's output lines into a queue (``None`` at its end)."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case (default 60)")
    ap.add_argument("--all", action="store_true", help="print every case, not only non-clear")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the results to this JSONL file")
    a = ap.parse_args()
    if a.worker is not None:
        worker(a.worker)
        return 0
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    results, start, total = [], 0, None
    t0 = time.time()
    while total is None or start < total:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(start)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        current, current_label, deadline = None, "", time.time() + 300  # start-up: imports
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        reader.start()
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                if time.time() > deadline:
                    proc.kill()
                    proc.wait()
                    if current is None:
                        raise SystemExit("the worker did not start") from None
                    results.append({"i": current, "label": current_label, "arg": "",
                                    "outcome": "hang", "msg": f"no answer in {a.timeout} s"})
                    start = current + 1
                    break
                continue
            if line is None:  # the worker exited
                break
            rec = json.loads(line)
            if "total" in rec:
                total = rec["total"]
            elif "start" in rec:
                current, current_label = rec["start"], rec["label"]
                deadline = time.time() + a.timeout
            else:
                results.append(rec)
                start = rec["i"] + 1
                print(f"[{len(results)}/{total}] {rec['outcome']:8s} {rec['label']}",
                      file=sys.stderr, flush=True)
        proc.wait()
        if current is not None and current >= start:  # the worker died during this case
            results.append({"i": current, "label": current_label, "arg": "",
                            "outcome": "unclear", "msg": f"worker exited ({proc.returncode})"})
            start = current + 1
    counts = {k: 0 for k in ("clear", "unclear", "silent", "hang")}
    for r in results:
        counts[r["outcome"]] += 1
        if a.all or r["outcome"] != "clear":
            print(f"{r['outcome']:8s} {r['label']}: {r['msg']}")
    print(f"\n{len(results)} bad inputs tried in {time.time() - t0:.0f} s: "
          + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if a.json:
        with open(a.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
