"""Tests for sdekit.train: optimiser, EMA, sharding, checkpoints, failure handling, resume."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from PIL import Image

import sdekit.train as st

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from ._train_models import LinearDSM, TinyMLP
except ImportError:
    from _train_models import LinearDSM, TinyMLP

HERE = pathlib.Path(__file__).resolve().parent
POINTS = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)


def batches(batch_size=16, nan_at=None):
    i = 0
    while True:
        start = (i * batch_size) % len(POINTS)
        x = POINTS[start : start + batch_size].copy()
        if i == nan_at:
            x[0, 0] = np.nan
        yield {"image": x}
        i += 1


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


# ----------------------------------------------------------------------------- optimiser / EMA


def test_schedule_warmup_starts_at_zero_and_cosine():
    s = st.make_schedule(2e-4, warmup_steps=5000)
    np.testing.assert_allclose(
        [float(s(0)), float(s(2500)), float(s(5000)), float(s(10**6))],
        [0, 1e-4, 2e-4, 2e-4],
        rtol=1e-6,
    )
    c = st.make_schedule(1.0, warmup_steps=10, cosine_decay_steps=100)
    np.testing.assert_allclose(
        [float(c(10)), float(c(60)), float(c(110)), float(c(500))], [1.0, 0.5, 0.0, 0.0], atol=1e-6
    )


def test_make_optimizer_first_update_is_zero_and_clipped():
    params = {"w": jnp.ones(3)}
    opt = st.make_optimizer("adam", 1e-1, warmup_steps=10, clip_norm=1.0)
    state = opt.init(params)
    upd, state = opt.update({"w": jnp.full(3, 100.0)}, state, params)
    assert np.all(np.asarray(upd["w"]) == 0.0)  # lr = 0 on the first update (PSLD recipe)
    assert float(st.current_lr(state)) == 0.0
    upd, state = opt.update({"w": jnp.full(3, 100.0)}, state, params)
    assert float(st.current_lr(state)) == pytest.approx(0.01)
    # clipped gradient norm 1 -> adam step magnitude ~ lr
    assert np.all(np.abs(np.asarray(upd["w"])) <= 0.0101)
    for name in ("adamw", "radam"):
        o = st.make_optimizer(name, 1e-3, weight_decay=0.1)
        o.update(params, o.init(params), params)


def test_make_optimizer_errors_name_the_argument():
    with pytest.raises(ValueError, match="`name`.*'sgd'"):
        st.make_optimizer("sgd")
    with pytest.raises(ValueError, match="`lr`"):
        st.make_optimizer("adam", lr=-1.0)
    with pytest.raises(ValueError, match="`accumulate`"):
        st.make_optimizer("adam", accumulate=0)
    with pytest.raises(ValueError, match="`warmup_steps`"):
        st.make_optimizer("adam", warmup_steps=-3)


def test_accumulation_applies_mean_every_k_and_ema_follows():
    params = {"w": jnp.zeros(2)}
    opt = st.make_optimizer("adam", 1e-1, clip_norm=None, accumulate=2)
    plain = st.make_optimizer("adam", 1e-1, clip_norm=None)
    s, sp = opt.init(params), plain.init(params)
    g1, g2 = {"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([3.0, 0.0])}
    u1, s = opt.update(g1, s, params)
    assert not bool(st.has_updated(s)) and np.all(np.asarray(u1["w"]) == 0)
    u2, s = opt.update(g2, s, params)
    ref, _ = plain.update({"w": (g1["w"] + g2["w"]) / 2}, sp, params)
    np.testing.assert_allclose(np.asarray(u2["w"]), np.asarray(ref["w"]), rtol=1e-6)
    assert bool(st.has_updated(s))


def test_ema_decay_and_warmup():
    assert float(st.ema_decay_at(0.9999, 1, warmup=False)) == pytest.approx(0.9999)
    assert float(st.ema_decay_at(0.9999, 1, warmup=True)) == pytest.approx(2 / 11)
    assert float(st.ema_decay_at(0.9999, 10**7, warmup=True)) == pytest.approx(0.9999)
    ema = st.ema_update(({"a": jnp.array(1.0)},), {"a": jnp.array(3.0)}, [jnp.asarray(0.75)])
    assert float(ema[0]["a"]) == pytest.approx(1.5)
    same = st.ema_update(
        ({"a": jnp.array(1.0)},), {"a": jnp.array(3.0)}, [jnp.asarray(0.75)], apply=False
    )
    assert float(same[0]["a"]) == 1.0


# ----------------------------------------------------------------------------- sharding


def _fit_on(devices, optimizer, steps=4, **kw):
    return st.fit(
        LinearDSM(),
        TinyMLP(key=jr.key(0)),
        batches(),
        optimizer=optimizer,
        num_steps=steps,
        key=jr.key(1),
        ema_decays=(0.5,),
        mesh=st.make_mesh(devices),
        progress=False,
        **kw,
    )


def test_eight_devices_match_one_device():
    assert len(jax.devices()) == 8, "conftest sets --xla_force_host_platform_device_count=8"
    # SGD is sensitive to the gradient's scale (an 8x too large or per-shard gradient shows up);
    # the adam run checks the full optimiser + EMA path.
    for opt in (optax.sgd(0.5), st.make_optimizer("adam", 1e-2, warmup_steps=2)):
        one = _fit_on(jax.devices()[:1], opt, batch_size=16)
        eight = _fit_on(jax.devices(), opt, batch_size=16)
        assert eight.model.mlp.layers[0].weight.sharding.is_fully_replicated
        assert len(eight.model.mlp.layers[0].weight.sharding.device_set) == 8
        # float32 reductions in a different order: tolerance 1e-5 relative, 1e-6 absolute
        for a, b in zip(
            leaves((one.model, one.ema)), leaves((eight.model, eight.ema)), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        moved = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(leaves(one.model), leaves(TinyMLP(key=jr.key(0))), strict=True)
        )
        assert moved > 1e-3  # training did change the parameters


def test_batch_size_must_divide_devices():
    with pytest.raises(ValueError, match="`batch_size`.*12.*8"):
        st.per_device_batch_size(12, st.make_mesh())
    with pytest.raises(ValueError, match="`batch_size`"):
        st.fit(
            LinearDSM(),
            TinyMLP(key=jr.key(0)),
            batches(12),
            optimizer=optax.sgd(0.1),
            num_steps=1,
            key=jr.key(0),
            progress=False,
        )
    assert st.per_device_batch_size(16, st.make_mesh()) == 2


def test_distributed_requested_from_env():
    assert not st.distributed_requested({})
    assert st.distributed_requested({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert st.distributed_requested({"SLURM_NTASKS": "4"})
    assert not st.distributed_requested({"SLURM_NTASKS": "1"})
    assert st.maybe_initialize_distributed() is False  # nothing asks for it here


# ------------------------------------------------------------- checkpoints, logs, failures


def test_fit_checkpoints_metrics_samples_and_resume(tmp_path):
    opt = st.make_optimizer("adam", 1e-2, warmup_steps=2)
    kw = dict(
        optimizer=opt,
        key=jr.key(1),
        ema_decays=(0.9,),
        mesh=st.make_mesh(jax.devices()[:1]),
        progress=False,
    )
    full = st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=6, **kw)
    ck = tmp_path / "ck"
    st.fit(
        LinearDSM(),
        TinyMLP(key=jr.key(0)),
        batches(),
        num_steps=4,
        checkpoint_dir=ck,
        checkpoint_every=2,
        keep_checkpoints=1,
        metrics_path=tmp_path / "m.jsonl",
        sample_fn=lambda k, m: jr.normal(k, (50, 2)),
        sample_every=2,
        config={"lr": 1e-2},
        **kw,
    )
    assert [p.name for p in st.list_checkpoints(ck)] == ["ckpt_000000004.eqx"]  # keep the last 1
    assert not [p for p in ck.iterdir() if p.name.endswith(".tmp")]
    header = st.read_header(st.latest_checkpoint(ck))
    assert header["step"] == 4 and header["config"] == {"lr": 1e-2}
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]  # completed steps, as the checkpoints
    assert set(lines[0]) >= {"step", "loss", "grad_norm", "lr", "steps_per_sec", "images_per_sec"}
    assert lines[0]["lr"] == 0.0 and lines[1]["lr"] == pytest.approx(5e-3)
    assert (ck / "samples" / "samples_000000002.png").is_file()
    # resume (no data state: batches are skipped) to 6 steps == uninterrupted 6 steps, bit for bit
    with pytest.warns(UserWarning, match="skipping 4 batches"):
        resumed = st.fit(
            LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=6, checkpoint_dir=ck, **kw
        )
    for a, b in zip(
        leaves((full.model, full.ema, full.opt_state)),
        leaves((resumed.model, resumed.ema, resumed.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    # restore_checkpoint round trip
    like = st.init_state(TinyMLP(key=jr.key(5)), opt, key=jr.key(9), ema_decays=(0.9,))
    back = st.restore_checkpoint(st.latest_checkpoint(ck), like)
    assert int(back.step) == 6
    np.testing.assert_array_equal(jr.key_data(back.key), jr.key_data(resumed.key))
    for a, b in zip(leaves(back.model), leaves(resumed.model), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="EMA rates"):
        st.restore_checkpoint(
            st.latest_checkpoint(ck),
            st.init_state(TinyMLP(key=jr.key(5)), opt, key=jr.key(9), ema_decays=(0.5,)),
        )


def test_nan_stops_with_step_and_last_good_checkpoint(tmp_path):
    ck = tmp_path / "ck"
    with pytest.raises(st.NonFiniteError) as info:
        st.fit(
            LinearDSM(),
            TinyMLP(key=jr.key(0)),
            batches(nan_at=5),
            optimizer=optax.sgd(0.1),
            num_steps=10,
            key=jr.key(1),
            mesh=st.make_mesh(jax.devices()[:2]),
            checkpoint_dir=ck,
            checkpoint_every=2,
            keep_checkpoints=1,
            progress=False,
        )
    good = ck / "ckpt_000000004.eqx"
    msg = str(info.value)
    assert "step 5" in msg and str(good) in msg, msg
    assert info.value.step == 5 and info.value.checkpoint == good
    assert good.is_file() and [p.name for p in st.list_checkpoints(ck)] == [good.name]
    like = st.init_state(TinyMLP(key=jr.key(0)), optax.sgd(0.1), key=jr.key(1))
    restored = st.restore_checkpoint(good, like)
    assert all(np.all(np.isfinite(x)) for x in leaves(restored.model))


def test_keyboard_interrupt_saves_checkpoint(tmp_path):
    ck = tmp_path / "ck"

    def stop(state, metrics):
        if int(state.step) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        st.fit(
            LinearDSM(),
            TinyMLP(key=jr.key(0)),
            batches(),
            optimizer=optax.sgd(0.1),
            num_steps=10,
            key=jr.key(1),
            mesh=st.make_mesh(jax.devices()[:1]),
            checkpoint_dir=ck,
            checkpoint_every=100,
            progress=False,
            callback=stop,
        )
    assert [p.name for p in st.list_checkpoints(ck)] == ["ckpt_000000003.eqx"]


def test_fit_argument_errors(tmp_path):
    m = TinyMLP(key=jr.key(0))
    with pytest.raises(ValueError, match="`num_steps`"):
        st.fit(LinearDSM(), m, batches(), optimizer=optax.sgd(0.1), num_steps=-1, key=jr.key(0))
    with pytest.raises(ValueError, match="`checkpoint_every`"):
        st.fit(
            LinearDSM(),
            m,
            batches(),
            optimizer=optax.sgd(0.1),
            num_steps=1,
            key=jr.key(0),
            checkpoint_every=2,
        )
    kw = dict(optimizer=optax.sgd(0.1), num_steps=1, key=jr.key(0), progress=False)
    with pytest.raises(ValueError, match="`keep_checkpoints`: got 0"):
        st.fit(LinearDSM(), m, batches(), checkpoint_dir=tmp_path, keep_checkpoints=0, **kw)
    with pytest.raises(ValueError, match="`checkpoint_dir`: .* is not a directory"):
        st.fit(LinearDSM(), m, batches(), checkpoint_dir=__file__, **kw)
    with pytest.raises(ValueError, match="`config`: not JSON"):
        st.fit(LinearDSM(), m, batches(), config={"f": object()}, **kw)
    with pytest.raises(ValueError, match="`key`"):
        st.init_state(m, optax.sgd(0.1), key=3)
    with pytest.raises(ValueError, match="`ema_decays`"):
        st.init_state(m, optax.sgd(0.1), key=jr.key(0), ema_decays=(1.5,))


def test_kill_and_resume_subprocess_matches_uninterrupted(tmp_path):
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    worker = [sys.executable, str(HERE / "_train_worker.py"), "--steps", "10", "--every", "3"]

    def start(name, *extra):
        return subprocess.Popen(
            worker
            + ["--ckpt-dir", str(tmp_path / name), "--out", str(tmp_path / f"{name}.eqx"), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    ref, killed = start("ref"), start("run", "--kill-at", "7")  # both at once: 2 cores
    out_killed = killed.communicate(timeout=120)[0].decode()
    out_ref = ref.communicate(timeout=120)[0].decode()
    assert ref.returncode == 0, out_ref
    assert killed.returncode == -9, out_killed  # SIGKILL after step 7 (last checkpoint: step 6)
    assert not (tmp_path / "run.eqx").exists()
    assert [p.name for p in st.list_checkpoints(tmp_path / "run")] == [
        "ckpt_000000003.eqx",
        "ckpt_000000006.eqx",
    ]
    resumed = start("run")
    out = resumed.communicate(timeout=120)[0].decode()
    assert resumed.returncode == 0, out
    assert st.read_header(st.latest_checkpoint(tmp_path / "run"))["step"] == 10
    assert (tmp_path / "run.eqx").read_bytes() == (tmp_path / "ref.eqx").read_bytes()


# ----------------------------------------------------------------------------- images


def test_save_image_grid_formats(tmp_path):
    rgb = np.linspace(-1, 1, 5 * 4 * 4 * 3).reshape(5, 4, 4, 3)
    p = st.save_image_grid(rgb, tmp_path / "rgb.png", nrow=3)
    im = Image.open(p)
    assert im.mode == "RGB" and im.size == (3 * 6 + 2, 2 * 6 + 2)
    grey = st.save_image_grid(np.ones((4, 4, 4, 1)), tmp_path / "g.png")
    g = np.asarray(Image.open(grey))
    assert g.ndim == 2 and g[2, 2] == 255 and g[0, 0] == 0
    pts = st.save_image_grid(np.random.default_rng(0).normal(size=(100, 2)), tmp_path / "pts.png")
    assert Image.open(pts).size == (512, 512)
    with pytest.raises(ValueError, match="`images`"):
        st.save_image_grid(np.zeros((4, 4, 4, 6)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="`images`"):
        st.save_image_grid(np.zeros((4, 3)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="`nrow`: got 0"):
        st.image_grid(np.zeros((4, 4, 4, 3)), nrow=0)


# ------------------------------------------- the parts of fit; checkpoint integrity and resume


def _kw(**extra):
    kw = dict(
        optimizer=optax.sgd(0.1),
        key=jr.key(1),
        ema_decays=(0.5,),
        mesh=st.make_mesh(jax.devices()[:1]),
        progress=False,
    )
    kw.update(extra)
    return kw


def test_custom_loop_from_the_parts_equals_fit(tmp_path):
    full = st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=4, **_kw())
    mesh = st.make_mesh(jax.devices()[:1])
    state = st.init_state(TinyMLP(key=jr.key(0)), optax.sgd(0.1), key=jr.key(1), ema_decays=(0.5,))
    ckpt = st.Checkpointer(tmp_path / "ck", every=2, config={"lr": 0.1})
    state = st.place_state(ckpt.restore(state), mesh)
    log = st.MetricsLogger(tmp_path / "m.jsonl", every=1)
    step = st.make_train_step(LinearDSM(), optax.sgd(0.1), mesh=mesh)
    it = st.resume_data(batches(), state)
    for _ in range(4):
        gbatch, log.batch_size = st.global_batch(next(it), mesh)
        state, metrics = step(state, gbatch)
        log(int(state.step), metrics, checkpoint=ckpt.last)
        ckpt.maybe_save(state)
    log.close()
    for a, b in zip(leaves((full.model, full.ema)), leaves((state.model, state.ema)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in st.list_checkpoints(tmp_path / "ck")][-1] == "ckpt_000000004.eqx"
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]


def _flip_bit(path, from_end=100):
    raw = bytearray(path.read_bytes())
    raw[len(raw) - from_end] ^= 0x10
    path.write_bytes(bytes(raw))


def test_single_bit_flip_is_detected_and_resume_falls_back(tmp_path):
    ck = tmp_path / "ck"
    st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=4, checkpoint_dir=ck,
           checkpoint_every=2, **_kw())
    newest = ck / "ckpt_000000004.eqx"
    like = st.init_state(TinyMLP(key=jr.key(0)), optax.sgd(0.1), key=jr.key(1), ema_decays=(0.5,))
    st.verify_checkpoint(newest)
    _flip_bit(newest)
    with pytest.raises(st.CheckpointError, match="sha256"):
        st.restore_checkpoint(newest, like)
    with pytest.warns(UserWarning, match="skipping damaged checkpoint .*ckpt_000000004.eqx"):
        resumed = st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=6,
                         checkpoint_dir=ck, **_kw())
    assert (ck / "ckpt_000000004.eqx.damaged").is_file()  # kept, never deleted
    full = st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=6, **_kw())
    for a, b in zip(leaves(full.model), leaves(resumed.model), strict=True):
        np.testing.assert_array_equal(a, b)  # resumed from step 2 and re-did 3..6
    # a truncated file is damaged too
    last = st.latest_checkpoint(ck)
    last.write_bytes(last.read_bytes()[:-7])
    with pytest.raises(st.CheckpointError, match="bytes of array data"):
        st.verify_checkpoint(last)


def test_resume_refuses_a_changed_run_unless_overridden(tmp_path):
    ck = tmp_path / "ck"
    cfg = {"lr": 0.1, "process": "VP", "log_every": 1}
    st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=2, checkpoint_dir=ck,
           config=cfg, **_kw())
    with pytest.raises(st.ConfigMismatchError, match="lr: checkpoint 0.1, now 0.2"):
        st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=3, checkpoint_dir=ck,
               config={**cfg, "lr": 0.2}, **_kw())
    with pytest.raises(st.ConfigMismatchError, match="process"):
        st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=3, checkpoint_dir=ck,
               config={**cfg, "process": "VE"}, **_kw())
    with pytest.raises(st.ConfigMismatchError, match="batch_size: checkpoint 16, now 8"):
        st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(8), num_steps=3, checkpoint_dir=ck,
               config=cfg, **_kw())

    class OtherLoss(LinearDSM):
        scale: float = 2.0

    with pytest.raises(st.ConfigMismatchError, match="objective"):
        st.fit(OtherLoss(), TinyMLP(key=jr.key(0)), batches(), num_steps=3, checkpoint_dir=ck,
               config=cfg, **_kw())
    with pytest.warns(UserWarning, match="log_every"):  # harmless: warns, resumes
        s = st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=3,
                   checkpoint_dir=ck, config={**cfg, "log_every": 5}, **_kw())
    assert int(s.step) == 3
    with pytest.warns(UserWarning, match="lr"):
        s = st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=4,
                   checkpoint_dir=ck, config={**cfg, "lr": 0.2}, allow_config_change=True,
                   **_kw())
    assert int(s.step) == 4


def test_full_disk_names_the_file_and_orphan_tmp_files_are_cleaned(tmp_path, monkeypatch):
    import errno

    import sdekit.train._checkpoint as ckmod

    state = st.init_state(TinyMLP(key=jr.key(0)), optax.sgd(0.1), key=jr.key(1))

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckmod, "_write_all", full)
    with pytest.raises(OSError, match="no space left on device while writing .*ckpt_000000000"):
        st.save_checkpoint(tmp_path, state)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    orphan = tmp_path / ".ckpt_000000007.eqx.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    st.Checkpointer(tmp_path)
    assert not orphan.exists() and other.exists()


def test_ema_warmup_is_default_and_a_young_ema_warns():
    s = st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=2,
               **_kw(ema_decays=(0.99,)))
    assert s.ema_warmup
    with pytest.warns(UserWarning, match="still holds 98.0% of the initial"):
        st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=2,
               **_kw(ema_decays=(0.99,), ema_warmup=False))


def test_load_model_in_one_call(tmp_path):
    from sdekit.nets import named_net

    small = dict(image_size=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), nf=8)
    net = eqx.filter_jit(lambda k: named_net("tiny", key=k, **small))(jr.key(0))
    state = st.init_state(net, optax.sgd(0.1), key=jr.key(1), ema_decays=(0.9, 0.5))
    state = eqx.tree_at(lambda s: s.ema[1], state,
                        jax.tree.map(lambda x: x + 1 if eqx.is_inexact_array(x) else x,
                                     state.ema[1]))
    path = st.save_checkpoint(tmp_path, state,
                              config={"model": st.model_config("tiny", **small)})
    for ema, want in ((True, state.ema[0]), (0.5, state.ema[1]), (False, state.model)):
        got = st.load_model(tmp_path, ema=ema)
        for a, b in zip(leaves(got), leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)
    mlp = st.init_state(TinyMLP(key=jr.key(0)), optax.sgd(0.1), key=jr.key(1))
    p2 = st.save_checkpoint(tmp_path / "mlp", mlp)
    with pytest.raises(ValueError, match="`like`"):
        st.load_model(p2)
    back = st.load_model(p2, like=TinyMLP(key=jr.key(3)))
    for a, b in zip(leaves(back), leaves(mlp.ema[0]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert path.is_file()


def test_sharded_save_restore_on_8_devices_writes_shards_not_a_gathered_copy(tmp_path):
    from jax.sharding import PartitionSpec as P

    mesh = st.make_mesh()
    assert mesh.size == 8

    def fsdp(leaf):  # shard the first axis over "data" where it divides, FSDP-style
        return P("data") if leaf.ndim >= 1 and leaf.shape[0] % 8 == 0 else P()

    opt = st.make_optimizer("adam", 1e-2, warmup_steps=1)
    state = st.fit(LinearDSM(), TinyMLP(key=jr.key(0)), batches(), num_steps=2, optimizer=opt,
                   key=jr.key(1), ema_decays=(0.5,), mesh=mesh, spec_fn=fsdp, progress=False)
    w = state.model.mlp.layers[0].weight
    assert not w.sharding.is_fully_replicated  # (16, 3) split over 8 devices
    path = st.save_checkpoint(tmp_path, state)
    header = st.verify_checkpoint(path)
    table = {e["leaf"]: e for e in header["shards"]}
    assert table and all(len(e["pieces"]) == 8 for e in table.values())  # one piece per shard
    # the tree part holds empty placeholders: the sharded bytes are stored once, by shard
    sharded_bytes = sum(int(np.prod(e["shape"])) * np.dtype(e["dtype"]).itemsize
                        for e in table.values())
    assert header["nbytes"] < sharded_bytes + 20_000
    like = st.place_state(
        st.init_state(TinyMLP(key=jr.key(7)), opt, key=jr.key(9), ema_decays=(0.5,)), mesh, fsdp
    )
    back = st.restore_checkpoint(path, like)
    for a, b in zip(leaves((state.model, state.ema, state.opt_state)),
                    leaves((back.model, back.ema, back.opt_state)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.model.mlp.layers[0].weight.sharding == w.sharding  # restored in place, sharded
    plain = st.restore_checkpoint(  # into an unsharded template: full host arrays
        path, st.init_state(TinyMLP(key=jr.key(7)), opt, key=jr.key(9), ema_decays=(0.5,)))
    for a, b in zip(leaves(state.model), leaves(plain.model), strict=True):
        np.testing.assert_array_equal(a, b)
    net = st.load_model(path, like=TinyMLP(key=jr.key(3)))  # weights only, from the shards
    for a, b in zip(leaves(state.ema[0]), leaves(net), strict=True):
        np.testing.assert_array_equal(a, b)
    _flip_bit(path, from_end=40)  # inside the shard section: still verified
    with pytest.raises(st.CheckpointError, match="sha256"):
        st.restore_checkpoint(path, like)


def test_fit_donates_by_default_and_leaves_the_callers_arrays_valid():
    """The default (donated, in-place) step gives the same result bit for bit as a fresh state
    per step, on 8 devices too; the model, key and state passed in stay usable."""
    model, key = TinyMLP(key=jr.key(0)), jr.key(1)
    before = leaves(model)
    kw = dict(optimizer=st.make_optimizer("adam", 1e-2, warmup_steps=2), num_steps=3,
              ema_decays=(0.5,), progress=False, batch_size=16)
    donated = st.fit(LinearDSM(), model, batches(), key=key, **kw)
    fresh = st.fit(LinearDSM(), model, batches(), key=key, donate=False, **kw)
    for a, b in zip(leaves((donated.model, donated.ema, donated.opt_state)),
                    leaves((fresh.model, fresh.ema, fresh.opt_state)), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(model), before, strict=True):  # not deleted, not changed
        np.testing.assert_array_equal(a, b)
    assert jax.random.key_data(key).shape == (2,)
    # a state passed back in (its EMA may share buffers with nothing else now) also survives
    again = st.fit(LinearDSM(), donated, batches(), key=key, **{**kw, "num_steps": 4})
    assert int(again.step) == 4 and int(donated.step) == 3
    leaves((donated.model, donated.ema, donated.opt_state))  # still readable
    eight = st.fit(LinearDSM(), model, batches(), key=key, mesh=st.make_mesh(), **kw)
    for a, b in zip(leaves(eight.model), leaves(fresh.model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
