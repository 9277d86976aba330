"""Test settings. Must run before anything imports jax."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")

import jax  # noqa: E402

_cache = os.environ.get("SDEKIT_JAX_CACHE", os.path.expanduser("~/.cache/sdekit-jax"))
if _cache:
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from absl import flags  # noqa: E402

if not flags.FLAGS.is_parsed():  # grain 0.2.18 multiprocess workers read absl flags
    flags.FLAGS.mark_as_parsed()

import json  # noqa: E402
import pathlib  # noqa: E402

import pytest  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parent / "data"


def load_reference(name: str) -> dict:
    """Reference values computed by the original implementations (copied from shared/spec)."""
    return json.loads((DATA / f"{name}_reference.json").read_text())


@pytest.fixture(scope="session")
def vdpm_ref():
    return load_reference("vdpm")


@pytest.fixture(scope="session")
def psld_ref():
    return load_reference("psld")
