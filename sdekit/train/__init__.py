"""Training: optax optimisers, EMA, data-parallel sharding, checkpoints, the ``fit`` loop and
the parts it is made of (checkpointer, metrics logger, sample writer) for custom loops."""

from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import clean_orphan_tmp_files as clean_orphan_tmp_files
from ._checkpoint import (
    latest_checkpoint as latest_checkpoint,
)
from ._checkpoint import (
    list_checkpoints as list_checkpoints,
)
from ._checkpoint import (
    read_header as read_header,
)
from ._checkpoint import (
    restore_checkpoint as restore_checkpoint,
)
from ._checkpoint import restore_latest_good as restore_latest_good
from ._checkpoint import (
    save_checkpoint as save_checkpoint,
)
from ._checkpoint import verify_checkpoint as verify_checkpoint
from ._from_torch import convert_torch_checkpoint as convert_torch_checkpoint
from ._images import image_grid as image_grid
from ._images import save_image_grid as save_image_grid
from ._load import load_model as load_model
from ._load import model_config as model_config
from ._loop import fit as fit
from ._loop import global_batch as global_batch
from ._loop import make_train_step as make_train_step
from ._loop import place_state as place_state
from ._loop import resume_data as resume_data
from ._loop import warn_young_ema as warn_young_ema
from ._optim import (
    current_lr as current_lr,
)
from ._optim import (
    ema_decay_at as ema_decay_at,
)
from ._optim import (
    ema_update as ema_update,
)
from ._optim import (
    has_updated as has_updated,
)
from ._optim import (
    make_optimizer as make_optimizer,
)
from ._optim import (
    make_schedule as make_schedule,
)
from ._parts import HARMLESS_CONFIG_KEYS as HARMLESS_CONFIG_KEYS
from ._parts import Checkpointer as Checkpointer
from ._parts import ConfigMismatchError as ConfigMismatchError
from ._parts import MetricsLogger as MetricsLogger
from ._parts import NonFiniteError as NonFiniteError
from ._parts import SampleWriter as SampleWriter
from ._parts import compare_config as compare_config
from ._parts import fingerprint as fingerprint
from ._sharding import (
    DATA_AXIS as DATA_AXIS,
)
from ._sharding import (
    batch_sharding as batch_sharding,
)
from ._sharding import (
    distributed_requested as distributed_requested,
)
from ._sharding import (
    make_global_batch as make_global_batch,
)
from ._sharding import (
    make_mesh as make_mesh,
)
from ._sharding import (
    maybe_initialize_distributed as maybe_initialize_distributed,
)
from ._sharding import (
    per_device_batch_size as per_device_batch_size,
)
from ._sharding import (
    replicated_spec as replicated_spec,
)
from ._sharding import (
    shard_state as shard_state,
)
from ._sharding import (
    state_shardings as state_shardings,
)
from ._state import TrainState as TrainState
from ._state import init_state as init_state

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "ConfigMismatchError",
    "HARMLESS_CONFIG_KEYS",
    "MetricsLogger",
    "SampleWriter",
    "clean_orphan_tmp_files",
    "compare_config",
    "convert_torch_checkpoint",
    "fingerprint",
    "global_batch",
    "load_model",
    "model_config",
    "place_state",
    "restore_latest_good",
    "resume_data",
    "verify_checkpoint",
    "warn_young_ema",
    "DATA_AXIS",
    "NonFiniteError",
    "TrainState",
    "batch_sharding",
    "current_lr",
    "distributed_requested",
    "ema_decay_at",
    "ema_update",
    "fit",
    "has_updated",
    "image_grid",
    "init_state",
    "latest_checkpoint",
    "list_checkpoints",
    "make_global_batch",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "maybe_initialize_distributed",
    "per_device_batch_size",
    "read_header",
    "replicated_spec",
    "restore_checkpoint",
    "save_checkpoint",
    "save_image_grid",
    "shard_state",
    "state_shardings",
]
