"""Where the files of a distributed run live: local paths (shared storage such as NFS on a cluster) or
object-store URLs (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``) through ``pyarrow.fs``,
the filesystem layer Ray Data itself uses.

Local paths are handled by the local run's own code (planning, decoding, atomic writes), so a
distributed run over local paths writes the same bytes as ``imgxlate convert`` without ``--ray``.
For a URL, a worker downloads the input into a private temp folder, decodes it with the same
decoder, writes the result with the same writer into that folder and uploads the finished file in
one stream: object stores publish an object only when its upload completes, so a reader never
sees half a file (that is the "atomic where the filesystem allows" of the docs).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from imgxlate.errors import UsageError
from imgxlate.extras import pip_install

# scheme://... with a scheme of two or more letters (a Windows drive letter C:\ is a local path)
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(location: str | os.PathLike[str]) -> bool:
    return bool(_URL_RE.match(os.fspath(location)))


def _pyarrow_fs() -> Any:
    try:
        import pyarrow.fs as pafs
    except ImportError as err:  # pragma: no cover - ray[data] depends on pyarrow
        raise UsageError(f"object-store URLs need pyarrow, which comes with Ray Data: {pip_install('ray')}") from err
    return pafs


def open_url(url: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for a URL; a UsageError naming the URL when pyarrow does
    not know its scheme or cannot reach it (credentials come from the usual environment)."""
    pafs = _pyarrow_fs()
    try:
        return pafs.FileSystem.from_uri(url)
    except Exception as err:
        raise UsageError(f"cannot open {url}: {err}") from err


def join_url(base: str, rel: str) -> str:
    """``base`` (a URL, already percent-encoded) + a relative path with '/' separators (plain text:
    spaces, '%', '#' and unicode are percent-encoded here)."""
    return base.rstrip("/") + "/" + quote(rel.lstrip("/"), safe="/")


def list_files(url: str, *, recursive: bool = True) -> list[tuple[str, str]]:
    """Every regular file below ``url`` (or ``url`` itself when it is a file) as (url, path relative to
    the listed folder, with '/' separators), sorted by relative path; hidden names ('.'-prefixed
    parts) are left out as in the local walk."""
    pafs = _pyarrow_fs()
    fs, path = open_url(url)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [(url, PurePosixPath(path).name)]
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"{url} does not exist")
    selector = pafs.FileSelector(path, recursive=recursive)
    found = []
    for entry in fs.get_file_info(selector):
        if entry.type != pafs.FileType.File:
            continue
        rel = PurePosixPath(entry.path).relative_to(PurePosixPath(path)).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        found.append((join_url(url, rel), rel))
    return sorted(found, key=lambda item: item[1])


def exists(url: str) -> bool:
    pafs = _pyarrow_fs()
    fs, path = open_url(url)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def head(url: str, n: int = 16) -> bytes:
    """The first ``n`` bytes of a file (for format sniffing); b"" when it cannot be read."""
    try:
        fs, path = open_url(url)
        with fs.open_input_stream(path) as fh:
            return bytes(fh.read(n))
    except (OSError, UsageError):
        return b""


@contextmanager
def scratch() -> Iterator[Path]:
    """A private temp folder for one file's download/encode, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="imgxlate-ray-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def download(url: str, folder: Path) -> Path:
    """Copy ``url`` into ``folder`` under its own name; the local path."""
    fs, path = open_url(url)
    local = folder / PurePosixPath(path).name
    with fs.open_input_stream(path) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    return local


def upload(local: Path, url: str) -> None:
    """Upload a finished local file to ``url`` in one stream (published whole when the stream closes),
    then check the size the store reports."""
    fs, path = open_url(url)
    parent = str(PurePosixPath(path).parent)
    if parent not in ("", "."):
        fs.create_dir(parent, recursive=True)
    size = local.stat().st_size
    with open(local, "rb") as src, fs.open_output_stream(path) as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    written = fs.get_file_info(path).size
    if written is not None and written != size:
        raise OSError(f"upload of {url} is incomplete: {written} of {size} bytes")
