"""One exclusive lock file per thing being written, held by a process while it writes.

An ``flock`` on a hidden file beside (or inside) the target, so the kernel drops it when its process
dies: a SIGKILL leaves no stale lock. The file is removed at the end while still held, and a process
that locked a file just removed that way locks the new one instead. Where there is no ``fcntl``
(Windows) or the file system has no locks, there is no lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path, busy: Callable[[], Exception]) -> Iterator[None]:
    """Hold the lock file ``path`` for the block; raise ``busy()`` at once when another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise busy() from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without locks
                with contextlib.suppress(OSError):
                    path.unlink()
                yield
                return
            raise
        try:
            held = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            held = False
        if held:
            break
        os.close(fd)  # the file was removed by the process that held it: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
