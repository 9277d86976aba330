"""Reusable pieces of a training loop: checkpointing, metrics logging, sample grids.

[`fit`][sdekit.train.fit] is a short loop over these and the jitted step of
[`make_train_step`][sdekit.train.make_train_step]; a custom loop can use them the same way:

```python
ckpt = Checkpointer("runs/x/checkpoints", every=1000, config=cfg)
state = ckpt.restore(state)                 # latest good checkpoint, if any
log = MetricsLogger("runs/x/metrics.jsonl", every=100)
for batch in data:
    state, metrics = step(state, batch)
    log(int(state.step), metrics, checkpoint=ckpt.last)   # raises NonFiniteError
    ckpt.maybe_save(state)
```
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ._checkpoint import (
    clean_orphan_tmp_files,
    restore_latest_good,
    save_checkpoint,
)
from ._images import save_image_grid
from ._state import TrainState

__all__ = [
    "Checkpointer",
    "ConfigMismatchError",
    "MetricsLogger",
    "NonFiniteError",
    "SampleWriter",
    "HARMLESS_CONFIG_KEYS",
    "fingerprint",
]

#: Configuration keys whose change between a run and its resumption does not change the
#: result (how long, how often to log / save / sample, where): a change only warns.
HARMLESS_CONFIG_KEYS = frozenset(
    {
        "out", "steps", "num_steps", "checkpoint_every", "keep", "keep_checkpoints",
        "sample_every", "sample_steps", "num_grid", "log_every", "no_progress", "progress",
        "data_root", "allow_config_change",
    }
)


class NonFiniteError(FloatingPointError):
    """Raised by [`fit`][sdekit.train.fit] when the loss or the gradient norm is not finite.

    Attributes:
        step: index of the failing step (0-based: the step that consumed data batch ``step``).
        checkpoint: path of the last good checkpoint (kept on disk), or ``None`` if there is none.
        loss: the loss at that step.
        grad_norm: the gradient norm at that step.
    """

    def __init__(self, step: int, loss: float, grad_norm: float, checkpoint: pathlib.Path | None):
        self.step = step
        self.loss = loss
        self.grad_norm = grad_norm
        self.checkpoint = checkpoint
        what = " and ".join(
            name
            for name, v in (("loss", loss), ("gradient norm", grad_norm))
            if not math.isfinite(v)
        )
        where = (
            f"the last good checkpoint is {checkpoint} (kept; resume from it after fixing the "
            "cause)"
            if checkpoint is not None
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"non-finite {what} at step {step} (loss={loss}, grad_norm={grad_norm}); training "
            f"stopped, {where}."
        )


class ConfigMismatchError(ValueError):
    """Resuming a checkpoint whose stored configuration differs in a way that changes the run.

    Attributes:
        differences: ``{key: (stored, given)}`` of the refused differences.
    """

    def __init__(self, path: pathlib.Path, differences: dict, override: str):
        self.differences = differences
        diff = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, a, b in _items(differences))
        super().__init__(
            f"checkpoint {path} was written by a run with a different configuration ({diff}). "
            f"Resuming would silently change the run; use a new checkpoint directory, or pass "
            f"{override} to resume anyway."
        )


def _items(d: dict):
    for k, (a, b) in sorted(d.items()):
        yield k, a, b


def fingerprint(tree: Any) -> str:
    """A short, run-independent hash of a pytree (structure, array values, scalar leaves).

    Used to notice a changed objective or process on resume (``VP`` -> ``VE``, other
    parameters). Memory addresses in the structure's text are ignored.
    """
    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(tree)
    h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", str(treedef)).encode())
    for leaf in leaves:
        if eqx.is_array(leaf):
            a = np.asarray(jax.device_get(leaf))
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        elif isinstance(leaf, (int, float, str, bool, type(None))):
            h.update(repr(leaf).encode())
        else:
            h.update(type(leaf).__qualname__.encode())
    return h.hexdigest()[:16]


def compare_config(
    stored: Mapping | None,
    given: Mapping | None,
    *,
    harmless: Iterable[str] = HARMLESS_CONFIG_KEYS,
) -> tuple[dict, dict]:
    """Split the differences between two configurations into ``(refused, harmless)`` dicts of
    ``key: (stored, given)``. Missing keys count as ``None``."""
    stored, given = dict(stored or {}), dict(given or {})
    harmless = set(harmless)
    bad, ok = {}, {}
    for k in sorted(set(stored) | set(given)):
        a, b = stored.get(k), given.get(k)
        if a != b:
            (ok if k in harmless else bad)[k] = (a, b)
    return bad, ok


class Checkpointer:
    """Periodic, verified checkpoints of a [`TrainState`][sdekit.train.TrainState] in a directory.

    On creation it removes orphan temporary files left by a write that was killed.
    [`restore`][sdekit.train.Checkpointer.restore] loads the newest checkpoint that passes its
    sha256 check (a damaged one is skipped with a warning naming it, and kept), and compares the
    configuration stored in it with ``config``: differences in keys outside ``harmless_keys``
    (learning rate, process, batch size, ...) raise
    [`ConfigMismatchError`][sdekit.train.ConfigMismatchError] unless ``allow_config_change``;
    harmless ones warn. ``run`` facts (the objective's fingerprint, the global batch size)
    are compared the same way.

    Args:
        directory: checkpoint directory (created on the first save).
        every: steps between checkpoints (``None``: only when
            [`save`][sdekit.train.Checkpointer.save] is called).
        keep: number of recent checkpoints kept (``None``: all).
        config: JSON-able run configuration stored in every checkpoint.
        allow_config_change: resume even when the stored configuration differs.
        harmless_keys: configuration keys whose change only warns.
        override_hint: how the error tells the user to override (e.g. a CLI flag).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        every: int | None = None,
        keep: int | None = 3,
        config: dict | None = None,
        allow_config_change: bool = False,
        harmless_keys: Iterable[str] = HARMLESS_CONFIG_KEYS,
        override_hint: str = "allow_config_change=True",
    ):
        if every is not None and not (
            isinstance(every, (int, np.integer)) and not isinstance(every, bool) and every >= 1
        ):
            raise ValueError(f"argument `every`: got {every!r}, expected None or an int >= 1.")
        if keep is not None and not (
            isinstance(keep, int) and not isinstance(keep, bool) and keep >= 1
        ):
            raise ValueError(f"argument `keep`: got {keep!r}, expected None or an int >= 1.")
        if config is not None:
            try:  # as stored: tuples become lists, so a resumed run compares equal
                config = json.loads(json.dumps(config))
            except (TypeError, ValueError) as e:
                raise ValueError(f"argument `config`: not JSON-serialisable ({e}).") from e
        self.directory = pathlib.Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(
                f"argument `directory`: {str(self.directory)!r} exists and is not a directory."
            )
        self.every = every
        self.keep = keep
        self.config = config
        self.allow_config_change = bool(allow_config_change)
        self.harmless_keys = frozenset(harmless_keys)
        self.override_hint = override_hint
        self.run: dict = {}
        self.last: pathlib.Path | None = None
        self.header: dict | None = None
        self._saved_step = -1
        self.removed_tmp = clean_orphan_tmp_files(self.directory)

    def restore(self, state: TrainState) -> TrainState:
        """The newest good checkpoint loaded into the structure of ``state`` (``state`` itself
        when there is none)."""
        from ._checkpoint import read_header

        found = restore_latest_good(self.directory, state)
        if found is None:
            return state
        restored, path = found
        self.header = read_header(path)
        if self.config is not None:  # no configuration given: nothing to compare with
            self._check(self.header.get("config"), self.config, path, what="config")
        self.last = path
        self._saved_step = int(restored.step)
        return restored

    def _check(self, stored: Any, given: Any, path: pathlib.Path, what: str) -> None:
        bad, ok = compare_config(stored, given, harmless=self.harmless_keys)
        if bad and not self.allow_config_change:
            raise ConfigMismatchError(path, {f"{what}.{k}" if what != "config" else k: v
                                             for k, v in bad.items()}, self.override_hint)
        changed = {**ok, **(bad if self.allow_config_change else {})}
        if changed:
            diff = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in _items(changed))
            warnings.warn(f"sdekit.train: resuming {path} with changed {what}: {diff}",
                          stacklevel=3)

    def check_run(self, **facts: Any) -> None:
        """Record facts about this run (stored with every checkpoint) and compare them with the
        ones of the restored checkpoint (refused when different, like the configuration)."""
        self.run.update(facts)
        if self.header is not None and self.header.get("run"):
            stored = {k: v for k, v in self.header["run"].items() if k in facts}
            self._check(stored, facts, self.last, what="run")

    def due(self, step: int) -> bool:
        """Whether a checkpoint is due after ``step`` completed steps."""
        return self.every is not None and step % self.every == 0

    def save(self, state: TrainState) -> pathlib.Path | None:
        """Write ``state`` now (no-op when this step is already saved); returns the latest path."""
        step = int(state.step)
        if step != self._saved_step:
            self.last = save_checkpoint(
                self.directory, state, config=self.config, keep=self.keep, run=self.run or None
            )
            self._saved_step = step
        return self.last

    def maybe_save(self, state: TrainState) -> pathlib.Path | None:
        """[`save`][sdekit.train.Checkpointer.save] when one is due at ``state.step``."""
        if self.due(int(state.step)):
            return self.save(state)
        return None


class MetricsLogger:
    """Host-side metrics: non-finite check, JSONL lines, progress-bar postfix.

    Called as ``logger(step, metrics, checkpoint=...)`` with ``step`` the number of completed
    steps (the same number as the checkpoint written after it) and ``metrics`` the device
    arrays of the step (``loss``, ``grad_norm``, ``lr``). Raises
    [`NonFiniteError`][sdekit.train.NonFiniteError] naming the failing step (0-based index
    ``step - 1``) and ``checkpoint``. Every ``every`` steps (and at ``total``) it appends
    ``{"step", "loss", "grad_norm", "lr", "steps_per_sec", "images_per_sec", "time"}`` to
    ``path`` and updates ``pbar``.

    Args:
        path: JSONL file (``None``: no file; only process 0 writes).
        every: steps between lines.
        total: the last step (always logged).
        pbar: a tqdm bar whose postfix shows the loss.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        every: int = 1,
        total: int | None = None,
        pbar: Any = None,
    ):
        if not (
            isinstance(every, (int, np.integer)) and not isinstance(every, bool) and every >= 1
        ):
            raise ValueError(f"argument `every`: got {every!r}, expected an int >= 1.")
        self.every, self.total, self.pbar = int(every), total, pbar
        self.batch_size = 0
        self._file = None
        if path is not None and jax.process_index() == 0:
            path = pathlib.Path(path)
            if path.is_dir():
                raise ValueError(f"argument `path`: {str(path)!r} is a directory, expected a file.")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a")
        self._t, self._steps = time.perf_counter(), 0

    def __call__(
        self, step: int, metrics: Mapping, *, checkpoint: pathlib.Path | None = None
    ) -> dict:
        host = {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}
        loss, gnorm = host.get("loss", 0.0), host.get("grad_norm", 0.0)
        if not (math.isfinite(loss) and math.isfinite(gnorm)):
            raise NonFiniteError(step - 1, loss, gnorm, checkpoint)
        self._steps += 1
        if step % self.every == 0 or step == self.total:
            now = time.perf_counter()
            sps = self._steps / max(now - self._t, 1e-9)
            lr = host.get("lr", math.nan)
            line = {
                "step": int(step),
                **{k: v for k, v in host.items() if k != "lr"},
                "lr": lr if math.isfinite(lr) else None,
                "steps_per_sec": sps,
                "images_per_sec": sps * self.batch_size,
                "time": time.time(),
            }
            self._t, self._steps = now, 0
            if self._file is not None:
                self._file.write(json.dumps(line) + "\n")
                self._file.flush()
            if self.pbar is not None:
                self.pbar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        return host

    def close(self) -> None:
        """Close the JSONL file."""
        if self._file is not None:
            self._file.close()
            self._file = None


class SampleWriter:
    """Periodic PNG grids of ``sample_fn(key, model)`` (always the same key, so grids compare).

    Args:
        sample_fn: ``sample_fn(key, model) -> images`` (NHWC in [-1, 1], or ``(N, 2)`` points).
        directory: where ``samples_<step>.png`` go.
        every: steps between grids (``None``: only when [`write`][sdekit.train.SampleWriter.write]
            is called).
        key: PRNG key used for every grid.
    """

    def __init__(
        self,
        sample_fn: Callable,
        directory: str | os.PathLike,
        *,
        every: int | None = None,
        key: Any,
    ):
        if not callable(sample_fn):
            raise ValueError(
                f"argument `sample_fn`: got {type(sample_fn).__name__}, expected a callable."
            )
        if every is not None and not (
            isinstance(every, (int, np.integer)) and not isinstance(every, bool) and every >= 1
        ):
            raise ValueError(f"argument `every`: got {every!r}, expected None or an int >= 1.")
        self.sample_fn, self.directory, self.every, self.key = (
            sample_fn, pathlib.Path(directory), every, key
        )

    def due(self, step: int) -> bool:
        """Whether a grid is due after ``step`` completed steps."""
        return self.every is not None and step % self.every == 0

    def write(self, step: int, model: Any) -> pathlib.Path | None:
        """Sample with ``model`` and write ``samples_<step>.png`` (process 0 only)."""
        if jax.process_index() != 0:
            return None
        images = self.sample_fn(self.key, model)
        return save_image_grid(
            np.asarray(jax.device_get(images)), self.directory / f"samples_{step:09d}.png"
        )
