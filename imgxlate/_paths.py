"""Path identity: when two paths name one file or folder, existing or to be made (:func:`path_key`).

Links are resolved; on a file system that ignores case (exFAT and FAT on SD cards and USB sticks, APFS
and NTFS by default) the part of a path from its mount point down is compared case-folded and in
Unicode NFC. Whether a file system ignores case is asked of it, once per folder. Used wherever a
batch decides that ``--out`` is an input folder, that two outputs collide, or which files
``--overwrite`` must never touch (:mod:`imgxlate.inputs`, ``imgxlate video``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import unicodedata


def _swap_ascii(name: str) -> str:
    """``name`` with its ASCII letters in the other case (``str.swapcase`` turns 'ß' into 'SS': a name
    that never exists, whatever the disk)."""
    return "".join(c.swapcase() if c.isascii() else c for c in name)


def _mount_root(folder: str) -> str:
    """The top folder of the file system that holds the existing ``folder`` (where the device changes)."""
    dev = os.stat(folder).st_dev
    while True:
        parent = os.path.dirname(folder)
        if parent == folder:
            return folder
        try:
            if os.stat(parent).st_dev != dev:
                return folder
        except OSError:
            return folder
        folder = parent


def _folds_case_at(folder: str) -> bool:
    """Does the file system of the existing ``folder`` ignore case in names? Asked of the disk: one of
    the folder's entries (else the folder itself, within its parent on the same device) looked up under
    its other case, which must exist and not be listed as a name of its own; in an empty folder of
    its own device (a freshly formatted card), a temp file made and removed for the question."""
    probe: tuple[str, str] | None = None
    with contextlib.suppress(OSError), os.scandir(folder) as it:
        probe = next(((folder, e.name) for e in it if _swap_ascii(e.name) != e.name), None)
    if probe is None:
        parent, name = os.path.split(folder.rstrip(os.sep)) if folder.rstrip(os.sep) else ("", "")
        with contextlib.suppress(OSError):
            if _swap_ascii(name) != name and os.stat(parent).st_dev == os.stat(folder).st_dev:
                probe = (parent, name)
    if probe is None:
        import tempfile

        from imgxlate._atomic import TEMP_PREFIX

        try:
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
        except OSError:  # a folder nothing can be written into: those systems' defaults
            return sys.platform in ("darwin", "win32")
        os.close(fd)
        try:
            head, name = os.path.split(tmp)
            return os.path.lexists(os.path.join(head, _swap_ascii(name)))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    parent, name = probe
    try:
        return os.path.exists(os.path.join(parent, _swap_ascii(name))) and _swap_ascii(name) not in os.listdir(parent)
    except OSError:
        return False


@functools.lru_cache(maxsize=256)
def _case_root(folder: str) -> str | None:
    """For the existing ``folder``: the top folder of its file system when that file system ignores
    case (exFAT and FAT on SD cards and USB sticks; APFS and NTFS by default), else None. Below it,
    ``trip`` and ``TRIP`` are one folder, though ``resolve()`` keeps each spelling as typed; above it
    (the mount point's own path, on another disk) they are not."""
    try:
        root = _mount_root(folder)
    except OSError:
        return None
    return root if _folds_case_at(folder) else None


def path_key(path: str | os.PathLike[str]) -> str:
    """What two paths must share to name one file or folder, existing or to be made: the absolute path
    with links resolved; the part of it on a file system that ignores case (:func:`_case_root`, asked
    of the deepest folder of it that exists) case-folded and in Unicode NFC (macOS spells names
    decomposed)."""
    text = os.path.expanduser(os.fspath(path))
    try:
        text = os.path.realpath(text)
    except (OSError, RuntimeError, ValueError):
        text = os.path.abspath(text)
    folder = text
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    root = _case_root(folder)
    if root is None:
        return text
    return text[:len(root)] + unicodedata.normalize("NFC", text[len(root):]).casefold()


def inside_key(key: str, folder_key: str) -> bool:
    """Is the path whose :func:`path_key` is ``key`` ``folder_key``'s folder or inside it?"""
    return key == folder_key or key.startswith(folder_key.rstrip(os.sep) + os.sep)
