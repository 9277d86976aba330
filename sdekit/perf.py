"""Performance settings: XLA:CPU convolution flag and the persistent compilation cache.

**The XLA:CPU convolution flag.** jaxlib's CPU backend (0.8 and later) runs single
convolutions through YNNPACK, whose weight-gradient and large 3x3 kernels were measured
2-4x slower than XLA's own (see the docs' performance page). On import, sdekit appends
[`XLA_CPU_FLAG`][sdekit.perf.XLA_CPU_FLAG] to the ``XLA_FLAGS`` environment variable when all
of these hold (see [`configure_xla_cpu`][sdekit.perf.configure_xla_cpu]):

- ``SDEKIT_XLA_CPU_FLAGS`` is not ``0`` / ``false`` / ``no`` / ``off`` (the opt-out);
- the user's ``XLA_FLAGS`` does not mention ``xla_cpu_experimental_ynn_fusion_type`` (a user
  setting always wins, whatever its value);
- JAX's platforms (``JAX_PLATFORMS`` / ``jax_platforms``) are unset or include ``cpu``;
- JAX has not yet initialised a backend (XLA reads ``XLA_FLAGS`` once, at that moment; setting
  it later would change nothing, so sdekit does not touch it);
- the installed jaxlib knows the flag and its value (checked once per jaxlib build by looking
  for both names in its shared library, and cached): XLA aborts the process on an unknown
  flag, so a jaxlib that dropped this experimental flag simply does not get it.

The flag only changes which CPU kernels run convolutions (same maths, float32 round-off
differences); GPU and TPU backends ignore it.

**Host memory after compiling.** XLA's compiler frees what it allocated, but glibc keeps the
freed pages in the process (measured: 1.1 GiB left in RSS after compiling the PSLD CIFAR-10
network's training step). [`trim_host_memory`][sdekit.perf.trim_host_memory] hands them back
to the operating system; [`fit`][sdekit.train.fit] calls it once the first step (the compile)
has run, so the compile's memory does not stack on top of the training step's.

**Compilation cache.** [`enable_compilation_cache`][sdekit.perf.enable_compilation_cache] turns
on JAX's persistent compilation cache (the examples call it unless ``--no-compile-cache``).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import os
import pathlib

import jax

__all__ = [
    "XLA_CPU_FLAG",
    "XLA_CPU_FLAG_STATUS",
    "add_compilation_cache_flag",
    "compilation_cache_from_args",
    "configure_xla_cpu",
    "default_cache_dir",
    "enable_compilation_cache",
    "trim_host_memory",
]

XLA_CPU_FLAG: str = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
"""The flag sdekit appends to ``XLA_FLAGS`` on CPU (XLA's own convolution kernels instead of
YNNPACK's single-convolution fusions)."""

_FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
_NEEDLES = (_FLAG_NAME.encode(), b"LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION")
_OPT_OUT = "SDEKIT_XLA_CPU_FLAGS"

XLA_CPU_FLAG_STATUS: dict = {"applied": False, "reason": "not checked yet"}
"""What [`configure_xla_cpu`][sdekit.perf.configure_xla_cpu] did at import: ``applied``
(bool) and ``reason`` (why, in words)."""


def default_cache_dir() -> pathlib.Path:
    """``$SDEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sdekit``, else ``~/.cache/sdekit``."""
    base = os.environ.get("SDEKIT_CACHE_DIR")
    if base:
        return pathlib.Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "sdekit"


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
    per library set: path, size and modification time)."""
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

    check = getattr(xla_bridge, "backends_are_initialized", None)
    if check is not None:
        return bool(check())
    return bool(getattr(xla_bridge, "_backends", {}))


def configure_xla_cpu() -> bool:
    """Append [`XLA_CPU_FLAG`][sdekit.perf.XLA_CPU_FLAG] to ``XLA_FLAGS`` if it is safe and
    useful (the conditions are listed in the module docstring); called on ``import sdekit``.

    Returns whether the flag was appended now;
    [`XLA_CPU_FLAG_STATUS`][sdekit.perf.XLA_CPU_FLAG_STATUS] records the reason either way.
    Opt out with ``SDEKIT_XLA_CPU_FLAGS=0`` before importing sdekit.
    """

    def done(applied: bool, reason: str) -> bool:
        XLA_CPU_FLAG_STATUS.update(applied=applied, reason=reason)
        return applied

    if os.environ.get(_OPT_OUT, "").strip().lower() in ("0", "false", "no", "off"):
        return done(False, f"opted out with {_OPT_OUT}")
    user = os.environ.get("XLA_FLAGS", "")
    if _FLAG_NAME in user:
        already = XLA_CPU_FLAG in user.split()
        return done(already, "already in XLA_FLAGS" if already else "user's XLA_FLAGS set it")
    platforms = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or ""
    if platforms and "cpu" not in [p.strip() for p in platforms.split(",")]:
        return done(False, f"JAX platforms {platforms!r} exclude cpu")
    if _backends_initialised():
        return done(False, "a JAX backend was initialised before sdekit was imported")
    try:
        known = _jaxlib_knows_flag()
    except OSError as e:  # unreadable install: do not guess
        return done(False, f"could not inspect jaxlib ({e})")
    if not known:
        return done(False, "this jaxlib does not know the flag")
    os.environ["XLA_FLAGS"] = (user + " " + XLA_CPU_FLAG).strip()
    return done(True, "appended to XLA_FLAGS")


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
      ``default_cache_dir() / "jax"``.
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
        "~/.cache/sdekit/jax)",
    )


def compilation_cache_from_args(args: argparse.Namespace) -> str | None:
    """``enable_compilation_cache(not args.no_compile_cache, args.compile_cache_dir)`` for the
    flags of [`add_compilation_cache_flag`][sdekit.perf.add_compilation_cache_flag]."""
    return enable_compilation_cache(
        not getattr(args, "no_compile_cache", False), getattr(args, "compile_cache_dir", None)
    )


configure_xla_cpu()  # on import (sdekit/__init__.py imports this module first)


def trim_host_memory() -> bool:
    """Return the C heap's free pages to the operating system (glibc's ``malloc_trim(0)``).

    After XLA compiles a large program its freed working memory stays in the process's RSS;
    this releases it, so that a later peak (the first training step) does not add to it.
    Safe to call at any time; it frees nothing in use. Returns ``True`` when memory was
    released, ``False`` where there is nothing to call (not glibc, e.g. macOS or musl).
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        fn = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            fn = getattr(libc, "malloc_trim", False)
            if fn:
                fn.argtypes = [ctypes.c_size_t]
                fn.restype = ctypes.c_int
        except OSError:
            fn = False
        _MALLOC_TRIM = fn
    if not _MALLOC_TRIM:
        return False
    return bool(_MALLOC_TRIM(0))


_MALLOC_TRIM = None
