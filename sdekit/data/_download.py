"""Cache directory, downloads with MD5 verification."""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import tempfile
import urllib.error
import urllib.request

__all__ = ["cache_dir", "md5sum", "download", "fetch", "ChecksumError"]


class ChecksumError(ValueError):
    """A file's MD5 checksum differs from the expected one."""


def cache_dir(root: str | os.PathLike | None = None) -> pathlib.Path:
    """The data cache directory: ``root``, else ``$SDEKIT_DATA``, else ``~/.cache/sdekit``."""
    if root is not None:
        return pathlib.Path(root).expanduser()
    env = os.environ.get("SDEKIT_DATA")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/sdekit").expanduser()


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex MD5 digest of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _verify(path: pathlib.Path, md5: str | None, origin: str) -> None:
    if md5 is None:
        return
    got = md5sum(path)
    if got != md5.lower():
        raise ChecksumError(
            f"{path}: MD5 checksum {got} does not match the expected {md5} ({origin}). The file is "
            "corrupt or not the official one; delete it and download it again."
        )


def download(
    url: str, path: str | os.PathLike, md5: str | None = None, *, timeout: float = 60.0
) -> pathlib.Path:
    """Download ``url`` to ``path`` atomically and check its MD5.

    Any URL scheme ``urllib`` understands works (``https://``, ``file://``). The data is written
    to a temporary file next to ``path`` and renamed only after the checksum matched.

    Raises:
        ChecksumError: the downloaded file's MD5 is not ``md5`` (nothing is left at ``path``).
        RuntimeError: the download failed (e.g. no network); the message says where to put the
            file by hand.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(r, f)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RuntimeError(
                f"could not download {url} ({e}). Download it by other means and place it at "
                f"{path} "
                "(the cache directory is set by the `root` argument or the SDEKIT_DATA environment "
                "variable)."
            ) from e
        _verify(pathlib.Path(tmp), md5, f"downloaded from {url}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def fetch(
    filename: str,
    url: str,
    md5: str | None,
    *,
    root: str | os.PathLike | None = None,
    download_ok: bool = True,
) -> pathlib.Path:
    """The path of ``filename`` in the cache directory, downloading it if missing.

    An existing file is checked against ``md5`` too.

    Args:
        filename: file name inside the cache directory.
        url: where to download it from.
        md5: expected MD5 hex digest (``None`` skips the check).
        root: cache directory (see [`cache_dir`][sdekit.data.cache_dir]).
        download_ok: if ``False``, a missing file raises ``FileNotFoundError`` instead.
    """
    path = cache_dir(root) / filename
    if path.is_file():
        _verify(path, md5, "file in the cache")
        return path
    if not download_ok:
        raise FileNotFoundError(
            f"{path} does not exist and `download` is False: download {url} (MD5 {md5}) and place "
            "it "
            f"at {path}, or set SDEKIT_DATA / `root` to the directory that holds it."
        )
    return download(url, path, md5)
