"""Performance settings, applied explicitly: nothing here runs when sdekit is imported.

**The XLA:CPU convolution setting.** jaxlib's CPU backend (0.8 and later) runs single
convolutions through YNNPACK, whose weight-gradient and large 3x3 kernels were measured
2-4x slower than XLA's own (see the docs' performance page). sdekit turns them off in two ways:

- [`compiler_options`][sdekit.perf.compiler_options]: the per-program XLA option
  (``xla_cpu_experimental_ynn_fusion_type`` without ``INDIVIDUAL_CONVOLUTION``) that
  [`fit`][sdekit.train.fit] compiles its training step with. It changes nothing else in the
  process and works after JAX has started.
- [`configure`][sdekit.perf.configure] (call it first thing in a script, before any JAX
  computation; the examples and benchmarks do): appends
  [`XLA_CPU_FLAG`][sdekit.perf.XLA_CPU_FLAG] to ``XLA_FLAGS`` so that every program of the
  process (sampling included) gets it, and turns on the persistent compilation cache.

Either is skipped when ``SDEKIT_XLA_CPU_FLAGS`` is ``0``/``false``/``no``/``off``, when the
user's ``XLA_FLAGS`` already mention the option (a user setting always wins), when JAX's
platforms exclude the CPU, or when the installed jaxlib does not know the option. The setting
only changes which CPU kernels run convolutions (same maths, float32 round-off differences).

**Host memory after compiling.** XLA's compiler frees what it allocated, but glibc keeps the
freed pages in the process (measured: 1.1 GiB left in RSS after compiling the PSLD CIFAR-10
network's training step). [`trim_host_memory`][sdekit.perf.trim_host_memory] hands them back
to the operating system; `fit` calls it once its step is compiled.

**Compilation cache.** [`enable_compilation_cache`][sdekit.perf.enable_compilation_cache] turns
on JAX's persistent compilation cache in a directory of your choice (for a shared cache, point
``JAX_COMPILATION_CACHE_DIR`` or ``SDEKIT_CACHE_DIR`` at a shared folder).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import os
import pathlib
from typing import Any

import jax

__all__ = [
    "XLA_CPU_FLAG",
    "XLA_CPU_FLAG_STATUS",
    "add_compilation_cache_flag",
    "compilation_cache_from_args",
    "compiler_options",
    "configure",
    "configure_xla_cpu",
    "default_cache_dir",
    "enable_compilation_cache",
    "trim_host_memory",
]

XLA_CPU_FLAG: str = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
"""The flag [`configure`][sdekit.perf.configure] appends to ``XLA_FLAGS`` on CPU (XLA's own
convolution kernels instead of YNNPACK's single-convolution fusions)."""

_FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
_NEEDLES = (_FLAG_NAME.encode(), b"LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION")
_OPT_OUT = "SDEKIT_XLA_CPU_FLAGS"
#: The default fusion set (individual dots and convolutions, reductions) without convolutions:
#: the compile-option form of `XLA_CPU_FLAG` (checked equal on the optimised HLO).
_COMPILER_OPTIONS = {_FLAG_NAME: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}

XLA_CPU_FLAG_STATUS: dict = {"applied": False, "reason": "configure() not called"}
"""What [`configure_xla_cpu`][sdekit.perf.configure_xla_cpu] did: ``applied`` (bool) and
``reason`` (why, in words)."""


def default_cache_dir() -> pathlib.Path:
    """``$SDEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sdekit``, else ``~/.cache/sdekit``."""
    base = os.environ.get("SDEKIT_CACHE_DIR")
    if base:
        return pathlib.Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "sdekit"


def _opted_out() -> bool:
    return os.environ.get(_OPT_OUT, "").strip().lower() in ("0", "false", "no", "off")


def _cpu_excluded() -> str | None:
    platforms = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or ""
    if platforms and "cpu" not in [p.strip() for p in platforms.split(",")]:
        return platforms
    return None


def _jaxlib_libraries() -> list[pathlib.Path]:
    import jaxlib

    root = pathlib.Path(jaxlib.__file__).resolve().parent
    libs = [
        p
        for pattern in ("*.so", "*.dylib", "*.pyd", "*/*.so", "*/*.dylib", "*/*.pyd")
        for p in root.glob(pattern)
        if p.is_file()
    ]
    return sorted(libs, key=lambda p: p.stat().st_size, reverse=True)


def _scan(libs: list[pathlib.Path]) -> bool:
    import mmap

    found = set()
    for lib in libs:
        with open(lib, "rb") as f:
            try:
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):
                continue
            with m:
                found.update(n for n in _NEEDLES if m.find(n) >= 0)
        if len(found) == len(_NEEDLES):
            return True
    return False


def _jaxlib_knows_flag() -> bool:
    """Whether the installed jaxlib's shared libraries contain the flag and its value (cached
    per library set: path, size and modification time). XLA aborts the process on an unknown
    flag in ``XLA_FLAGS``, so this is checked before the flag is set."""
    libs = _jaxlib_libraries()
    ident = hashlib.sha256(
        json.dumps([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in libs]).encode()
    ).hexdigest()[:16]
    cache = default_cache_dir() / f"xla_cpu_flag-{ident}.json"
    try:
        return bool(json.loads(cache.read_text())["known"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    known = _scan(libs)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"known": known, "flag": XLA_CPU_FLAG}))
    except OSError:
        pass
    return known


def _backends_initialised() -> bool:
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


def configure_xla_cpu() -> bool:
    """Append [`XLA_CPU_FLAG`][sdekit.perf.XLA_CPU_FLAG] to ``XLA_FLAGS`` if it is safe and
    useful (see the module docstring); it must run before JAX starts its backend (XLA reads
    ``XLA_FLAGS`` once, then), and never does once it has.

    Returns whether the flag was appended now;
    [`XLA_CPU_FLAG_STATUS`][sdekit.perf.XLA_CPU_FLAG_STATUS] records the reason either way.
    """

    def done(applied: bool, reason: str) -> bool:
        XLA_CPU_FLAG_STATUS.update(applied=applied, reason=reason)
        return applied

    if _opted_out():
        return done(False, f"opted out with {_OPT_OUT}")
    user = os.environ.get("XLA_FLAGS", "")
    if _FLAG_NAME in user:
        already = XLA_CPU_FLAG in user.split()
        return done(already, "already in XLA_FLAGS" if already else "user's XLA_FLAGS set it")
    excluded = _cpu_excluded()
    if excluded:
        return done(False, f"JAX platforms {excluded!r} exclude cpu")
    if _backends_initialised():
        return done(False, "a JAX backend was initialised before configure() was called")
    try:
        known = _jaxlib_knows_flag()
    except OSError as e:  # unreadable install: do not guess
        return done(False, f"could not inspect jaxlib ({e})")
    if not known:
        return done(False, "this jaxlib does not know the flag")
    os.environ["XLA_FLAGS"] = (user + " " + XLA_CPU_FLAG).strip()
    return done(True, "appended to XLA_FLAGS")


_OPTIONS_OK: dict[str, bool] = {}


def compiler_options() -> dict[str, str]:
    """The XLA compile options for the programs sdekit compiles itself (`fit`'s training
    step): XLA's own CPU convolutions instead of YNNPACK's. Empty when the process already
    has the setting in ``XLA_FLAGS``, when opted out (``SDEKIT_XLA_CPU_FLAGS=0``), off CPU,
    or when this jaxlib does not know the option (tested once with a tiny compile)."""
    if _opted_out() or _FLAG_NAME in os.environ.get("XLA_FLAGS", "") or _cpu_excluded():
        return {}
    if jax.default_backend() != "cpu":
        return {}
    if "ok" not in _OPTIONS_OK:
        try:
            jax.jit(lambda x: x + 1).lower(1.0).compile(compiler_options=dict(_COMPILER_OPTIONS))
            _OPTIONS_OK["ok"] = True
        except Exception:  # noqa: BLE001 - any rejection means: do not use the option
            _OPTIONS_OK["ok"] = False
    return dict(_COMPILER_OPTIONS) if _OPTIONS_OK["ok"] else {}


def enable_compilation_cache(
    enabled: bool = True,
    cache_dir: str | os.PathLike | None = None,
    *,
    min_compile_time_secs: float = 1.0,
) -> str | None:
    """Turn on JAX's persistent compilation cache (a second run of the same program then
    loads its compiled executables from disk instead of recompiling).

    **Arguments:**

    - `enabled`: ``False`` does nothing (for a ``--no-compile-cache`` flag).
    - `cache_dir`: the directory; default ``$JAX_COMPILATION_CACHE_DIR`` if set, else
      ``default_cache_dir() / "jax"``. A directory shared between machines or users works the
      same way (every entry is keyed by the program, the jaxlib and the devices).
    - `min_compile_time_secs`: only programs that took at least this long to compile are
      stored.

    **Returns:** the directory used, or ``None`` when disabled.
    """
    if not enabled:
        return None
    if min_compile_time_secs < 0:
        raise ValueError(
            f"argument `min_compile_time_secs`: got {min_compile_time_secs!r}, expected >= 0."
        )
    path = cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_cache_dir() / "jax"
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    return path


def configure(*, xla_cpu: bool = True, compilation_cache: bool = True,
              cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Apply sdekit's performance settings to this process; call it first thing in a script,
    before any JAX computation (the examples do).

    **Arguments:**

    - `xla_cpu`: append the XLA:CPU convolution flag
      ([`configure_xla_cpu`][sdekit.perf.configure_xla_cpu]).
    - `compilation_cache`: turn on the persistent compilation cache
      ([`enable_compilation_cache`][sdekit.perf.enable_compilation_cache]).
    - `cache_dir`: the compilation cache's directory (default ``~/.cache/sdekit/jax``).

    **Returns:** ``{"xla_cpu": XLA_CPU_FLAG_STATUS, "compilation_cache": directory or None}``.
    """
    if xla_cpu:
        configure_xla_cpu()
    path = enable_compilation_cache(compilation_cache, cache_dir)
    return {"xla_cpu": dict(XLA_CPU_FLAG_STATUS), "compilation_cache": path}


def add_compilation_cache_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--no-compile-cache`` and ``--compile-cache-dir DIR`` to an example's parser (or
    argument group); after parsing, call
    [`compilation_cache_from_args`][sdekit.perf.compilation_cache_from_args]."""
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (on by default: a second run "
        "loads its compiled programs instead of recompiling)",
    )
    parser.add_argument(
        "--compile-cache-dir",
        default=None,
        help="directory of the compilation cache (default: $JAX_COMPILATION_CACHE_DIR or "
        "~/.cache/sdekit/jax; a shared folder works)",
    )


def compilation_cache_from_args(args: argparse.Namespace) -> str | None:
    """``enable_compilation_cache(not args.no_compile_cache, args.compile_cache_dir)`` for the
    flags of [`add_compilation_cache_flag`][sdekit.perf.add_compilation_cache_flag]."""
    return enable_compilation_cache(not vars(args).get("no_compile_cache", False),
                                    vars(args).get("compile_cache_dir"))


def trim_host_memory() -> bool:
    """Return the C heap's free pages to the operating system (glibc's ``malloc_trim(0)``).

    After XLA compiles a large program its freed working memory stays in the process's RSS;
    this releases it, so that a later peak (the first training step) does not add to it.
    Safe to call at any time; it frees nothing in use. Returns ``True`` when memory was
    released, ``False`` where there is nothing to call (not glibc, e.g. macOS or musl).
    """
    if "fn" not in _MALLOC_TRIM:
        fn = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            fn = libc.malloc_trim
            fn.argtypes = [ctypes.c_size_t]
            fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            fn = None
        _MALLOC_TRIM["fn"] = fn
    fn = _MALLOC_TRIM["fn"]
    if fn is None:
        return False
    return bool(fn(0))


_MALLOC_TRIM: dict[str, Any] = {}
