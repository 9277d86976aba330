"""The training loop: a jitted, sharded train step and ``fit``, a short loop over it and the
parts of `_parts.py` (checkpointing, metrics, sample grids)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ..nets import with_lean_gradients
from ..objectives import AbstractObjective
from ..perf import compiler_options, trim_host_memory
from ._donation import Escapes, check_not_donated
from ._optim import current_lr, ema_decay_at, ema_update, has_updated
from ._parts import Checkpointer, MetricsLogger, NonFiniteError, SampleWriter, fingerprint
from ._sharding import (
    SpecFn,
    distributed_requested,
    make_global_batch,
    make_mesh,
    per_device_batch_size,
    replicated_spec,
    shard_state,
)
from ._state import TrainState, init_state

__all__ = [
    "fit",
    "make_train_step",
    "NonFiniteError",
    "resume_data",
    "global_batch",
    "place_state",
    "warn_young_ema",
]


@runtime_checkable
class StatefulIterator(Protocol):
    """A data iterator whose position can be saved and restored (grain's iterators): `fit`
    stores ``get_state()`` in every checkpoint and calls ``set_state`` on resume."""

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...


def _split_batch(batch: Any, data_key: str, cond_key: str | None) -> tuple[Any, Any]:
    if isinstance(batch, dict):
        if data_key not in batch:
            raise ValueError(
                f"argument `data_key`: got {data_key!r}, but the data batches have keys "
                f"{sorted(batch)}."
            )
        x0 = batch[data_key]
        cond = None
        if cond_key is not None:
            if cond_key not in batch:
                raise ValueError(
                    f"argument `cond_key`: got {cond_key!r}, but the data batches have keys "
                    f"{sorted(batch)}."
                )
            cond = batch[cond_key]
        return x0, cond
    if cond_key is not None:
        raise ValueError(
            f"argument `cond_key`: got {cond_key!r}, but the data batches are arrays, not dicts."
        )
    return batch, None


def _num_updates(state_step: jax.Array, opt_state: Any) -> jax.Array:
    if isinstance(opt_state, optax.MultiStepsState):
        return opt_state.gradient_step
    return state_step + 1


def make_train_step(
    objective: Callable,
    optimizer: optax.GradientTransformation,
    *,
    mesh: Mesh | None = None,
    spec_fn: SpecFn = replicated_spec,
    data_key: str = "image",
    cond_key: str | None = None,
    donate: bool = False,
    lean_gradients: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """The jitted train step used by [`fit`][sdekit.train.fit].

    ``step(state, batch) -> (new_state, metrics)`` splits the state's key, evaluates
    ``objective(model, key, x0, cond, aux=state.aux)`` and its gradient, applies the optimiser,
    the EMA updates and the objective's auxiliary-state update (``objective.update_aux``), and
    returns ``metrics = {"loss", "grad_norm", "lr"}`` (``grad_norm`` before
    clipping; ``lr`` is NaN when the optimiser does not expose it). With a ``mesh`` the new
    state is constrained to the shardings given by ``spec_fn`` (replicated by default) and the
    batch is expected sharded along ``"data"``; XLA inserts the gradient all-reduce.
    ``state.data_state`` must be ``None`` (it is host-side and changes every step).

    Args:
        objective: an [`AbstractObjective`][sdekit.objectives.AbstractObjective], or any
            ``loss(model, key, x0, cond=None) -> scalar``.
        optimizer: an optax optimiser.
        mesh: device mesh, or ``None`` for no sharding constraints.
        spec_fn: leaf -> ``PartitionSpec`` for parameters, EMA and optimiser state.
        data_key: key of the data in dict batches.
        cond_key: key of the conditioning (e.g. ``"label"``) in dict batches, or ``None``.
        donate: donate the input state's buffers to the output (saves memory; the input state
            must not be used afterwards).
        lean_gradients: differentiate the model through
            [`with_lean_gradients`][sdekit.nets.with_lean_gradients]: its GroupNorm(+SiLU)
            and dropout layers keep only their inputs (and keys) for the backward pass (same
            gradients; less than half the activation memory of the PSLD CIFAR-10 network).
            Set ``False`` for an objective that runs forward-mode autodiff (``jax.jvp``)
            through the network.

    Returns:
        The jitted step function.
    """
    if not callable(objective):
        raise ValueError(
            f"argument `objective`: got {type(objective).__name__}, expected a callable loss."
        )

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        key, sub = jr.split(state.key)
        x0, cond = _split_batch(batch, data_key, cond_key)
        params, static = eqx.partition(state.model, eqx.is_inexact_array)

        def loss_fn(p):
            m = eqx.combine(p, static)
            if lean_gradients:
                m = with_lean_gradients(m)
            if isinstance(objective, AbstractObjective):
                loss = objective(m, sub, x0, cond, aux=state.aux)
            else:
                loss = objective(m, sub, x0) if cond is None else objective(m, sub, x0, cond)
            if jnp.ndim(loss) != 0:
                raise ValueError(
                    f"argument `objective`: returned shape {jnp.shape(loss)}, expected a scalar "
                    "loss."
                )
            return jnp.asarray(loss, jnp.float32)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        params = optax.apply_updates(params, updates)
        model = eqx.combine(params, static)
        n = _num_updates(state.step, opt_state)
        decays = [ema_decay_at(d, n, state.ema_warmup) for d in state.ema_decays]
        ema = ema_update(state.ema, model, decays, has_updated(opt_state))
        aux = state.aux
        if isinstance(objective, AbstractObjective):
            aux = objective.update_aux(aux, model)
        lr = current_lr(opt_state)
        new = dataclasses.replace(
            state, model=model, ema=ema, opt_state=opt_state, step=state.step + 1, key=key,
            aux=aux,
        )
        if mesh is not None:
            new = shard_state(new, mesh, spec_fn)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": jnp.asarray(jnp.nan if lr is None else lr, jnp.float32),
        }
        return new, metrics

    if not donate:
        return eqx.filter_jit(step, donate="none")
    return _StateDonatingStep(eqx.filter_jit(lambda batch, state: step(state, batch),
                                             donate="all-except-first"))


class _StateDonatingStep:
    """``step(state, batch)`` jitted with the state's buffers donated and the batch's kept (a
    batch has no output to alias: donating it only makes JAX warn)."""

    def __init__(self, jitted):
        self._jitted = jitted

    def __call__(self, state, batch):
        check_not_donated(state, "state")
        return self._jitted(batch, state)

    def lower(self, state, batch):
        """AOT lowering, as ``jax.jit(...).lower``; call the compiled program with
        ``(batch, state)``."""
        return self._jitted.lower(batch, state)


def _compiled_step(step_fn: Any, state: TrainState, batch: Any, donate: bool) -> Callable:
    """``step_fn`` compiled ahead of time for these shapes (with `compiler_options`); a batch
    of another shape falls back to the jitted function."""
    lowered = step_fn.lower(state, batch)
    program = lowered.compile(compiler_options=compiler_options() or None)
    shapes = jax.tree.map(lambda a: (np.shape(a), jnp.result_type(a)), batch)

    def call(state, batch):
        if jax.tree.map(lambda a: (np.shape(a), jnp.result_type(a)), batch) != shapes:
            return step_fn(state, batch)
        return program(batch, state) if donate else program(state, batch)

    return call


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not (
        isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum
    ):
        expected = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"argument `{name}`: got {value!r}, expected {expected}.")


def _local_rows(batch: Any, data_key: str) -> int:
    x = batch[data_key] if isinstance(batch, dict) and data_key in batch else batch
    leaves = jax.tree.leaves(x)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError(
            f"argument `data`: got a batch with no leading batch axis ({type(batch).__name__}), "
            "expected arrays of shape (batch, ...) or dicts of them."
        )
    return int(np.shape(leaves[0])[0])


def resume_data(data: Iterable, state: TrainState) -> Any:
    """An iterator over ``data`` positioned after the batches ``state`` has consumed.

    Uses the iterator's ``set_state(state.data_state)`` when both exist (grain pipelines), else
    skips ``state.step`` batches with a warning.
    """
    it = iter(data)
    start = int(state.step)
    if start > 0:
        if isinstance(it, StatefulIterator) and state.data_state is not None:
            it.set_state(state.data_state)
        else:
            warnings.warn(
                f"sdekit.train.fit: the data iterator has no saved state; skipping {start} "
                "batches to resume.",
                stacklevel=3,
            )
            for _ in range(start):
                next(it)
    return it


def global_batch(
    batch: Any, mesh: Mesh, *, batch_size: int | None = None, data_key: str = "image"
) -> tuple[Any, int]:
    """This process's ``batch`` as global arrays sharded along ``"data"``, and the global size.

    Checks the global size against ``batch_size`` (when given) and the mesh.
    """
    rows = _local_rows(batch, data_key)
    size = rows * jax.process_count()
    if batch_size is not None and size != batch_size:
        raise ValueError(
            f"argument `batch_size`: got {batch_size}, but the data gives a global batch of "
            f"{size} ({rows} rows x {jax.process_count()} processes)."
        )
    per_device_batch_size(size, mesh)
    return make_global_batch(batch, mesh), size


def place_state(state: TrainState, mesh: Mesh, spec_fn: SpecFn = replicated_spec) -> TrainState:
    """``state`` with its arrays placed on ``mesh`` by ``spec_fn`` (host-side data state kept)."""
    data_state = state.data_state
    state = shard_state(dataclasses.replace(state, data_state=None), mesh, spec_fn)
    return dataclasses.replace(state, data_state=data_state)


def warn_young_ema(state: TrainState, *, threshold: float = 0.01) -> None:
    """Warn when an EMA without warm-up still holds more than ``threshold`` of the initial
    weights (``decay ** steps``): the EMA is younger than its decay and worse than the raw
    weights."""
    if state.ema_warmup:
        return
    n = int(state.step)
    for d in state.ema_decays:
        left = d**n
        if left > threshold:
            warnings.warn(
                f"sdekit.train: the EMA with decay {d} after {n} steps still holds "
                f"{100 * left:.1f}% of the initial (untrained) weights (it needs about "
                f"{math.ceil(math.log(threshold) / math.log(d))} steps); use ema_warmup=True or "
                "sample from the raw weights.",
                stacklevel=3,
            )


def _validate(num_steps, checkpoint_every, sample_every, log_every, batch_size,
              checkpoint_dir, sample_fn, sample_dir, keep_checkpoints, config) -> None:
    _check_int("num_steps", num_steps, 0)
    _check_int("keep_checkpoints", keep_checkpoints, 1, allow_none=True)
    if checkpoint_dir is not None and os.path.exists(checkpoint_dir) and not os.path.isdir(
        checkpoint_dir
    ):
        raise ValueError(
            f"argument `checkpoint_dir`: {str(checkpoint_dir)!r} exists and is not a directory."
        )
    if config is not None:
        try:
            json.dumps(config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"argument `config`: not JSON-serialisable ({e}).") from e
    _check_int("checkpoint_every", checkpoint_every, 1, allow_none=True)
    _check_int("sample_every", sample_every, 1, allow_none=True)
    _check_int("log_every", log_every, 1)
    _check_int("batch_size", batch_size, 1, allow_none=True)
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError(
            "argument `checkpoint_every`: given without `checkpoint_dir`; pass a directory."
        )
    if sample_every is not None and sample_fn is None:
        raise ValueError(
            "argument `sample_every`: given without `sample_fn`; pass a sampler callable."
        )
    if sample_fn is not None and not callable(sample_fn):
        raise ValueError(
            f"argument `sample_fn`: got {type(sample_fn).__name__}, expected a callable."
        )
    if sample_fn is not None and sample_dir is None and checkpoint_dir is None:
        raise ValueError(
            "argument `sample_dir`: required with `sample_fn` when there is no `checkpoint_dir`."
        )


def _default_mesh(mesh: Any) -> Mesh:
    if distributed_requested() and not jax.distributed.is_initialized():
        warnings.warn(
            "sdekit.train.fit: the environment asks for a multi-process run "
            "(JAX_COORDINATOR_ADDRESS, SLURM or Open MPI), but jax.distributed is not "
            "initialised; call sdekit.train.maybe_initialize_distributed() at the very start of "
            "the script.",
            stacklevel=3,
        )
    mesh = make_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh):
        raise ValueError(
            f"argument `mesh`: got {type(mesh).__name__}, expected a jax.sharding.Mesh."
        )
    if "data" not in mesh.axis_names:
        raise ValueError(f"argument `mesh`: got axes {mesh.axis_names}, expected a 'data' axis.")
    return mesh


def fit(
    objective: Callable,
    model: Any,
    data: Iterable,
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    key: Any,
    ema_decays: Sequence[float] | float = (0.9999,),
    ema_warmup: bool = True,
    mesh: Mesh | None = None,
    spec_fn: SpecFn = replicated_spec,
    batch_size: int | None = None,
    data_key: str = "image",
    cond_key: str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int | None = 3,
    resume: bool = True,
    sample_fn: Callable | None = None,
    sample_every: int | None = None,
    sample_dir: str | os.PathLike | None = None,
    metrics_path: str | os.PathLike | None = None,
    log_every: int = 1,
    progress: bool = True,
    config: dict | None = None,
    callback: Callable[[TrainState, dict], None] | None = None,
    donate: bool = True,
    allow_config_change: bool = False,
    lean_gradients: bool = True,
) -> TrainState:
    """Train ``model`` on ``data`` with ``objective`` for ``num_steps`` optimiser steps.

    A short loop over the jitted step of [`make_train_step`][sdekit.train.make_train_step] and
    the reusable parts [`Checkpointer`][sdekit.train.Checkpointer],
    [`MetricsLogger`][sdekit.train.MetricsLogger] and [`SampleWriter`][sdekit.train.SampleWriter]
    (read its source to write your own loop). Each step takes the next batch from ``data``
    (this process's share of a global batch), builds a global array sharded along the mesh's
    ``"data"`` axis, and runs the step (loss, gradient, optimiser, EMA). Parameters, EMA and
    optimiser state are placed with ``spec_fn`` (replicated by default). Step ``s`` (0-based)
    consumes data batch ``s``; the checkpoint ``ckpt_<n>.eqx`` and the metrics line with
    ``"step": n`` both describe the state after ``n`` completed steps.

    Resuming: with ``checkpoint_dir`` and ``resume=True`` the newest checkpoint there that
    passes its sha256 check is restored (a damaged one is skipped with a warning and kept as
    ``*.damaged``): parameters, EMA, optimiser state, step, key and the data iterator's state
    via ``data.set_state``; training continues to ``num_steps`` and equals an uninterrupted run
    bit for bit on CPU. A stored ``config`` that differs from ``config`` in a run-changing key,
    a different objective / process, or a different global batch size raises
    [`ConfigMismatchError`][sdekit.train.ConfigMismatchError] unless ``allow_config_change``.
    ``model`` may also be a [`TrainState`][sdekit.train.TrainState] to continue from.

    Failures: a non-finite loss or gradient norm raises
    [`NonFiniteError`][sdekit.train.NonFiniteError] naming the step and the last good
    checkpoint, which is kept. ``KeyboardInterrupt`` (Ctrl-C) writes a checkpoint (when
    ``checkpoint_dir`` is set) and re-raises. A full disk names the file being written.

    Logging: a tqdm bar (which says "compiling" until the first step is compiled;
    ``progress=False`` disables it) and, with ``metrics_path``, one JSON line per ``log_every``
    steps with ``step, loss, grad_norm, lr, steps_per_sec, images_per_sec``. With
    ``sample_fn(key, model) -> images`` (NHWC in [-1, 1], or ``(N, 2)`` points) a PNG grid of
    samples from the first EMA model is written to ``sample_dir/samples_<n>.png`` every
    ``sample_every`` steps (always with the same key).

    Args:
        objective: ``loss(model, key, x0, cond=None) -> scalar`` (e.g. ``sdekit.objectives.DSM``).
        model: the network (equinox Module), or a ``TrainState`` to continue.
        data: iterable of batches (arrays, or dicts with ``data_key`` and optional ``cond_key``),
            e.g. [`sdekit.data.make_pipeline`][sdekit.data.make_pipeline]; its ``get_state`` /
            ``set_state`` (if present) are stored in checkpoints.
        optimizer: optax optimiser, e.g. [`make_optimizer`][sdekit.train.make_optimizer].
        num_steps: total number of steps (including those of a resumed checkpoint).
        key: PRNG key for the training randomness.
        ema_decays: EMA rates (``()`` for none).
        ema_warmup: VDPM's EMA warm-up ``min(decay, (1 + n) / (10 + n))`` (default on; without
            it a warning says when the EMA still holds more than 1% of the initial weights).
        mesh: device mesh (default: all devices on a ``"data"`` axis, see
            [`make_mesh`][sdekit.train.make_mesh]).
        spec_fn: leaf -> ``PartitionSpec`` for parameters and optimiser state.
        batch_size: expected global batch size (checked against the data; optional).
        data_key: key of the data in dict batches.
        cond_key: key of the conditioning in dict batches (e.g. ``"label"``), or ``None``.
        checkpoint_dir: directory for checkpoints (``None``: no checkpoints).
        checkpoint_every: steps between checkpoints; a final one is always written.
        keep_checkpoints: number of recent checkpoints kept.
        resume: restore the latest good checkpoint in ``checkpoint_dir`` if there is one.
        sample_fn: ``sample_fn(key, model) -> images`` for periodic sample grids.
        sample_every: steps between sample grids.
        sample_dir: directory for sample PNGs (default ``checkpoint_dir/samples``).
        metrics_path: JSONL file the metrics are appended to.
        log_every: steps between metric lines and progress-bar updates of the loss.
        progress: show a tqdm progress bar.
        config: JSON-able run configuration stored in every checkpoint and compared on resume.
        callback: ``callback(state, metrics)`` called on the host after every step (after the
            checkpoint of that step); ``metrics`` are device arrays of that step. Whatever it
            keeps of the state (a model snapshot, the EMA) stays valid: `fit` copies the kept
            parts before the next in-place step.
        donate: update the state in place: each step's input state buffers are donated to
            its output (default), which saves a second copy of parameters, optimiser state and
            EMA during the step (1.5 GiB for the 97.6 M-parameter PSLD network). ``fit`` first
            copies the state once, so the ``model`` (or state) and ``key`` you passed stay
            valid, and copies whatever a ``callback`` or ``sample_fn`` kept of a state before
            donating it. ``False`` allocates a new state every step.
        allow_config_change: resume even if the stored configuration, objective or batch size
            differ (they are then only warned about).
        lean_gradients: differentiate the networks' GroupNorm(+SiLU) and dropout layers
            with the memory-lean gradients of
            [`with_lean_gradients`][sdekit.nets.with_lean_gradients]
            (default; same gradients, less activation memory). ``False`` for an objective that
            uses forward-mode autodiff through the network.

    Returns:
        The final [`TrainState`][sdekit.train.TrainState].
    """
    _validate(num_steps, checkpoint_every, sample_every, log_every, batch_size, checkpoint_dir,
              sample_fn, sample_dir, keep_checkpoints, config)
    mesh = _default_mesh(mesh)
    if batch_size is not None:
        per_device_batch_size(batch_size, mesh)
    main = jax.process_index() == 0
    if isinstance(model, TrainState):
        state = model
    else:
        state = init_state(model, optimizer, key=key, ema_decays=ema_decays, ema_warmup=ema_warmup)
    if isinstance(objective, AbstractObjective) and state.aux is None:
        state = dataclasses.replace(state, aux=objective.init_aux(state.model))
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = Checkpointer(checkpoint_dir, every=checkpoint_every, keep=keep_checkpoints,
                            config=config, allow_config_change=allow_config_change)
        if resume:
            state = ckpt.restore(state)
            if ckpt.last is not None and progress and main:
                tqdm.write(f"sdekit.train.fit: resumed from {ckpt.last} (step {int(state.step)})")
    samples = None
    if sample_fn is not None:
        where = sample_dir if sample_dir is not None else pathlib.Path(checkpoint_dir) / "samples"
        samples = SampleWriter(sample_fn, where, every=sample_every,
                               key=jr.fold_in(state.key, 0x5A4D))
    it = resume_data(data, state)
    start = int(state.step)
    state = place_state(state, mesh, spec_fn)
    if donate:
        # the caller's arrays (model, key, a state passed in) must outlive the donation, and
        # no buffer may be donated twice (an EMA can share the model's arrays)
        state = jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, state)
    step_fn = make_train_step(objective, optimizer, mesh=mesh, spec_fn=spec_fn,
                              data_key=data_key, cond_key=cond_key, donate=donate,
                              lean_gradients=lean_gradients)
    pbar = tqdm(total=num_steps, initial=start, disable=not progress or not main, desc="train",
                dynamic_ncols=True)
    log = MetricsLogger(metrics_path, every=log_every, total=num_steps, pbar=pbar)
    pending = None  # (step, metrics) not yet checked: overlaps host work with the next step

    def flush(p):
        if p is not None:
            log(*p, checkpoint=ckpt.last if ckpt else None)

    try:
        for s in range(start, num_steps):
            batch = next(it, None)
            if batch is None:
                warnings.warn(f"sdekit.train.fit: the data ran out after {s} steps; stopping "
                              "early.", stacklevel=2)
                break
            data_state = it.get_state() if isinstance(it, StatefulIterator) else None
            gbatch, log.batch_size = global_batch(batch, mesh, batch_size=batch_size,
                                                  data_key=data_key)
            if s == start:
                if ckpt is not None:
                    ckpt.check_run(batch_size=log.batch_size, objective=fingerprint(objective))
                pbar.set_description("train (compiling the step...)")
                # compile ahead of the first call, with XLA's own CPU convolutions, and hand
                # the compiler's freed memory back to the OS before the step's own peak
                compiled = _compiled_step(step_fn, dataclasses.replace(state, data_state=None),
                                          gbatch, donate)
                trim_host_memory()
            new_state, metrics = compiled(dataclasses.replace(state, data_state=None), gbatch)
            if s == start:
                pbar.set_description("train")
            flush(pending)
            state, pending, n = dataclasses.replace(new_state, data_state=data_state), None, s + 1
            pending = (n, metrics)
            pbar.update(1)
            ckpt_due = ckpt is not None and ckpt.due(n)
            sample_due = samples is not None and samples.due(n)
            if ckpt_due or sample_due or callback is not None:
                flush(pending)
                pending = None
            if ckpt_due:
                ckpt.save(state)
            if sample_due or callback is not None:
                # user code may keep parts of the state: those are copied before the next
                # step donates them (nothing is copied when nothing was kept)
                escapes = Escapes(state)
                with escapes:
                    if sample_due:
                        pbar.set_description("train (writing a sample grid...)")
                        samples.write(n, state.ema_model())
                        pbar.set_description("train")
                    if callback is not None:
                        callback(state, metrics)
                if donate:
                    state = escapes.protect(state)
        flush(pending)
        pending = None
        if ckpt is not None:
            ckpt.save(state)
    except KeyboardInterrupt:
        flush(pending)  # raises NonFiniteError instead of saving a bad state
        if ckpt is not None:
            ckpt.save(state)
            if progress and main:
                tqdm.write(f"sdekit.train.fit: interrupted at step {int(state.step)}; "
                           f"checkpoint {ckpt.last}")
        raise
    finally:
        pbar.close()
        log.close()
    warn_young_ema(state)
    return state
