"""Training worker for the kill-and-resume test: run with ``python tests/_train_worker.py ...``.

Trains the tiny MLP on a grain pipeline of 2-D toy data with checkpoints; ``--kill-at N`` makes
the process SIGKILL itself right after step N (and its checkpoint, if one is due) completes.
At the end it writes the serialised final model, EMA and optimiser state to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import equinox as eqx  # noqa: E402
import jax.random as jr  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _train_models import LinearDSM, TinyMLP  # noqa: E402

import sdekit.data as sd  # noqa: E402
import sdekit.train as st  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--kill-at", type=int, default=-1)
    a = p.parse_args()

    points = sd.toy_data(0, "two_moons", 40)
    data = sd.make_pipeline(points, batch_size=8, seed=1, value_range=None)
    opt = st.make_optimizer("adam", 1e-2, warmup_steps=3, clip_norm=1.0)

    def callback(state, metrics):
        if int(state.step) == a.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    state = st.fit(
        LinearDSM(),
        eqx.filter_jit(TinyMLP)(key=jr.key(0)),  # one compile instead of one per layer
        data,
        optimizer=opt,
        num_steps=a.steps,
        key=jr.key(1),
        ema_decays=(0.9, 0.99),
        checkpoint_dir=a.ckpt_dir,
        checkpoint_every=a.every,
        keep_checkpoints=2,
        progress=False,
        callback=callback,
        config={"test": "kill-resume"},
    )
    with open(a.out, "wb") as f:
        eqx.tree_serialise_leaves(f, (state.model, state.ema, state.opt_state, state.step))


if __name__ == "__main__":
    main()
